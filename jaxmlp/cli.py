"""Plumbing shared by the experiment scripts: flag types, one-line errors, run metadata.

A script's `main` is wrapped in `run`, which turns the errors a user can cause (a
bad flag, a missing file, a value out of range) into one line on stderr,

    error: argument --lr: must be a finite number > 0 (e.g. 1e-3); got -1 (see --help)

and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
from pathlib import Path

import jax

from jaxmlp import checkpoint, data, model, optim, parallel, sweep


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag is reported in one line (`error: ...`), without the usage block."""

    def error(self, message):
        self.exit(2, f"error: {message} (see --help)\n")


def experiment_parser(doc: str, out: str, data_dir: bool = True, train_size: bool = False) -> ArgumentParser:
    """A parser with the flags the experiment scripts share: --out, and --data-dir / --train-size if asked."""
    parser = ArgumentParser(description=doc.strip().splitlines()[0])
    if data_dir:
        parser.add_argument(
            "--data-dir", help="folder with mnist.npz or the IDX files (default: $JAXMLP_DATA, else ~/.cache/jaxmlp)"
        )
    parser.add_argument("--out", default=out, help=f"output folder (default: {out})")
    if train_size:
        parser.add_argument("--train-size", type=positive_int, help="use only the first N training images (quick runs)")
    return parser


def load_data(args, dataset: str = "mnist"):
    """The dataset from --data-dir, its training part cut to the first --train-size images when given."""
    (x_train, y_train), test = data.load_dataset(dataset, args.data_dir)
    size = getattr(args, "train_size", None)
    return (x_train[:size], y_train[:size]), test


class BadInput(ValueError):
    """A file the user named cannot be used (missing, unreadable, of the wrong kind).

    `run` reports it as `error: <message>` with exit status 2, as argparse does a bad flag.
    """


def run(main, argv=None) -> None:
    """Call main(argv) and exit with the status it returns (None is 0).

    A user-facing error becomes one line, `error: <message>`, on stderr and exit status
    2 for BadInput, 1 for any other ValueError, TypeError or OSError.
    """
    try:
        status = main(argv)
    except (ValueError, TypeError, OSError) as err:  # FileNotFoundError is an OSError
        message = str(err).strip().replace("\n", " ") or type(err).__name__
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2 if isinstance(err, BadInput) else 1)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    if status:
        sys.exit(status)


def load_classifier(path) -> model.Params:
    """The MNIST classifier (784 inputs, 10 classes, any hidden layers) saved in the params file `path`.

    BadInput, naming the file, when it is missing, not an .npz, or holds another network.
    """
    if not Path(path).exists():
        raise BadInput(f"{path}: no such params file (experiments/mnist_seed.py writes one into its --out)")
    try:
        return checkpoint.load_params(path, inputs=28 * 28, outputs=10)
    except (ValueError, OSError) as err:
        raise BadInput(str(err) if str(path) in str(err) else f"{path}: {err}") from None


def _number(kind, text: str):
    try:
        return kind(text.strip())
    except ValueError:
        expected = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_int(text: str) -> int:
    value = _number(int, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0; got {value}")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(int, text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0; got {value}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0 (e.g. 1e-3); got {text}")
    return value


def fraction(text: str) -> float:
    value = _number(float, text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1) (e.g. 0.2); got {text}")
    return value


def positive_floats(text: str) -> list[float]:
    """A comma-separated list of positive numbers: "1e-3,3e-3,0.01"."""
    return [positive_float(item) for item in text.split(",")]


def fractions(text: str) -> list[float]:
    """A comma-separated list of numbers in [0, 1): "0.3,0.5"."""
    return [fraction(item) for item in text.split(",")]


def positive_ints(text: str) -> list[int]:
    """A comma-separated list of positive integers: "1,16,64"."""
    return [positive_int(item) for item in text.split(",")]


def nonnegative_ints(text: str) -> list[int]:
    """A comma-separated list of integers >= 0: "0,1,2"."""
    return [nonnegative_int(item) for item in text.split(",")]


def grid_floats(text: str) -> list[float]:
    """Grid values: a comma list "1e-3,3e-3", or a log-spaced range "lo:hi:n" (n values, both ends included)."""
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 3:
            raise argparse.ArgumentTypeError(f"a range is lo:hi:n, e.g. 1e-4:1e-1:16; got {text!r}")
        low, high, count = _finite(parts[0]), _finite(parts[1]), _number(int, parts[2])
        try:
            return sweep.log_range(low, high, count)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"{err} (in {text!r})") from None
    return [_finite(item) for item in text.split(",")]


