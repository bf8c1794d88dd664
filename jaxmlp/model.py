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


PRECISIONS = ("float32", "tf32", "bf16")  # what `apply`'s matmuls compute in; see `matmul`


def check_precision(precision) -> str:
    """`precision` if it is one of PRECISIONS; else TypeError (not a string) or ValueError (unknown name)."""
    choices = ", ".join(PRECISIONS)
    if not isinstance(precision, str):
        raise TypeError(f"precision must be a string, one of {choices}; got {precision!r} ({type(precision).__name__})")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {choices}; got {precision!r}")
    return precision


def matmul(x: jax.Array, w: jax.Array, precision: str) -> jax.Array:
    """x @ w, (B, d_in) @ (d_in, d_out) -> (B, d_out) float32, at the precision named.

    "float32": every product and sum in float32, on every device:
        jnp.matmul(x, w, precision=Precision.HIGHEST). On CPU that is what a plain
        `x @ w` computes; NVIDIA GPUs would otherwise round the inputs to TF32.
    "tf32": jnp.matmul(x, w, precision=Precision.DEFAULT), the backend's default: on
        NVIDIA GPUs from Ampere on, the inputs rounded to TF32 (10-bit mantissa) and
        the sums in float32; on CPU the same numbers as "float32" (on TPUs, the
        default is one bfloat16 pass).
    "bf16": mixed precision. Both inputs are rounded to bfloat16 (8-bit mantissa),
        the products are summed in float32 and the result is float32:
            y = bf16(x) @ bf16(w)                    (preferred_element_type=float32)
        and the backward pass does the same with the incoming gradient g (B, d_out):
            dx = bf16(g) @ bf16(w)^T,   dw = bf16(x)^T @ bf16(g)     (both float32)
        so every matmul, forward and backward, takes bfloat16 inputs, while the
        gradients, the parameters and the optimizer state stay float32.
    """
    if precision == "bf16":
        return _bf16_matmul(x.astype(jnp.float32), w.astype(jnp.float32))  # no-ops for float32 x and w
    level = jax.lax.Precision.HIGHEST if precision == "float32" else jax.lax.Precision.DEFAULT
    return jnp.matmul(x, w, precision=level)


def _bf16_product(a: jax.Array, b: jax.Array) -> jax.Array:
    """bf16(a) @ bf16(b) summed in float32: (m, k) @ (k, n) -> (m, n) float32."""
    return jnp.matmul(
        a.astype(jnp.bfloat16),
        b.astype(jnp.bfloat16),
        precision=jax.lax.Precision.DEFAULT,
        preferred_element_type=jnp.float32,
    )


@jax.custom_vjp
def _bf16_matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """`matmul` at "bf16" for float32 x (B, d_in) and w (d_in, d_out); gradients float32 too."""
    return _bf16_product(x, w)


def _bf16_matmul_forward(x, w):
    x16, w16 = x.astype(jnp.bfloat16), w.astype(jnp.bfloat16)  # the residuals: half the bytes of float32
    return _bf16_product(x16, w16), (x16, w16)


def _bf16_matmul_backward(residuals, g):  # g: (B, d_out) float32
    x16, w16 = residuals
    return _bf16_product(g, w16.T), _bf16_product(x16.T, g)  # dx (B, d_in), dw (d_in, d_out), float32


_bf16_matmul.defvjp(_bf16_matmul_forward, _bf16_matmul_backward)


def apply(
    params: Params, x: jax.Array, *, key: jax.Array | None = None, dropout=0.0, precision: str = "float32"
) -> jax.Array:
    """Logits of a batch: relu on every hidden layer, nothing on the last.

    x: (B, d_in) floats  ->  (B, d_out) logits.  softmax(logits) is what Keras's
    final `activation = "softmax"` layer outputs. Given a key (training), every
    hidden layer's output goes through inverted dropout at rate `dropout`.
    precision: "float32", "tf32" or "bf16", how the matmuls compute (`matmul`);
    biases, activations and logits are float32 whichever it is.
    """
    *hidden, last = params
    keys = jax.random.split(key, len(hidden)) if key is not None else [None] * len(hidden)
    for layer, layer_key in zip(hidden, keys):
        x = jax.nn.relu(matmul(x, layer["w"], precision) + layer["b"][None, :])  # (B, d_out); bias over the batch
        if layer_key is not None:
            x = regularize.dropout(x, layer_key, dropout)
    return matmul(x, last["w"], precision) + last["b"][None, :]


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


def layer_sizes(params: Params) -> list[int]:
    """The widths, input first, as `init_mlp` takes them: [784, 512, 10] for the seed's network."""
    return [params[0]["w"].shape[0]] + [layer["w"].shape[1] for layer in params]


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
