"""Shared test settings: strict rank promotion (as equinox's tests), and the real MNIST, read once."""

import gzip
import os
from pathlib import Path

import jax
import numpy as np
import pytest

# (B,) + (B, 1) and (B, C) + (C,) must be written out; implicit rank promotion hides label bugs.
jax.config.update("jax_numpy_rank_promotion", "raise")

# Experiment scripts run by the tests must not fill the user's compilation cache (~/.cache/jaxmlp/xla);
# the test of the cache sets its own folder.
os.environ["JAXMLP_COMPILE_CACHE"] = "off"

REPO = Path(__file__).resolve().parents[1]


def mnist_dir() -> Path:
    """$JAXMLP_DATA (as CI sets it), else ../shared/data beside the checkout."""
    return Path(os.environ.get("JAXMLP_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def mnist():
    """((x_train, y_train), (x_test, y_test)) of the real MNIST; tests never download it."""
    from jaxmlp import data

    if data.locate("mnist", mnist_dir()) is None:
        pytest.skip(f"real MNIST not found in {mnist_dir()}; set JAXMLP_DATA to the folder holding mnist.npz")
    return data.load_mnist(mnist_dir())


@pytest.fixture
def key():
    return jax.random.key(0)


def write_idx(path, array, magic):
    """An IDX file, gzipped: big-endian magic and sizes, then the uint8 body."""
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def small_fashion_mnist(folder):
    """200 training and 50 test images of noise, as gzipped IDX files in folder/fashion_mnist/."""
    rng = np.random.default_rng(0)
    (folder / "fashion_mnist").mkdir(parents=True)
    for split, n in (("train", 200), ("t10k", 50)):
        write_idx(folder / "fashion_mnist" / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(folder / "fashion_mnist" / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n), 2049)
    return folder
