"""Shared test settings: strict rank promotion (as equinox's tests), and the real MNIST, read once.

What test modules share besides fixtures (assertions, small data sets, paths) lives in helpers.py.
"""

import os

import jax
import pytest
from helpers import mnist_dir

# (B,) + (B, 1) and (B, C) + (C,) must be written out; implicit rank promotion hides label bugs.
jax.config.update("jax_numpy_rank_promotion", "raise")

# Experiment scripts run by the tests must not fill the user's compilation cache (~/.cache/jaxmlp/xla);
# the test of the cache sets its own folder.
os.environ["JAXMLP_COMPILE_CACHE"] = "off"


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
