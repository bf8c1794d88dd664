"""The best 784-512-10 MLP this library trains: regularised, augmented, chosen on validation, tested once.

    python experiments/best_mlp.py --data-dir D --out O [--epochs 40]

No convolution and no data beyond MNIST's 60,000 training images. The recipe is the
seed's network trained with Adam under a cosine learning-rate decay, with dropout
on the hidden layer and random affine distortions of the training images (rotation,
scaling, translation, after Simard et al. 2003), all computed on the device.

How the hyperparameters are chosen: a grid (learning rate x dropout x distortion
on/off) is a sweep (`jaxmlp.sweep`, the machinery of experiments/sweep.py), trained as
one vmapped population on the first 50,000 training images and ranked on the last
10,000; the configuration with the best validation accuracy is then retrained on all
60,000 images for the same number of epochs and evaluated once on the test set. The
test set plays no part in any choice.

Writes summary.json (test_accuracy, fit_seconds, the chosen hyperparameters, the
grid's validation scores), params.npz (the final network), search/ (the sweep's
results.json, results.csv and best/) and search.png (validation loss and accuracy per
epoch of every configuration).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import jax

from jaxmlp import checkpoint, cli, files, model, optim, plot, schedules, sweep, train
from jaxmlp.regularize import Regularization

VALIDATION = 10_000  # the classic 50,000 / 10,000 split of MNIST's training set
DISTORTION = {"max_shift": 2.0, "max_rotation": 10.0, "max_scale": 0.1}  # pixels, degrees, fraction


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/best_mlp", train_size=True)
    parser.add_argument("--epochs", type=cli.positive_int, default=40, help="epochs of every run, search and final")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--learning-rates", type=cli.positive_floats, default=[1e-3, 3e-3])
    parser.add_argument("--dropouts", type=cli.fractions, default=[0.3, 0.5])
    parser.add_argument("--seed", type=cli.nonnegative_int, default=0)
    cli.add_precision_flag(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.enable_compilation_cache()
    out = Path(args.out)
    (x_train, y_train), (x_test, y_test) = cli.load_data(args)
    validation = min(VALIDATION, len(x_train) // 6)

    # 1. The search: every configuration of the grid in one compiled program, ranked on validation.
    members = [
        sweep.Member(
            "adam",
            lr,
            args.seed,
            batch_size=args.batch_size,
            regularization=Regularization(dropout=rate, **(DISTORTION if distort else {})),
        )
        for lr, rate, distort in itertools.product(args.learning_rates, args.dropouts, (False, True))
    ]
    steps = -(-(len(x_train) - validation) // args.batch_size) * args.epochs
    search = sweep.run(
        members,
        x_train[:-validation],
        y_train[:-validation],
        epochs=args.epochs,
        validation_data=(x_train[-validation:], y_train[-validation:]),
        schedule=schedules.cosine_decay(1.0, steps),
        precision=args.precision,
    )
    sweep.save(search, out / "search")
    scores = [o.final("val_accuracy") for o in search.outcomes]
    for m, score in zip(members, scores):
        scored = "diverged" if score is None else f"val_accuracy {score:.4f}"
        print(f"search: lr {m.learning_rate:g}, dropout {m.regularization.dropout}, {_distortion(m)}: {scored}")
    if search.best is None:
        raise ValueError("every configuration of the search diverged; try smaller --learning-rates")
    chosen = members[search.best]
    learning_rate, regularization = chosen.learning_rate, chosen.regularization

    # 2. The chosen configuration, retrained on all the training images, tested once.
    init_key, shuffle_key = jax.random.split(jax.random.key(args.seed))  # as the sweep seeds its members
    steps = -(-len(x_train) // args.batch_size) * args.epochs
    optimizer = optim.adam(schedules.cosine_decay(learning_rate, steps))
    start = time.perf_counter()
    state, history = train.fit(
        train.init_train_state(model.init_mlp(init_key), optimizer, shuffle_key),
        x_train,
        y_train,
        optimizer=optimizer,
        epochs=args.epochs,
        batch_size=args.batch_size,
        regularization=regularization,
        precision=args.precision,
    )
    fit_seconds = time.perf_counter() - start
    test = train.evaluate(state.params, x_test, y_test, precision=args.precision)
    print(
        f"chosen: lr {learning_rate:g}, dropout {regularization.dropout}, {_distortion(chosen)}; "
        f"test_accuracy {test['accuracy']:.4f} (fit {fit_seconds:.0f} s, search {search.seconds:.0f} s)"
    )

    plot.plot_comparison(
        {
            f"lr {m.learning_rate:g}, dropout {m.regularization.dropout}, {_distortion(m)}": o.history.metrics
            for m, o in zip(members, search.outcomes)
        },
        out / "search.png",
    )
    checkpoint.save_pytree(out / "params.npz", state.params)
    files.write_json(
        out / "summary.json",
        {
            "test_accuracy": test["accuracy"],
            "test_loss": test["loss"],
            "fit_seconds": fit_seconds,
            "search_seconds": search.seconds,
            "chosen": {
                "optimizer": "adam",
                "learning_rate": learning_rate,
                "schedule": "cosine decay to 0",
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "precision": args.precision,
                **regularization._asdict(),
            },
            "search": [
                {
                    "learning_rate": m.learning_rate,
                    "dropout": m.regularization.dropout,
                    "distortion": m.regularization.max_rotation > 0,
                    "val_accuracy": score,
                }
                for m, score in zip(members, scores)
            ],
            "validation_images": validation,
            "training_images": len(x_train),
            **cli.environment(),
        },
    )


def _distortion(member: sweep.Member) -> str:
    return "distortion " + ("on" if member.regularization.max_rotation > 0 else "off")


if __name__ == "__main__":
    cli.run(main)
