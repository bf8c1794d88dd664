"""The best 784-512-10 MLP this library trains: regularised, augmented, chosen on validation, tested once.

    python experiments/best_mlp.py --data-dir D --out O [--epochs 40]

No convolution and no data beyond MNIST's 60,000 training images. The recipe is the
seed's network trained with Adam under a cosine learning-rate decay, with dropout
on the hidden layer and random affine distortions of the training images (rotation,
scaling, translation, after Simard et al. 2003), all computed on the device.

How the hyperparameters are chosen: a grid (learning rate x dropout x distortion
on/off) is trained as one vmapped population on the first 50,000 training images
and scored on the last 10,000; the configuration with the best validation accuracy
is then retrained on all 60,000 images for the same number of epochs and evaluated
once on the test set. The test set plays no part in any choice.

Writes summary.json (test_accuracy, fit_seconds, the chosen hyperparameters, the
grid's validation scores) and search.png (validation accuracy per epoch per member).
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import jax
import numpy as np

from jaxmlp import checkpoint, cli, files, model, optim, plot, population, schedules, train
from jaxmlp.regularize import Regularization

VALIDATION = 10_000  # the classic 50,000 / 10,000 split of MNIST's training set
DISTORTION = {"max_shift": 2.0, "max_rotation": 10.0, "max_scale": 0.1}  # pixels, degrees, fraction


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/best_mlp", train_size=True)
    parser.add_argument("--epochs", type=cli.positive_int, default=40, help="epochs of every run, search and final")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--learning-rates", type=cli.positive_floats, default=[1e-3, 3e-3])
    parser.add_argument("--dropouts", type=cli.fractions, default=[0.3, 0.5])
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.enable_compilation_cache()
    out = Path(args.out)
    (x_train, y_train), (x_test, y_test) = cli.load_data(args)
    validation = min(VALIDATION, len(x_train) // 6)
    init_key, shuffle_key = jax.random.split(jax.random.key(args.seed))

    # 1. The search: every configuration of the grid in one compiled program, scored on validation.
    grid = list(itertools.product(args.learning_rates, args.dropouts, (False, True)))
    steps = -(-(len(x_train) - validation) // args.batch_size) * args.epochs
    start = time.perf_counter()
    _, histories = population.fit_population(
        population.init_population(jax.random.split(init_key, len(grid))),
        x_train[:-validation],
        y_train[:-validation],
        optimizer_factory=optim.adam,
        hyperparams={"learning_rate": [lr for lr, _, _ in grid]},
        regularization=Regularization(
            dropout=[rate for _, rate, _ in grid],
            **{name: [value if distort else 0.0 for _, _, distort in grid] for name, value in DISTORTION.items()},
        ),
        schedule=schedules.cosine_decay(1.0, steps),
        keys=jax.random.split(shuffle_key, len(grid)),
        validation_data=(x_train[-validation:], y_train[-validation:]),
        epochs=args.epochs,
        batch_size=args.batch_size,
    )
    search_seconds = time.perf_counter() - start
    scores = [h.metrics["val_accuracy"][-1] for h in histories]
    for (lr, rate, distort), score in zip(grid, scores):
        print(f"search: lr {lr:g}, dropout {rate}, distortion {'on' if distort else 'off'}: val_accuracy {score:.4f}")
    learning_rate, dropout, distort = grid[int(np.argmax(scores))]

    # 2. The chosen configuration, retrained on all the training images, tested once.
    regularization = Regularization(dropout=dropout, **(DISTORTION if distort else {}))
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
    )
    fit_seconds = time.perf_counter() - start
    test = train.evaluate(state.params, x_test, y_test)
    print(
        f"chosen: lr {learning_rate:g}, dropout {dropout}, distortion {'on' if distort else 'off'}; "
        f"test_accuracy {test['accuracy']:.4f} (fit {fit_seconds:.0f} s, search {search_seconds:.0f} s)"
    )

    plot.plot_comparison(
        {
            f"lr {lr:g}, dropout {rate}, {'distorted' if d else 'plain'}": h.metrics
            for (lr, rate, d), h in zip(grid, histories)
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
            "search_seconds": search_seconds,
            "chosen": {
                "optimizer": "adam",
                "learning_rate": learning_rate,
                "schedule": "cosine decay to 0",
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                **regularization._asdict(),
            },
            "search": [
                {"learning_rate": lr, "dropout": rate, "distortion": d, "val_accuracy": score}
                for (lr, rate, d), score in zip(grid, scores)
            ],
            "validation_images": validation,
            "training_images": len(x_train),
            **cli.environment(),
        },
    )


if __name__ == "__main__":
    cli.run(main)