def grid_ints(text: str) -> list[int]:
    """Integer grid values: a comma list "0,1,5", or an inclusive range "a-b" ("0-3" is 0, 1, 2, 3)."""
    if "-" in text.strip().lstrip("-"):
        first, _, last = text.strip().partition("-")
        low, high = _number(int, first), _number(int, last)
        if low > high:
            raise argparse.ArgumentTypeError(f"a range a-b needs a <= b; got {text!r}")
        return list(range(low, high + 1))
    return [_number(int, item) for item in text.split(",")]


def hyperparameter(text: str) -> tuple[str, list[float]]:
    """NAME=VALUES, the values as `grid_floats`: "momentum=0.8,0.9" -> ("momentum", [0.8, 0.9])."""
    name, equals, values = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUES, e.g. momentum=0.8,0.9; got {text!r}")
    return name.strip(), grid_floats(values)


def _finite(text: str) -> float:
    value = _number(float, text.strip())
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def names(choices):
    """A flag type for a comma-separated subset of `choices`, in the order given."""

    def parse(text: str) -> list[str]:
        chosen = [item.strip() for item in text.split(",")]
        unknown = [item for item in chosen if item not in choices]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {','.join(choices)}")
        return chosen

    return parse


def optimizer_families() -> str:
    """The families of jaxmlp.optim with their default learning rates, for --help: "sgd (0.01), ..."."""
    return ", ".join(f"{name} ({optim.default_learning_rate(name):g})" for name in optim.NAMES)


def add_distributed_flags(parser: argparse.ArgumentParser) -> None:
    """--coordinator, --num-processes, --process-id: one process of a multi-process (multi-host) run."""
    group = parser.add_argument_group("several processes or hosts (jax.distributed); also $JAXMLP_COORDINATOR, ...")
    group.add_argument(
        "--coordinator", default=os.environ.get("JAXMLP_COORDINATOR"), help="host:port of process 0, e.g. 10.0.0.1:1234"
    )
    group.add_argument("--num-processes", type=positive_int, default=os.environ.get("JAXMLP_NUM_PROCESSES"))
    group.add_argument("--process-id", type=nonnegative_int, default=os.environ.get("JAXMLP_PROCESS_ID"))


def add_precision_flag(parser: argparse.ArgumentParser) -> None:
    """--precision {float32,tf32,bf16}: how the model's matmuls compute (`model.matmul`), default float32."""
    parser.add_argument(
        "--precision",
        choices=model.PRECISIONS,
        default="float32",
        help="matmul precision: float32 (default; full float32 on every device), tf32 (the backend's default: "
        "TF32 inputs on NVIDIA GPUs from Ampere on, the same as float32 on CPU), bf16 (bfloat16 matmul inputs "
        "with float32 accumulation; parameters, optimizer state and loss stay float32)",
    )


def start_distributed(args) -> None:
    """Join the multi-process run the flags describe; nothing when no coordinator is given."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if all(value is None for value in given):
        return
    if any(value is None for value in given):
        raise ValueError("a multi-process run needs --coordinator, --num-processes and --process-id together")
    num_processes, process_id = int(args.num_processes), int(args.process_id)
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be in 0..{num_processes - 1}; got {process_id}")
    parallel.initialize(args.coordinator, num_processes, process_id)


def enable_compilation_cache() -> Path | None:
    """Keep compiled programs on disk, so a second run of an experiment skips XLA compilation.

    The folder is $JAXMLP_COMPILE_CACHE, else $XDG_CACHE_HOME/jaxmlp/xla (~/.cache/jaxmlp/xla).
    JAXMLP_COMPILE_CACHE=off turns it off. Returns the folder, or None when off.
    """
    setting = os.environ.get("JAXMLP_COMPILE_CACHE", "")
    if setting.lower() in ("off", "0", "false", "no"):
        return None
    folder = Path(setting).expanduser() if setting else data.cache_dir() / "xla"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # ours take ~1 s; the default skips them
    return folder


def peak_rss_mb() -> float | None:
    """The most memory this process has held so far (resident set, MB); None where unknown.

    Linux: VmHWM of /proc/self/status, which belongs to this program alone (ru_maxrss
    would also count the parent a subprocess was forked from). Elsewhere: ru_maxrss.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def environment() -> dict:
    """What a result depends on besides the code: JAX version, devices, precision settings."""
    devices = jax.devices()
    return {
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "devices": len(devices),
        "device_kind": devices[0].device_kind,
        "processes": jax.process_count(),
        "x64": bool(jax.config.jax_enable_x64),
        "matmul_precision": str(jax.config.jax_default_matmul_precision),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
