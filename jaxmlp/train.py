"""Training with Keras's `fit` semantics, one compiled program per epoch.

    state, history = fit(params, x_train, y_train, epochs=5, batch_size=128, validation_split=0.2)
    evaluate(state.params, x_test, y_test)        # {"loss": ..., "accuracy": ...}

How an epoch runs: the training arrays are put on the device once (uint8 pixels
stay uint8, 4x smaller than float32, and are scaled by 1/255 inside the step).
Each epoch is a single `jax.jit` program: it draws a permutation from the state's
PRNG key, cuts it into batches, and `lax.scan`s `train_step` over them, summing
loss and correct predictions on the device; the host fetches two numbers per
epoch. The last, partial batch is padded to full size and its padding masked out,
so every sample is used, the loss and gradients are those of the real rows, and
nothing is compiled twice.

Keras semantics kept on purpose: `validation_split` takes the *last* fraction of
the samples, before shuffling; every epoch is reshuffled; the partial batch is
kept; the epoch's loss and accuracy are averages over all samples of the values
seen during the epoch (before each step's update), validation is measured after it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import inputs, loop, model, optim, parallel, regularize
from jaxmlp.loop import Diverged, History  # noqa: F401 - also train.Diverged, train.History

OptState = Any
EVAL_BATCH_SIZE = 1000  # no gradients to keep, so bigger batches are cheaper; results do not depend on it


class TrainState(NamedTuple):
    """Everything that changes during training, as one pytree (jit, checkpoint and vmap treat it as a value)."""

    params: model.Params
    opt_state: OptState
    key: jax.Array  # PRNG key of the next epoch's shuffle


def init_train_state(params: model.Params, optimizer, key: jax.Array) -> TrainState:
    """A fresh state. Parameters and key are copied: training donates the state's buffers."""
    params, key = jax.tree.map(jnp.copy, (params, key))
    return TrainState(params=params, opt_state=optimizer.init(params), key=key)


def evaluation_params(state: TrainState, optimizer) -> model.Params:
    """The parameters to validate, evaluate, predict with and save.

    `optimizer.eval_params(state.opt_state, state.params)` when the optimizer has that
    hook, else `state.params`. Schedule-free AdamW trains at y but its answer is the
    average x (`optim.schedule_free_eval_params`); every other optimizer's answer is the
    point it trains. `optimizer` may be a name, as in `fit`. Pure, so it works inside
    jit and vmap (a population's members, `population.evaluation_params`).
    """
    if isinstance(optimizer, str):
        optimizer = optim.from_name(optimizer)
    hook = getattr(optimizer, "eval_params", None)
    return state.params if hook is None else hook(state.opt_state, state.params)


# --------------------------------------------------------------------------- compiled pieces


