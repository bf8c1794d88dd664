"""How fast the seed trains, as ratios measured in one run: against its matmul floor, a naive loop, Keras, PyTorch.

    python experiments/benchmark.py --data-dir D --out O [--repeats 5]

What is measured, all on the device JAX picks (CPU, GPU or TPU), in this one process
unless said otherwise:

  floor     the matrix products alone of one epoch: 375 steps of the forward and
            backward GEMMs at batch 128 (x W1, h W2, dlogits W2^T, h^T dlogits,
            x^T dh) plus the validation forward pass, as one jitted scan on random
            float32 data; median of 2 x --repeats runs, taken before and after (b).
  epoch     jaxmlp's steady epoch, validation included: median of the epochs after
            the first of a `fit` with 1 + --repeats epochs.
  compile   tracing + XLA compilation of the epoch and validation programs (cold).
  loop      the naive way, as JAX's own MNIST examples do it: numpy shuffles and
            slices each batch on the host, a jitted step runs per batch; median epoch.
  seed      `experiments/mnist_seed.py` in a subprocess, twice with a fresh
            compilation cache (cold, then warm): its fit_seconds, compile_seconds,
            test accuracy and peak resident memory.
  keras     Keras 3 (JAX backend) `fit` of the same network, data and settings, in a
            subprocess, when Keras is importable; likewise PyTorch eager, when importable.
  precision on a GPU or TPU: the seed's 5 epochs with matmul precision float32,
            tensorfloat32 and bfloat16, with the time and accuracy each reaches.

Writes benchmark.json and prints a markdown table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import jaxmlp
from jaxmlp import cli, data, files, model, optim, train

SEED_SCRIPT = Path(__file__).with_name("mnist_seed.py")


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/benchmark")
    parser.add_argument("--repeats", type=cli.positive_int, default=5, help="timed repetitions per measurement")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    parser.add_argument("--hidden", type=cli.positive_int, default=512)
    parser.add_argument(
        "--skip",
        type=cli.names(("loop", "seed", "keras", "torch", "precision")),
        default=[],
        help="comma-separated parts not to run",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also trace one epoch with jax.profiler and list where its time goes"
    )
    return parser.parse_args(argv)


def seconds_of(run) -> float:
    """Wall time of one call of `run` (which must block until its result is ready)."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def median_seconds(run, repeats: int) -> float:
    """Median wall time of `run()` over `repeats` calls, after one warm-up call."""
    run()
    return float(np.median([seconds_of(run) for _ in range(repeats)]))


def gemm_floor(sizes, steps: int, batch_size: int, validation: int):
    """A function timing one epoch's GEMMs (see the module docstring) and its FLOP count."""
    (d_in, hidden, classes) = sizes
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.random((steps, batch_size, d_in), np.float32))  # (S, B, 784)
    x_val = jnp.asarray(rng.random((validation, d_in), np.float32))
    w1 = jnp.asarray(rng.normal(size=(d_in, hidden)).astype(np.float32) / 30)
    w2 = jnp.asarray(rng.normal(size=(hidden, classes)).astype(np.float32) / 30)

    @jax.jit
    def epoch_of_matmuls(x, x_val, w1, w2):
        def step(grads, xb):
            h = xb @ w1  # (B, hidden)
            dlogits = h @ w2  # (B, classes): stands in for softmax - one_hot, which is not a GEMM
            dh = dlogits @ w2.T  # (B, hidden)
            # The carry is overwritten, not accumulated: XLA keeps every step (a loop body is
            # never skipped), and no elementwise pass over the gradients is timed. Summing them
            # instead measured 10% slower on the 2-core CPU.
            return (xb.T @ dh, h.T @ dlogits), None

        grads, _ = jax.lax.scan(step, (jnp.zeros_like(w1), jnp.zeros_like(w2)), x)
        return grads, (x_val @ w1) @ w2

    flops = 2 * steps * batch_size * (2 * d_in * hidden + 3 * hidden * classes) + 2 * validation * (
        d_in * hidden + hidden * classes
    )
    return (lambda: jax.block_until_ready(epoch_of_matmuls(x, x_val, w1, w2))), flops


