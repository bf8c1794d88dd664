"""Shared test settings: strict rank promotion (as equinox's tests), and the real MNIST, read once.

What test modules share besides fixtures (assertions, small data sets, paths) lives in helpers.py.
"""

import atexit
import os
import shutil
import tempfile

import jax
import pytest
from helpers import mnist_dir

from jaxmlp import cli

# (B,) + (B, 1) and (B, C) + (C,) must be written out; implicit rank promotion hides label bugs.
jax.config.update("jax_numpy_rank_promotion", "raise")

# One compilation cache for the whole test session, in a temporary folder removed at the end: many tests compile
# the same programs (a fresh optimizer is a new static argument, but the same XLA program), and the experiment
# scripts, run in this process or in subprocesses, compile them again. The user's cache (~/.cache/jaxmlp/xla) is
# never touched; the test of the cache itself sets its own folder.
SESSION_CACHE = tempfile.mkdtemp(prefix="jaxmlp-tests-xla-")
atexit.register(shutil.rmtree, SESSION_CACHE, ignore_errors=True)
os.environ["JAXMLP_COMPILE_CACHE"] = SESSION_CACHE
cli.enable_compilation_cache()


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


@pytest.fixture(scope="session")
def seed_network(mnist):
    """The seed's network (784-512-10, RMSProp, 2 epochs, batch 128, key 0) trained on all of MNIST's training
    set, for the tests that look at what a trained network does (0.9677 on the test set)."""
    import jaxmlp

    (x_train, y_train), _ = mnist
    params = jaxmlp.init_mlp(jax.random.key(0), (784, 512, 10))
    state, _ = jaxmlp.fit(params, x_train, y_train, optimizer="rmsprop", epochs=2, batch_size=128)
    return state.params


@pytest.fixture(scope="session")
def seed_params_file(seed_network, tmp_path_factory):
    """`seed_network` saved as mnist_seed.py saves it: a params.npz with "0/w", "0/b", "1/w", "1/b"."""
    from jaxmlp import checkpoint

    return checkpoint.save_pytree(tmp_path_factory.mktemp("seed") / "params.npz", seed_network)
