"""A sweep from one command: any grid, trained as populations, with successive halving.

    python experiments/sweep.py --data-dir D --out O [grid flags] [--epochs R] [--halving ETA --min-epochs r]

Grid flags take a comma list, a log-spaced range lo:hi:n (n values, both ends
included), or for integers a range a-b (inclusive); the grid is their cross product:

    --optimizer rmsprop,adam,momentum   families of jaxmlp.optim (default: those three)
    --lr 1e-4:1e-1:16                   learning rates (default: each family's own)
    --seed 0-3                          initialisation and shuffling seeds, as mnist_seed.py --seed
    --hp momentum=0.8,0.9,0.95          any hyperparameter of every family given (repeat the flag)
    --dropout 0,0.3  --label-smoothing 0,0.1  --l2 0,1e-4  --hidden 256,512  --batch-size 64,128

Members of one family, hidden width and batch size train as one population: one
compiled program, their values as data (`jaxmlp.sweep`). With --halving ETA every
member trains --min-epochs r epochs; then the best floor(n / ETA) by --select go on
to r ETA epochs, and so on up to --epochs; survivors are gathered into a smaller
population, so an eliminated member costs nothing afterwards. Members are ranked on
the last 20% of the training images (validation); the test set is evaluated for
reading only.

Writes in --out: results.json and results.csv (one row per member: every swept value,
epochs_trained, diverged_at_epoch, final loss, accuracy, val_loss, val_accuracy,
test_accuracy; the JSON also each member's per-epoch history), sweep.png (validation
accuracy against epoch for every member, and the final validation accuracy against
learning rate per family), best/ (params.npz, config.json, summary.json of the best
member) and checkpoints/: a killed sweep run again with the same command resumes
(--fresh starts over). --throughput 1,16,64 also measures population throughput.
Members spread over every device; --coordinator, --num-processes and --process-id
make it one process of a multi-host run, in which only process 0 prints and writes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from jaxmlp import checkpoint, cli, files, optim, parallel, plot, population, sweep

DEFAULT_FAMILIES = ["rmsprop", "adam", "momentum"]


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/sweep", train_size=True)
    grid = parser.add_argument_group("the grid (comma lists, lo:hi:n log ranges, a-b integer ranges)")
    grid.add_argument(
        "--optimizer",
        type=cli.names(optim.NAMES),
        default=DEFAULT_FAMILIES,
        help=f"optimizer families, from {cli.optimizer_families()} (default learning rates in brackets; "
        f"default: {','.join(DEFAULT_FAMILIES)})",
    )
    grid.add_argument("--lr", type=cli.grid_floats, help="learning rates (default: each family's default)")
    grid.add_argument("--seed", type=cli.grid_ints, default=[0], help="seeds, e.g. 0-3 (default 0)")
    grid.add_argument("--hp", type=cli.hyperparameter, action="append", default=[], help="NAME=VALUES, repeatable")
    grid.add_argument("--dropout", type=cli.grid_floats, help="hidden-layer dropout rates")
    grid.add_argument("--label-smoothing", type=cli.grid_floats, help="label smoothing amounts")
    grid.add_argument("--l2", type=cli.grid_floats, help="L2 penalties on the weights")
    grid.add_argument("--hidden", type=cli.grid_ints, default=[512], help="hidden widths (default 512)")
    grid.add_argument("--batch-size", type=cli.grid_ints, default=[128], help="batch sizes (default 128)")
    parser.add_argument("--epochs", type=cli.positive_int, default=5, help="epochs of a member trained to the end")
    parser.add_argument("--halving", type=int, help="successive halving: keep the best 1/ETA at each rung (ETA >= 2)")
    parser.add_argument("--min-epochs", type=cli.positive_int, default=1, help="the first rung, with --halving")
    parser.add_argument("--select", choices=tuple(sweep.SELECT), default="val_accuracy", help="what ranks members")
    parser.add_argument("--max-population", type=cli.positive_int, help="most members per compiled population")
    cli.add_precision_flag(parser)
    parser.add_argument(
        "--throughput",
        type=cli.positive_ints,
        default=[],
        help="also measure model-epochs per second of populations of these sizes K, e.g. 1,16,64",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints in --out and start over")
    cli.add_distributed_flags(parser)
    args = parser.parse_args(argv)
    # Every value is checked before anything is written.
    if args.halving is not None and args.halving < 2:
        parser.error(f"argument --halving: must be >= 2 (3 keeps the best third at each rung); got {args.halving}")
    if args.min_epochs > args.epochs:
        parser.error(f"argument --min-epochs: must be at most --epochs ({args.epochs}); got {args.min_epochs}")
    try:
        args.members = sweep.grid(
            args.optimizer,
            learning_rates=args.lr,
            seeds=args.seed,
            hp=dict(args.hp),
            hidden=args.hidden,
            batch_sizes=args.batch_size,
            regularization={
                name: getattr(args, name)
                for name in ("dropout", "label_smoothing", "l2")
                if getattr(args, name) is not None
            },
        )
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.start_distributed(args)  # before anything else touches JAX
    out = Path(args.out)
    main_process = parallel.is_main_process()
    (x_train, y_train), test_data = cli.load_data(args)
    if main_process:
        files.remove_stale_temporaries(out)
        if args.fresh:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)
    report = print if main_process else lambda *_: None
    report(f"{len(args.members)} members, rungs at epochs {sweep.rungs(args.min_epochs, args.epochs, args.halving)}")
    try:
        result = sweep.run(
            args.members,
            x_train,
            y_train,
            epochs=args.epochs,
            validation_split=0.2,
            halving=args.halving,
            min_epochs=args.min_epochs,
            select=args.select,
            max_population=args.max_population,
            precision=args.precision,
            test_data=test_data,
            checkpoint_dir=out / "checkpoints",
            verbose=True,
        )
    except checkpoint.ConfigurationMismatch as err:
        raise ValueError(f"{err}; start over with --fresh, or choose another --out") from None
    throughput = population.throughput(
        x_train, y_train, args.throughput, batch_size=args.batch_size[0], precision=args.precision
    )
    config = {k: v for k, v in vars(args).items() if k != "members"}
    if main_process:
        sweep.save(result, out, {"config": config, "throughput": throughput, **cli.environment()})
        plot.plot_sweep(sweep.rows(result, histories=True), result.rungs, out / "sweep.png")
    report(summary(result, throughput))


def summary(result: sweep.SweepResult, throughput: list[dict]) -> str:
    """The best members as a markdown table, then the timings."""
    table = sweep.rows(result)
    ranked = sorted(
        (row for row in table if row[result.select] is not None),
        key=lambda row: row[result.select],
        reverse=sweep.SELECT[result.select] is max,
    )
    swept = [k for k in table[0] if k not in sweep.RESULT_METRICS and len({row[k] for row in table}) > 1]
    columns = swept + ["epochs_trained", "val_accuracy", "val_loss", "test_accuracy"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in ranked[:10]:
        lines.append("| " + " | ".join(_cell(row[k]) for k in columns) + " |")
    diverged = sum(row["diverged_at_epoch"] is not None for row in table)
    lines.append(
        f"\n{len(table)} members ({diverged} diverged), {result.programs} compiled populations, "
        f"{result.seconds:.1f} s; best by {result.select}: "
        + ("none" if result.best is None else f"member {result.best} ({_cell(table[result.best][result.select])})")
    )
    for row in throughput:
        lines.append(
            f"K={row['models']}: {row['model_epochs_per_second']:.2f} model-epochs/s "
            f"({row['speedup_over_k1']:.2f} x K={throughput[0]['models']})"
        )
    return "\n".join(lines)


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


if __name__ == "__main__":
    cli.run(main)
