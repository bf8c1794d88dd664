"""Matmul precision: float32 (the default, unchanged), tf32 (float32 on CPU) and bf16 mixed precision."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_trees_close, assert_trees_equal, random_data

from jaxmlp import checkpoint, model, optim, population, train
from jaxmlp.population import member

ON_CPU = jax.default_backend() == "cpu"


def subset_fit(mnist, **options):
    """The seed's network and recipe on a subset: the first 6,000 training images, 2 epochs. (state, History)."""
    (x_train, y_train), _ = mnist
    params = model.init_mlp(jax.random.key(0))
    return train.fit(
        params,
        x_train[:6000],
        y_train[:6000],
        epochs=2,
        batch_size=128,
        validation_split=0.2,
        key=jax.random.key(1),
        **options,
    )


@pytest.fixture(scope="module")
def subset_runs(mnist):
    """{"default" (no precision given), "bf16": (state, History, metrics on the last 2,000 test images)}.

    Measured: test accuracy 0.9255 in float32 and in bf16.
    """
    _, (x_test, y_test) = mnist
    runs = {}
    for name, options in (("default", {}), ("bf16", {"precision": "bf16"})):
        state, history = subset_fit(mnist, **options)
        runs[name] = state, history, train.evaluate(state.params, x_test[-2000:], y_test[-2000:], **options)
    return runs


def test_float32_is_the_default_bitwise_and_tf32_equals_it_on_cpu(subset_runs, mnist):
    default, default_history, _ = subset_runs["default"]
    explicit, explicit_history = subset_fit(mnist, precision="float32")
    assert_trees_equal(explicit, default)
    assert explicit_history.metrics == default_history.metrics
    if not ON_CPU:
        return  # on GPUs tf32 rounds the matmul inputs, and HIGHEST is not what `x @ w` does
    tf32, tf32_history = subset_fit(mnist, precision="tf32")
    assert_trees_equal(tf32, default)
    assert tf32_history.metrics == default_history.metrics
    x = jnp.asarray(mnist[1][0][:100].reshape(100, 784), jnp.float32) / 255
    (first, last) = default.params  # float32 is what a plain `x @ w` computed before precisions existed, bitwise
    plain = jax.nn.relu(x @ first["w"] + first["b"][None, :]) @ last["w"] + last["b"][None, :]
    np.testing.assert_array_equal(model.apply(default.params, x), plain)


def test_bf16_trains_as_well_as_float32_on_a_subset(subset_runs):
    _, _, float32 = subset_runs["default"]
    _, history, bf16 = subset_runs["bf16"]
    assert bf16["accuracy"] >= 0.9
    assert abs(bf16["accuracy"] - float32["accuracy"]) <= 0.01
    assert abs(bf16["loss"] - float32["loss"]) <= 0.02 * float32["loss"]
    assert history.metrics["loss"][1] < history.metrics["loss"][0]


def test_bf16_keeps_parameters_optimizer_state_and_loss_in_float32(subset_runs, mnist):
    state, history, _ = subset_runs["bf16"]
    float_leaves = [leaf for leaf in jax.tree.leaves((state.params, state.opt_state)) if _is_float(leaf)]
    assert len(float_leaves) >= 8 and {leaf.dtype for leaf in float_leaves} == {jnp.dtype(jnp.float32)}
    probabilities = train.predict(state.params, mnist[1][0][:10], precision="bf16")
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)


def _is_float(leaf) -> bool:
    return jnp.issubdtype(leaf.dtype, jnp.floating)


def dot_lines(precision) -> list[str]:
    """Every dot_general of the compiled epoch's StableHLO (training and validation), at `precision`."""
    x, y = random_data(300)
    params = model.init_mlp(jax.random.key(0), (784, 16, 10))
    optimizer = optim.rmsprop()
    state = train.init_train_state(params, optimizer, jax.random.key(1))
    validation = (jnp.asarray(x[:100]), jnp.asarray(y[:100]))
    lowered = train.compiled_epoch.lower(
        state, True, x, y, validation, optimizer=optimizer, batch_size=64, precision=precision
    )
    return [line for line in lowered.as_text().splitlines() if "dot_general" in line]


def test_bf16_gives_every_matmul_bfloat16_inputs_and_float32_none():
    bf16, float32 = dot_lines("bf16"), dot_lines("float32")
    # forward of both layers in training and validation, and dx, dw of both layers in the backward pass
    assert len(bf16) >= 6 and len(float32) >= 6
    operands = re.compile(r"\(tensor<[0-9x]*xbf16>, tensor<[0-9x]*xbf16>\) -> tensor<[0-9x]*xf32>")
    assert all(operands.search(line) for line in bf16), bf16
    assert not any("bf16" in line for line in float32)
    assert all("precision = [HIGHEST, HIGHEST]" in line for line in float32)


