"""How fast the seed trains: ratios to its matmul floor, a naive loop, Keras, PyTorch; or the accelerator targets.

    python experiments/benchmark.py --data-dir D --out O [--repeats 5]
    python experiments/benchmark.py --data-dir D --out O --suite accelerator

--suite classic (the default): what is measured, all on the device JAX picks (CPU,
GPU or TPU), in this one process unless said otherwise:

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

Writes benchmark.json and prints a markdown table. (Precisions: --suite accelerator.)

--suite accelerator: every GPU measurement of the accelerator targets (for one H100
or H200; a verdict is recorded only on a GPU), in this one process, in this order:

  trainings  --seed-trainings N seed trainings (default 1,000 on a GPU or TPU, 8 on a
             CPU): member i as `mnist_seed.py --seed i` (RMSProp at 1e-3, 5 epochs,
             batch 128, validation_split 0.2), trained as populations of at most
             --max-population members (default all N in one). Wall time from before
             the first initialisation to the last result on the host, compilation
             included (first in the process, so nothing is compiled before it), and
             the peak device memory (`memory_stats()`; where a device reports none,
             as a CPU, the peak resident memory of the process). Target: 1,000 in
             <= 10 s.
  seed       the seed (init `init_mlp(key(0))`, 5 epochs, batch 128, validation_split
             0.2) with `fit(precision=p)` for p in float32, tf32, bf16: the 5 epochs'
             seconds after compilation (sum of the epoch times), the compile time, the
             median epoch after the first, and the test accuracy
             (`evaluate(precision=p)`). Target: 5 epochs <= 0.15 s.
  throughput `population.throughput` at --population-sizes (default 1,16,64,256,1024
             on a GPU or TPU, 1,4,16 on a CPU): model-epochs per second, the median
             epoch of 3 after the first. Target: K = 1024 at >= 200x K = 1.

The population measurements use --precision (default float32); the targets apply
to the full training set (no --train-size). Writes accelerator.json (every number,
the verdicts, the environment) and prints a markdown table: what, value, target, met.

--suite halving: what successive halving saves, on a grid of --optimizer families
(default momentum, rmsprop, adam) x --learning-rates N log-spaced from 1e-4 to 1e-1
(default 16) x seeds 0 and 1, --epochs 9 (`jaxmlp.sweep`), trained once in full and
once with halving 3 from 1 epoch (rungs 1, 3, 9), each from a cold compilation
cache. Reports both wall times and their ratio (target <= 1/3), the best member of
each by validation accuracy (target: within 0.002) and its test accuracy. Writes
halving.json and prints a markdown table.
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
from jaxmlp import cli, data, files, model, optim, population, sweep, train

SEED_SCRIPT = Path(__file__).with_name("mnist_seed.py")


CLASSIC_FLAGS = ("repeats", "hidden", "skip", "profile")
ACCELERATOR_FLAGS = ("population_sizes", "seed_trainings", "max_population", "precision")
HALVING_FLAGS = ("optimizer", "learning_rates", "epochs")
SUITE_FLAGS = {"classic": CLASSIC_FLAGS, "accelerator": ACCELERATOR_FLAGS, "halving": HALVING_FLAGS}


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/benchmark", train_size=True)
    parser.add_argument("--suite", choices=tuple(SUITE_FLAGS), default="classic", help="default: classic")
    parser.add_argument("--batch-size", type=cli.positive_int, default=128)
    classic = parser.add_argument_group("--suite classic")
    classic.add_argument("--repeats", type=cli.positive_int, default=5, help="timed repetitions per measurement")
    classic.add_argument("--hidden", type=cli.positive_int, default=512)
    classic.add_argument(
        "--skip",
        type=cli.names(("loop", "seed", "keras", "torch")),
        default=[],
        help="comma-separated parts not to run",
    )
    classic.add_argument(
        "--profile", action="store_true", help="also trace one epoch with jax.profiler and list where its time goes"
    )
    accelerator = parser.add_argument_group("--suite accelerator (and --train-size)")
    accelerator.add_argument(
        "--population-sizes",
        type=cli.positive_ints,
        help="population sizes K of the throughput measurement (default: 1,16,64,256,1024; 1,4,16 on a CPU)",
    )
    accelerator.add_argument(
        "--seed-trainings", type=cli.positive_int, help="how many seed trainings to time (default: 1000; 8 on a CPU)"
    )
    accelerator.add_argument(
        "--max-population", type=cli.positive_int, help="most members trained at once (default: every seed training)"
    )
    accelerator.add_argument(
        "--precision",
        choices=model.PRECISIONS,
        default="float32",
        help="matmul precision of the population measurements (the seed runs in all three); default float32",
    )
    halving = parser.add_argument_group("--suite halving (and --train-size)")
    halving.add_argument(
        "--optimizer", type=cli.names(optim.NAMES), default=["momentum", "rmsprop", "adam"], help="optimizer families"
    )
    halving.add_argument(
        "--learning-rates",
        type=cli.positive_int,
        default=16,
        help="how many, log-spaced from 1e-4 to 1e-1 (default 16)",
    )
    halving.add_argument("--epochs", type=cli.positive_int, default=9, help="epochs of a member trained to the end")
    args = parser.parse_args(argv)
    other_suites = [name for suite, names in SUITE_FLAGS.items() if suite != args.suite for name in names]
    if args.suite == "classic":
        other_suites.append("train_size")
    given = [name for name in other_suites if getattr(args, name) != parser.get_default(name)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        parser.error(f"{flags} not used by --suite {args.suite}")
    return args


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


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    if args.suite == "accelerator":
        result = accelerator_suite(args, cli.load_data(args))
        files.write_json(out / "accelerator.json", result)
        print(accelerator_table(result))
        return
    if args.suite == "halving":
        result = halving_suite(args, cli.load_data(args))
        files.write_json(out / "halving.json", result)
        print(halving_table(result))
        return
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


SEED_SECONDS_TARGET = 0.15  # the seed's 5 epochs after compilation, on one H100 or H200
SPEEDUP_TARGET = 200  # throughput at K = 1024 over K = 1
SPEEDUP_TARGET_SIZE = 1024
SEED_TRAININGS_TARGET = (1000, 10.0)  # 1,000 seed trainings in <= 10 s, compilation included
FULL_TRAINING_SET = 60_000  # the targets hold for the seed's 48,000 training images


def verdict(applies: bool, passed: bool) -> bool | None:
    """Whether a target was met: a boolean where it applies (a GPU, the full training set), else None."""
    return bool(passed) if applies else None


def peak_device_memory_mb() -> float | None:
    """The most memory a local device has held so far in this process (MB), by `memory_stats()`; None on a CPU."""
    peaks = [(device.memory_stats() or {}).get("peak_bytes_in_use") for device in jax.local_devices()]
    peaks = [peak for peak in peaks if peak is not None]
    return max(peaks) / 2**20 if peaks else None


def seed_trainings(x, y, count: int, *, max_population: int | None, batch_size: int, precision: str) -> dict:
    """Seeds 0..count-1 trained as `mnist_seed.py --seed i` would: a sweep (`jaxmlp.sweep`) over the seed.

    The sweep splits the populations by `max_population`, or by its estimate of the
    device memory when None. Wall time from before the first initialisation to after the
    last result is on the host, compilation included; the peak memory is the process's
    so far, so this runs first.
    """
    members = sweep.grid(["rmsprop"], seeds=range(count), batch_sizes=[batch_size])
    start = time.perf_counter()
    result = sweep.run(members, x, y, epochs=5, max_population=max_population, precision=precision)
    seconds = time.perf_counter() - start
    limit = sweep.population_limit(members[0], max_population)
    val_accuracies = [o.final("val_accuracy") for o in result.outcomes if o.final("val_accuracy") is not None]
    return {
        "models": count,
        "populations": -(-count // limit),
        "max_population": min(limit, count),
        "precision": precision,
        "wall_seconds": seconds,
        "models_per_second": count / seconds,
        "compile_seconds": result.compile_seconds,
        "diverged": sum(o.history.diverged_at_epoch is not None for o in result.outcomes),
        "median_val_accuracy": float(np.median(val_accuracies)) if val_accuracies else None,
        "peak_device_memory_mb": peak_device_memory_mb(),
        "peak_rss_mb": cli.peak_rss_mb(),
    }


def seed_run(x, y, x_test, y_test, *, precision: str, batch_size: int) -> dict:
    """The seed's 5 epochs by `fit(precision=...)`, and its test accuracy at the same precision.

    Seconds after compilation (the sum of the epoch times), compile seconds, and the
    median epoch after the first.
    """
    params = jaxmlp.init_mlp(jax.random.key(0))
    state, history = train.fit(params, x, y, epochs=5, batch_size=batch_size, validation_split=0.2, precision=precision)
    return {
        "fit_seconds_after_compile": float(sum(history.seconds)),
        "compile_seconds": history.compile_seconds,
        "epoch_seconds": float(np.median(history.seconds[1:])),
        "val_accuracy": history.metrics["val_accuracy"][-1],
        "test_accuracy": train.evaluate(state.params, x_test, y_test, precision=precision)["accuracy"],
    }


def accelerator_suite(args, data) -> dict:
    """Every measurement of --suite accelerator (see the module docstring), each with its target and verdict."""
    (x_train, y_train), (x_test, y_test) = data
    x_train = x_train.reshape(len(x_train), -1)
    on_accelerator = jax.default_backend() != "cpu"
    judged = jax.default_backend() == "gpu" and len(x_train) == FULL_TRAINING_SET
    sizes = args.population_sizes or ([1, 16, 64, 256, 1024] if on_accelerator else [1, 4, 16])
    count = args.seed_trainings or (1000 if on_accelerator else 8)
    start = time.perf_counter()
    result = {"suite": "accelerator", "config": vars(args), **cli.environment(), "targets_judged": judged}

    trainings = seed_trainings(
        x_train,
        y_train,
        count,
        max_population=args.max_population,
        batch_size=args.batch_size,
        precision=args.precision,
    )
    trainings_target_count, trainings_target_seconds = SEED_TRAININGS_TARGET
    trainings["target"] = f"<= {trainings_target_seconds:g} s for {trainings_target_count:,}"
    trainings["target_met"] = verdict(
        judged and count == trainings_target_count, trainings["wall_seconds"] <= trainings_target_seconds
    )
    print(f"{count} seed trainings: {trainings['wall_seconds']:.2f} s, compilation included", flush=True)

    seed = {}
    for precision in model.PRECISIONS:
        run = seed_run(x_train, y_train, x_test, y_test, precision=precision, batch_size=args.batch_size)
        run["target"] = f"<= {SEED_SECONDS_TARGET:g} s"
        run["target_met"] = verdict(judged, run["fit_seconds_after_compile"] <= SEED_SECONDS_TARGET)
        seed[precision] = run
        print(f"seed, {precision}: {run['fit_seconds_after_compile']:.3f} s after compilation", flush=True)

    rows = population.throughput(x_train, y_train, sizes, batch_size=args.batch_size, precision=args.precision)
    largest = max(rows, key=lambda row: row["models"])
    throughput = {
        "precision": args.precision,
        "rows": rows,
        "largest_models": largest["models"],
        "largest_over_first": largest["speedup_over_k1"],
        "target": f">= {SPEEDUP_TARGET}x at K = {SPEEDUP_TARGET_SIZE}",
        "target_met": verdict(
            judged and rows[0]["models"] == 1 and largest["models"] == SPEEDUP_TARGET_SIZE,
            largest["speedup_over_k1"] >= SPEEDUP_TARGET,
        ),
    }
    print(f"throughput: K = {largest['models']} at {largest['speedup_over_k1']:.1f}x K = {sizes[0]}", flush=True)

    result.update(seed=seed, throughput=throughput, seed_trainings=trainings)
    result["total_seconds"] = time.perf_counter() - start
    return result


def accelerator_table(r: dict) -> str:
    """The markdown table of --suite accelerator: one row per measurement, its target, and whether it was met."""

    def met(value):
        return "" if value is None else ("yes" if value else "no")

    rows = []
    for precision, run in r["seed"].items():
        rows += [
            (
                f"seed 5 epochs after compilation, {precision}",
                f"{run['fit_seconds_after_compile']:.3f} s (median epoch {run['epoch_seconds']:.3f} s)",
                run["target"],
                met(run["target_met"]),
            ),
            (f"seed compilation, {precision}", f"{run['compile_seconds']:.2f} s", "", ""),
            (f"seed test accuracy, {precision}", f"{run['test_accuracy']:.4f}", "", ""),
        ]
    t = r["throughput"]
    for row in t["rows"]:
        rows.append(
            (
                f"population K = {row['models']}, {t['precision']}",
                f"{row['model_epochs_per_second']:.2f} model-epochs/s ({row['epoch_seconds']:.3f} s per epoch, "
                f"compilation {row['compile_seconds']:.2f} s)",
                "",
                "",
            )
        )
    first = t["rows"][0]["models"]
    rows.append(
        (
            f"K = {t['largest_models']} over K = {first}",
            f"{t['largest_over_first']:.1f}x",
            t["target"],
            met(t["target_met"]),
        )
    )
    s = r["seed_trainings"]
    rows.append(
        (
            f"{s['models']:,} seed trainings, compilation included, {s['precision']}",
            f"{s['wall_seconds']:.2f} s ({s['models_per_second']:.2f} models/s; {s['populations']} population(s) "
            f"of <= {s['max_population']}; median val accuracy {s['median_val_accuracy']:.4f})",
            s["target"],
            met(s["target_met"]),
        )
    )
    if s["peak_device_memory_mb"] is not None:
        rows.append(("peak device memory, seed trainings", f"{s['peak_device_memory_mb']:.0f} MB", "", ""))
    else:
        rows.append(
            ("peak resident memory, seed trainings (the device reports none)", f"{s['peak_rss_mb']:.0f} MB", "", "")
        )
    lines = [
        f"device: {r['device_kind']} ({r['backend']}, {r['devices']} device), jax {r['jax_version']}; "
        f"all measurements {r['total_seconds']:.0f} s"
        + ("" if r["targets_judged"] else "; targets judged only on a GPU with the full training set"),
        "| what | value | target | met? |",
        "|---|---|---|---|",
    ]
    lines += [f"| {what} | {value} | {target} | {ok} |" for what, value, target, ok in rows]
    return "\n".join(lines)


HALVING = {"eta": 3, "min_epochs": 1, "seeds": [0, 1], "learning_rates": (1e-4, 1e-1)}
HALVING_TARGETS = {"time_ratio": 1 / 3, "best_val_accuracy_gap": 0.002}


def halving_suite(args, data) -> dict:
    """The same grid trained in full and with successive halving, each from a cold compilation cache."""
    (x_train, y_train), test_data = data
    low, high = HALVING["learning_rates"]
    rates = sweep.log_range(low, high, args.learning_rates) if args.learning_rates > 1 else [low]
    members = sweep.grid(args.optimizer, learning_rates=rates, seeds=HALVING["seeds"], batch_sizes=[args.batch_size])
    runs = {}
    for name, halving in (("full", None), ("halving", HALVING["eta"])):
        jax.clear_caches()  # neither run reuses the other's compiled programs
        start = time.perf_counter()
        result = sweep.run(
            members,
            x_train,
            y_train,
            epochs=args.epochs,
            halving=halving,
            min_epochs=HALVING["min_epochs"],
            test_data=test_data,
        )
        seconds = time.perf_counter() - start
        best = result.outcomes[result.best] if result.best is not None else None
        runs[name] = {
            "wall_seconds": seconds,
            "rungs": result.rungs,
            "model_epochs": sum(o.epochs_trained for o in result.outcomes),
            "programs": result.programs,
            "compile_seconds": result.compile_seconds,
            "best": None if best is None else best.member.config(),
            "best_val_accuracy": None if best is None else best.final("val_accuracy"),
            "best_test_accuracy": None if best is None else best.test["accuracy"],
        }
        print(f"{name}: {seconds:.1f} s, best val_accuracy {runs[name]['best_val_accuracy']}", flush=True)
    full, halved = runs["full"], runs["halving"]
    return {
        "suite": "halving",
        "config": vars(args),
        "members": len(members),
        **runs,
        "time_ratio": halved["wall_seconds"] / full["wall_seconds"],
        "best_val_accuracy_gap": full["best_val_accuracy"] - halved["best_val_accuracy"],
        "targets": HALVING_TARGETS,
        **cli.environment(),
    }


def halving_table(r: dict) -> str:
    """The markdown table of --suite halving: each run's time, work and best member, then the ratios."""
    lines = [
        f"{r['members']} members, {r['device_kind']} ({r['backend']}), jax {r['jax_version']}",
        "| run | rungs | model-epochs | compiled populations | wall s | best val accuracy | its test accuracy |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("full", "halving"):
        run = r[name]
        lines.append(
            f"| {name} | {run['rungs']} | {run['model_epochs']} | {run['programs']} | {run['wall_seconds']:.1f} | "
            f"{run['best_val_accuracy']:.4f} | {run['best_test_accuracy']:.4f} |"
        )
    lines.append(
        f"halving takes {r['time_ratio']:.3f} x the full grid's time (target <= 1/3); its best is "
        f"{r['best_val_accuracy_gap']:+.4f} below the full grid's best (target <= 0.002)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main)
