"""What a trained network learned: its weights as images, what it confuses, its surest mistakes, its calibration.

    python experiments/inspect_model.py --params runs/mnist_seed/params.npz [--data-dir D] [--out runs/inspect]

Reads a params.npz (from mnist_seed.py, best_mlp.py or a sweep's best/; any MLP with
784 inputs and 10 classes), classifies MNIST's 10,000 test images with it, and writes
into --out, printing a line about each:

    weights.png       the first layer's weights of the --units hidden units with the largest
                      norm, as 28x28 images on a diverging scale centred at 0
    weights_all.png   the same for every hidden unit
    confusion.png     the test confusion matrix: counts, and each true class's row in percent
    confusion.csv     one row per (true, predicted) cell: count and fraction of the true class
    mistakes.png      the --mistakes wrong predictions made with the highest probability
    calibration.png   a reliability diagram (confidence bins against accuracy) with the ECE
    metrics.json      the numbers behind every figure: per-class precision, recall and F1,
                      the confusion matrix, the calibration bins and ECE, the mistakes

Why not inspect.py: Python puts a script's own folder first on sys.path, so a script
named inspect.py would be imported in place of the standard library's `inspect`
module, which jax imports, and the run would fail before it began.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import jaxmlp
from jaxmlp import cli, data, files, metrics, plot


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/inspect")
    parser.add_argument("--params", required=True, help="a params.npz: an MLP with 784 inputs and 10 classes")
    parser.add_argument(
        "--units", type=cli.positive_int, default=64, help="hidden units in weights.png, largest norm first"
    )
    parser.add_argument("--mistakes", type=cli.positive_int, default=25, help="digits in mistakes.png (default: 25)")
    parser.add_argument("--bins", type=cli.positive_int, default=15, help="confidence bins of the calibration")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    params = cli.load_classifier(args.params)  # a bad file: one line, exit 2, nothing written
    _, (images, labels) = data.load_dataset("mnist", args.data_dir)

    probabilities = jaxmlp.predict(params, images)  # (N, 10)
    test = jaxmlp.evaluate(params, images, labels)
    predicted = probabilities.argmax(axis=1)  # (N,)
    confusion = metrics.confusion_matrix(labels, predicted)  # (10, 10)
    confusions = metrics.most_confused(confusion)
    reliability = metrics.calibration(probabilities, labels, bins=args.bins)
    mistakes = metrics.confident_mistakes(probabilities, labels, k=args.mistakes)
    weights = np.asarray(params[0]["w"])  # (784, H)
    norms = np.linalg.norm(weights, axis=0)  # (H,)
    strongest = np.argsort(-norms, kind="stable")[: args.units]  # largest norm first

    files.remove_stale_temporaries(out)
    sizes = jaxmlp.model.layer_sizes(params)
    print(f"{args.params}: a {'-'.join(map(str, sizes))} network; on {len(labels)} test images", end=" ")
    print(f"loss {test['loss']:.4f}, accuracy {test['accuracy']:.4f} ({int((predicted != labels).sum())} wrong)")

    plot.plot_weights(
        weights, out / "weights.png", strongest, f"first-layer weights of the {len(strongest)} units of largest norm"
    )
    plot.plot_weights(weights, out / "weights_all.png", title=f"first-layer weights of all {weights.shape[1]} units")
    print(
        f"weights.png: the {len(strongest)} of {weights.shape[1]} hidden units with the largest weights "
        f"(norms {norms[strongest[0]]:.2f} down to {norms[strongest[-1]]:.2f}; red: ink there excites the unit, "
        "blue: inhibits it); weights_all.png: every unit"
    )

    plot.plot_confusion(confusion, out / "confusion.png")
    fractions = metrics.row_normalised(confusion)
    cells = [
        {"true": i, "predicted": j, "count": int(confusion[i, j]), "fraction_of_true": float(fractions[i, j])}
        for i in range(len(confusion))
        for j in range(len(confusion))
    ]
    files.write_csv(out / "confusion.csv", cells)
    top = ", ".join(f"{c['label']} as {c['predicted']} ({c['count']})" for c in confusions[:3])
    print(f"confusion.png, confusion.csv: the most frequent mistakes are {top}")

    plot.plot_mistakes(images, mistakes, out / "mistakes.png")
    if len(mistakes["index"]):
        surest = f"from {mistakes['probability'][0]:.3f} down to {mistakes['probability'][-1]:.3f}"
        print(f"mistakes.png: the {len(mistakes['index'])} wrong answers given with the most confidence, {surest}")
    else:
        print("mistakes.png: empty, the network classifies every test image correctly")

    plot.plot_calibration(reliability, out / "calibration.png")
    counts = np.asarray(reliability["count"])
    print(
        f"calibration.png: expected calibration error {100 * reliability['ece']:.2f}%; "
        f"{counts[-1] / counts.sum():.1%} of the answers have confidence above {reliability['bins'][-2]:.3f}"
    )

    files.write_json(
        out / "metrics.json",
        {
            "params": str(args.params),
            "sizes": sizes,
            "test_images": len(labels),
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "per_class": metrics.per_class(confusion),
            "confusion": confusion.tolist(),
            "most_confused": confusions,
            "calibration": reliability,
            "mistakes": {name: values.tolist() for name, values in mistakes.items()},
            "weights": {"largest_norm_units": strongest.tolist(), "norms": norms.tolist()},
        },
    )
    print(f"metrics.json: per-class precision, recall and F1, and the numbers behind every figure; all in {out}/")


if __name__ == "__main__":
    cli.run(main)
