"""What `fit`, `evaluate` and `predict` accept, checked on the host before anything is compiled.

Inputs are (N, 784) or (N, 28, 28), uint8 pixels or finite floats; targets are (N,)
integer labels in 0..C-1 or (N, C) rows; counts, batch sizes and epochs are ints;
the validation split is Keras's. Every violation is a ValueError or TypeError that
says which argument is wrong and what was expected.
"""

from __future__ import annotations

import math

import numpy as np

from jaxmlp import regularize
from jaxmlp.model import Params


def prepare_inputs(x, params: Params, what: str) -> np.ndarray:
    """Inputs flattened to (N, features), as the seed's array_reshape; uint8 pixels or finite floats."""
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"{what}: inputs must have shape (N, features) or (N, 28, 28); got {x.shape}")
    x = x.reshape(len(x), -1)
    if len(x) == 0:
        raise ValueError(f"{what}: no samples")
    features = params[0]["w"].shape[0]
    if x.shape[1] != features:
        raise ValueError(f"{what}: inputs have {x.shape[1]} features; the first layer expects {features}")
    if not np.issubdtype(x.dtype, np.number) or (not np.issubdtype(x.dtype, np.integer) and not np.isfinite(x).all()):
        raise ValueError(f"{what}: inputs must be finite numbers (uint8 pixels, or floats); got NaN, inf or {x.dtype}")
    return x


def prepare_examples(x, y, params: Params, what: str) -> tuple[np.ndarray, np.ndarray]:
    """`prepare_inputs`, and targets checked against them and the last layer.

    y: (N,) integer labels in 0..C-1, or (N, C) target rows, C being the last layer's width.
    """
    x, y = prepare_inputs(x, params, what), np.asarray(y)
    classes = params[-1]["w"].shape[-1]
    if len(x) != len(y):
        raise ValueError(f"{what}: {len(x)} inputs but {len(y)} targets; they must match")
    if y.ndim == 2:
        if y.shape[1] != classes:
            raise ValueError(f"{what}: targets have {y.shape[1]} columns; the last layer has {classes} classes")
        if not (np.issubdtype(y.dtype, np.number) and np.isfinite(y).all()):
            raise ValueError(f"{what}: targets must be finite numbers")
        return x, y
    if y.ndim != 1:
        raise ValueError(f"{what}: targets must be labels (N,) or rows (N, {classes}); got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) and not (
        np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y))
    ):
        raise ValueError(f"{what}: labels must be integers 0..{classes - 1}; got {y.dtype} values such as {y[:3]}")
    if y.min() < 0 or y.max() >= classes:
        raise ValueError(f"{what}: labels must be in 0..{classes - 1}; got {y.min():g}..{y.max():g}")
    return x, y.astype(np.int32)


def check_count(name: str, value, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}; got {value}")


def split_validation(x, y, validation_split: float):
    """Keras's split: the last `validation_split` of the samples, before any shuffling.

    Returns ((x_train, y_train), (x_val, y_val)); 60,000 samples at 0.2 give 48,000 + 12,000.
    """
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)):
        raise TypeError(f"validation_split must be a number in [0, 1); got {validation_split!r}")
    if not 0 <= validation_split < 1:
        raise ValueError(f"validation_split must be in [0, 1), e.g. 0.2; got {validation_split}")
    split_at = int(math.floor(len(x) * (1.0 - validation_split)))
    if split_at == 0 or split_at == len(x):
        raise ValueError(
            f"validation_split={validation_split} of {len(x)} samples leaves an empty training or validation set"
        )
    return (x[:split_at], y[:split_at]), (x[split_at:], y[split_at:])


def training_and_validation(x, y, params: Params, validation_split: float, validation_data, regularization=None):
    """The checked training set and the validation set (or None), split as Keras splits: (x, y, validation).

    Distortions (in `regularization`, one value or one per member) need 28x28 images.
    """
    x, y = prepare_examples(x, y, params, "training data")
    if regularization is not None and regularize.distorts(regularization) and x.shape[1] != regularize.IMAGE_SIDE**2:
        raise ValueError(f"distortions need 28x28 images (784 features); these have {x.shape[1]}")
    if validation_data is None and validation_split:
        (x, y), validation_data = split_validation(x, y, validation_split)
    if validation_data is not None:
        validation_data = prepare_examples(*validation_data, params, "validation data")
    return x, y, validation_data