def naive_loop(params, optimizer, x, y, batch_size: int):
    """One epoch the way jax/examples/mnist_classifier.py trains: host batches, one jitted step each."""

    @jax.jit
    def step(params, opt_state, inputs, labels):
        loss, grads = jax.value_and_grad(model.loss)(params, inputs, labels)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optim.apply_updates(params, updates), opt_state, loss

    state = {"params": params, "opt_state": optimizer.init(params), "rng": np.random.RandomState(0)}

    def epoch():
        order = state["rng"].permutation(len(x))
        for start in range(0, len(x), batch_size):
            rows = order[start : start + batch_size]
            inputs = x[rows].astype(np.float32) / np.float32(255)
            state["params"], state["opt_state"], loss = step(state["params"], state["opt_state"], inputs, y[rows])
        jax.block_until_ready(loss)

    return epoch


def profile_epoch(state, x, y, batch_size: int, folder: Path, top: int = 12) -> list[dict]:
    """Trace one epoch with jax.profiler; the operations that took the most time, summed over its steps."""
    import collections
    import gzip

    optimizer = optim.rmsprop()
    x, y = jax.device_put(x), jax.device_put(y)
    state, _ = jax.block_until_ready(train.train_epoch(state, x, y, optimizer=optimizer, batch_size=batch_size))
    with jax.profiler.trace(str(folder)):
        state, _ = jax.block_until_ready(train.train_epoch(state, x, y, optimizer=optimizer, batch_size=batch_size))
    trace = max(folder.rglob("*.trace.json.gz"), key=lambda p: p.stat().st_mtime)
    events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    seconds, calls = collections.Counter(), collections.Counter()
    for event in events:  # operations of the compiled program; the executor's and Python's own spans are skipped
        name = event.get("name", "")
        if event.get("ph") == "X" and not name.startswith(("$", "ThunkExecutor", "PjitFunction", "end:")):
            seconds[name] += event.get("dur", 0) / 1e6
            calls[name] += 1
    return [{"op": name, "seconds": t, "calls": calls[name]} for name, t in seconds.most_common(top)]


def seed_runs(data_dir, out: Path) -> dict:
    """The main job twice in subprocesses, sharing a fresh compilation cache: cold, then warm."""
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "JAXMLP_COMPILE_CACHE": cache}
        for name in ("cold", "warm"):
            run_out = out / f"seed_{name}"
            command = [sys.executable, str(SEED_SCRIPT), "--out", str(run_out)]
            if data_dir:
                command += ["--data-dir", str(data_dir)]
            subprocess.run(command, env=env, check=True, capture_output=True, text=True)
            results[name] = json.loads((run_out / "summary.json").read_text())
    return results


KERAS_RUN = r"""
import json, os, sys, time
import numpy as np, keras
from jaxmlp.data import load_dataset
(x, y), (x_test, y_test) = load_dataset("mnist", sys.argv[1] or None)
x = x.reshape(60000, 784).astype("float32") / 255
x_test = x_test.reshape(10000, 784).astype("float32") / 255
keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(int(sys.argv[2]), activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
class Clock(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None): self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None): seconds.append(time.perf_counter() - self.start)
seconds = []
start = time.perf_counter()
model.fit(x, y, epochs=5, batch_size=128, validation_split=0.2, verbose=0, callbacks=[Clock()])
fit_seconds = time.perf_counter() - start
loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
print(json.dumps({"version": keras.__version__, "fit_seconds": fit_seconds,
                  "epoch_seconds": float(np.median(seconds[1:])), "test_accuracy": accuracy}))
"""

