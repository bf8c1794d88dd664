"""The seed, end to end: Keras's first MNIST network, trained and evaluated with jaxmlp.

    python experiments/mnist_seed.py [--data-dir D] [--out runs/mnist_seed] [--epochs 5] ...

The steps follow the R/Keras original one to one:

    network <- keras_model_sequential() %>% layer_dense(512, "relu") %>% layer_dense(10, "softmax")
    network %>% compile(optimizer = "rmsprop", loss = "categorical_crossentropy", metrics = "accuracy")
    train_images <- array_reshape(train_images, c(60000, 28 * 28)) / 255
    train_labels <- to_categorical(train_labels)
    model_fit <- network %>% fit(train_images, train_labels, epochs = 5, batch_size = 128, validation_split = 0.2)
    network %>% evaluate(test_images, test_labels); plot(model_fit); network %>% predict_classes(test_images[1:10, ])

Writes into --out: config.json, metrics.jsonl (one line per epoch), summary.json,
history.png, predictions.png, params.npz (one array per parameter, "0/w", ...) and
checkpoints/ (after every epoch; running the same command again resumes from the
last complete epoch, bitwise as if never stopped; --fresh starts over).
Trains on every visible device; --coordinator, --num-processes and --process-id make
it one process of a multi-host run, in which only process 0 prints and writes.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import jax
import numpy as np

import jaxmlp
from jaxmlp import checkpoint, cli, data, files, optim, parallel, plot


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/mnist_seed")
    parser.add_argument("--dataset", choices=data.DATASETS, default="mnist")
    parser.add_argument("--epochs", type=cli.nonnegative_int, default=5)
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument(
        "--optimizer",
        default="rmsprop",
        help=f"one of {cli.optimizer_families()} (default learning rates in brackets), "
        "or optax.<name> (1e-3) (default: rmsprop)",
    )
    parser.add_argument("--lr", type=cli.positive_float, help="learning rate (default: the optimizer's, see above)")
    parser.add_argument("--validation-split", type=cli.fraction, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=cli.positive_int, default=512, help="units in the hidden layer")
    parser.add_argument("--fresh", action="store_true", help="ignore checkpoints in --out and start over")
    cli.add_precision_flag(parser)
    cli.add_distributed_flags(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    cli.start_distributed(args)  # before anything else touches JAX
    cli.enable_compilation_cache()
    out = Path(args.out)
    optimizer = optim.from_name(args.optimizer, args.lr)  # checked before anything is read or written
    main_process = parallel.is_main_process()  # with several processes, only process 0 prints and writes
    report = print if main_process else lambda *_: None

    # 1. The data: uint8 arrays exactly as keras.datasets.mnist.load_data() gives them.
    (train_images, train_labels), (test_images, test_labels) = data.load_dataset(args.dataset, args.data_dir)
    report(f"{args.dataset}: train {train_images.shape} {train_images.dtype}, test {test_images.shape}")
    config = {
        **vars(args),
        "data_dir": str(args.data_dir or data.default_data_dir()),
        "lr": args.lr if args.lr is not None else optim.default_learning_rate(args.optimizer),
    }
    if main_process:
        files.remove_stale_temporaries(out)
        files.write_json(out / "config.json", config)
        if args.fresh:
            shutil.rmtree(out / "checkpoints", ignore_errors=True)

    # 2. The network: 784 -> hidden (relu) -> 10 (softmax folded into the loss).
    init_key, shuffle_key = jax.random.split(jax.random.key(args.seed))
    params = jaxmlp.init_mlp(init_key, (28 * 28, args.hidden, 10))
    jaxmlp.summary(params, print_fn=report)

    # 3. Preparation: flatten to 784 and one-hot the labels. The /255 happens on the
    #    device, inside the compiled step, so the images travel as uint8.
    train_images = train_images.reshape(len(train_images), 28 * 28)
    train_labels = jaxmlp.to_categorical(train_labels)

    # 4. fit, on every visible device. After each epoch fit writes a checkpoint (state,
    #    PRNG key, metrics) and we write metrics.jsonl; the same command resumes after a crash.
    records = checkpoint.saved_records(out / "checkpoints")  # the epochs an earlier run finished
    resumed_after = len(records)

    def log_epoch(epoch, logs, state):
        records.append({"epoch": epoch, **logs})
        if main_process:
            files.write_jsonl(out / "metrics.jsonl", records)

    start = time.perf_counter()
    try:
        state, history = jaxmlp.fit(
            params,
            train_images,
            train_labels,
            optimizer=optimizer,
            epochs=args.epochs,
            batch_size=args.batch_size,
            validation_split=args.validation_split,
            key=shuffle_key,
            on_epoch_end=log_epoch,
            verbose=main_process,
            checkpoint_dir=out / "checkpoints",
            precision=args.precision,
        )
    except checkpoint.ConfigurationMismatch as err:
        raise ValueError(f"{err}; start over with --fresh, or choose another --out") from None
    fit_seconds = time.perf_counter() - start
    if main_process:
        files.write_jsonl(out / "metrics.jsonl", records)  # each epoch exactly once, also after a resume
    metrics = history.metrics

    # 5. evaluate on all 10,000 test images; 6. plot; 7. predict the first ten.
    final = jaxmlp.evaluation_params(state, optimizer)  # the params; schedule-free's average x
    test = jaxmlp.evaluate(final, test_images, test_labels, precision=args.precision)
    predicted = jaxmlp.predict_classes(final, test_images[:10], precision=args.precision)
    report(f"test_loss: {test['loss']:.4f} - test_accuracy: {test['accuracy']:.4f}")
    report("first 10 test images, predicted:", " ".join(map(str, predicted)))
    report("                      true:     ", " ".join(map(str, test_labels[:10])))
    if not main_process:
        return
    if metrics:
        plot.plot_history(metrics, out / "history.png")
    plot.plot_predictions(test_images[:10], predicted, test_labels[:10], out / "predictions.png")
    checkpoint.save_pytree(out / "params.npz", final)
    summary = {
        "dataset": args.dataset,
        "optimizer": args.optimizer,
        "precision": args.precision,
        "parameters": jaxmlp.count_params(final),
        "test_loss": test["loss"],
        "test_accuracy": test["accuracy"],
        "epochs": args.epochs,
        "resumed_after_epoch": resumed_after,
        "fit_seconds": fit_seconds,
        "compile_seconds": history.compile_seconds,
        "epoch_seconds_median": float(np.median(history.seconds)) if history.seconds else None,
        "final": {name: values[-1] for name, values in metrics.items()},
        "predicted_first_10": predicted.tolist(),
        "true_first_10": test_labels[:10].tolist(),
        "peak_rss_mb": cli.peak_rss_mb(),
        **cli.environment(),
    }
    files.write_json(out / "summary.json", summary)
    report(f"wrote {out}/: config.json metrics.jsonl summary.json history.png predictions.png params.npz")


if __name__ == "__main__":
    cli.run(main)
