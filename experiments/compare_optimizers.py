"""Every optimizer family of jaxmlp.optim on the seed's network, each at a learning rate chosen on validation.

    python experiments/compare_optimizers.py --data-dir D --out O [--epochs 5] [--tune-epochs 2]

How the learning rates are chosen: every family (--optimizers, default all of
`optim.NAMES`) at every rate of its grid trains for --tune-epochs on the seed's split
(the last 20% of the training images held out). This is one sweep (`jaxmlp.sweep.run`):
a family's rates train together as one vmapped population, one compilation per
family. The rate with the best final validation accuracy wins (ties: lower
validation loss); a rate whose loss goes NaN or infinite is out.

The grids: the half-decade grid 1e-4, 3e-4, ..., 0.3, 1.0 (GRID) for every family
but two whose useful range lies elsewhere (FAMILY_GRIDS). Lion's sign update moves
every weight by the whole rate at every step, so its rates are about ten times
smaller than Adam's: its grid is shifted down a decade, 1e-5 ... 0.1. Plain SGD's
best rate on this network is at the top of the half-decade grid, so its grid goes
on to 3 and 10. --grid replaces every family's grid; --family-grid FAMILY=RATES
(repeatable) replaces one family's. A winner at either end of its grid is flagged.

Every run starts from the same initial parameters and the same shuffling key: every
member has the seed --seed, which the sweep splits into an initialisation key and a
shuffling key as mnist_seed.py --seed does.

Then each family's winner trains for --epochs, again as a sweep (one population per
family), and is evaluated once on the test set, at its evaluation parameters
(`train.evaluation_params`: schedule-free AdamW's average x, not the y it takes its
gradients at). The test set plays no part in any choice.

Writes into --out: compare.json (per optimizer: the chosen rate, its grid and the
tuning scores per rate, test accuracy and loss, seconds, per-epoch history),
compare.png (validation loss and accuracy per epoch, one line per optimizer), and
prints a markdown table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from jaxmlp import cli, data, files, optim, plot, sweep

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
FAMILY_GRIDS = {  # families whose useful rates lie outside GRID
    "sgd": (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0),
    "lion": (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1),
}
VALIDATION_SPLIT = 0.2  # the seed's split: the last 20% of the training images


def family_grid(text: str) -> tuple[str, list[float]]:
    """A flag type for "FAMILY=RATES", e.g. "lion=1e-5,3e-5,1e-4"."""
    name, sep, rates = text.partition("=")
    name = name.strip()
    if not sep:
        raise argparse.ArgumentTypeError(f"expected FAMILY=RATES, e.g. lion=1e-5,3e-5; got {text!r}")
    if name not in optim.NAMES:
        raise argparse.ArgumentTypeError(f"unknown {name}; choose from {','.join(optim.NAMES)}")
    return name, cli.positive_floats(rates)


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/compare_optimizers", train_size=True)
    parser.add_argument("--dataset", choices=data.DATASETS, default="mnist")
    parser.add_argument(
        "--optimizers",
        type=cli.names(optim.NAMES),
        default=list(optim.NAMES),
        help=f"comma-separated, from {','.join(optim.NAMES)} (default: all)",
    )
    parser.add_argument(
        "--grid",
        type=cli.positive_floats,
        default=None,
        help="learning rates to try for every family (default: GRID, FAMILY_GRIDS for sgd and lion)",
    )
    parser.add_argument(
        "--family-grid",
        type=family_grid,
        action="append",
        default=[],
        metavar="FAMILY=RATES",
        help="one family's learning rates, e.g. lion=1e-5,3e-5,1e-4 (repeatable; wins over --grid)",
    )
    parser.add_argument("--epochs", type=cli.positive_int, default=5)
    parser.add_argument("--tune-epochs", type=cli.positive_int, default=2)
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--seed", type=cli.nonnegative_int, default=0)
    cli.add_precision_flag(parser)
    args = parser.parse_args(argv)
    duplicates = sorted({name for name in args.optimizers if args.optimizers.count(name) > 1})
    if duplicates:
        parser.error(f"argument --optimizers: {','.join(duplicates)} given twice")
    unused = [name for name, _ in args.family_grid if name not in args.optimizers]
    if unused:
        parser.error(f"argument --family-grid: {unused[0]} is not among --optimizers")
    return args


def grids(args) -> dict[str, list[float]]:
    """{family: its learning rates, each once, in the order given} for every family of --optimizers."""
    chosen = {name: list(args.grid or FAMILY_GRIDS.get(name, GRID)) for name in args.optimizers}
    chosen |= dict(args.family_grid)
    return {name: list(dict.fromkeys(rates)) for name, rates in chosen.items()}


def best_rate(outcomes: list[sweep.Outcome]) -> sweep.Outcome | None:
    """The outcome with the best final val_accuracy (ties: lower val_loss), None if every one diverged."""
    finished = [o for o in outcomes if o.final("val_accuracy") is not None]
    if not finished:
        return None
    return max(finished, key=lambda o: (o.final("val_accuracy"), -o.final("val_loss")))


def family_seconds(outcome: sweep.Outcome) -> float:
    """Its population's wall time: compilation and every epoch (members of a population share them)."""
    return outcome.history.compile_seconds + sum(outcome.history.seconds)


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.enable_compilation_cache()
    out = Path(args.out)
    (x_train, y_train), (x_test, y_test) = cli.load_data(args, args.dataset)
    rates = grids(args)
    start = time.perf_counter()

    # 1. Tuning: every family at every rate of its grid, one population per family, ranked on validation.
    members = [
        member
        for name in args.optimizers
        for member in sweep.grid([name], learning_rates=rates[name], seeds=[args.seed], batch_sizes=[args.batch_size])
    ]
    tuning = sweep.run(
        members,
        x_train,
        y_train,
        epochs=args.tune_epochs,
        validation_split=VALIDATION_SPLIT,
        precision=args.precision,
        verbose=True,
    )
    by_family = {name: [o for o in tuning.outcomes if o.member.optimizer == name] for name in args.optimizers}
    winners = {}
    for name, outcomes in by_family.items():
        for o in outcomes:
            scored = "diverged" if o.final("val_accuracy") is None else f"val_accuracy {o.final('val_accuracy'):.4f}"
            print(f"tune {name:<19} lr {o.member.learning_rate:<8g} {scored}", flush=True)
        winner = best_rate(outcomes)
        if winner is None:
            raise ValueError(f"{name} diverged at every rate of its grid; give smaller rates with --family-grid")
        winners[name] = winner.member
        if winner.member.learning_rate in (min(rates[name]), max(rates[name])) and len(rates[name]) > 1:
            print(f"note: {name}'s best rate {winner.member.learning_rate:g} is at the edge of its grid", flush=True)

    # 2. Each winner trained for --epochs, one population per family, tested once at its evaluation parameters.
    final = sweep.run(
        list(winners.values()),
        x_train,
        y_train,
        epochs=args.epochs,
        validation_split=VALIDATION_SPLIT,
        precision=args.precision,
        test_data=(x_test, y_test),
        verbose=True,
    )
    results = []
    for name, outcome in zip(winners, final.outcomes):
        tuned = by_family[name]
        rate = winners[name].learning_rate
        results.append(
            {
                "optimizer": name,
                "learning_rate": rate,
                "grid": rates[name],
                "at_grid_edge": len(rates[name]) > 1 and rate in (min(rates[name]), max(rates[name])),
                "tuning_val_accuracy": {str(o.member.learning_rate): o.final("val_accuracy") for o in tuned},
                "tuning_val_loss": {str(o.member.learning_rate): o.final("val_loss") for o in tuned},
                "tuning_diverged_at_epoch": {str(o.member.learning_rate): o.history.diverged_at_epoch for o in tuned},
                "tuning_seconds": family_seconds(tuned[0]),
                "test_accuracy": None if outcome.test is None else outcome.test["accuracy"],
                "test_loss": None if outcome.test is None else outcome.test["loss"],
                "diverged_at_epoch": outcome.history.diverged_at_epoch,
                "fit_seconds": sum(outcome.history.seconds),
                "compile_seconds": outcome.history.compile_seconds,
                "history": outcome.history.metrics,
            }
        )
        test = "diverged" if outcome.test is None else f"test_accuracy {outcome.test['accuracy']:.4f}"
        print(f"{name}: lr {rate:g} -> {test} ({sum(outcome.history.seconds):.1f} s)", flush=True)
    seconds = time.perf_counter() - start

    files.write_json(
        out / "compare.json",
        {
            "config": vars(args),
            "validation": f"last {VALIDATION_SPLIT:g} of the training data",
            "training_images": len(x_train),
            "tuning_seconds": tuning.seconds,
            "final_seconds": final.seconds,
            "seconds": seconds,
            "results": results,
            **cli.environment(),
        },
    )
    plot.plot_comparison({r["optimizer"]: r["history"] for r in results}, out / "compare.png")
    print(markdown_table(results))
    print(f"tuning {tuning.seconds:.0f} s ({len(members)} runs), final {final.seconds:.0f} s, all {seconds:.0f} s")


def markdown_table(results) -> str:
    lines = [
        "| optimizer | learning rate | val accuracy | test accuracy | test loss | fit seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["test_accuracy"] is None:
            lines.append(
                f"| {r['optimizer']} | {r['learning_rate']:g} | diverged at epoch {r['diverged_at_epoch']} | "
                f"| | {r['fit_seconds']:.1f} |"
            )
            continue
        lines.append(
            f"| {r['optimizer']} | {r['learning_rate']:g} | {r['history']['val_accuracy'][-1]:.4f} | "
            f"{r['test_accuracy']:.4f} | {r['test_loss']:.4f} | {r['fit_seconds']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
