"""Shared test settings: strict rank promotion (as equinox's tests), and the real MNIST, read once."""

import os
from pathlib import Path

import jax
import pytest

# (B,) + (B, 1) and (B, C) + (C,) must be written out; implicit rank promotion hides label bugs.
jax.config.update("jax_numpy_rank_promotion", "raise")

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
