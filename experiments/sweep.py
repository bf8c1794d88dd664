"""A grid of optimizer family x learning rate x seed, each family trained as one vmapped population.

    python experiments/sweep.py --data-dir D --out O --epochs E [--throughput 1,4,16]

Every configuration of a family (learning rates x seeds) trains in one compiled
program (`population.fit_population`); the learning rate, and for SGD the momentum,
are data. Member (optimizer, lr, seed) starts exactly as `mnist_seed.py --seed S`
does: its initialisation and shuffling keys come from `jax.random.key(seed)`.
Then the same models are trained one by one with `fit` (one compilation each, as
a user sweeping by hand would), and the wall times are compared. No compilation
cache is used here, so that compile times count for both.

Writes sweep.json (every run: optimizer, learning_rate, seed, val_accuracy,
test_accuracy; the timings; the throughput table) and sweep.png (accuracy against
learning rate, per optimizer), and prints a markdown summary.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import checkpoint, cli, optim, plot, population, train

# family -> (optimizer factory, fixed hyperparameters, default learning rates)
FAMILIES = {
    "momentum": (optim.sgd, {"momentum": 0.9}, (0.01, 0.03, 0.1, 0.3)),
    "rmsprop": (optim.rmsprop, {}, (1e-4, 3e-4, 1e-3, 3e-3)),
    "adam": (optim.adam, {}, (1e-4, 3e-4, 1e-3, 3e-3)),
}


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/sweep", train_size=True)
    parser.add_argument("--epochs", type=cli.positive_int, default=5)
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--families", type=cli.names(tuple(FAMILIES)), default=list(FAMILIES))
    parser.add_argument("--seeds", type=cli.nonnegative_ints, default=[0, 1])
    parser.add_argument("--skip-singles", action="store_true", help="do not train the models one by one")
    parser.add_argument(
        "--throughput",
        type=cli.positive_ints,
        default=[],
        help="population sizes K at which to measure models x epochs per second, e.g. 1,16,64",
    )
    return parser.parse_args(argv)


def member_keys(seeds):
    """(init keys, shuffle keys) per seed, split as mnist_seed.py splits them."""
    pairs = jnp.stack([jax.random.split(jax.random.key(seed)) for seed in seeds])
    return pairs[:, 0], pairs[:, 1]


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    (x_train, y_train), (x_test, y_test) = cli.load_data(args)
    fit_options = dict(epochs=args.epochs, batch_size=args.batch_size, validation_split=0.2)

    runs, timings = [], {"population_seconds": 0.0, "single_seconds": 0.0, "models": 0}
    for family in args.families:
        factory, fixed, rates = FAMILIES[family]
        grid = list(itertools.product(rates, args.seeds))  # (learning rate, seed) per member
        init_keys, shuffle_keys = member_keys([seed for _, seed in grid])
        params = population.init_population(init_keys)
        hyperparams = {"learning_rate": [lr for lr, _ in grid], **{k: [v] * len(grid) for k, v in fixed.items()}}
        start = time.perf_counter()
        states, histories = population.fit_population(
            params, x_train, y_train, optimizer=factory, hyperparams=hyperparams, keys=shuffle_keys, **fit_options
        )
        tests = population.evaluate_population(states.params, x_test, y_test)
        timings["population_seconds"] += time.perf_counter() - start
        timings["models"] += len(grid)
        for (lr, seed), history, test in zip(grid, histories, tests):
            runs.append(
                {
                    "optimizer": family,
                    "learning_rate": lr,
                    "seed": seed,
                    "val_accuracy": history.metrics["val_accuracy"][-1],
                    "val_loss": history.metrics["val_loss"][-1],
                    "test_accuracy": test["accuracy"],
                }
            )
        print(
            f"{family}: {len(grid)} models in one program, {histories[0].compile_seconds:.2f} s compile, "
            f"{np.median(histories[0].seconds):.2f} s per epoch",
            flush=True,
        )
        if not args.skip_singles:
            start = time.perf_counter()
            for i, (lr, _) in enumerate(grid):
                optimizer = factory(lr, **fixed)
                state = train.init_train_state(
                    jax.tree.map(lambda leaf, i=i: leaf[i], params), optimizer, shuffle_keys[i]
                )
                state, _ = train.fit(state, x_train, y_train, optimizer=optimizer, **fit_options)
                train.evaluate(state.params, x_test, y_test)
            timings["single_seconds"] += time.perf_counter() - start

    timings["population_seconds_per_model"] = timings["population_seconds"] / timings["models"]
    if not args.skip_singles:
        timings["single_seconds_per_model"] = timings["single_seconds"] / timings["models"]
        timings["population_over_single"] = timings["population_seconds"] / timings["single_seconds"]
    result = {
        "config": vars(args),
        "runs": runs,
        "timings": timings,
        "throughput": throughput(x_train, y_train, args),
        **cli.environment(),
    }
    checkpoint.write_json(out / "sweep.json", result)
    plot.plot_sweep(runs, out / "sweep.png")
    print(summary(result))


def throughput(x, y, args) -> list[dict]:
    """Models x epochs per second of RMSProp populations of each size K (steady epochs)."""
    rows = []
    for size in args.throughput:
        init_keys, shuffle_keys = member_keys(range(size))
        params = population.init_population(init_keys)
        _, histories = population.fit_population(
            params,
            x,
            y,
            optimizer=optim.rmsprop,
            hyperparams={"learning_rate": [1e-3] * size},
            keys=shuffle_keys,
            epochs=2,
            batch_size=args.batch_size,
            validation_split=0.2,
        )
        epoch = histories[0].seconds[-1]  # the second epoch: compilation and warm-up are behind
        rows.append(
            {
                "models": size,
                "epoch_seconds": epoch,
                "model_epochs_per_second": size / epoch,
                "compile_seconds": histories[0].compile_seconds,
            }
        )
        print(f"K={size}: {size / epoch:.2f} model-epochs per second", flush=True)
    for row in rows:
        row["speedup_over_k1"] = row["model_epochs_per_second"] / rows[0]["model_epochs_per_second"] if rows else None
    return rows


def summary(result) -> str:
    lines = ["| optimizer | learning rate | seed | val accuracy | test accuracy |", "|---|---|---|---|---|"]
    for r in result["runs"]:
        lines.append(
            f"| {r['optimizer']} | {r['learning_rate']:g} | {r['seed']} | {r['val_accuracy']:.4f} | "
            f"{r['test_accuracy']:.4f} |"
        )
    t = result["timings"]
    lines.append(
        f"\n{t['models']} models: populations {t['population_seconds']:.1f} s "
        f"({t['population_seconds_per_model']:.2f} s per model)"
    )
    if "single_seconds" in t and "population_over_single" in t:
        lines.append(
            f"one by one: {t['single_seconds']:.1f} s ({t['single_seconds_per_model']:.2f} s per model); "
            f"populations take {t['population_over_single']:.2f} x the time"
        )
    for row in result["throughput"]:
        lines.append(
            f"K={row['models']}: {row['model_epochs_per_second']:.2f} model-epochs/s "
            f"({row['speedup_over_k1']:.2f} x K={result['throughput'][0]['models']})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