TORCH_RUN = r"""
import json, sys, time
import numpy as np, torch
from jaxmlp.data import load_dataset
torch.manual_seed(0)
(x, y), (x_test, y_test) = load_dataset("mnist", sys.argv[1] or None)
x = torch.from_numpy(x.reshape(60000, 784).astype("float32") / 255); y = torch.from_numpy(y.astype("int64"))
x_test = torch.from_numpy(x_test.reshape(10000, 784).astype("float32") / 255)
y_test = torch.from_numpy(y_test.astype("int64"))
x_train, y_train, x_val, y_val = x[:48000], y[:48000], x[48000:], y[48000:]
hidden = int(sys.argv[2])
net = torch.nn.Sequential(torch.nn.Linear(784, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))
opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
loss_fn = torch.nn.CrossEntropyLoss()
seconds = []
start = time.perf_counter()
for epoch in range(5):
    t = time.perf_counter()
    order = torch.randperm(48000)
    for i in range(0, 48000, 128):
        rows = order[i:i + 128]
        opt.zero_grad(); loss = loss_fn(net(x_train[rows]), y_train[rows]); loss.backward(); opt.step()
    with torch.no_grad():
        val_accuracy = (net(x_val).argmax(1) == y_val).float().mean().item()
    seconds.append(time.perf_counter() - t)
fit_seconds = time.perf_counter() - start
with torch.no_grad():
    accuracy = (net(x_test).argmax(1) == y_test).float().mean().item()
print(json.dumps({"version": torch.__version__, "fit_seconds": fit_seconds,
                  "epoch_seconds": float(np.median(seconds[1:])), "test_accuracy": accuracy,
                  "threads": torch.get_num_threads()}))
"""


