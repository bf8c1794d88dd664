"""jaxmlp.checkpoint: pytrees saved as named arrays, and the folders of training checkpoints."""

import re
from typing import NamedTuple

import jax
import numpy as np
import pytest

from jaxmlp import checkpoint


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- leaf_names


class Moments(NamedTuple):
    mu: object
    nu: object
    count: object


def test_leaf_names_of_a_list_of_layers_follow_jax_flattening_order():
    tree = [{"w": 1.0, "b": 2.0}, {"w": 3.0, "b": 4.0}]
    names = checkpoint.leaf_names(tree)
    assert names == ["0/b", "0/w", "1/b", "1/w"]  # jax flattens dicts by sorted key
    assert dict(zip(names, jax.tree.leaves(tree))) == {"0/b": 2.0, "0/w": 1.0, "1/b": 4.0, "1/w": 3.0}


def test_leaf_names_of_a_namedtuple_use_its_field_names_in_field_order():
    assert checkpoint.leaf_names(Moments(mu=1.0, nu=2.0, count=3)) == ["mu", "nu", "count"]
    nested = {"opt": (Moments(mu=[1.0, 2.0], nu=3.0, count=4),), "step": 5}
    assert checkpoint.leaf_names(nested) == ["opt/0/mu/0", "opt/0/mu/1", "opt/0/nu", "opt/0/count", "step"]


# --------------------------------------------------------------------------- save_pytree / load_pytree


def make_params(seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return [
        {"w": jax.random.normal(k1, (4, 3), np.float32), "b": np.zeros(3, np.float32)},
        {"w": jax.random.normal(k2, (3, 2), np.float32), "b": np.array([0.5, -0.25], np.float32)},
    ]


def assert_bitwise_equal(got, want):
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for name, a, b in zip(checkpoint.leaf_names(want), jax.tree.leaves(got), jax.tree.leaves(want)):
        a, b = np.asarray(a), np.asarray(b)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), name
        assert a.tobytes() == b.tobytes(), name


def test_save_load_params_round_trip_is_bitwise(tmp_path):
    params = make_params()
    path = checkpoint.save_pytree(tmp_path / "params.npz", params)
    assert files_in(tmp_path) == ["params.npz"]
    with np.load(path) as archive:  # a plain npz, one array per named leaf
        assert sorted(archive.files) == ["0/b", "0/w", "1/b", "1/w"]
        np.testing.assert_array_equal(archive["1/b"], [0.5, -0.25])
    loaded = checkpoint.load_pytree(path, like=make_params(seed=1))  # values of `like` do not matter
    assert_bitwise_equal(loaded, params)


def test_load_params_reads_the_sizes_off_the_file(tmp_path):
    params = make_params()
    path = checkpoint.save_pytree(tmp_path / "params.npz", params)
    assert_bitwise_equal(checkpoint.load_params(path), params)
    assert_bitwise_equal(checkpoint.load_params(path, inputs=4, outputs=2), params)


@pytest.mark.parametrize(
    "arrays, sizes, message",
    [
        ({"weights": np.zeros(3)}, {}, "holds arrays ['weights'], not an MLP's parameters"),
        ({"0/w": np.zeros((4, 3)), "0/b": np.zeros(3), "1/w": np.zeros((2, 2)), "1/b": np.zeros(2)}, {}, "layer 1"),
        ({"0/w": np.zeros((4, 3)), "0/b": np.zeros(2)}, {}, "layer 0 has w [4, 3] and b [2]"),
        ({"0/w": np.zeros((4, 3), int), "0/b": np.zeros(3, int)}, {}, "of floats"),
        ({"0/w": np.zeros((4, 3)), "0/b": np.zeros(3)}, {"inputs": 784}, "sizes [4, 3] has 4 inputs; expected 784"),
        ({"0/w": np.zeros((4, 3)), "0/b": np.zeros(3)}, {"outputs": 10}, "sizes [4, 3] has 3 outputs; expected 10"),
    ],
)
def test_load_params_refuses_what_is_not_the_network_asked_for(arrays, sizes, message, tmp_path):
    path = tmp_path / "params.npz"
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
        checkpoint.load_params(path, **sizes)


def test_a_file_that_is_not_a_zip_archive_is_refused_before_numpy_reads_it(tmp_path):
    path = tmp_path / "params.npz"
    path.write_text("0/w,0/b\n")  # numpy would try to unpickle it
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable .npz file (not a zip archive")):
        checkpoint.load_params(path)


def test_save_load_nested_structure_round_trip_is_bitwise(tmp_path):
    special = np.array([-0.0, np.nan, np.inf, -np.inf, 1e-45], np.float32)  # sign of zero, NaN, subnormal
    state = {
        "params": make_params(),
        "opt": Moments(mu=special, nu=np.arange(6, dtype=np.float32).reshape(2, 3), count=np.int32(7)),
        "step": np.array(12, np.int64),
    }
    path = checkpoint.save_pytree(tmp_path / "state.npz", state)
    like = jax.tree.map(np.zeros_like, state)
    loaded = checkpoint.load_pytree(path, like)
    assert_bitwise_equal(loaded, state)
    assert isinstance(loaded["opt"], Moments)


def test_leaves_whose_names_collide_are_refused(tmp_path):
    tree = {"a/b": np.zeros(1), "a": {"b": np.ones(1)}}  # both would be saved as "a/b"
    with pytest.raises(ValueError, match="two leaves share a name"):
        checkpoint.save_pytree(tmp_path / "clash.npz", tree)
    assert files_in(tmp_path) == []


def test_load_against_a_different_shape_names_the_leaf(tmp_path):
    path = checkpoint.save_pytree(tmp_path / "params.npz", make_params())
    like = make_params()
    like[1]["w"] = np.zeros((3, 5), np.float32)
    with pytest.raises(ValueError, match=re.escape(f"{path}: 1/w is float32[3, 2], expected float32[3, 5]")):
        checkpoint.load_pytree(path, like)


def test_load_against_a_different_dtype_names_the_leaf(tmp_path):
    path = checkpoint.save_pytree(tmp_path / "params.npz", make_params())
    like = jax.tree.map(np.asarray, make_params())
    like[0]["b"] = like[0]["b"].astype(np.float64)
    with pytest.raises(ValueError, match=re.escape(f"{path}: 0/b is float32[3], expected float64[3]")):
        checkpoint.load_pytree(path, like)


@pytest.mark.parametrize(
    "like, expected",
    [
        (lambda p: p[:1], "['0/b', '0/w']"),  # one layer fewer
        (lambda p: p + [{"w": np.zeros((2, 1), np.float32)}], "['0/b', '0/w', '1/b', '1/w', '2/w']"),  # one more
        (lambda p: [{"kernel": p[0]["w"], "b": p[0]["b"]}, p[1]], "['0/b', '0/kernel', '1/b', '1/w']"),  # renamed
    ],
    ids=["fewer-leaves", "more-leaves", "renamed-leaf"],
)
def test_load_against_a_different_structure_names_the_arrays(tmp_path, like, expected):
    path = checkpoint.save_pytree(tmp_path / "params.npz", make_params())
    message = f"{path}: holds arrays ['0/b', '0/w', '1/b', '1/w'], expected {expected}"
    with pytest.raises(ValueError, match=re.escape(message)):
        checkpoint.load_pytree(path, like(make_params()))
