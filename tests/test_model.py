"""The network: parameter count, Keras's initialisation, forward pass, loss and gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxmlp import model


def test_seed_network_has_407050_parameters(key):
    params = model.init_mlp(key)
    assert model.count_params(params) == 407_050  # 784*512 + 512 + 512*10 + 10, what Keras's summary prints
    assert [(p["w"].shape, p["b"].shape) for p in params] == [((784, 512), (512,)), ((512, 10), (10,))]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))


def test_init_is_glorot_uniform_with_zero_biases(key):
    params = model.init_mlp(key)
    for layer in params:
        fan_in, fan_out = layer["w"].shape
        limit = math.sqrt(6 / (fan_in + fan_out))
        w = np.asarray(layer["w"], np.float64)
        variance = limit**2 / 3  # variance of U(-limit, limit)
        assert np.abs(w).max() <= limit
        assert np.abs(w).max() > 0.99 * limit  # the whole range is used
        assert abs(w.mean()) < 5 * math.sqrt(variance / w.size)
        assert w.var() == pytest.approx(variance, rel=0.03)
        np.testing.assert_array_equal(layer["b"], 0)
    other = model.init_mlp(jax.random.key(1))
    assert not np.allclose(params[0]["w"], other[0]["w"])


def test_init_rejects_bad_sizes(key):
    with pytest.raises(ValueError, match="sizes"):
        model.init_mlp(key, (784,))
    with pytest.raises(ValueError, match="sizes"):
        model.init_mlp(key, (784, 0, 10))


def test_apply_is_dense_relu_dense(key):
    params = model.init_mlp(key, (6, 5, 3))
    params[0]["b"] = jnp.linspace(-1, 1, 5)  # non-zero biases, so their broadcast is checked
    params[1]["b"] = jnp.array([0.5, -0.5, 2.0])
    x = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
    hidden = np.maximum(x @ np.asarray(params[0]["w"]) + np.asarray(params[0]["b"]), 0)
    expected = hidden @ np.asarray(params[1]["w"]) + np.asarray(params[1]["b"])
    np.testing.assert_allclose(model.apply(params, x), expected, rtol=1e-5, atol=1e-6)


def test_cross_entropy_by_hand():
    logits = jnp.array([[0.0, 0.0, 0.0], [math.log(2), 0.0, 0.0]])
    labels = jnp.array([2, 0])
    # Row 0: uniform over 3 classes -> ln 3. Row 1: p(class 0) = 2 / (2 + 1 + 1) -> ln 2.
    np.testing.assert_allclose(model.cross_entropy(logits, labels), [math.log(3), math.log(2)], rtol=1e-6)
    one_hot = jax.nn.one_hot(labels, 3)
    np.testing.assert_allclose(model.cross_entropy(logits, one_hot), [math.log(3), math.log(2)], rtol=1e-6)
    soft = jnp.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])  # soft targets weigh the log-probabilities
    np.testing.assert_allclose(model.cross_entropy(logits, soft), [math.log(3), math.log(4)], rtol=1e-6)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = jnp.array([[1000.0, 0.0], [0.0, 1000.0]])
    np.testing.assert_allclose(model.cross_entropy(logits, jnp.array([0, 0])), [0.0, 1000.0], atol=1e-3)


def test_accuracy_counts_argmax_hits():
    params = [{"w": jnp.eye(3), "b": jnp.zeros(3)}]  # logits = x
    x = jnp.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 0]])
    assert float(model.accuracy(params, x, jnp.array([0, 1, 2, 2]))) == 0.75
    assert float(model.accuracy(params, x, jax.nn.one_hot(jnp.array([0, 1, 1, 1]), 3))) == 0.75


def test_gradients_equal_finite_differences(key):
    with jax.enable_x64(True):
        params = model.init_mlp(key, (6, 5, 3), dtype=jnp.float64)
        params[0]["b"] = jnp.full(5, 0.1)  # keep units away from relu's kink, where differences are one-sided
        rng = np.random.default_rng(0)
        x = jnp.asarray(rng.normal(size=(8, 6)))
        labels = jnp.asarray(rng.integers(0, 3, 8))
        check_grads(lambda p: model.loss(p, x, labels), (params,), order=1, modes=["rev"], atol=1e-7, rtol=1e-7)

        # The same by hand on a few coordinates: central differences, h = 1e-6.
        grads = jax.grad(model.loss)(params, x, labels)
        for layer, name, index in [(0, "w", (2, 3)), (0, "b", (4,)), (1, "w", (0, 2)), (1, "b", (1,))]:

            def shifted(h, layer=layer, name=name, index=index):
                moved = jax.tree.map(lambda a: a, params)
                moved[layer] = {**params[layer], name: params[layer][name].at[index].add(h)}
                return float(model.loss(moved, x, labels))

            numeric = (shifted(1e-6) - shifted(-1e-6)) / 2e-6
            assert float(grads[layer][name][index]) == pytest.approx(numeric, rel=1e-6, abs=1e-9)


def test_summary_prints_a_keras_table(key, capsys):
    text = model.summary(model.init_mlp(key))
    assert capsys.readouterr().out.strip() == text.strip()
    for expected in (
        "dense (Dense, relu)",
        "(None, 512)",
        "401,920",
        "dense_1 (Dense, softmax)",
        "(None, 10)",
        "5,130",
        "Total params: 407,050",
    ):
        assert expected in text
    model.summary(model.init_mlp(key, (4, 3, 2)), print_fn=None)
    assert capsys.readouterr().out == ""


def test_layer_sizes_are_what_init_mlp_was_given():
    assert model.layer_sizes(model.init_mlp(jax.random.key(0), (784, 512, 10))) == [784, 512, 10]
    assert model.layer_sizes(model.init_mlp(jax.random.key(0), (6, 5, 4, 3))) == [6, 5, 4, 3]