def other_framework(module: str, script: str, data_dir, hidden: int) -> dict | None:
    """Run `script` in a subprocess if `module` is importable; its JSON line, or None."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}  # Keras 3 on the same JAX as jaxmlp
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, env=env)
    if probe.returncode != 0:
        return None
    result = subprocess.run(
        [sys.executable, "-c", script, str(data_dir or ""), str(hidden)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def precision_runs(x, y, x_test, y_test, params, batch_size):
    """On GPU/TPU: the seed's 5 epochs at each matmul precision, with the accuracy each reaches."""
    results = {}
    for precision in ("float32", "tensorfloat32", "bfloat16"):
        with jax.default_matmul_precision(precision):
            state, history = train.fit(params, x, y, epochs=5, batch_size=batch_size, validation_split=0.2)
            results[precision] = {
                "fit_seconds_after_compile": float(sum(history.seconds)),
                "epoch_seconds": float(np.median(history.seconds[1:])),
                "test_accuracy": train.evaluate(state.params, x_test, y_test)["accuracy"],
            }
    return results


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    (x_train, y_train), (x_test, y_test) = data.load_dataset("mnist", args.data_dir)
    x = x_train.reshape(len(x_train), 784)
    sizes = (784, args.hidden, 10)
    split = int(len(x) * 0.8)
    steps = -(-split // args.batch_size)
    params = jaxmlp.init_mlp(jax.random.key(0), sizes)
    result = {"config": vars(args), **cli.environment()}

    floor, flops = gemm_floor(sizes, steps, args.batch_size, len(x) - split)
    floor()  # compile and warm up
    floor_before = [seconds_of(floor) for _ in range(args.repeats)]
    state, history = train.fit(
        params, x, y_train, epochs=1 + args.repeats, batch_size=args.batch_size, validation_split=0.2
    )
    floor_after = [seconds_of(floor) for _ in range(args.repeats)]
    floor_seconds = float(np.median(floor_before + floor_after))
    epoch_seconds = float(np.median(history.seconds[1:]))
    result.update(
        floor_epoch_seconds=floor_seconds,
        floor_gflops_per_second=flops / floor_seconds / 1e9,
        epoch_seconds=epoch_seconds,
        ratio_to_floor=epoch_seconds / floor_seconds,
        compile_seconds=history.compile_seconds,
        first_epoch_seconds=history.seconds[0],
    )
    if "loop" not in args.skip:
        loop = naive_loop(params, optim.rmsprop(), x[:split], y_train[:split], args.batch_size)
        result["loop_epoch_seconds"] = median_seconds(loop, args.repeats)
        result["loop_over_jaxmlp"] = result["loop_epoch_seconds"] / epoch_seconds
    if "seed" not in args.skip:
        seed = seed_runs(args.data_dir, out)
        result.update(
            fit_seconds=seed["warm"]["fit_seconds"],
            fit_seconds_cold_cache=seed["cold"]["fit_seconds"],
            seed_compile_seconds_warm=seed["warm"]["compile_seconds"],
            seed_test_accuracy=seed["warm"]["test_accuracy"],
            peak_rss_mb=max(seed["cold"]["peak_rss_mb"] or 0, seed["warm"]["peak_rss_mb"] or 0) or None,
            fit_over_five_floor_epochs=seed["warm"]["fit_seconds"] / (5 * floor_seconds),
        )
    for name, module, script in (("keras", "keras", KERAS_RUN), ("torch", "torch", TORCH_RUN)):
        if name not in args.skip:
            other = other_framework(module, script, args.data_dir, args.hidden)
            result[name] = other
            if other and "fit_seconds" in result:
                result[f"{name}_over_jaxmlp"] = other["fit_seconds"] / result["fit_seconds"]
    memory = jax.devices()[0].memory_stats() or {}
    result["device_peak_memory_mb"] = memory["peak_bytes_in_use"] / 2**20 if "peak_bytes_in_use" in memory else None
    if args.profile:
        profile_state = train.init_train_state(params, optim.rmsprop(), jax.random.key(1))
        result["profile"] = profile_epoch(profile_state, x[:split], y_train[:split], args.batch_size, out / "trace")
    if jax.default_backend() != "cpu" and "precision" not in args.skip:
        result["precision"] = precision_runs(x, y_train, x_test, y_test, params, args.batch_size)
    del state
    files.write_json(out / "benchmark.json", result)
    print(table(result))


def table(r: dict) -> str:
    """The markdown table: seconds, and each as a multiple of the floor (one epoch, or five for a whole fit)."""
    floor = r["floor_epoch_seconds"]
    rows = [
        ("GEMM floor: one epoch's matmuls", floor, None),
        ("jaxmlp epoch (one jitted scan, validation included)", r["epoch_seconds"], None),
    ]
    if "loop_epoch_seconds" in r:
        rows.append(("naive loop: one jitted step per host batch", r["loop_epoch_seconds"], None))
    if "fit_seconds" in r:
        rows.append(("jaxmlp seed run, compile cache warm", None, r["fit_seconds"]))
        rows.append(("jaxmlp seed run, compile cache cold", None, r["fit_seconds_cold_cache"]))
    for name, label in (("keras", "Keras 3 (JAX backend) fit"), ("torch", "PyTorch eager loop")):
        if r.get(name):
            rows.append((f"{label} {r[name]['version']}", r[name]["epoch_seconds"], r[name]["fit_seconds"]))
    lines = [
        f"device: {r['device_kind']} ({r['backend']}, {r['devices']} device), jax {r['jax_version']}; "
        f"floor at {r['floor_gflops_per_second']:.0f} GFLOP/s; jaxmlp compile {r['compile_seconds']:.2f} s",
        "| what | epoch s | x floor | 5-epoch fit s | x 5 floors |",
        "|---|---|---|---|---|",
    ]
    for label, epoch, fit in rows:
        cells = [epoch, epoch and epoch / floor, fit, fit and fit / (5 * floor)]
        lines.append(f"| {label} | " + " | ".join(f"{c:.3f}" if c else "" for c in cells) + " |")
    if r.get("peak_rss_mb"):
        lines.append(f"peak resident memory of the seed run: {r['peak_rss_mb']:.0f} MB")
    for op in r.get("profile", []):
        lines.append(f"  {op['seconds'] * 1000:7.1f} ms  {op['calls']:4d} calls  {op['op']}")
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
