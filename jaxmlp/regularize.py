"""Regularisation and augmentation for training only: dropout, label smoothing, L2, random shifts.

The seed uses none of these; `fit(..., regularization=Regularization(...))` turns
them on. Images are distorted by a random affine map (rotation, scale, translation),
the "affine distortions" with which Simard et al. (2003) brought a 784-800-10 MLP
to 98.9% on MNIST. The values are data, not constants of the compiled program, so a
population can try different dropout rates or smoothing amounts in one program.
Everything here runs on the device, inside the training step, with keys drawn
from the training state's PRNG key.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

IMAGE_SIDE = 28


class Regularization(NamedTuple):
    """What training adds to the seed's recipe; every field off (0) by default."""

    dropout: float = 0.0  # hidden units zeroed at this rate in training; survivors scaled by 1 / (1 - rate)
    input_dropout: float = 0.0  # the same for input pixels
    label_smoothing: float = 0.0  # targets (1 - a) one_hot + a / C, as optax.smooth_labels and Keras
    l2: float = 0.0  # Keras's regularizer_l2: l2 * sum(w^2) over the weights (not biases) added to the loss
    max_shift: float = 0.0  # random affine distortion of each training image: translation up to this many pixels,
    max_rotation: float = 0.0  # rotation up to this many degrees,
    max_scale: float = 0.0  # and scaling by a factor in [1 - max_scale, 1 + max_scale] (Simard et al., 2003)


def check(regularization: Regularization) -> None:
    """ValueError for a value outside its range (host-side, on concrete values)."""
    limits = {
        "dropout": 1,
        "input_dropout": 1,
        "label_smoothing": 1,
        "max_scale": 1,
        "max_shift": IMAGE_SIDE / 2,
        "max_rotation": 180,
    }
    for name, limit in limits.items():
        value = float(getattr(regularization, name))
        if not 0 <= value < limit:
            raise ValueError(f"regularization {name} must be in [0, {limit:g}); got {value}")
    if not float(regularization.l2) >= 0:
        raise ValueError(f"regularization l2 must be >= 0; got {regularization.l2}")


def distorts(regularization: Regularization) -> bool:
    """Whether the images are to be distorted at all (known on the host); fields may hold one value per member."""
    limits = (regularization.max_shift, regularization.max_rotation, regularization.max_scale)
    return any(bool(np.any(np.asarray(v) > 0)) for v in limits)


def dropout(x: jax.Array, key: jax.Array, rate) -> jax.Array:
    """Inverted dropout: each entry zeroed with probability `rate`, the rest divided by 1 - rate."""
    keep = jax.random.bernoulli(key, 1 - rate, x.shape)
    return jnp.where(keep, x / (1 - rate), 0)


def affine(image: jax.Array, angle, scale, shift) -> jax.Array:
    """One 28x28 image rotated by `angle` (radians, clockwise as displayed, rows down), scaled by `scale`
    about its centre, then moved by `shift` = (down, right) pixels; bilinear, zeros from outside."""
    centre = (IMAGE_SIDE - 1) / 2
    rows, cols = jnp.meshgrid(jnp.arange(IMAGE_SIDE) - centre, jnp.arange(IMAGE_SIDE) - centre, indexing="ij")
    rows, cols = rows - shift[0], cols - shift[1]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # Where each output pixel comes from: the inverse map, un-rotated and un-scaled.
    source_rows = (cos * rows - sin * cols) / scale + centre
    source_cols = (sin * rows + cos * cols) / scale + centre
    return jax.scipy.ndimage.map_coordinates(image, [source_rows, source_cols], order=1, mode="constant")


def distort_images(x: jax.Array, key: jax.Array, max_shift, max_rotation, max_scale) -> jax.Array:
    """A random affine distortion of each image: angle in +-max_rotation degrees, scale in
    1 +- max_scale, shift in +-max_shift pixels, each drawn uniformly and independently.

    x: (B, 784) flattened 28x28 images -> (B, 784). With all three limits 0 the images
    come back unchanged.
    """
    images = x.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)

    def distort(image, image_key):
        angle_key, scale_key, shift_key = jax.random.split(image_key, 3)
        angle = jnp.deg2rad(jax.random.uniform(angle_key, (), minval=-max_rotation, maxval=max_rotation))
        scale = 1 + jax.random.uniform(scale_key, (), minval=-max_scale, maxval=max_scale)
        shift = jax.random.uniform(shift_key, (2,), minval=-max_shift, maxval=max_shift)
        return affine(image, angle, scale, shift)

    return jax.vmap(distort)(images, jax.random.split(key, len(images))).reshape(x.shape)


def smooth_labels(targets: jax.Array, classes: int, amount) -> jax.Array:
    """(B,) labels or (B, C) rows -> (B, C) rows (1 - amount) t + amount / C."""
    rows = jax.nn.one_hot(targets, classes) if targets.ndim == 1 else targets
    return (1 - amount) * rows + amount / classes


def l2_penalty(params, l2) -> jax.Array:
    """l2 * the sum of every squared weight (biases excluded), as Keras's kernel regularizer."""
    return l2 * sum(jnp.sum(layer["w"] ** 2) for layer in params)


def for_training(params, x, targets, key, regularization: Regularization):
    """What a training step sees: (distorted, input-dropped x; smoothed targets; the L2 penalty; a dropout key).

    x: (B, d) inputs in [0, 1], distorted only when they are 28x28 images (fit refuses
    distortions of anything else); targets: (B,) labels or (B, C) rows.
    """
    distort_key, input_key, dropout_key = jax.random.split(key, 3)
    r = regularization
    if x.shape[-1] == IMAGE_SIDE**2:
        x = distort_images(x, distort_key, r.max_shift, r.max_rotation, r.max_scale)
    x = dropout(x, input_key, r.input_dropout)
    targets = smooth_labels(targets, params[-1]["w"].shape[-1], r.label_smoothing)
    return x, targets, l2_penalty(params, r.l2), dropout_key
