"""The seed's network trained with each optimizer, each at a learning rate chosen on validation data.

    python experiments/compare_optimizers.py --data-dir D --out O [--epochs 5] [--tune-epochs 2]

How the learning rates are chosen: for every optimizer, a short run (--tune-epochs)
at each rate of a half-decade grid (--grid, 1e-4 ... 1.0), on the seed's split
(the last 20% of the training images held out); the rate with the best final
validation accuracy wins (ties: lower validation loss). The test set is not looked
at until the winner has been trained for --epochs. Every run starts from the same
initial parameters and the same shuffling key.

Writes into --out: compare.json (per optimizer: the chosen rate, the tuning scores,
test accuracy and loss, seconds, per-epoch history), compare.png (validation loss
and accuracy per epoch, one line per optimizer), and prints a markdown table.
"""

from __future__ import annotations

import time
from pathlib import Path

import jax

import jaxmlp
from jaxmlp import cli, data, files, optim, plot, train

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/compare_optimizers", train_size=True)
    parser.add_argument("--dataset", choices=data.DATASETS, default="mnist")
    parser.add_argument(
        "--optimizers",
        type=cli.names(optim.NAMES),
        default=list(optim.NAMES),
        help=f"comma-separated, from {','.join(optim.NAMES)} (default: all)",
    )
    parser.add_argument("--grid", type=cli.positive_floats, default=list(GRID), help="learning rates to try")
    parser.add_argument("--epochs", type=cli.positive_int, default=5)
    parser.add_argument("--tune-epochs", type=cli.positive_int, default=2)
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    cli.add_precision_flag(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.enable_compilation_cache()
    out = Path(args.out)
    (x_train, y_train), (x_test, y_test) = cli.load_data(args, args.dataset)
    init_key, shuffle_key = jax.random.split(jax.random.key(args.seed))
    params = jaxmlp.init_mlp(init_key, (784, 512, 10))

    def run(name, learning_rate, epochs):
        optimizer = optim.from_name(name, learning_rate)
        start = time.perf_counter()
        state, history = train.fit(
            train.init_train_state(params, optimizer, shuffle_key),
            x_train,
            y_train,
            optimizer=optimizer,
            epochs=epochs,
            batch_size=args.batch_size,
            validation_split=0.2,
            precision=args.precision,
        )
        return state, history, time.perf_counter() - start

    results = []
    for name in args.optimizers:
        tuning = {}
        for learning_rate in args.grid:
            _, history, _ = run(name, learning_rate, args.tune_epochs)
            tuning[learning_rate] = (history.metrics["val_accuracy"][-1], history.metrics["val_loss"][-1])
            print(f"tune {name:9s} lr={learning_rate:<8g} val_accuracy={tuning[learning_rate][0]:.4f}", flush=True)
        best = max(tuning, key=lambda lr: (tuning[lr][0], -tuning[lr][1]))
        state, history, seconds = run(name, best, args.epochs)
        test = train.evaluate(state.params, x_test, y_test, precision=args.precision)
        results.append(
            {
                "optimizer": name,
                "learning_rate": best,
                "tuning_val_accuracy": {str(lr): acc for lr, (acc, _) in tuning.items()},
                "test_accuracy": test["accuracy"],
                "test_loss": test["loss"],
                "fit_seconds": seconds,
                "compile_seconds": history.compile_seconds,
                "history": history.metrics,
            }
        )
        print(f"{name}: lr {best:g} -> test_accuracy {test['accuracy']:.4f} ({seconds:.1f} s)", flush=True)

    files.write_json(out / "compare.json", {"config": vars(args), "results": results, **cli.environment()})
    plot.plot_comparison({r["optimizer"]: r["history"] for r in results}, out / "compare.png")
    print(markdown_table(results))


def markdown_table(results) -> str:
    lines = [
        "| optimizer | learning rate | val accuracy | test accuracy | test loss | fit seconds |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['optimizer']} | {r['learning_rate']:g} | {r['history']['val_accuracy'][-1]:.4f} | "
            f"{r['test_accuracy']:.4f} | {r['test_loss']:.4f} | {r['fit_seconds']:.1f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
