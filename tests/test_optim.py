"""The hand-written optimizers against optax (whole trajectories), by hand, and against Keras's numbers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close, assert_trees_close_to_scale, small_network

from jaxmlp import hyperparams, model, optim, schedules
from jaxmlp.optim import adagrad, adam, rmsprop, sgd
from jaxmlp.population import member

STEPS = 120

# (id, ours(lr), optax's twin(lr), our lr, optax's lr): every option of every optimizer, at constant
# rates and under schedules. optax's schedules compute in float32 even under x64, so the float64
# comparisons give both optimizers our schedule; the float32 ones give each its own library's.
CASES = [
    ("sgd", sgd, optax.sgd, 0.1, 0.1),
    ("momentum", lambda lr: sgd(lr, momentum=0.9), lambda lr: optax.sgd(lr, momentum=0.9), 0.1, 0.1),
    ("nesterov", lambda lr: sgd(lr, 0.9, nesterov=True), lambda lr: optax.sgd(lr, 0.9, nesterov=True), 0.1, 0.1),
    ("rmsprop", rmsprop, lambda lr: optax.rmsprop(lr, decay=0.9, eps=1e-7), 0.01, 0.01),
    (
        "rmsprop_eps_outside",
        lambda lr: rmsprop(lr, eps=1e-3, eps_in_sqrt=False),
        lambda lr: optax.rmsprop(lr, eps=1e-3, eps_in_sqrt=False),
        0.01,
        0.01,
    ),
    (
        "rmsprop_centered",
        lambda lr: rmsprop(lr, centered=True),
        lambda lr: optax.rmsprop(lr, eps=1e-7, centered=True),
        0.01,
        0.01,
    ),
    (
        "rmsprop_momentum",
        lambda lr: rmsprop(lr, decay=0.8, momentum=0.5),
        lambda lr: optax.rmsprop(lr, decay=0.8, eps=1e-7, momentum=0.5),
        0.01,
        0.01,
    ),
    (
        "rmsprop_centered_momentum_outside",
        lambda lr: rmsprop(lr, centered=True, momentum=0.5, eps_in_sqrt=False),
        lambda lr: optax.rmsprop(lr, eps=1e-7, centered=True, momentum=0.5, eps_in_sqrt=False),
        0.01,
        0.01,
    ),
    ("adagrad", adagrad, optax.adagrad, 0.1, 0.1),
    (
        "adagrad_from_zero",
        lambda lr: adagrad(lr, initial_accumulator_value=0.0, eps=0.0),
        lambda lr: optax.adagrad(lr, initial_accumulator_value=0.0, eps=0.0),
        0.1,
        0.1,
    ),
    ("adam", adam, optax.adam, 0.01, 0.01),
    (
        "adam_betas",
        lambda lr: adam(lr, b1=0.5, b2=0.9, eps=1e-6),
        lambda lr: optax.adam(lr, b1=0.5, b2=0.9, eps=1e-6),
        0.01,
        0.01,
    ),
    (
        "sgd_exponential_decay",
        lambda lr: sgd(lr, momentum=0.9),
        lambda lr: optax.sgd(lr, momentum=0.9),
        schedules.exponential_decay(0.2, 10, 0.5),
        optax.exponential_decay(0.2, 10, 0.5),
    ),
    (
        "sgd_staircase",
        sgd,
        optax.sgd,
        schedules.exponential_decay(0.2, 7, 0.5, staircase=True),
        optax.exponential_decay(0.2, 7, 0.5, staircase=True),
    ),
    (
        "rmsprop_cosine",
        lambda lr: rmsprop(lr, momentum=0.5),
        lambda lr: optax.rmsprop(lr, eps=1e-7, momentum=0.5),
        schedules.cosine_decay(0.01, 80, alpha=0.1),
        optax.cosine_decay_schedule(0.01, 80, alpha=0.1),
    ),
    ("adam_warmup", adam, optax.adam, schedules.linear_warmup(0.01, 30), optax.linear_schedule(0, 0.01, 30)),
    (
        "adam_warmup_cosine",
        adam,
        optax.adam,
        schedules.linear_warmup(0.01, 20, after=schedules.cosine_decay(0.01, 60)),
        optax.warmup_cosine_decay_schedule(0.0, 0.01, 20, 80),
    ),
    (
        "adagrad_optax_schedule",
        adagrad,
        optax.adagrad,
        optax.exponential_decay(0.1, 50, 0.3),
        optax.exponential_decay(0.1, 50, 0.3),
    ),
    (
        "momentum_constant_schedule",
        lambda lr: sgd(lr, momentum=0.9),
        lambda lr: optax.sgd(lr, momentum=0.9),
        schedules.constant(0.1),
        0.1,
    ),
]
IDS = [case[0] for case in CASES]


def trajectory(optimizer, params, x, labels, steps=STEPS):
    """Every iterate p_1 .. p_steps of full-batch training, as a pytree with a leading step axis."""

    def step(carry, _):
        params, state = carry
        updates, state = optimizer.update(jax.grad(model.loss)(params, x, labels), state, params)
        params = optim.apply_updates(params, updates)
        return (params, state), params

    _, path = jax.jit(lambda p: jax.lax.scan(step, (p, optimizer.init(p)), None, length=steps))(params)
    return path


@pytest.mark.parametrize("name, ours, theirs, our_lr, optax_lr", CASES, ids=IDS)
def test_trajectory_equals_optax_float64(name, ours, theirs, our_lr, optax_lr):
    with jax.enable_x64(True):
        problem = small_network(jnp.float64)
        path = trajectory(ours(our_lr), *problem)
        reference = trajectory(theirs(our_lr), *problem)
        moved = np.abs(np.asarray(path[0]["w"][-1] - problem[0][0]["w"])).max()
        assert moved > 1e-3, "the comparison is only meaningful if the parameters move"
        assert_trees_close(path, reference, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name, ours, theirs, our_lr, optax_lr", CASES, ids=IDS)
def test_trajectory_equals_optax_float32(name, ours, theirs, our_lr, optax_lr):
    problem = small_network(jnp.float32)
    path, reference = trajectory(ours(our_lr), *problem), trajectory(theirs(optax_lr), *problem)
    assert_trees_close_to_scale(path, reference, rtol=1e-5)


# --------------------------------------------------------------------------- first steps by hand

G1 = np.array([0.5, -2.0, 3.0])
G2 = np.array([1.0, 1.0, -1.0])


def two_updates(optimizer):
    """The first two updates for gradients G1 then G2, in float64 so that the maths is exact."""
    with jax.enable_x64(True):
        params = jnp.zeros(3)
        state = optimizer.init(params)
        u1, state = optimizer.update(jnp.asarray(G1), state, params)
        u2, _ = optimizer.update(jnp.asarray(G2), state, params)
        return np.asarray(u1), np.asarray(u2)


def test_sgd_steps_by_hand():
    u1, u2 = two_updates(sgd(0.1))
    np.testing.assert_allclose(u1, -0.1 * G1, rtol=1e-12)
    np.testing.assert_allclose(u2, -0.1 * G2, rtol=1e-12)
    u1, u2 = two_updates(sgd(0.1, momentum=0.9))  # m1 = g1, m2 = g2 + 0.9 g1
    np.testing.assert_allclose(u1, -0.1 * G1, rtol=1e-12)
    np.testing.assert_allclose(u2, -0.1 * (G2 + 0.9 * G1), rtol=1e-12)
    u1, u2 = two_updates(sgd(0.1, momentum=0.9, nesterov=True))  # u = -lr (g + 0.9 m)
    np.testing.assert_allclose(u1, -0.1 * (G1 + 0.9 * G1), rtol=1e-12)
    np.testing.assert_allclose(u2, -0.1 * (G2 + 0.9 * (G2 + 0.9 * G1)), rtol=1e-12)


def test_rmsprop_steps_by_hand():
    u1, u2 = two_updates(rmsprop(0.01))  # Keras defaults: decay 0.9, eps 1e-7 inside the root
    nu1 = 0.1 * G1**2
    nu2 = 0.9 * nu1 + 0.1 * G2**2
    np.testing.assert_allclose(u1, -0.01 * G1 / np.sqrt(nu1 + 1e-7), rtol=1e-12)
    np.testing.assert_allclose(u1, -0.01 * np.sqrt(10) * np.sign(G1), rtol=1e-5)  # the famous 3.16 lr first step
    np.testing.assert_allclose(u2, -0.01 * G2 / np.sqrt(nu2 + 1e-7), rtol=1e-12)
    u1, _ = two_updates(rmsprop(0.01, eps=0.5, eps_in_sqrt=False))
    np.testing.assert_allclose(u1, -0.01 * G1 / (np.sqrt(nu1) + 0.5), rtol=1e-12)
    u1, u2 = two_updates(rmsprop(0.01, centered=True))
    mu1, mu2 = 0.1 * G1, 0.9 * 0.1 * G1 + 0.1 * G2
    np.testing.assert_allclose(u1, -0.01 * G1 / np.sqrt(nu1 - mu1**2 + 1e-7), rtol=1e-12)
    np.testing.assert_allclose(u2, -0.01 * G2 / np.sqrt(nu2 - mu2**2 + 1e-7), rtol=1e-12)
    u1, u2 = two_updates(rmsprop(0.01, momentum=0.5))  # the trace holds lr-scaled steps
    v1, v2 = -0.01 * G1 / np.sqrt(nu1 + 1e-7), -0.01 * G2 / np.sqrt(nu2 + 1e-7)
    np.testing.assert_allclose(u2, v2 + 0.5 * v1, rtol=1e-12)


def test_adagrad_and_adam_steps_by_hand():
    u1, u2 = two_updates(adagrad(0.1))
    np.testing.assert_allclose(u1, -0.1 * G1 / np.sqrt(0.1 + G1**2 + 1e-7), rtol=1e-12)
    np.testing.assert_allclose(u2, -0.1 * G2 / np.sqrt(0.1 + G1**2 + G2**2 + 1e-7), rtol=1e-12)
    u1, u2 = two_updates(adam(0.1, eps=0.0))  # bias correction makes the first step -lr sign(g)
    np.testing.assert_allclose(u1, -0.1 * np.sign(G1), rtol=1e-12)
    mu = (0.9 * 0.1 * G1 + 0.1 * G2) / (1 - 0.9**2)
    nu = (0.999 * 0.001 * G1**2 + 0.001 * G2**2) / (1 - 0.999**2)
    np.testing.assert_allclose(u2, -0.1 * mu / np.sqrt(nu), rtol=1e-12)


# --------------------------------------------------------------------------- golden numbers


def quadratic_path(optimizer, steps):
    """Iterates on f(x) = sum x^2 from x0 = [1, 2, 3] (optax's docstring problem), in the caller's precision."""

    def step(carry, _):
        params, state = carry
        updates, state = optimizer.update(2 * params, state, params)
        params = optim.apply_updates(params, updates)
        return (params, state), params

    params = jnp.array([1.0, 2.0, 3.0])
    return np.asarray(jax.lax.scan(step, (params, optimizer.init(params)), None, length=steps)[1])


# Computed with optax 0.2.8 in float64 (../shared/reference/optimizers.md, section 1.7).
GOLDEN = [  # (ours, p_1, p_100)
    (lambda: sgd(0.003), [0.994, 1.988, 2.982], [0.5478207015, 1.0956414031, 1.6434621046]),
    (lambda: sgd(0.003, momentum=0.9), [0.994, 1.988, 2.982], [0.0035136003, 0.0070272006, 0.0105408008]),
    (lambda: sgd(0.003, 0.9, nesterov=True), [0.9886, 1.9772, 2.9658], [0.0014278793, 0.0028557586, 0.0042836380]),
    (
        lambda: rmsprop(0.003, eps=1e-8),
        [0.9905131671, 1.990513167, 2.990513167],
        [0.6813819165, 1.6766120871, 2.6751949428],
    ),
    (lambda: rmsprop(0.003, eps=1e-8, centered=True), [0.99, 1.99, 2.99], [0.0917161733, 0.5477271746, 1.1687563605]),
    (
        lambda: rmsprop(0.003, eps=1e-8, momentum=0.9),
        [0.9905131671, 1.990513167, 2.990513167],
        [-0.0022679018, -0.0289361462, 0.3766689224],
    ),
    (lambda: adam(0.003), [0.997, 1.997, 2.997], [0.7166903423, 1.7079687718, 2.7052307932]),
]


@pytest.mark.parametrize(
    "ours, step1, step100",
    GOLDEN,
    ids=["sgd", "momentum", "nesterov", "rmsprop", "centered", "rmsprop_momentum", "adam"],
)
def test_golden_numbers_of_optax(ours, step1, step100):
    with jax.enable_x64(True):
        path = quadratic_path(ours(), 100)
    np.testing.assert_allclose(path[0], step1, rtol=1e-9)
    np.testing.assert_allclose(path[99], step100, rtol=1e-8, atol=1e-10)


def test_golden_adagrad_of_optax():
    with jax.enable_x64(True):
        path = quadratic_path(adagrad(1.0), 5)
    np.testing.assert_allclose(path[0], [0.0122704154, 1.0031104305, 2.0013860034], rtol=1e-8)
    assert float(np.sum(path[4] ** 2)) == pytest.approx(0.3851943, rel=1e-6)


def test_rmsprop_defaults_step_like_keras3():
    """Keras 3's own test (rmsprop_test.py): RMSprop(0.5), grads [1, 6, 7, 2] on vars [1, 2, 3, 4]."""
    optimizer = rmsprop(0.5)
    params = jnp.array([1.0, 2.0, 3.0, 4.0])
    updates, _ = optimizer.update(jnp.array([1.0, 6.0, 7.0, 2.0]), optimizer.init(params), params)
    np.testing.assert_allclose(optim.apply_updates(params, updates), [-0.5811, 0.4189, 1.4189, 2.4189], atol=1e-4)
    # Keras's docstring: RMSprop(0.1) on loss = var^2 / 2 from var = 10 gives 9.683772 after one step.
    optimizer = rmsprop(0.1)
    var = jnp.array(10.0)
    updates, _ = optimizer.update(var, optimizer.init(var), var)
    assert float(var + updates) == pytest.approx(9.683772, abs=1e-6)


def test_adagrad_defaults_step_like_keras3():
    optimizer = adagrad(0.5)  # Keras 3's adagrad_test.py: Adagrad(0.5), same grads and vars
    params = jnp.array([1.0, 2.0, 3.0, 4.0])
    updates, _ = optimizer.update(jnp.array([1.0, 6.0, 7.0, 2.0]), optimizer.init(params), params)
    np.testing.assert_allclose(optim.apply_updates(params, updates), [0.5233, 1.5007, 2.5005, 3.5061], atol=1e-4)


# --------------------------------------------------------------------------- invariants


@pytest.mark.parametrize("name, ours, theirs, our_lr, optax_lr", CASES, ids=IDS)
def test_update_keeps_state_structure_and_jit_equals_eager(name, ours, theirs, our_lr, optax_lr):
    optimizer = ours(our_lr)
    params, x, labels = small_network(jnp.float32)
    grads = jax.grad(model.loss)(params, x, labels)
    state = optimizer.init(params)
    eager_updates, eager_state = optimizer.update(grads, state, params)
    jit_updates, jit_state = jax.jit(optimizer.update)(grads, state, params)
    assert jax.tree.structure(eager_state) == jax.tree.structure(state)
    assert [leaf.dtype for leaf in jax.tree.leaves(eager_state)] == [leaf.dtype for leaf in jax.tree.leaves(state)]
    assert_trees_close(jit_updates, eager_updates, rtol=1e-6, atol=1e-8)
    assert_trees_close(jit_state, eager_state, rtol=1e-6, atol=1e-8)


def test_no_recompilation_on_the_second_step():
    traces = []
    optimizer = rmsprop(1e-3, momentum=0.9)

    @jax.jit
    def step(params, state):
        traces.append(1)
        updates, state = optimizer.update(jax.tree.map(jnp.ones_like, params), state, params)
        return optim.apply_updates(params, updates), state

    params = {"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}
    state = optimizer.init(params)
    for _ in range(3):
        params, state = step(params, state)
    assert len(traces) == 1


@pytest.mark.parametrize(
    "optimizer, steps",
    [
        (sgd(1e-3), 10_000),
        (sgd(1e-3, momentum=0.9), 10_000),
        (rmsprop(5e-3), 10_000),
        (rmsprop(5e-3, momentum=0.9), 10_000),
        (adagrad(1.0), 10_000),
        (adam(1e-1), 10_000),
    ],
    ids=["sgd", "momentum", "rmsprop", "rmsprop_momentum", "adagrad", "adam"],
)
def test_converges_on_parabola_and_rosenbrock(optimizer, steps):
    """optax's alias_test problems, settings and tolerance (3e-2)."""

    def parabola(p):
        return jnp.sum((p - jnp.array([1.0, -1.0, 1.0])) ** 2)

    def rosenbrock(p):
        return (1.0 - p[0]) ** 2 + 100.0 * (p[1] - p[0] ** 2) ** 2

    for loss, start, target in [(parabola, [-1.0, 10.0, 1.0], [1.0, -1.0, 1.0]), (rosenbrock, [0.0, 0.0], [1.0, 1.0])]:

        def step(_, carry, loss=loss):
            params, state = carry
            updates, state = optimizer.update(jax.grad(loss)(params), state, params)
            return optim.apply_updates(params, updates), state

        start = jnp.array(start)
        final, _ = jax.jit(lambda p: jax.lax.fori_loop(0, steps, step, (p, optimizer.init(p))))(start)
        np.testing.assert_allclose(final, target, rtol=3e-2, atol=3e-2)


# --------------------------------------------------------------------------- hyperparameters as data


def test_inject_hyperparams_equals_the_plain_optimizer():
    with jax.enable_x64(True):
        problem = small_network(jnp.float64)
        injected = hyperparams.inject_hyperparams(rmsprop)(learning_rate=0.01, momentum=0.5, centered=True)
        plain = rmsprop(0.01, momentum=0.5, centered=True)
        assert_trees_close(trajectory(injected, *problem), trajectory(plain, *problem), rtol=1e-12, atol=1e-14)
        state = injected.init(problem[0])
        assert set(state.hyperparams) == {"learning_rate", "decay", "eps", "momentum"}


def test_vmap_over_learning_rates_compiles_once_and_matches_single_runs():
    params, x, labels = small_network(jnp.float32)
    optimizer = hyperparams.inject_hyperparams(sgd)(learning_rate=0.1, momentum=0.9)
    rates = jnp.array([0.01, 0.05, 0.1, 0.3])
    traces = []

    @jax.jit
    def train(params, state):
        traces.append(1)

        def step(carry, _):
            params, state = carry
            updates, state = optimizer.update(jax.grad(model.loss)(params, x, labels), state, params)
            return (optim.apply_updates(params, updates), state), None

        return jax.lax.scan(step, (params, state), None, length=50)[0][0]

    state = optimizer.init(params)
    states = jax.vmap(lambda lr: state._replace(hyperparams={**state.hyperparams, "learning_rate": lr}))(rates)
    population = jax.vmap(train, in_axes=(None, 0))(params, states)
    for i, lr in enumerate(rates):
        single = trajectory(sgd(float(lr), momentum=0.9), params, x, labels, steps=50)
        last = jax.tree.map(lambda a: a[-1], single)  # the single run's final iterate
        assert_trees_close(member(population, i), last, rtol=1e-5, atol=1e-6)
    assert len(traces) == 1


def test_works_inside_optax_chain():
    with jax.enable_x64(True):
        problem = small_network(jnp.float64)
        ours = optax.chain(optax.clip_by_global_norm(0.1), rmsprop(0.01, momentum=0.5))
        theirs = optax.chain(optax.clip_by_global_norm(0.1), optax.rmsprop(0.01, eps=1e-7, momentum=0.5))
        assert_trees_close(trajectory(ours, *problem), trajectory(theirs, *problem), rtol=1e-10, atol=1e-13)


# --------------------------------------------------------------------------- schedules and names


@pytest.mark.parametrize(
    "ours, theirs",
    [
        (schedules.constant(0.3), optax.constant_schedule(0.3)),
        (schedules.exponential_decay(0.1, 7, 0.5), optax.exponential_decay(0.1, 7, 0.5)),
        (
            schedules.exponential_decay(0.1, 7, 0.5, staircase=True),
            optax.exponential_decay(0.1, 7, 0.5, staircase=True),
        ),
        (schedules.cosine_decay(0.1, 50, alpha=0.2), optax.cosine_decay_schedule(0.1, 50, alpha=0.2)),
        (schedules.linear_warmup(0.1, 25, init_value=0.01), optax.linear_schedule(0.01, 0.1, 25)),
        (
            schedules.linear_warmup(0.1, 10, after=schedules.cosine_decay(0.1, 40)),
            optax.warmup_cosine_decay_schedule(0.0, 0.1, 10, 50),
        ),
    ],
)
def test_schedules_equal_optax(ours, theirs):
    counts = jnp.arange(0, 120, dtype=jnp.int32)
    # float32 rounding of a cosine near its zero: an absolute floor of 1e-7 of the peak rate (0.1).
    np.testing.assert_allclose(jax.vmap(ours)(counts), jax.vmap(theirs)(counts), rtol=1e-6, atol=1e-8)


def test_from_name():
    params, x, labels = small_network(jnp.float32)
    for name in optim.NAMES:
        optimizer = optim.from_name(name)
        optimizer.update(params, optimizer.init(params), params)
    assert optim.default_learning_rate("sgd") == 0.01 and optim.default_learning_rate("rmsprop") == 1e-3
    adamw = optim.from_name("optax.adamw", 1e-2)
    adamw.update(params, adamw.init(params), params)
    with pytest.raises(
        ValueError,
        match="choose one of sgd, momentum, nesterov, rmsprop, adagrad, adam, adamw, nadam, nadamw, lion, muon, sched",
    ):
        optim.from_name("rmsporp")
    with pytest.raises(ValueError, match="optax has no optimizer called 'nope'"):
        optim.from_name("optax.nope")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sgd(-0.1), "learning_rate must be > 0"),
        (lambda: sgd(0.0), "learning_rate must be > 0"),
        (lambda: sgd(float("nan")), "learning_rate must be > 0"),
        (lambda: sgd(0.1, momentum=1.0), r"momentum must be in \[0, 1\)"),
        (lambda: rmsprop(decay=1.5), r"decay must be in \[0, 1\)"),
        (lambda: rmsprop(decay=-0.1), r"decay must be in \[0, 1\)"),
        (lambda: rmsprop(eps=-1e-7), "eps must be >= 0"),
        (lambda: adam(1e-3, b1=1.0), r"b1 must be in \[0, 1\)"),
        (lambda: adam(1e-3, b2=-0.5), r"b2 must be in \[0, 1\)"),
        (lambda: adam(1e-3, eps=-1.0), "eps must be >= 0"),
        (lambda: adagrad(0.1, initial_accumulator_value=-1.0), "initial_accumulator_value must be >= 0"),
        (lambda: optim.from_name("optax.adam", -1.0), "learning_rate must be > 0"),
    ],
)
def test_bad_hyperparameters_raise_value_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_non_numeric_hyperparameters_raise_type_error():
    with pytest.raises(TypeError, match="learning_rate must be a number"):
        sgd("0.1")
    with pytest.raises(TypeError, match="decay must be a number"):
        rmsprop(decay=None)
    with pytest.raises(TypeError, match="optimizer name must be a string"):
        optim.from_name(3)


def test_first_step_of_a_schedule_uses_schedule_at_zero():
    rates = []
    optimizer = sgd(lambda count: (rates.append(count), 0.5 * (count + 1))[1])
    params = jnp.zeros(2)
    state = optimizer.init(params)
    u1, state = optimizer.update(jnp.ones(2), state, params)
    u2, _ = optimizer.update(jnp.ones(2), state, params)
    assert [int(c) for c in rates] == [0, 1]
    np.testing.assert_allclose(u1, [-0.5, -0.5])
    np.testing.assert_allclose(u2, [-1.0, -1.0])
    assert math.isclose(float(optim.apply_updates(jnp.ones(()), jnp.ones(()))), 2.0)
