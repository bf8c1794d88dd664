"""Population training: K models in one compiled program, with `jax.vmap`, spread over every device.

    params = init_population(jax.random.split(jax.random.key(0), 8))  # 8 initialisations, stacked
    states, histories = fit_population(
        params, x, y, optimizer_factory=optim.rmsprop,
        hyperparams={"learning_rate": [1e-4, 3e-4, 1e-3, 3e-3] * 2},  # one value per member
        epochs=5, batch_size=128, validation_split=0.2, verbose=True, checkpoint_dir="runs/grid")

Every member has its own parameters, optimizer state and shuffling key; they share
the data. The hyperparameters that differ are data (`hyperparams.inject_hyperparams`),
so the whole grid is one program, compiled once per optimizer family, and each
step multiplies K batches by K weight matrices at once. A member trains exactly as
`fit` would train it alone with the same key (the tests check it).

`fit_population` runs the same host loop as `fit` (`loop.py`): progress lines,
on_epoch_end, checkpoints and resume. Where `fit` raises `Diverged`, a population
flags the member instead: its state stays the last finite one (a `where` inside
the compiled epoch), its History ends with `diverged_at_epoch`, and the other
members are untouched, since members never exchange a number. On several devices
the members are split over them (`parallel.population_mesh`): K/D per device, no
communication between members.
"""

from __future__ import annotations

import functools
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import inputs, loop, model, optim, parallel, regularize, train
from jaxmlp.hyperparams import inject_hyperparams


def init_population(keys: jax.Array, sizes=model.SEED_SIZES) -> model.Params:
    """One initialisation per key, stacked: every leaf gains a leading axis of length len(keys)."""
    return jax.vmap(lambda key: model.init_mlp(key, sizes))(keys)


def member_keys(seeds) -> tuple[jax.Array, jax.Array]:
    """(init keys, shuffle keys), one per seed, split from `jax.random.key(seed)` as `mnist_seed.py --seed` does."""
    pairs = jax.vmap(lambda seed: jax.random.split(jax.random.key(seed)))(jnp.asarray(seeds))
    return pairs[:, 0], pairs[:, 1]


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
    dtype = jax.tree.leaves(params)[0].dtype
    member_values = {name: jnp.asarray(v, dtype) for name, v in values.items()}
    # Each member's state is built with its own values (schedule-free keeps b1 in its state).
    opt_state = jax.vmap(lambda p, v: inject_hyperparams(factory)(**v).init(p))(params, member_values)
    optimizer = _family_optimizer(factory, tuple(sorted(values)))
    # Copies: vmap may return one buffer for two leaves (b1 as data and in the state), and training donates each.
    state = train.TrainState(params, opt_state, keys)
    return optimizer, jax.tree.map(jnp.copy, state)


