"""Bad input, case by case, at the command line: one line on stderr, `error: ...`, a non-zero exit, no traceback.

The library's own errors (loaders, optimizers, fit, to_categorical) are tested beside
each module; here every case is driven through the main job, as a user meets it.
"""

import gzip

import numpy as np
import pytest
from helpers import REPO, run_in_process, write_idx

SEED_SCRIPT = REPO / "experiments" / "mnist_seed.py"

FLAG_CASES = {
    "lr-not-a-number": (["--lr", "fast"], "argument --lr: expected a number, got 'fast'"),
    "lr-negative": (["--lr", "-0.1"], "argument --lr: must be a finite number > 0"),
    "lr-zero": (["--lr", "0"], "argument --lr: must be a finite number > 0"),
    "batch-size-zero": (["--batch-size", "0"], "argument --batch-size: must be > 0"),
    "batch-size-not-an-integer": (["--batch-size", "12.5"], "argument --batch-size: expected an integer, got '12.5'"),
    "epochs-negative": (["--epochs", "-1"], "argument --epochs: must be >= 0"),
    "validation-split-one": (["--validation-split", "1"], "argument --validation-split: must be in [0, 1)"),
    "validation-split-negative": (["--validation-split", "-0.2"], "argument --validation-split: must be in [0, 1)"),
    "unknown-optimizer": (
        ["--optimizer", "adamax"],
        "unknown optimizer 'adamax'; choose one of sgd, momentum, nesterov, rmsprop, adagrad, adam, adamw, nadam, "
        "nadamw, lion, muon, schedule_free_adamw, or optax.<name>",
    ),
    "unknown-optax-optimizer": (["--optimizer", "optax.nothing"], "unknown optimizer 'optax.nothing'"),
    "unknown-dataset": (["--dataset", "cifar10"], "argument --dataset: invalid choice: 'cifar10'"),
    "unknown-precision": (["--precision", "fp8"], "argument --precision: invalid choice: 'fp8'"),
    "missing-data-folder": (["--data-dir", "/no/such/folder"], "data folder /no/such/folder does not exist"),
}


def assert_one_line_error(code, err, expected):
    assert code != 0
    assert err.startswith("error: " + expected), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize("argv, expected", FLAG_CASES.values(), ids=FLAG_CASES.keys())
def test_bad_flag(argv, expected, tmp_path, capsys):
    code, _, err = run_in_process(SEED_SCRIPT, [*argv, "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(code, err, expected)
    assert not (tmp_path / "out").exists()  # nothing written for a run that never started


def good_arrays(n=20):
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 5, dtype=np.uint8),
    }


def npz_with(**changes):
    def write(folder):
        np.savez(folder / "mnist.npz", **{**good_arrays(), **changes})
        return folder / "mnist.npz"

    return write


def truncated_npz(folder):
    npz_with()(folder)
    raw = (folder / "mnist.npz").read_bytes()
    (folder / "mnist.npz").write_bytes(raw[: len(raw) // 2])
    return folder / "mnist.npz"


def garbage_npz(folder):
    (folder / "mnist.npz").write_bytes(b"this is not a zip archive at all")
    return folder / "mnist.npz"


def idx_with(broken: str):
    """The four IDX files, one of them broken in the named way; returns the broken file."""

    def write(folder):
        arrays = good_arrays()
        names = {
            "x_train": "train-images-idx3-ubyte",
            "y_train": "train-labels-idx1-ubyte",
            "x_test": "t10k-images-idx3-ubyte",
            "y_test": "t10k-labels-idx1-ubyte",
        }
        for key, name in names.items():
            write_idx(folder / (name + ".gz"), arrays[key], 2051 if key.startswith("x") else 2049)
        victim = folder / "train-images-idx3-ubyte.gz"
        raw = gzip.decompress(victim.read_bytes())
        if broken == "magic":
            raw = (2049).to_bytes(4, "big") + raw[4:]
        elif broken == "short-body":
            raw = raw[:-100]
        elif broken == "count":  # 19 images for 20 labels
            write_idx(victim, arrays["x_train"][:19], 2051)
            return victim
        victim.write_bytes(gzip.compress(raw))
        return victim

    return write


FILE_CASES = {
    "truncated-npz": (truncated_npz, "not a readable .npz file"),
    "garbage-npz": (garbage_npz, "not a readable .npz file"),
    "idx-wrong-magic": (idx_with("magic"), "magic number 0x00000801; expected 0x00000803 for images"),
    "idx-short-body": (idx_with("short-body"), "it is truncated or corrupt"),
    "idx-counts-disagree": (idx_with("count"), None),  # the labels file is named: 20 labels for 19 images
    "images-not-28x28": (npz_with(x_train=np.zeros((20, 28, 27), np.uint8)), "images have shape (20, 28, 27)"),
    "pixels-nan": (npz_with(x_train=np.full((20, 28, 28), np.nan)), "pixels include NaN or inf"),
    "pixels-inf": (npz_with(x_train=np.full((20, 28, 28), np.inf)), "pixels include NaN or inf"),
    "pixels-above-255": (npz_with(x_train=np.full((20, 28, 28), 300, np.int32)), "pixels must be whole numbers 0..255"),
    "labels-above-9": (npz_with(y_train=np.full(20, 10, np.uint8)), "labels range 10..10; expected 0..9"),
    "labels-not-integers": (npz_with(y_train=np.full(20, 1.5)), "labels must be integers 0..9"),
    "labels-count": (npz_with(y_train=np.zeros(19, np.uint8)), "19 labels for 20 images"),
}


@pytest.mark.parametrize("write, expected", FILE_CASES.values(), ids=FILE_CASES.keys())
def test_bad_data_file(write, expected, tmp_path, capsys):
    folder = tmp_path / "data"
    folder.mkdir()
    broken = write(folder)
    code, _, err = run_in_process(SEED_SCRIPT, ["--data-dir", str(folder), "--out", str(tmp_path / "out")], capsys)
    if expected is None:  # the loader names the labels file, whose count disagrees with the images
        expected = "20 labels for 19 images"
        broken = folder / "train-labels-idx1-ubyte.gz"
    assert_one_line_error(code, err, f"{broken}")
    assert expected in err
