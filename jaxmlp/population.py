"""Population training: K models in one compiled program, with `jax.vmap`.

    params = init_population(jax.random.split(jax.random.key(0), 8))  # 8 initialisations, stacked
    states, histories = fit_population(
        params, x, y, optimizer=optim.rmsprop,
        hyperparams={"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3] * 2},  # one value per member
        epochs=5, batch_size=128, validation_split=0.2)

Every member has its own parameters, optimizer state and shuffling key; they share
the data. The hyperparameters that differ are data (`hyperparams.inject_hyperparams`),
so the whole grid is one program, compiled once per optimizer family, and each
step multiplies K batches by K weight matrices at once. A member trains exactly as
`fit` would train it alone with the same key (the tests check it).
"""

from __future__ import annotations

import functools
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import inputs, model, regularize, train
from jaxmlp.hyperparams import inject_hyperparams


def init_population(keys: jax.Array, sizes=model.SEED_SIZES) -> model.Params:
    """One initialisation per key, stacked: every leaf gains a leading axis of length len(keys)."""
    return jax.vmap(lambda key: model.init_mlp(key, sizes))(keys)


def population_size(params: model.Params) -> int:
    return jax.tree.leaves(params)[0].shape[0]


def init_population_state(params, factory, hyperparams: dict, keys: jax.Array):
    """A stacked TrainState whose member i uses hyperparams[name][i] and shuffles with keys[i].

    Returns (optimizer, state): the optimizer is `inject_hyperparams(factory)`, one
    object per family; the state holds every member's hyperparameters as arrays (K,).
    """
    size = population_size(params)
    values = {name: np.asarray(v, np.float64) for name, v in hyperparams.items()}
    for name, v in values.items():
        if v.shape != (size,):
            raise ValueError(f"hyperparams[{name!r}] has {v.size} values for {size} members; give one per member")
    if keys.shape != (size,):
        raise ValueError(f"{keys.shape[0] if keys.ndim else 1} shuffling keys for {size} members; give one per member")
    for i in range(size):  # every value is checked as the factory checks its arguments
        factory(**{name: float(v[i]) for name, v in values.items()})
    optimizer = _family_optimizer(factory, tuple(sorted(values)))
    opt_state = jax.vmap(optimizer.init)(params)
    dtype = jax.tree.leaves(params)[0].dtype
    opt_state = opt_state._replace(
        hyperparams={**opt_state.hyperparams, **{name: jnp.asarray(v, dtype) for name, v in values.items()}}
    )
    return optimizer, train.TrainState(jax.tree.map(jnp.copy, params), opt_state, jnp.copy(keys))


@functools.cache
def _scheduled(factory, schedule):
    """The factory with its learning rate (data) multiplied by a fixed schedule of the step count."""

    def scheduled(learning_rate, **kwargs):
        if not isinstance(learning_rate, jax.core.Tracer) and not float(learning_rate) > 0:
            raise ValueError(f"learning_rate must be > 0 (e.g. 1e-3); got {learning_rate}")
        return factory(lambda count: learning_rate * schedule(count), **kwargs)

    return functools.update_wrapper(scheduled, factory)


@functools.cache
def _family_optimizer(factory, names: tuple[str, ...]):
    """One injected optimizer per (factory, hyperparameter names): the same object for every grid.

    The compiled epoch is keyed on the optimizer object, so reusing it is what lets a
    second grid of the same family skip compilation. The values it is built with
    (0.5, valid for every hyperparameter of jaxmlp.optim) only seed `init`;
    `init_population_state` replaces them with the grid's.
    """
    return inject_hyperparams(factory)(**{name: 0.5 for name in names})


def stack_regularization(regularization, size: int):
    """A Regularization whose fields are arrays (K,): scalars repeat, sequences give one value per member."""
    if regularization is None:
        return None
    fields = {}
    for name, value in regularization._asdict().items():
        values = np.broadcast_to(np.asarray(value), (size,)) if np.ndim(value) == 0 else np.asarray(value)
        if values.shape != (size,):
            raise ValueError(f"regularization {name} has {values.size} values for {size} members; give one per member")
        for member in values:  # each member's values are checked as fit checks them
            regularize.check(regularize.Regularization(**{name: member}))
        fields[name] = jnp.asarray(values, jnp.float32)
    return regularize.Regularization(**fields)