def continued_population_state(states: train.TrainState, factory, hyperparams: dict, keys=None):
    """(optimizer, a copy of `states`): a population trained before, to train on.

    `hyperparams` must be the values its optimizer state holds (what checkpoints
    record); the shuffling keys are the state's own.
    """
    if keys is not None:
        raise ValueError("fit_population was given a TrainState and keys; the state carries its members' keys")
    held = parallel.to_host(states.opt_state.hyperparams)
    for name, values in hyperparams.items():
        if name not in held or not np.array_equal(held[name], np.asarray(values, held[name].dtype)):
            raise ValueError(f"hyperparams[{name!r}] are not the values the population's state holds; give those")
    return _family_optimizer(factory, tuple(sorted(hyperparams))), jax.tree.map(jnp.copy, states)


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
    (0.5, valid for every hyperparameter of jaxmlp.optim) are never used: `update`
    reads each member's from its state, which `init_population_state` builds.
    """
    return inject_hyperparams(factory)(**{name: 0.5 for name in names})


def evaluation_params(states: train.TrainState, optimizer_factory) -> model.Params:
    """Every member's parameters to evaluate and save (`train.evaluation_params`), stacked.

    `optimizer_factory` is the population's family, e.g. `optim.schedule_free_adamw`,
    whose members are evaluated at x; for the other families these are `states.params`.
    """
    optimizer = _family_optimizer(optimizer_factory, ("learning_rate",))
    return jax.vmap(lambda state: train.evaluation_params(state, optimizer))(states)


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


def member(tree, i):
    """Member i of a stacked population pytree (every leaf indexed on its leading axis; i may be a slice)."""
    return jax.tree.map(lambda leaf: leaf[i], tree)


@partial(jax.jit, static_argnames=("optimizer", "batch_size", "mesh", "precision"), donate_argnums=0)
def population_epoch(
    states: train.TrainState,
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
    """`train.guarded_epoch` for every member at once, the matmuls at `precision`.

    states, active (K,), regularization: stacked along the members; x, y, validation: shared.
    On a ("population", "batch") mesh, vmap's spmd_axis_name ties the member axis to
    the population axis, so that a member's batch split (if any) stays within its devices.
    Returns (states, sums (K, 2), val_sums (K, 2) or None, finite (K,)).
    """
    epoch = partial(train.guarded_epoch, optimizer=optimizer, batch_size=batch_size, mesh=mesh, precision=precision)
    spmd_axis_name = None if mesh is None else parallel.POPULATION_AXIS
    members = jax.vmap(epoch, in_axes=(0, 0, None, None, None, 0), spmd_axis_name=spmd_axis_name)
    return members(states, active, x, y, validation, regularization)


@partial(jax.jit, static_argnames=("batch_size", "precision"))
def population_evaluation(params, x, y, *, batch_size: int, precision: str = "float32"):
    """[summed loss, number correct] of every member, (K, 2), the matmuls at `precision`."""
    sums = partial(train.evaluation_sums, batch_size=batch_size, precision=precision)
    return jax.vmap(sums, in_axes=(0, None, None))(params, x, y)


def evaluate_population(
    params, x, y, *, batch_size: int = train.EVAL_BATCH_SIZE, precision: str = "float32"
) -> list[dict[str, float]]:
    """`train.evaluate` for each member: a list of {"loss", "accuracy"}. Works on members spread over devices.

    precision: how the matmuls compute, as in `train.fit` ("float32", "tf32" or "bf16").
    """
    inputs.check_count("batch_size", batch_size)
    model.check_precision(precision)
    x, y = inputs.prepare_examples(x, y, member(params, 0), "evaluation data")
    x, y = parallel.replicate((x, y), parallel.mesh_of(params))
    sums = parallel.to_host(population_evaluation(params, x, y, batch_size=batch_size, precision=precision))
    found = loop.means(sums, len(x))
    return [{name: float(values[i]) for name, values in found.items()} for i in range(len(sums))]


def fit_population(
    params_or_states,
    x,
    y,
    *,
    optimizer_factory,
    hyperparams: dict,
    epochs: int = 1,
    batch_size: int = 32,
    validation_split: float = 0.0,
    validation_data=None,
    keys: jax.Array | None = None,
    initial_epoch: int = 0,
    regularization: regularize.Regularization | None = None,
    schedule=None,
    on_epoch_end=None,
    verbose: bool = False,
    devices=None,
    checkpoint_dir=None,
    precision: str = "float32",
) -> tuple[train.TrainState, list[loop.History]]:
    """Train a stacked population as `train.fit` trains one model; one History per member.

    Args:
      params_or_states: stacked parameters (`init_population`), K members; or the
        stacked TrainState a previous call returned, to train on (successive halving
        gathers survivors' states with `member`).
      optimizer_factory: a function that builds an optimizer from its hyperparameters,
        such as `optim.rmsprop` (not `optim.rmsprop()`): the population calls it with
        each member's values, as data.
      hyperparams: {argument name: K values}, e.g. {"learning_rate": [...]}; the
        factory's other arguments keep their defaults.
      keys: one shuffling key per member, shape (K,); default split from `jax.random.key(0)`.
        Not with a TrainState, which carries its members' keys.
      initial_epoch: epochs already done, as in `fit`: training runs epochs
        initial_epoch + 1 .. epochs, numbered so in Histories and progress lines.
      regularization: a `regularize.Regularization` whose fields are one value for
        all members or one per member (e.g. dropout=[0.2, 0.5, ...]); all data, so
        the members may differ without another compilation.
      schedule: a function of the step count multiplying every member's learning
        rate, e.g. `schedules.cosine_decay(1.0, total_steps)`: member i then follows
        learning_rate[i] * schedule(step).
      on_epoch_end: on_epoch_end(epoch, logs, states), logs holding one value per
        member for each metric (None for a diverged member), and "seconds".
      verbose: one line per epoch: the best, median and worst member, and how many diverged.
      devices: default every device of every process; the members are split over them.
      checkpoint_dir: as in `fit`; the checkpoint holds every member, and also
        refuses another population size or hyperparameter grid.
      precision: "float32" (default), "tf32" or "bf16", how every member's matmuls
        compute, as in `train.fit`; one value for the whole population.
      The rest as in `train.fit`. Every member's History shares the epoch timings;
      a member whose loss went NaN or infinite stops there, keeps its last finite
      state, and its History says when (`diverged_at_epoch`); nothing is raised.
    """
    inputs.check_count("epochs", epochs, allow_zero=True)
    inputs.check_count("batch_size", batch_size)
    inputs.check_count("initial_epoch", initial_epoch, allow_zero=True)
    model.check_precision(precision)
    factory = optimizer_factory if schedule is None else _scheduled(optimizer_factory, schedule)
    if isinstance(params_or_states, train.TrainState):
        optimizer, states = continued_population_state(params_or_states, factory, hyperparams, keys)
    else:
        size = population_size(params_or_states)
        keys = jax.random.split(jax.random.key(0), size) if keys is None else keys
        optimizer, states = init_population_state(params_or_states, factory, hyperparams, keys)
    size = population_size(states.params)
    regularization = stack_regularization(regularization, size)
    first = member(states, 0)
    x, y, validation = inputs.training_and_validation(
        x, y, first.params, validation_split, validation_data, regularization
    )
    states, records, identity = loop.resume(
        checkpoint_dir,
        states,
        epochs=epochs,
        verbose=verbose,
        member_state=first,
        optimizer=optimizer,
        data=(x, y, validation),
        batch_size=batch_size,
        regularization=regularization,
        hyperparams=hyperparams,
        precision=precision,
    )

    start = time.perf_counter()
    mesh = parallel.population_mesh(size, devices)
    padding = parallel.padded_members(size, mesh) - size
    states, regularization = parallel.shard_members(_pad((states, regularization), padding), mesh)
    x, y, validation = parallel.replicate((x, y, validation), mesh)
    all_active = parallel.shard_members(np.ones(size + padding, bool), mesh)
    program = population_epoch.lower(
        states,
        all_active,
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

    def run_epoch(states, active):
        active = parallel.shard_members(np.concatenate([active, np.ones(padding, bool)]), mesh)
        return program(states, active, x, y, validation, regularization)

    states, records = loop.run_epochs(
        run_epoch,
        states,
        records,
        epochs=epochs,
        initial_epoch=initial_epoch,
        members=size,
        counts=loop.sample_counts(x, validation),
        compile_seconds=compile_seconds,
        checkpoint_dir=checkpoint_dir,
        identity=identity,
        unpadded=lambda states: parallel.drop_padding(states, size, mesh),
        on_epoch_end=on_epoch_end,
        verbose=verbose,
    )
    return parallel.drop_padding(states, size, mesh), loop.member_histories(records, size, compile_seconds)


def _pad(tree, padding: int):
    """Every leaf with `padding` copies of its last member appended: inert members that fill the last device."""
    if not padding:
        return tree
    return jax.tree.map(lambda leaf: jnp.concatenate([leaf, *[leaf[-1:]] * padding]), tree)


def throughput(
    x, y, sizes, *, batch_size: int = 128, precision: str = "float32", epochs: int = 3, validation_split: float = 0.2
) -> list[dict]:
    """Model-epochs per second of an RMSProp population of each size K in `sizes`, one row per K.

    Each population (learning rate 1e-3 for every member; member i seeded as
    `mnist_seed.py --seed i`: init and shuffling keys from `jax.random.split(jax.random.key(i))`)
    trains `epochs` epochs on (x, y) with `fit_population`. An epoch's time is the median
    of the epochs after the first, so that compilation and warm-up are behind; the
    validation pass is included, as in `fit`. Rows: {"models": K, "epoch_seconds",
    "model_epochs_per_second": K / epoch_seconds, "compile_seconds" (tracing and XLA
    compilation of the epoch program, cold unless a persistent cache holds it),
    "speedup_over_k1": the throughput over that of the first size}.
    """
    if epochs < 2:
        raise ValueError(f"epochs must be >= 2 (the first is warm-up, the rest are timed); got {epochs}")
    rows = []
    for size in sizes:
        inputs.check_count("population size", size)
        init_keys, shuffle_keys = member_keys(np.arange(size))
        _, histories = fit_population(
            init_population(init_keys),
            x,
            y,
            optimizer_factory=optim.rmsprop,
            hyperparams={"learning_rate": [1e-3] * size},
            keys=shuffle_keys,
            epochs=epochs,
            batch_size=batch_size,
            validation_split=validation_split,
            precision=precision,
        )
        epoch_seconds = float(np.median(histories[0].seconds[1:]))  # every member's History shares the timings
        rows.append(
            {
                "models": size,
                "epoch_seconds": epoch_seconds,
                "model_epochs_per_second": size / epoch_seconds,
                "compile_seconds": histories[0].compile_seconds,
            }
        )
    for row in rows:
        row["speedup_over_k1"] = row["model_epochs_per_second"] / rows[0]["model_epochs_per_second"]
    return rows
