"""Dropout, affine distortions, label smoothing and L2: by hand, against optax, and inside training."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close, random_data

from jaxmlp import model, regularize, train
from jaxmlp.regularize import Regularization


def test_dropout_zeroes_at_its_rate_and_keeps_the_expectation(key):
    x = jnp.ones((200, 500))
    dropped = regularize.dropout(x, key, 0.3)
    zeros = float(jnp.mean(dropped == 0))
    assert zeros == pytest.approx(0.3, abs=0.01)  # 100,000 draws: the standard error is 0.0015
    np.testing.assert_allclose(np.unique(np.asarray(dropped)), [0.0, 1 / 0.7], rtol=1e-6)
    assert float(jnp.mean(dropped)) == pytest.approx(1.0, abs=0.01)
    np.testing.assert_array_equal(regularize.dropout(x, key, 0.0), x)


def test_model_applies_dropout_only_when_given_a_key(key):
    params = model.init_mlp(key, (6, 50, 3))
    x = jnp.ones((4, 6))
    np.testing.assert_array_equal(model.apply(params, x), model.apply(params, x, dropout=0.5))
    assert not np.allclose(model.apply(params, x), model.apply(params, x, key=key, dropout=0.5))


def one_pixel(row, col):
    image = np.zeros((28, 28), np.float32)
    image[row, col] = 1.0
    return jnp.asarray(image)


def test_affine_by_hand():
    # The centre is (13.5, 13.5); a pixel 6.5 to its right, turned a quarter clockwise, lands 6.5 below it.
    turned = np.asarray(regularize.affine(one_pixel(13, 20), math.pi / 2, 1.0, jnp.zeros(2)))
    assert [tuple(p) for p in np.argwhere(turned > 0.99)] == [(20, 14)]
    moved = np.asarray(regularize.affine(one_pixel(13, 20), 0.0, 1.0, jnp.array([2.0, -3.0])))
    assert [tuple(p) for p in np.argwhere(moved > 0.99)] == [(15, 17)]  # 2 down, 3 left
    half = np.asarray(regularize.affine(one_pixel(13, 20), 0.0, 1.0, jnp.array([0.0, 0.5])))
    np.testing.assert_allclose(half[13, 20:22], [0.5, 0.5], atol=1e-6)  # bilinear: half a pixel each
    grown = np.asarray(regularize.affine(one_pixel(13, 16), 0.0, 2.0, jnp.zeros(2)))
    rows, cols = np.indices(grown.shape)
    centroid = (np.sum(rows * grown) / grown.sum(), np.sum(cols * grown) / grown.sum())
    np.testing.assert_allclose(centroid, (13.5 - 2 * 0.5, 13.5 + 2 * 2.5), atol=1e-4)  # twice as far from the centre


def test_distortion_with_zero_limits_is_the_identity_and_otherwise_moves_each_image_differently(key):
    x = jax.random.uniform(key, (16, 784))
    np.testing.assert_allclose(regularize.distort_images(x, key, 0.0, 0.0, 0.0), x, atol=1e-6)
    digits = jnp.zeros((16, 28, 28)).at[:, 10:18, 12:16].set(1.0).reshape(16, 784)
    distorted = regularize.distort_images(digits, key, 2.0, 10.0, 0.1)
    assert distorted.shape == (16, 784)
    assert len({np.asarray(image).tobytes() for image in distorted}) == 16
    np.testing.assert_allclose(distorted.sum(axis=1), digits.sum(axis=1), rtol=0.25)  # mass roughly kept


def test_label_smoothing_equals_optax():
    labels = jnp.array([0, 3, 9])
    np.testing.assert_allclose(
        regularize.smooth_labels(labels, 10, 0.1), optax.smooth_labels(jax.nn.one_hot(labels, 10), 0.1), rtol=1e-6
    )
    rows = jax.nn.one_hot(labels, 10)
    np.testing.assert_allclose(regularize.smooth_labels(rows, 10, 0.2), optax.smooth_labels(rows, 0.2), rtol=1e-6)


def test_l2_penalty_counts_weights_not_biases():
    params = [{"w": jnp.ones((2, 3)), "b": jnp.full(3, 5.0)}, {"w": jnp.full((3, 1), 2.0), "b": jnp.ones(1)}]
    assert float(regularize.l2_penalty(params, 0.01)) == pytest.approx(0.01 * (6 + 3 * 4))


def test_the_l2_gradient_is_added_to_the_loss_gradient(key):
    params = model.init_mlp(key, (6, 5, 3))
    x, labels, mask = jax.random.uniform(key, (8, 6)), jnp.arange(8) % 3, jnp.ones(8)
    plain = jax.grad(lambda p: train._batch_sums(p, x, labels, mask)[0])(params)
    regular = Regularization(l2=0.1)
    noise = jax.random.key(1)
    with_l2 = jax.grad(lambda p: train._batch_sums(p, x, labels, mask, noise, regular)[0])(params)
    for layer, plain_layer, l2_layer in zip(params, plain, with_l2):
        np.testing.assert_allclose(l2_layer["w"], plain_layer["w"] + 0.2 * layer["w"], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(l2_layer["b"], plain_layer["b"], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    "regularization, message",
    [
        (Regularization(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (Regularization(label_smoothing=-0.1), r"label_smoothing must be in \[0, 1\)"),
        (Regularization(l2=-1.0), "l2 must be >= 0"),
        (Regularization(max_rotation=200.0), r"max_rotation must be in \[0, 180\)"),
        (Regularization(max_shift=20.0), r"max_shift must be in \[0, 14\)"),
    ],
)
def test_bad_regularization_is_refused(regularization, message, key):
    x, y = random_data(64)
    with pytest.raises(ValueError, match=message):
        train.fit(model.init_mlp(key, (784, 8, 10)), x, y, regularization=regularization)


def test_distortions_of_inputs_that_are_not_images_are_refused(key):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(64, 20)).astype(np.float32), rng.integers(0, 10, 64)
    params = model.init_mlp(key, (20, 8, 10))
    with pytest.raises(ValueError, match="distortions need 28x28 images"):
        train.fit(params, x, y, regularization=Regularization(max_rotation=5.0))
    train.fit(params, x, y, regularization=Regularization(dropout=0.2))  # the rest works on any inputs


def test_without_regularization_training_is_bitwise_what_it_was():
    """None keeps the seed's program: no noise keys drawn, so the seed's published numbers stay reproducible."""
    x, y = random_data(300)
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    plain, _ = train.fit(params, x, y, epochs=2, batch_size=64, key=jax.random.key(1))
    zero, _ = train.fit(params, x, y, epochs=2, batch_size=64, key=jax.random.key(1), regularization=Regularization())
    assert_trees_close(plain.params, zero.params, rtol=1e-5, atol=1e-6)  # all-zero regularization: the same maths