@jax.jit
def bf16_matmul_and_gradients(x, w, g):
    """(y, dx, dw): model.matmul(x, w, "bf16") and its pullback of g."""
    y, pullback = jax.vjp(lambda x, w: model.matmul(x, w, "bf16"), x, w)
    return y, *pullback(g)


def test_bf16_matmul_and_its_gradients_follow_their_equations():
    """y = bf16(x) @ bf16(w), dx = bf16(g) @ bf16(w)^T, dw = bf16(x)^T @ bf16(g), all float32 (float64 here)."""
    rng = np.random.default_rng(0)
    x, w, g = (rng.standard_normal(shape).astype(np.float32) for shape in [(32, 48), (48, 8), (32, 8)])
    y, dx, dw = bf16_matmul_and_gradients(x, w, g)
    assert {a.dtype for a in (y, dx, dw)} == {jnp.dtype(jnp.float32)}
    x16, w16, g16 = (a.astype(jnp.bfloat16).astype(np.float64) for a in (x, w, g))  # rounded by ml_dtypes
    for actual, expected in [(y, x16 @ w16), (dx, g16 @ w16.T), (dw, x16.T @ g16)]:
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5)
    assert not np.allclose(dw, x.astype(np.float64).T @ g, rtol=1e-4)  # the inputs really were rounded


@pytest.mark.parametrize("bad, error", [("fp8", ValueError), ("bfloat16", ValueError), (16, TypeError)])
def test_a_bad_precision_names_the_choices(bad, error):
    x, y = random_data(100)
    params = model.init_mlp(jax.random.key(0), (784, 16, 10))
    message = "precision must be (a string, )?one of float32, tf32, bf16; got " + re.escape(repr(bad))
    with pytest.raises(error, match=message):
        train.fit(params, x, y, precision=bad)
    with pytest.raises(error, match=message):
        train.evaluate(params, x, y, precision=bad)
    with pytest.raises(error, match=message):
        train.predict(params, x, precision=bad)
    stacked = jax.tree.map(lambda leaf: np.stack([leaf, leaf]), params)  # two members; refused before any use
    with pytest.raises(error, match=message):
        population.fit_population(
            stacked, x, y, optimizer_factory=optim.sgd, hyperparams={"learning_rate": [0.1, 0.2]}, precision=bad
        )
    with pytest.raises(error, match=message):
        population.evaluate_population(stacked, x, y, precision=bad)


def test_a_bf16_checkpoint_is_refused_by_a_float32_run(tmp_path):
    x, y = random_data(400)
    params = model.init_mlp(jax.random.key(0), (784, 16, 10))
    options = {"batch_size": 64, "validation_split": 0.25, "key": jax.random.key(1), "checkpoint_dir": tmp_path}
    train.fit(params, x, y, epochs=1, precision="bf16", **options)
    with pytest.raises(checkpoint.ConfigurationMismatch, match='precision: "bf16" there, "float32" now') as info:
        train.fit(params, x, y, epochs=2, **options)
    assert len(str(info.value).splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-00001.npz"]  # nothing written or removed


def test_each_member_of_a_bf16_population_trains_as_fit_alone_in_bf16():
    x, y = random_data(600)
    keys = jax.random.split(jax.random.key(3), 2)
    members = [model.init_mlp(key, (784, 16, 10)) for key in jax.random.split(jax.random.key(0), 2)]
    params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *members)  # as init_population stacks them
    rates = [1e-2, 3e-2]
    options = {"epochs": 2, "batch_size": 64, "precision": "bf16"}
    states, histories = population.fit_population(
        params, x, y, optimizer_factory=optim.sgd, hyperparams={"learning_rate": rates}, keys=keys, **options
    )
    optimizer = optim.sgd(rates[1])
    alone, history = train.fit(
        train.init_train_state(member(params, 1), optimizer, keys[1]), x, y, optimizer=optimizer, **options
    )
    assert_trees_close(member(states.params, 1), alone.params, rtol=1e-5, atol=1e-6)
    assert histories[1].metrics["loss"] == pytest.approx(history.metrics["loss"], rel=1e-5)
    tests = population.evaluate_population(states.params, x, y, precision="bf16")
    assert [t["accuracy"] for t in tests] == [
        train.evaluate(member(states.params, i), x, y, precision="bf16")["accuracy"] for i in range(2)
    ]