def _batches(order: jax.Array, batch_size: int, mesh=None) -> tuple[jax.Array, jax.Array]:
    """Cut sample indices into batches, (num_batches, rows), and a mask that is 0 on padding.

    The last batch is padded to full size; with several devices every batch is also
    padded to a multiple of the device count, and its rows are spread across them.
    """
    n = order.shape[0]
    num_batches = -(-n // batch_size)
    padding = num_batches * batch_size - n
    indices = jnp.concatenate([order, jnp.zeros(padding, order.dtype)]).reshape(num_batches, batch_size)
    mask = (jnp.arange(num_batches * batch_size) < n).reshape(num_batches, batch_size)
    extra = parallel.rows_per_batch(batch_size, mesh) - batch_size
    if extra:
        indices = jnp.pad(indices, ((0, 0), (0, extra)))
        mask = jnp.pad(mask, ((0, 0), (0, extra)))
    return parallel.split_rows(indices, mesh), parallel.split_rows(mask, mesh)


def _inputs(x: jax.Array, dtype) -> jax.Array:
    """uint8 pixels -> [0, 1] as the seed's `/ 255`; floats pass unchanged. (B, 784)."""
    return x.astype(dtype) / 255 if x.dtype == jnp.uint8 else x.astype(dtype)


def _batch_sums(params, x, targets, mask, noise=None, regularization=None, precision="float32"):
    """Masked mean loss (what is differentiated) and the [loss, correct] sums of the real rows.

    With a Regularization (and a key, `noise`), the batch is distorted and dropped out,
    the targets smoothed, and the L2 penalty added to the differentiated loss; the
    reported sums are the data term against the smoothed targets. `precision` is how
    the model's matmuls compute (`model.matmul`); the loss is float32 whichever it is.
    """
    loss_targets, penalty, dropout_key, rate = targets, 0.0, None, 0.0
    if regularization is not None:
        x, loss_targets, penalty, dropout_key = regularize.for_training(params, x, targets, noise, regularization)
        rate = regularization.dropout
    logits = model.apply(params, x, key=dropout_key, dropout=rate, precision=precision)
    per_example = model.cross_entropy(logits, loss_targets) * mask  # (B,), padding rows zeroed
    correct = jnp.sum((jnp.argmax(logits, axis=-1) == model.class_labels(targets)) * mask)
    return jnp.sum(per_example) / jnp.sum(mask) + penalty, jnp.stack([jnp.sum(per_example), correct])


def train_step(params, opt_state, x, targets, mask, optimizer, noise=None, regularization=None, precision="float32"):
    """One step of mini-batch training: forward, loss, backward (jax.grad), update.

        loss = sum_i mask_i * CE(apply(params, x_i), t_i) / sum_i mask_i
        updates, opt_state = optimizer.update(grad loss, opt_state, params)
        params = params + updates

    Returns (params, opt_state, sums) with sums = [loss summed over real rows, correct count].
    `noise` (a PRNG key) and `regularization` switch on dropout, distortions, smoothing and L2;
    `precision` ("float32", "tf32", "bf16") is how the matmuls compute, forward and backward.
    """
    grads, sums = jax.grad(_batch_sums, has_aux=True)(params, x, targets, mask, noise, regularization, precision)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optim.apply_updates(params, updates), opt_state, sums


@partial(jax.jit, static_argnames=("optimizer", "batch_size", "mesh", "precision"), donate_argnums=0)
def train_epoch(
    state: TrainState,
    x: jax.Array,
    y: jax.Array,
    regularization=None,
    *,
    optimizer,
    batch_size: int,
    mesh=None,
    precision: str = "float32",
):
    """One shuffled pass over (x, y) as a single compiled program.

    x: (N, d) uint8 or float, y: (N,) int labels or (N, C) targets, both on the device.
    regularization: None (the seed), or a `regularize.Regularization` of values (data).
    mesh: None on one device; a `parallel.data_mesh` to split every batch across devices.
    precision: "float32", "tf32" or "bf16", how the model's matmuls compute (`model.matmul`).
    Returns (new state, [summed loss, number correct]) over the N samples.
    """
    key, shuffle_key = jax.random.split(state.key)
    dtype = jax.tree.leaves(state.params)[0].dtype
    indices, mask = _batches(jax.random.permutation(shuffle_key, x.shape[0]), batch_size, mesh)
    noise = None if regularization is None else jax.random.split(jax.random.fold_in(shuffle_key, 1), len(indices))

    def step(carry, batch):
        params, opt_state, totals = carry
        rows, row_mask, step_noise = batch
        params, opt_state, sums = train_step(
            params,
            opt_state,
            _inputs(x[rows], dtype),
            y[rows],
            row_mask.astype(dtype),
            optimizer,
            step_noise,
            regularization,
            precision,
        )
        return (params, opt_state, totals + sums), None

    start = (state.params, state.opt_state, jnp.zeros(2, dtype))
    (params, opt_state, totals), _ = jax.lax.scan(step, start, (indices, mask, noise))
    return TrainState(params, opt_state, key), totals


@partial(jax.jit, static_argnames=("batch_size", "mesh", "precision"))
def evaluation_sums(params, x, y, *, batch_size: int, mesh=None, precision: str = "float32"):
    """[summed loss, number correct] over every sample, batch by batch, the matmuls at `precision`."""
    dtype = jax.tree.leaves(params)[0].dtype
    indices, mask = _batches(jnp.arange(x.shape[0]), batch_size, mesh)

    def step(totals, batch):
        rows, row_mask = batch
        _, sums = _batch_sums(params, _inputs(x[rows], dtype), y[rows], row_mask.astype(dtype), precision=precision)
        return totals + sums, None

    totals, _ = jax.lax.scan(step, jnp.zeros(2, dtype), (indices, mask))
    return totals


def guarded_epoch(
    state: TrainState,
    active,
    x,
    y,
    validation=None,
    regularization=None,
    *,
    optimizer,
    batch_size: int,
    mesh=None,
    precision: str = "float32",
):
    """One epoch and its validation, as one program; a state whose numbers go non-finite is not kept.

        new, sums = train_epoch(state, x, y)                    # sums = [summed loss, number correct]
        val_sums = evaluation_sums(evaluation_params(new, optimizer), *validation)   # None without validation
        finite = sums, val_sums, new parameters and optimizer state all finite
        state = new if (active and finite) else state           # jnp.where, inside the program

    So a model that diverges stays at its last finite state without a second program
    or a copy on the host, and an inactive one (a population's diverged member) stays
    as it is. `fit` jits this; `fit_population` vmaps it over the members. Training
    and validation both run their matmuls at `precision`; validation measures the
    optimizer's evaluation parameters (schedule-free's x; the params for the others).
    Returns (state, sums (2,), val_sums (2,) or None, finite (bool)).
    """
    new, sums = train_epoch(
        state, x, y, regularization, optimizer=optimizer, batch_size=batch_size, mesh=mesh, precision=precision
    )
    val_sums = None
    if validation is not None:
        evaluated = evaluation_params(new, optimizer)
        val_sums = evaluation_sums(evaluated, *validation, batch_size=EVAL_BATCH_SIZE, mesh=mesh, precision=precision)
    numbers = [sums, val_sums, *jax.tree.leaves((new.params, new.opt_state))]
    finite = jnp.all(jnp.stack([jnp.isfinite(a).all() for a in numbers if a is not None and _is_float(a)]))
    keep = jnp.logical_and(active, finite)
    return jax.tree.map(lambda n, o: jnp.where(keep, n, o), new, state), sums, val_sums, finite


def _is_float(array) -> bool:
    return jnp.issubdtype(array.dtype, jnp.floating)


compiled_epoch = jax.jit(
    guarded_epoch, static_argnames=("optimizer", "batch_size", "mesh", "precision"), donate_argnums=0
)


@partial(jax.jit, static_argnames=("batch_size", "precision"))
def _logits(params, x, *, batch_size: int, precision: str = "float32"):
    dtype = jax.tree.leaves(params)[0].dtype
    indices, _ = _batches(jnp.arange(x.shape[0]), batch_size)
    logits = jax.lax.map(lambda rows: model.apply(params, _inputs(x[rows], dtype), precision=precision), indices)
    return logits.reshape(-1, logits.shape[-1])[: x.shape[0]]  # (N, C)


# --------------------------------------------------------------------------- host side


def fit(
    params_or_state,
    x,
    y,
    *,
    optimizer=None,
    epochs: int = 1,
    batch_size: int = 32,
    validation_split: float = 0.0,
    validation_data=None,
    key: jax.Array | None = None,
    initial_epoch: int = 0,
    regularization: regularize.Regularization | None = None,
    on_epoch_end: Callable[[int, dict, TrainState], None] | None = None,
    verbose: bool = False,
    devices=None,
    checkpoint_dir=None,
    precision: str = "float32",
) -> tuple[TrainState, History]:
    """Train like Keras's `model.fit`; returns (final TrainState, History).

    Args:
      params_or_state: initial parameters, or a TrainState to continue from.
      x: (N, 784) or (N, 28, 28) inputs; uint8 pixels are scaled by 1/255 on the device.
      y: (N,) integer labels or (N, 10) one-hot targets (`to_categorical`).
      optimizer: any `GradientTransformation`, ours or optax's, or a name that
        `optim.from_name` knows ("rmsprop", "adam", "optax.adamw", ...). Default:
        `rmsprop()`, Keras's `optimizer = "rmsprop"`.
      epochs, batch_size: as Keras (defaults 1 and 32); the last partial batch is kept.
      validation_split: fraction of the samples, taken from the end, held out.
      validation_data: (x_val, y_val); overrides validation_split, as in Keras.
      key: the PRNG key of the shuffling when starting from parameters; default
        `jax.random.key(0)`. Use a key other than the one that initialised the
        parameters (split one root key into two).
      initial_epoch: epochs already done, as Keras's: training runs epochs
        initial_epoch + 1 .. epochs (to continue from a state by hand).
      regularization: dropout, label smoothing, L2 and affine distortions for training
        (`regularize.Regularization`); None, the seed's recipe, uses none.
      on_epoch_end: called as on_epoch_end(epoch, logs, state) after each epoch,
        epoch counting from 1, logs holding the metrics and "seconds".
      verbose: print one Keras-style line per epoch (process 0 only).
      devices: the devices to train on; default every visible device, of every
        process. With more than one, each batch is split across them (see parallel.py).
      checkpoint_dir: a folder for a checkpoint after every epoch (the newest two are
        kept). Called again with the same arguments, fit resumes after the last
        complete epoch there, and ends bitwise as a run never stopped (on CPU); the
        History then covers every epoch. A folder of another configuration is refused
        (checkpoint.ConfigurationMismatch) with the differences named.
      precision: how the model's matmuls compute, forward and backward (`model.matmul`):
        "float32" (default) every matmul in full float32 on every device; "tf32" the
        backend's default, TF32 inputs on NVIDIA GPUs from Ampere on and the same as
        "float32" on CPU; "bf16" bfloat16 inputs with float32 accumulation. Parameters,
        optimizer state, loss and validation stay float32 in all three.

    Raises:
      Diverged: the loss became NaN or infinite in some epoch; training stops there,
        and the exception carries the state of the epoch before.
    """
    if optimizer is None or isinstance(optimizer, str):
        optimizer = optim.from_name(optimizer or "rmsprop")
    inputs.check_count("epochs", epochs, allow_zero=True)
    inputs.check_count("batch_size", batch_size)
    inputs.check_count("initial_epoch", initial_epoch, allow_zero=True)
    model.check_precision(precision)
    if isinstance(params_or_state, TrainState):
        if key is not None:
            raise ValueError("fit was given a TrainState and a key; the state carries its own shuffling key")
        state = jax.tree.map(jnp.copy, params_or_state)  # the caller's copy survives the donation
    else:
        state = init_train_state(params_or_state, optimizer, jax.random.key(0) if key is None else key)
    if regularization is not None:
        regularize.check(regularization)
    x, y, validation = inputs.training_and_validation(
        x, y, state.params, validation_split, validation_data, regularization
    )
    state, records, identity = loop.resume(
        checkpoint_dir,
        state,
        epochs=epochs,
        verbose=verbose,
        member_state=state,
        optimizer=optimizer,
        data=(x, y, validation),
        batch_size=batch_size,
        regularization=regularization,
        precision=precision,
    )

    start = time.perf_counter()
    mesh = parallel.data_mesh(devices)
    state, x, y, validation, active = parallel.replicate((state, x, y, validation, np.bool_(True)), mesh)
    program = compiled_epoch.lower(
        state,
        active,
        x,
        y,
        validation,
        regularization,
        optimizer=optimizer,
        batch_size=batch_size,
        mesh=mesh,
        precision=precision,
    ).compile()
    compile_seconds = time.perf_counter() - start

    def run_epoch(state, _active):  # one model: always active, Diverged ends the loop
        return program(state, active, x, y, validation, regularization)

    state, records = loop.run_epochs(
        run_epoch,
        state,
        records,
        epochs=epochs,
        initial_epoch=initial_epoch,
        members=None,
        counts=loop.sample_counts(x, validation),
        compile_seconds=compile_seconds,
        checkpoint_dir=checkpoint_dir,
        identity=identity,
        on_epoch_end=on_epoch_end,
        verbose=verbose,
    )
    return state, loop.history_of(records, compile_seconds)


def evaluate(
    params: model.Params, x, y, *, batch_size: int = EVAL_BATCH_SIZE, precision: str = "float32"
) -> dict[str, float]:
    """{"loss", "accuracy"} over *every* sample of (x, y): the last batch is padded and masked, not dropped.

    precision: how the matmuls compute, as in `fit` ("float32", "tf32" or "bf16").
    """
    inputs.check_count("batch_size", batch_size)
    model.check_precision(precision)
    x, y = inputs.prepare_examples(x, y, params, "evaluation data")
    found = loop.means(evaluation_sums(params, x, y, batch_size=batch_size, precision=precision), len(x))
    return {name: float(values[0]) for name, values in found.items()}


def predict(params: model.Params, x, *, batch_size: int = EVAL_BATCH_SIZE, precision: str = "float32") -> np.ndarray:
    """Class probabilities (N, C): softmax of the logits, what Keras's softmax layer outputs."""
    return np.asarray(jax.nn.softmax(_predict_logits(params, x, batch_size, precision)))


def predict_classes(
    params: model.Params, x, *, batch_size: int = EVAL_BATCH_SIZE, precision: str = "float32"
) -> np.ndarray:
    """The most probable class of each sample (N,), as R Keras's `predict_classes`."""
    return np.asarray(jnp.argmax(_predict_logits(params, x, batch_size, precision), axis=-1))


def _predict_logits(params, x, batch_size, precision):
    inputs.check_count("batch_size", batch_size)
    model.check_precision(precision)
    x = inputs.prepare_inputs(x, params, "prediction inputs")
    return _logits(params, x, batch_size=batch_size, precision=precision)
