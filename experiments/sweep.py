"""A grid of optimizer family x learning rate x seed, each family trained as one vmapped population.

    python experiments/sweep.py --data-dir D --out O --epochs E [--lr 1e-3,3e-3] [--throughput 1,4,16]

Every configuration of a family (learning rates x seeds) trains in one compiled
program (`population.fit_population`); the learning rate, and for SGD the momentum,
are data. Member (optimizer, lr, seed) starts exactly as `mnist_seed.py --seed S`
does: its initialisation and shuffling keys come from `jax.random.key(seed)`.
Then the same models are trained one by one with `fit` (one compilation each, as
a user sweeping by hand would), and the wall times are compared. No compilation
cache is used here, so that compile times count for both.

Each population checkpoints after every epoch in O/checkpoints/<family>/: a sweep
killed at any moment and run again with the same command resumes every population
where it was, and ends with the same results (--fresh starts over). A member whose
loss goes NaN or infinite is reported as diverged, with no accuracy. Members are
spread over every device; --coordinator, --num-processes and --process-id make it
one process of a multi-host run, in which only process 0 prints and writes.

Writes sweep.json (every run: optimizer, learning_rate, seed, diverged_at_epoch,
val_accuracy, val_loss, test_accuracy; the timings; the throughput table) and
sweep.png (accuracy against learning rate, per optimizer), and prints a markdown summary.
"""

from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import checkpoint, cli, files, optim, parallel, plot, population, train

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
    parser.add_argument(
        "--lr", type=cli.positive_floats, help="learning rates for every family (default: four per family)"
    )
    parser.add_argument("--seeds", type=cli.nonnegative_ints, default=[0, 1])
    parser.add_argument("--skip-singles", action="store_true", help="do not train the models one by one")
    parser.add_argument(
        "--throughput",
        type=cli.positive_ints,
        default=[],
        help="population sizes K at which to measure models x epochs per second, e.g. 1,16,64",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints in --out and start over")
    cli.add_distributed_flags(parser)
    return parser.parse_args(argv)


def member_keys(seeds):
    """(init keys, shuffle keys) per seed, split as mnist_seed.py splits them."""
    pairs = jnp.stack([jax.random.split(jax.random.key(seed)) for seed in seeds])
    return pairs[:, 0], pairs[:, 1]


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.start_distributed(args)  # before anything else touches JAX
    out = Path(args.out)
    main_process = parallel.is_main_process()
    report = print if main_process else lambda *_: None
    (x_train, y_train), (x_test, y_test) = cli.load_data(args)
    if main_process:
        files.remove_stale_temporaries(out)
        if args.fresh:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    fit_options = dict(epochs=args.epochs, batch_size=args.batch_size, validation_split=0.2)

    runs, timings = [], {"population_seconds": 0.0, "single_seconds": 0.0, "models": 0}
    for family in args.families:
        factory, fixed, rates = FAMILIES[family]
        grid = list(itertools.product(args.lr or rates, args.seeds))  # (learning rate, seed) per member
        init_keys, shuffle_keys = member_keys([seed for _, seed in grid])
        params = population.init_population(init_keys)
        hyperparams = {"learning_rate": [lr for lr, _ in grid], **{k: [v] * len(grid) for k, v in fixed.items()}}
        report(f"{family}: {len(grid)} models in one program")
        start = time.perf_counter()
        try:
            states, histories = population.fit_population(
                params,
                x_train,
                y_train,
                optimizer_factory=factory,
                hyperparams=hyperparams,
                keys=shuffle_keys,
                verbose=main_process,
                checkpoint_dir=out / "checkpoints" / family,
                **fit_options,
            )
        except checkpoint.ConfigurationMismatch as err:
            raise ValueError(f"{err}; start over with --fresh, or choose another --out") from None
        tests = population.evaluate_population(states.params, x_test, y_test)
        timings["population_seconds"] += time.perf_counter() - start
        timings["models"] += len(grid)
        for (lr, seed), history, test in zip(grid, histories, tests):
            runs.append(result_row(family, lr, seed, history, test))
        longest = max(histories, key=lambda h: len(h.seconds))  # a diverged member's History is shorter
        if longest.seconds:
            report(f"{family}: {longest.compile_seconds:.2f} s compile, {np.median(longest.seconds):.2f} s per epoch")
        if not args.skip_singles:
            start = time.perf_counter()
            for i, (lr, _) in enumerate(grid):
                optimizer = factory(lr, **fixed)
                state = train.init_train_state(population.member(params, i), optimizer, shuffle_keys[i])
                try:
                    state, _ = train.fit(state, x_train, y_train, optimizer=optimizer, **fit_options)
                    train.evaluate(state.params, x_test, y_test)
                except train.Diverged:
                    pass  # timed all the same: a user sweeping by hand would have run it too
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
    if main_process:
        files.write_json(out / "sweep.json", result)
        plot.plot_sweep(runs, out / "sweep.png")
    report(summary(result))


def result_row(family: str, lr: float, seed: int, history, test: dict) -> dict:
    """One member's results; a diverged member has no accuracy (its parameters are those before it diverged)."""
    diverged = history.diverged_at_epoch is not None
    last = {name: None if diverged else values[-1] for name, values in history.metrics.items()}
    return {
        "optimizer": family,
        "learning_rate": lr,
        "seed": seed,
        "diverged_at_epoch": history.diverged_at_epoch,
        "val_accuracy": last.get("val_accuracy"),
        "val_loss": last.get("val_loss"),
        "test_accuracy": None if diverged else test["accuracy"],
    }


def throughput(x, y, args) -> list[dict]:
    """Models x epochs per second of RMSProp populations of each size K: the median of epochs 2 and 3."""
    rows = []
    for size in args.throughput:
        init_keys, shuffle_keys = member_keys(range(size))
        _, histories = population.fit_population(
            population.init_population(init_keys),
            x,
            y,
            optimizer_factory=optim.rmsprop,
            hyperparams={"learning_rate": [1e-3] * size},
            keys=shuffle_keys,
            epochs=3,
            batch_size=args.batch_size,
            validation_split=0.2,
        )
        epoch = float(np.median(histories[0].seconds[1:]))  # compilation and warm-up are behind
        rows.append(
            {
                "models": size,
                "epoch_seconds": epoch,
                "model_epochs_per_second": size / epoch,
                "compile_seconds": histories[0].compile_seconds,
            }
        )
        if parallel.is_main_process():
            print(f"K={size}: {size / epoch:.2f} model-epochs per second", flush=True)
    for row in rows:
        row["speedup_over_k1"] = row["model_epochs_per_second"] / rows[0]["model_epochs_per_second"]
    return rows


def summary(result) -> str:
    lines = ["| optimizer | learning rate | seed | val accuracy | test accuracy |", "|---|---|---|---|---|"]
    for r in result["runs"]:
        if r["diverged_at_epoch"] is not None:
            scores = f"diverged in epoch {r['diverged_at_epoch']} | diverged"
        else:
            scores = f"{r['val_accuracy']:.4f} | {r['test_accuracy']:.4f}"
        lines.append(f"| {r['optimizer']} | {r['learning_rate']:g} | {r['seed']} | {scores} |")
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
