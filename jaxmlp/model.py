"""The network: a multilayer perceptron as a pytree of arrays and a pure function.

The seed's model is Keras's

    layer_dense(units = 512, activation = "relu", input_shape = 784)
    layer_dense(units = 10, activation = "softmax")

Here the parameters are a plain list of dicts, one per dense layer, and `apply`
returns *logits*: the softmax is folded into the loss (`log_softmax`), which is
the numerically stable way to compute categorical cross-entropy.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmlp import regularize

Params = list[dict[str, jax.Array]]  # [{"w": (d_in, d_out), "b": (d_out,)}, ...]

SEED_SIZES = (784, 512, 10)  # 28*28 pixels -> 512 relu units -> 10 classes


def init_mlp(key: jax.Array, sizes=SEED_SIZES, dtype=jnp.float32) -> Params:
    """Parameters of an MLP with Keras's Dense defaults.

    Each layer i maps sizes[i] -> sizes[i+1]:

        w ~ U(-limit, limit),  limit = sqrt(6 / (fan_in + fan_out))   (glorot_uniform)
        b = 0                                                          (zeros)

    Args:
      key: a PRNG key; it is split once per layer.
      sizes: layer widths, input first. The seed's network is (784, 512, 10).
      dtype: dtype of every leaf.
    """
    sizes = tuple(sizes)
    if len(sizes) < 2 or any(not isinstance(n, int) or n < 1 for n in sizes):
        raise ValueError(f"sizes must be two or more positive ints, e.g. (784, 512, 10); got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    params = []
    for layer_key, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:]):
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w = jax.random.uniform(layer_key, (fan_in, fan_out), dtype, -limit, limit)
        params.append({"w": w, "b": jnp.zeros((fan_out,), dtype)})
    return params


def apply(params: Params, x: jax.Array, *, key: jax.Array | None = None, dropout=0.0) -> jax.Array:
    """Logits of a batch: relu on every hidden layer, nothing on the last.

    x: (B, d_in) floats  ->  (B, d_out) logits.  softmax(logits) is what Keras's
    final `activation = "softmax"` layer outputs. Given a key (training), every
    hidden layer's output goes through inverted dropout at rate `dropout`.
    """
    *hidden, last = params
    keys = jax.random.split(key, len(hidden)) if key is not None else [None] * len(hidden)
    for layer, layer_key in zip(hidden, keys):
        x = jax.nn.relu(x @ layer["w"] + layer["b"][None, :])  # (B, d_out); bias broadcast over the batch
        if layer_key is not None:
            x = regularize.dropout(x, layer_key, dropout)
    return x @ last["w"] + last["b"][None, :]


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example categorical cross-entropy from logits, (B, C) -> (B,).

        loss_i = -sum_c t_ic * log_softmax(logits_i)_c

    `targets` are either integer class labels, shape (B,) (Keras's
    sparse_categorical_crossentropy), or one-hot / probability rows, shape (B, C)
    (Keras's categorical_crossentropy, e.g. from `to_categorical`). Keras computes
    log(clip(softmax, 1e-7, 1 - 1e-7)) instead; the two agree to about 1e-7 except
    for predictions more confident than the clip.
    """
    log_probs = jax.nn.log_softmax(logits)  # (B, C)
    if targets.ndim == logits.ndim:
        return -jnp.sum(targets * log_probs, axis=-1)
    return -jnp.take_along_axis(log_probs, targets[:, None], axis=-1)[:, 0]


def class_labels(targets: jax.Array) -> jax.Array:
    """Integer labels (B,) from integer labels (B,) or one-hot rows (B, C)."""
    return jnp.argmax(targets, axis=-1) if targets.ndim == 2 else targets


def loss(params: Params, x: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy of a batch: the scalar that `jax.grad` differentiates."""
    return jnp.mean(cross_entropy(apply(params, x), targets))


def accuracy(params: Params, x: jax.Array, targets: jax.Array) -> jax.Array:
    """Fraction of the batch whose largest logit is the true class."""
    return jnp.mean(jnp.argmax(apply(params, x), axis=-1) == class_labels(targets))


def count_params(params: Params) -> int:
    """Number of scalars in the pytree (407,050 for the seed's network)."""
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def summary(params: Params, print_fn=print) -> str:
    """A Keras-style table of the layers; prints it with `print_fn` and returns it.

    Layer (type)            Output Shape        Param #
    dense (Dense, relu)     (None, 512)         401,920
    dense_1 (Dense, softmax) (None, 10)           5,130
    Total params: 407,050
    """
    rule, thick = "_" * 65, "=" * 65
    lines = ['Model: "sequential"', rule, f"{'Layer (type)':<30}{'Output Shape':<20}{'Param #':>15}", thick]
    for i, layer in enumerate(params):
        name = "dense" if i == 0 else f"dense_{i}"
        activation = "softmax" if i == len(params) - 1 else "relu"
        shape = f"(None, {layer['w'].shape[1]})"
        lines.append(f"{f'{name} (Dense, {activation})':<30}{shape:<20}{count_params([layer]):>15,}")
        lines.append(thick if i == len(params) - 1 else rule)
    total = count_params(params)
    nbytes = sum(leaf.nbytes for leaf in jax.tree.leaves(params))
    lines += [
        f"Total params: {total:,} ({nbytes / 2**20:.2f} MB)",
        f"Trainable params: {total:,} ({nbytes / 2**20:.2f} MB)",
        "Non-trainable params: 0 (0.00 B)",
        rule,
    ]
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text