@partial(jax.jit, static_argnames=("optimizer", "batch_size"), donate_argnums=0)
def population_epoch(states: train.TrainState, x, y, regularization=None, *, optimizer, batch_size: int):
    """`train.train_epoch` for every member at once; returns (states, sums (K, 2))."""
    epoch = partial(train.train_epoch, optimizer=optimizer, batch_size=batch_size)
    return jax.vmap(epoch, in_axes=(0, None, None, 0))(states, x, y, regularization)


@partial(jax.jit, static_argnames=("batch_size",))
def population_evaluation(params, x, y, *, batch_size: int):
    """[summed loss, number correct] of every member, (K, 2)."""
    return jax.vmap(partial(train.evaluation_sums, batch_size=batch_size), in_axes=(0, None, None))(params, x, y)


def evaluate_population(params, x, y, *, batch_size: int = train.EVAL_BATCH_SIZE) -> list[dict[str, float]]:
    """`train.evaluate` for each member: a list of {"loss", "accuracy"}."""
    x, y = inputs.prepare_examples(x, y, jax.tree.map(lambda leaf: leaf[0], params), "evaluation data")
    sums = np.asarray(population_evaluation(params, x, y, batch_size=batch_size), np.float64)
    return [{"loss": float(loss / len(x)), "accuracy": float(correct / len(x))} for loss, correct in sums]


def fit_population(
    params,
    x,
    y,
    *,
    optimizer,
    hyperparams: dict,
    epochs: int = 1,
    batch_size: int = 32,
    validation_split: float = 0.0,
    validation_data=None,
    keys: jax.Array | None = None,
    regularization: regularize.Regularization | None = None,
    schedule=None,
) -> tuple[train.TrainState, list[train.History]]:
    """Train a stacked population as `train.fit` trains one model; one History per member.

    Args:
      params: stacked parameters (`init_population`), K members.
      optimizer: an optimizer *factory* of `jaxmlp.optim` (e.g. `optim.rmsprop`).
      hyperparams: {argument name: K values}, e.g. {"learning_rate": [...]}; the
        factory's other arguments keep their defaults.
      keys: one shuffling key per member, shape (K,); default split from `jax.random.key(0)`.
      regularization: a `regularize.Regularization` whose fields are one value for
        all members or one per member (e.g. dropout=[0.2, 0.5, ...]); all data, so
        the members may differ without another compilation.
      schedule: a function of the step count multiplying every member's learning
        rate, e.g. `schedules.cosine_decay(1.0, total_steps)`: member i then follows
        learning_rate[i] * schedule(step).
      The rest as in `train.fit`. Every member's History shares the epoch timings.
    """
    inputs.check_count("epochs", epochs, allow_zero=True)
    inputs.check_count("batch_size", batch_size)
    first = jax.tree.map(lambda leaf: leaf[0], params)
    x, y = inputs.prepare_examples(x, y, first, "training data")
    if validation_data is None and validation_split:
        (x, y), validation_data = inputs.split_validation(x, y, validation_split)
    if validation_data is not None:
        x_val, y_val = inputs.prepare_examples(*validation_data, first, "validation data")
    start = time.perf_counter()
    size = population_size(params)
    keys = jax.random.split(jax.random.key(0), size) if keys is None else keys
    if schedule is not None:
        optimizer = _scheduled(optimizer, schedule)
    opt, states = init_population_state(params, optimizer, hyperparams, keys)
    regularization = stack_regularization(regularization, size)
    x, y = jax.device_put(x), jax.device_put(y)
    run_epoch = population_epoch.lower(states, x, y, regularization, optimizer=opt, batch_size=batch_size).compile()
    if validation_data is not None:
        x_val, y_val = jax.device_put(x_val), jax.device_put(y_val)
        validate = population_evaluation.lower(states.params, x_val, y_val, batch_size=train.EVAL_BATCH_SIZE).compile()
    compile_seconds = time.perf_counter() - start

    metrics = [dict() for _ in range(size)]
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        states, sums = run_epoch(states, x, y, regularization)
        logs = [train.means(member, len(x)) for member in np.asarray(sums)]
        if validation_data is not None:
            for member_logs, member in zip(logs, np.asarray(validate(states.params, x_val, y_val))):
                member_logs.update({"val_" + k: v for k, v in train.means(member, len(x_val)).items()})
        seconds.append(time.perf_counter() - start)
        for member_metrics, member_logs in zip(metrics, logs):
            for name, value in member_logs.items():
                member_metrics.setdefault(name, []).append(value)
    return states, [train.History(m, list(seconds), compile_seconds) for m in metrics]
