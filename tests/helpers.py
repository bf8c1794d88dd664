"""What the test modules share: pytree assertions, small data sets, a poisoned optimizer and script runs.

Test modules import from here (`from helpers import ...`), never from each other or from conftest.py,
which keeps only pytest's configuration and fixtures.

Two assertions compare pytrees, and both check the tree structure first, then every leaf (typed PRNG keys
through `jax.random.key_data`), naming the leaf's path in the failure message:

- `assert_trees_close(actual, expected, rtol=, atol=)`: `np.testing.assert_allclose` per leaf, for results
  that may differ by rounding (another program, another device count, another library);
- `assert_trees_equal(actual, expected)`: `np.testing.assert_array_equal` per leaf, for results that must be
  bitwise the same (the same program run twice, resumed against uninterrupted);
- `assert_trees_close_to_scale(actual, expected, rtol)`: relative error against each leaf's largest value, for
  float32 optimizer trajectories whose elements cross zero. As numpy's own assertions,
  both count NaN as equal to NaN and -0.0 as equal to 0.0; rtol=0, atol=0 demands exactly equal values too.
"""

import contextlib
import gzip
import io
import os
import runpy
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import model, optim

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- pytrees


def _leaf_pairs(actual, expected):
    """(path, actual leaf, expected leaf) for every leaf, once the two trees are known to have one structure."""
    actual_structure, expected_structure = jax.tree.structure(actual), jax.tree.structure(expected)
    assert actual_structure == expected_structure, (
        f"the trees differ in structure:\n  actual:   {actual_structure}\n  expected: {expected_structure}"
    )
    paths_and_leaves, _ = jax.tree_util.tree_flatten_with_path(actual)
    for (path, a), e in zip(paths_and_leaves, jax.tree.leaves(expected)):
        yield jax.tree_util.keystr(path) or "the root", _as_array(a), _as_array(e)


def _as_array(leaf):
    if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        leaf = jax.random.key_data(leaf)
    return np.asarray(leaf)


def assert_trees_close(actual, expected, *, rtol=1e-7, atol=0.0):
    """Same structure, and every leaf within `np.testing.assert_allclose(rtol=, atol=)` (numpy's defaults)."""
    for path, a, e in _leaf_pairs(actual, expected):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"leaf {path}")


def assert_trees_equal(actual, expected):
    """Same structure, and every leaf bitwise equal (`np.testing.assert_array_equal`)."""
    for path, a, e in _leaf_pairs(actual, expected):
        np.testing.assert_array_equal(a, e, err_msg=f"leaf {path}")


def assert_trees_close_to_scale(actual, expected, rtol):
    """|a - e| <= rtol * (|e| + max|e|) per leaf: relative error, measured against the leaf's scale near zero.

    Float32 trajectories drift by a few ulps wherever XLA fuses the two programs
    differently; elements crossing zero would fail any purely elementwise rtol.
    """
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
        e = np.asarray(e)
        np.testing.assert_allclose(np.asarray(a), e, rtol=rtol, atol=rtol * np.abs(e).max())


def read_npz(path) -> dict:
    """Every array of an .npz file, by name: a pytree for the assertions above (names are its structure)."""
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


# --------------------------------------------------------------------------- data


def small_network(dtype):
    """A 6-5-3 MLP and a fixed batch: gradients are recomputed at the current parameters every step."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32, 6)), dtype)
    labels = jnp.asarray(rng.integers(0, 3, 32))
    params = model.init_mlp(jax.random.key(0), (6, 5, 3), dtype)
    params[0]["b"] = jnp.full(5, 0.1, dtype)
    return params, x, labels


def random_data(n, seed=0, *, features=784, classes=10):
    """n rows of noise: uint8 images (n, features) and integer labels 0..classes-1."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, features), dtype=np.uint8), rng.integers(0, classes, n)


def mnist_dir() -> Path:
    """$JAXMLP_DATA (as CI sets it), else ../shared/data beside the checkout."""
    return Path(os.environ.get("JAXMLP_DATA") or REPO.parent / "shared" / "data")


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


# --------------------------------------------------------------------------- optimizers


def poisoned(optimizer, after_steps: int):
    """The optimizer, except that from step `after_steps` on its updates are NaN."""

    def update(grads, state, params=None):
        updates, new_state = optimizer.update(grads, state[0], params)
        bad = state[1] >= after_steps
        return jax.tree.map(lambda u: jnp.where(bad, jnp.nan, u), updates), (new_state, state[1] + 1)

    return optim.GradientTransformation(lambda p: (optimizer.init(p), jnp.zeros([], jnp.int32)), update)


# --------------------------------------------------------------------------- scripts


def run_in_process(script, argv, capsys):
    """Run a script as __main__ with these flags; returns (exit code, stdout, stderr)."""
    code = _run_as_main(script, argv)
    out, err = capsys.readouterr()
    return code, out, err


def run_captured(script, argv):
    """`run_in_process` for module-scoped fixtures, which cannot take capsys: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = _run_as_main(script, argv)
    return code, out.getvalue(), err.getvalue()


def _run_as_main(script, argv) -> int:
    """The exit code of running a script as __main__ with sys.argv set to these flags."""
    saved = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
        return 0
    except SystemExit as exit_:
        return exit_.code
    finally:
        sys.argv = saved
