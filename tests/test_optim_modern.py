"""The modern optimizers against optax 0.2.8: adamw, nadam, nadamw, lion, muon, schedule-free AdamW, clip, chain.

Whole trajectories of 300 steps on optax's test problems and on the seed network's real gradients (both
libraries in one compiled program per comparison: compiling dominates the cost), the schedule-free evaluation
point, the defaults, first steps by hand, jit, hyperparameters as data, bad input and names.

Every trajectory case was chosen so that a one-ulp change of every update (u (1 +- 2 eps)) moves its path by
less than a fifth of the tolerance (measured: <= 6e-14 in float64; <= 1e-5 for Muon and <= 2e-6 otherwise in
float32): the comparisons test the implementation, not the luck of rounding. Adam-like and sign steps near a
kink (a ReLU's, Rosenbrock's narrow valley, Lion's sign) can turn such a change into 1e-3 within 300 steps;
see ROSENBROCK_SCALE and SEED_CASES.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import assert_trees_close, assert_trees_close_to_scale, small_network

from jaxmlp import hyperparams, model, optim, schedules

STEPS = 300
# Muon and schedule-free live in optax.contrib, whose rules changed between releases (Muon's scaling in
# 0.2.5, 0.2.7 and 0.2.8): the equalities below are the ones of optax 0.2.8.
OPTAX_028 = pytest.mark.skipif(optax.__version__ != "0.2.8", reason="the contrib optimizers are pinned to optax 0.2.8")
RTOL = {"float64": 1e-10, "float32": 1e-5}  # elementwise optimizers
MUON_RTOL = {"float64": 1e-9, "float32": 1e-4}  # five rounds of matmuls per step


# --------------------------------------------------------------------------- problems and paths


# Rosenbrock in coordinates scaled by 0.05 (x = 0.05 p): in its own coordinates, Adam-like steps of fixed size
# (lr = 1e-2) bounce chaotically across the narrow valley, and a one-ulp change of one update grows to 1e-2 of
# the parameters within 300 steps in float64 (measured), which would make a trajectory comparison a matter of
# luck. Scaled, the same perturbation stays below 1e-14.
ROSENBROCK_SCALE = 0.05


def problems(dtype, network=True):
    """optax's alias_test problems, a wide matrix and a small MLP as one pytree, with one loss (their sum).

    - "parabola": sum (p - [1, -1, 1])^2 from [-1, 10, 1], and "rosenbrock" from [0, 0] (optax's alias_test);
    - "wide": least squares |x W - Y|^2 / 2n for a (3, 8) matrix W, wider than tall: no transposition in
      Muon's Newton-Schulz and the shape factor sqrt(8 / 3);
    - "net" (unless network=False): helpers.small_network's 6-5-3 MLP, matrices taller than wide (transposed).

    Every optimizer here acts leaf by leaf (Muon matrix by matrix, schedule-free's weights depend on the
    learning rate only), so each problem follows the path it would follow alone; only the clip's global norm
    couples them, the same way on both sides. Returns (params, loss(params, batch), batch).
    """
    rng = np.random.default_rng(1)
    wide, wide_x = rng.normal(size=(3, 8)), rng.normal(size=(32, 3))
    # The solution is 4 N(0, 1) away per element: no optimizer below gets there in 300 steps. Near it, Muon's
    # steps (of fixed spectral norm, whatever the gradient's size) would turn rounding noise into direction.
    wide_y = wide_x @ (wide + 4 * rng.normal(size=(3, 8)))
    params = {
        "parabola": jnp.array([-1.0, 10.0, 1.0], dtype),
        "rosenbrock": jnp.zeros(2, dtype),
        "wide": jnp.asarray(wide, dtype),
    }
    batch = {"wide": (jnp.asarray(wide_x, dtype), jnp.asarray(wide_y, dtype))}
    if network:
        params["net"], x, labels = small_network(dtype)
        batch["net"] = (x, labels)

    def loss(params, batch):
        p, r = params["parabola"], ROSENBROCK_SCALE * params["rosenbrock"]
        x, y = batch["wide"]
        total = (
            jnp.sum((p - jnp.array([1.0, -1.0, 1.0], p.dtype)) ** 2)
            + (1.0 - r[0]) ** 2
            + 100.0 * (r[1] - r[0] ** 2) ** 2
            + jnp.sum((x @ params["wide"] - y) ** 2) / (2 * len(x))
        )
        return total + model.loss(params["net"], *batch["net"]) if network else total

    return params, loss, batch


def paths(optimizers, params, loss, batch, steps=STEPS, every=1, evaluate=False):
    """For each optimizer, the params after every `every` steps of full-batch training: leaves (steps // every, ...).

    All optimizers run in one jitted program. Gradients are recomputed at the current params every step.
    With evaluate=True, each path is a pair (params, optimizer.eval_params(state, params)).
    """

    def run(optimizer, params, batch):
        def step(_, carry):
            params, state = carry
            updates, state = optimizer.update(jax.grad(loss)(params, batch), state, params)
            return optax.apply_updates(params, updates), state

        def chunk(carry, _):
            params, state = carry = jax.lax.fori_loop(0, every, step, carry)
            return carry, (params, optimizer.eval_params(state, params)) if evaluate else params

        return jax.lax.scan(chunk, (params, optimizer.init(params)), None, length=steps // every)[1]

    return jax.jit(lambda p, b: tuple(run(o, p, b) for o in optimizers))(params, batch)


def assert_moved_and_finite(path, start, at_least=1e-3):
    """Every top-level entry of the params moved by at_least somewhere: equal paths mean something only then."""
    for leaf in jax.tree.leaves(path):
        assert np.isfinite(np.asarray(leaf)).all(), "the trajectory diverged"
    entries = start.items() if isinstance(start, dict) else enumerate(start)
    for name, first in entries:
        moved = largest_gap(at(path[name], -1), first)
        assert moved > at_least, f"{name} moved by {moved} only"


def at(tree, step):
    """The params at one step of a path."""
    return jax.tree.map(lambda leaf: np.asarray(leaf)[step], tree)


def largest_gap(a, b) -> float:
    """max |a - b| over every element of two pytrees of one structure."""
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def with_hyperparams(optimizer, **values):
    """An injected optimizer whose state starts with these hyperparameter values instead (hyperparameters as data)."""

    def init(params):
        state = optimizer.init(params)
        assert set(values) <= set(state.hyperparams), f"not injected: {set(values) - set(state.hyperparams)}"
        replaced = {k: jnp.asarray(v, state.hyperparams[k].dtype) for k, v in values.items()}
        return state._replace(hyperparams={**state.hyperparams, **replaced})

    return optim.GradientTransformation(init, optimizer.update, optimizer.eval_params)


# --------------------------------------------------------------------------- the cases

# The schedules of a case. The float64 comparisons give optax our schedules too (optax's compute in float32
# even under x64); the float32 ones give each library its own.
OURS = {
    "warmup_cosine": schedules.linear_warmup(0.01, 30, after=schedules.cosine_decay(0.01, 270)),
    "decay": schedules.exponential_decay(0.1, 50, 0.5),
    "sf_warmup": lambda lr, steps, **kw: optax.contrib.schedule_free_adamw(schedules.linear_warmup(lr, steps), **kw),
}
OPTAX = {
    "warmup_cosine": optax.warmup_cosine_decay_schedule(0.0, 0.01, 30, 300),
    "decay": optax.exponential_decay(0.1, 50, 0.5),
    "sf_warmup": lambda lr, steps, **kw: optax.contrib.schedule_free_adamw(lr, warmup_steps=steps, **kw),
}

PREFIX_MASK = {"parabola": True, "rosenbrock": False, "net": [{"w": True, "b": False}, True], "wide": True}
SMALL_MASK = {"parabola": True, "rosenbrock": False, "wide": True}  # for problems(network=False)


def matrices_only(params):
    return jax.tree.map(lambda leaf: leaf.ndim == 2, params)


# Every Muon option away from its default, given alike to both sides (the schedules differ: ours, optax's).
MUON_OPTIONS = dict(
    ns_coeffs=(1.875, -1.25, 0.375),  # the classic quintic Newton-Schulz
    ns_steps=7,
    eps=1e-6,
    weight_decay_mask=matrices_only,
    adam_b1=0.8,
    adam_b2=0.99,
    adam_eps_root=1e-6,
    adam_weight_decay=0.05,
    adam_learning_rate=3e-3,
    consistent_rms=0.2,
)


# (id, ours, optax's twin, Muon's tolerance?), each given the schedules s. Between them: weight decay on and off,
# as a constant and as a schedule; masks as a pytree (a prefix of the params) and as a function; Nesterov on and
# off; schedules, ours and (adamw's, in float32) optax's given to ours; eps_root; Muon's
# options; a clip that triggers (schedule-free's warm-up: test_schedule_free_eval_params_equal_optax).
CASES = [
    (
        "nadamw_no_decay_eps_root",
        lambda s: optim.nadamw(1e-2, eps_root=1e-6, weight_decay=0.0),
        lambda s: optax.nadamw(1e-2, eps_root=1e-6, weight_decay=0.0),
        False,
    ),
    (
        "adamw_prefix_mask_nesterov",
        lambda s: optim.adamw(1e-2, weight_decay=0.2, mask=PREFIX_MASK, nesterov=True),
        lambda s: optax.adamw(1e-2, weight_decay=0.2, mask=PREFIX_MASK, nesterov=True),
        False,
    ),
    (
        "adamw_callable_mask_schedules",
        lambda s: optim.adamw(s["warmup_cosine"], b2=0.99, weight_decay=s["decay"], mask=matrices_only),  # optax's too
        lambda s: optax.adamw(s["warmup_cosine"], b2=0.99, weight_decay=s["decay"], mask=matrices_only),
        False,
    ),
    (
        "lion_prefix_mask",
        lambda s: optim.lion(1e-3, b1=0.8, b2=0.95, weight_decay=0.5, mask=PREFIX_MASK),
        lambda s: optax.lion(1e-3, b1=0.8, b2=0.95, weight_decay=0.5, mask=PREFIX_MASK),
        False,
    ),
    (
        "muon_heavy_ball_prefix_mask",
        lambda s: optim.muon(1e-2, beta=0.9, weight_decay=0.1, weight_decay_mask=PREFIX_MASK, nesterov=False),
        lambda s: optax.contrib.muon(1e-2, beta=0.9, weight_decay=0.1, weight_decay_mask=PREFIX_MASK, nesterov=False),
        True,
    ),
    (
        "muon_consistent_rms_options",
        lambda s: optim.muon(OURS["warmup_cosine"], weight_decay=OURS["decay"], **MUON_OPTIONS),
        lambda s: optax.contrib.muon(s["warmup_cosine"], weight_decay=s["decay"], **MUON_OPTIONS),
        True,
    ),
    (
        "schedule_free_b1_power",
        lambda s: optim.schedule_free_adamw(5e-3, b1=0.5, b2=0.99, eps=1e-6, weight_lr_power=1.0),
        lambda s: optax.contrib.schedule_free_adamw(5e-3, b1=0.5, b2=0.99, eps=1e-6, weight_lr_power=1.0),
        False,
    ),
    (
        "clip_then_adamw",  # the norm falls from 28 to 16: clipped for about 200 steps, then not (CHECKS)
        lambda s: optim.chain(optim.clip_by_global_norm(20.0), optim.adamw(1e-2, weight_decay=0.1)),
        lambda s: optax.chain(optax.clip_by_global_norm(20.0), optax.adamw(1e-2, weight_decay=0.1)),
        False,
    ),
]
CONTRIB = ("muon", "schedule_free")


def clip_triggers_then_stops(path, params, loss, batch):
    norms = jax.jit(jax.vmap(lambda p: optax.tree.norm(jax.grad(loss)(p, batch))))(path)
    assert norms[0] > 20 and norms[-1] < 20, "the clip at 20 must act at first and not at the end"


CHECKS = {"clip_then_adamw": clip_triggers_then_stops}  # what else a case's path must show


PINNED = optax.__version__ == "0.2.8"


@pytest.fixture(scope="module", params=["float64", "float32"])
def trajectories(request):
    """(dtype, (params, loss, batch), {case: (our path, optax's path)}) for every case, in one compiled program
    per dtype (a quarter less compile time than one per case)."""
    dtype = request.param
    cases = [case for case in CASES if PINNED or not case[0].startswith(CONTRIB)]
    schedules_ = OURS if dtype == "float64" else OPTAX
    with jax.enable_x64(dtype == "float64"):
        problem = problems(jnp.dtype(dtype))
        flat = paths([o for _, ours, theirs, _ in cases for o in (ours(schedules_), theirs(schedules_))], *problem)
    return dtype, problem, {case[0]: flat[2 * i : 2 * i + 2] for i, case in enumerate(cases)}


@pytest.mark.parametrize(
    "name, is_muon",
    [pytest.param(name, is_muon, marks=[OPTAX_028] if name.startswith(CONTRIB) else []) for name, *_, is_muon in CASES],
    ids=[case[0] for case in CASES],
)
def test_trajectory_equals_optax(trajectories, name, is_muon):
    dtype, (params, loss, batch), found = trajectories
    path, reference = found[name]
    with jax.enable_x64(dtype == "float64"):
        assert_moved_and_finite(path, params)
        assert_trees_close_to_scale(path, reference, rtol=(MUON_RTOL if is_muon else RTOL)[dtype])
        CHECKS.get(name, lambda *_: None)(reference, params, loss, batch)


# --------------------------------------------------------------------------- the seed network's real gradients


@pytest.fixture(scope="module")
def seed_batch(mnist):
    """The first 32 real MNIST training images, scaled to [0, 1] as the seed does, and their labels."""
    (x_train, y_train), _ = mnist
    return x_train[:32].reshape(32, 784).astype(np.float64) / 255, np.asarray(y_train[:32])


def seed_problem(seed_batch, dtype):
    """The seed's 784-512-10 MLP (Keras's initialisation) and its loss on the fixed batch."""
    x, labels = seed_batch
    params = model.init_mlp(jax.random.key(0), model.SEED_SIZES, dtype)
    return params, lambda p, b: model.loss(p, *b), (jnp.asarray(x, dtype), jnp.asarray(labels))


# The gradient's norm starts at 1.97 and is below 5e-3 after 30 steps (the batch is learnt): a clip at 0.5 acts
# on the first steps only. These run in float64: in float32, a one-ulp change of every update moves the 300-step
# path of this network by 1e-2 (lion 7e-2, schedule-free 2e-3, measured; a hidden unit's ReLU flips for one image
# a step earlier or later), so float32 equality here would hold only while both libraries round bitwise alike.
# In float64 the same change stays below 6e-14.
SEED_CASES = [
    pytest.param(lambda: optim.lion(1e-4, weight_decay=0.1), lambda: optax.lion(1e-4, weight_decay=0.1), id="lion"),
    pytest.param(
        lambda: optim.schedule_free_adamw(1e-3, warmup_steps=50, weight_decay=1e-3),
        lambda: OURS["sf_warmup"](1e-3, 50, weight_decay=1e-3),  # optax's warm-up schedule computes in float32
        id="schedule_free_warmup",
        marks=OPTAX_028,
    ),
    pytest.param(
        lambda: optim.chain(optim.clip_by_global_norm(0.5), optim.adamw(1e-3, weight_decay=0.1, mask=matrices_only)),
        lambda: optax.chain(optax.clip_by_global_norm(0.5), optax.adamw(1e-3, weight_decay=0.1, mask=matrices_only)),
        id="clip_then_adamw_callable_mask",
    ),
]


@pytest.fixture(scope="module")
def seed_trajectories(seed_batch):
    """(params, {case: (our path, optax's path)}): 300 steps in float64 on the seed's network and one batch of
    real MNIST, the params every 30 steps (the whole path of 407,050 parameters would take 1 GB a run)."""
    cases = [case for case in SEED_CASES if PINNED or not case.id.startswith(CONTRIB)]
    with jax.enable_x64(True):
        params, loss, batch = seed_problem(seed_batch, jnp.float64)
        optimizers = [o for case in cases for o in (case.values[0](), case.values[1]())]
        flat = paths(optimizers, params, loss, batch, every=30)
    return params, {case.id: flat[2 * i : 2 * i + 2] for i, case in enumerate(cases)}


@pytest.mark.parametrize(
    "name", [pytest.param(case.id, marks=case.marks) for case in SEED_CASES], ids=[case.id for case in SEED_CASES]
)
def test_seed_network_trajectory_equals_optax(seed_trajectories, name):
    params, found = seed_trajectories
    path, reference = found[name]
    assert_moved_and_finite(path, params)
    assert_trees_close_to_scale(path, reference, rtol=RTOL["float64"])


@OPTAX_028
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_seed_network_muon_equals_optax(seed_batch, dtype):
    """Muon's Newton-Schulz on the 784x512 matrix costs ~5 GFLOP a step (five rounds of three matmuls of
    512x512x784 or 512x512x512), so on this network Muon runs 10 steps in float32 and 5 in float64, not 300
    (the small problems above run 300): 3 s each. Both matrices are taller than wide (transposed); the biases
    take NAdamW. Muon's defaults."""
    with jax.enable_x64(dtype == "float64"):
        params, loss, batch = seed_problem(seed_batch, jnp.dtype(dtype))
        steps = 10 if dtype == "float32" else 5  # float64 matmuls take twice as long
        path, reference = paths([optim.muon(1e-2), optax.contrib.muon(1e-2)], params, loss, batch, steps=steps)
        assert_moved_and_finite(path, params)
        assert_trees_close_to_scale(path, reference, rtol=MUON_RTOL[dtype])


# --------------------------------------------------------------------------- schedule-free's evaluation point


def optax_schedule_free(optimizer, inner=lambda state: state):
    """optax's schedule-free optimizer with our `eval_params` slot filled by optax's own function."""
    return optim.GradientTransformation(
        optimizer.init,
        optimizer.update,
        lambda state, params: optax.contrib.schedule_free_eval_params(inner(state), params),
    )


@OPTAX_028
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("b1, clipped", [(0.37, False), (0.9, True)], ids=["b1=0.37", "b1=0.9_in_a_chain"])
def test_schedule_free_eval_params_equal_optax(b1, clipped, dtype):
    """x = (y - (1 - b1) z) / b1 at every step: ours by the optimizer's (or the chain's) eval_params and by
    schedule_free_eval_params on its state, optax's by optax.contrib.schedule_free_eval_params on its own."""
    ours = optim.schedule_free_adamw(1e-2, warmup_steps=10, b1=b1, weight_decay=0.01)
    theirs = (OURS if dtype == "float64" else OPTAX)["sf_warmup"](1e-2, 10, b1=b1, weight_decay=0.01)
    inner = (lambda state: state[1]) if clipped else (lambda state: state)
    if clipped:
        ours = optim.chain(optim.clip_by_global_norm(10.0), ours)
        theirs = optax.chain(optax.clip_by_global_norm(10.0), theirs)
    both = optim.GradientTransformation(  # x by the optimizer's eval_params and by schedule_free_eval_params
        ours.init,
        ours.update,
        lambda state, params: (ours.eval_params(state, params), optim.schedule_free_eval_params(inner(state), params)),
    )
    with jax.enable_x64(dtype == "float64"):
        params, loss, batch = problems(jnp.dtype(dtype), network=False)
        (y, (x, x_by_function)), (y_optax, x_optax) = paths(
            [both, optax_schedule_free(theirs, inner)], params, loss, batch, evaluate=True
        )
    assert_trees_close_to_scale(y, y_optax, rtol=RTOL[dtype])
    assert_trees_close_to_scale(x, x_optax, rtol=RTOL[dtype])
    assert_trees_close_to_scale(x_by_function, x_optax, rtol=RTOL[dtype])
    assert largest_gap(at(x, -1), at(y, -1)) > 1e-2, "x and y must differ for the comparison to mean something"


def test_eval_params_only_where_schedule_free():
    assert optim.adamw(1e-3).eval_params is None
    assert optim.muon(1e-3).eval_params is None
    assert optim.chain(optim.clip_by_global_norm(1.0), optim.lion(1e-4)).eval_params is None
    assert optim.chain(optim.clip_by_global_norm(1.0), optim.schedule_free_adamw()).eval_params is not None
    sgd = optim.sgd(0.1)
    assert optim.GradientTransformation(sgd.init, sgd.update).eval_params is None


# --------------------------------------------------------------------------- defaults


# What optax has and ours leaves out: dtypes, Muon's options beyond the issue's, and the `nesterov` of optax's
# nadam and nadamw (functools.partial of adam and adamw with nesterov=True; ours take no such argument).
LEFT_OUT = {"mu_dtype", "state_dtype", "adaptive", "preconditioning", "muon_weight_dimension_numbers"}


TWINS = [
    (optim.adam, optax.adam),
    (optim.adamw, optax.adamw),
    (optim.nadam, optax.nadam),
    (optim.nadamw, optax.nadamw),
    (optim.lion, optax.lion),
    (optim.muon, optax.contrib.muon),
    (optim.schedule_free_adamw, optax.contrib.schedule_free_adamw),
    (optim.schedule_free_eval_params, optax.contrib.schedule_free_eval_params),
    (optim.clip_by_global_norm, optax.clip_by_global_norm),
]


@pytest.mark.parametrize("ours, theirs", TWINS, ids=[ours.__name__ for ours, _ in TWINS])
def test_names_order_kinds_and_defaults_are_optax(ours, theirs):
    """The same arguments in the same order, keyword-only where optax's are, with the same defaults: code
    written for optax runs unchanged (lion's decay 1e-3, Muon's coefficients, schedule-free's 0.0025)."""
    left_out = LEFT_OUT | ({"nesterov"} if ours in (optim.nadam, optim.nadamw) else set())
    ours_parameters = inspect.signature(ours).parameters
    theirs_parameters = {k: p for k, p in inspect.signature(theirs).parameters.items() if k not in left_out}
    assert list(ours_parameters) == list(theirs_parameters)
    for name, parameter in ours_parameters.items():
        expected = theirs_parameters[name]
        assert (parameter.kind == inspect.Parameter.KEYWORD_ONLY) == (expected.kind == inspect.Parameter.KEYWORD_ONLY)
        assert parameter.default == expected.default, name


# --------------------------------------------------------------------------- first steps by hand (float64)

G1 = np.array([0.5, -2.0, 3.0, 1.0])
G2 = np.array([1.0, 1.0, -0.2, -0.095])
P = np.array([1.0, -2.0, 0.5, 3.0])


def two_updates(optimizer, params=P):
    """The first two updates for gradients G1 then G2, at params P both times, in float64."""
    with jax.enable_x64(True):
        params = jax.tree.map(jnp.asarray, params)
        state = optimizer.init(params)
        u1, state = optimizer.update(jax.tree.map(lambda _: jnp.asarray(G1), params), state, params)
        u2, _ = optimizer.update(jax.tree.map(lambda _: jnp.asarray(G2), params), state, params)
        return jax.tree.map(np.asarray, u1), jax.tree.map(np.asarray, u2)


def test_lion_steps_by_hand():
    """u = -lr (sign((1 - b1) g + b1 m) + wd p), then m = (1 - b2) g + b2 m: the sign of the interpolation."""
    u1, u2 = two_updates(optim.lion(0.1, weight_decay=0.1))
    np.testing.assert_allclose(u1, -0.1 * (np.sign(G1) + 0.1 * P), rtol=1e-12)
    # c2 = 0.1 G2 + 0.9 (0.01 G1) = [0.1045, 0.082, 0.007, -0.0005]: its third sign is not g's, its second and
    # fourth not those of m2 = 0.01 G2 + 0.99 m1 = [0.01495, -0.0098, 0.0277, 0.00895].
    np.testing.assert_allclose(u2, -0.1 * (np.array([1.0, 1.0, 1.0, -1.0]) + 0.1 * P), rtol=1e-12)
    _, u2 = two_updates(optim.lion(0.1, weight_decay=0.0))
    np.testing.assert_allclose(u2, -0.1 * np.array([1.0, 1.0, 1.0, -1.0]), rtol=1e-12)


def test_clip_by_global_norm_by_hand():
    grads = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([[12.0]])}  # norm sqrt(9 + 16 + 144) = 13
    below, state = optim.clip_by_global_norm(20.0).update(grads, optim.clip_by_global_norm(20.0).init(grads))
    assert_trees_close(below, grads, rtol=0)
    above, _ = optim.clip_by_global_norm(6.5).update(grads, state)
    assert_trees_close(above, {"a": np.array([1.5, 2.0]), "b": np.array([[6.0]])}, rtol=1e-7)
    assert float(optax.tree.norm(above)) == pytest.approx(6.5)


def test_adamw_decoupled_decay_by_hand():
    """u = -lr (m_hat / sqrt(v_hat) + wd p): the decay is added after Adam's scaling, then scaled by lr."""
    u1, u2 = two_updates(optim.adamw(0.1, eps=0.0, weight_decay=0.5))
    np.testing.assert_allclose(u1, -0.1 * (np.sign(G1) + 0.5 * P), rtol=1e-12)
    mu = (0.9 * 0.1 * G1 + 0.1 * G2) / (1 - 0.9**2)
    nu = (0.999 * 0.001 * G1**2 + 0.001 * G2**2) / (1 - 0.999**2)
    np.testing.assert_allclose(u2, -0.1 * (mu / np.sqrt(nu) + 0.5 * P), rtol=1e-12)
    for mask in ({"w": True, "b": False}, lambda params: {"w": True, "b": False}):
        u1, _ = two_updates(optim.adamw(0.1, eps=0.0, weight_decay=0.5, mask=mask), {"w": P, "b": P})
        np.testing.assert_allclose(u1["w"], -0.1 * (np.sign(G1) + 0.5 * P), rtol=1e-12)
        np.testing.assert_allclose(u1["b"], -0.1 * np.sign(G1), rtol=1e-12)


def test_nadam_steps_by_hand():
    """m_hat = b1 m_t / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t): the first step is -lr sign(g) (1 + 0.09 / 0.19)."""
    u1, u2 = two_updates(optim.nadam(0.1, eps=0.0))
    np.testing.assert_allclose(u1, -0.1 * np.sign(G1) * 28 / 19, rtol=1e-12)
    mu_hat = 0.9 * (0.9 * 0.1 * G1 + 0.1 * G2) / (1 - 0.9**3) + 0.1 * G2 / (1 - 0.9**2)
    nu_hat = (0.999 * 0.001 * G1**2 + 0.001 * G2**2) / (1 - 0.999**2)
    np.testing.assert_allclose(u2, -0.1 * mu_hat / np.sqrt(nu_hat), rtol=1e-12)
    u1, _ = two_updates(optim.nadamw(0.1, eps=0.0, weight_decay=0.5))
    np.testing.assert_allclose(u1, -0.1 * (np.sign(G1) * 28 / 19 + 0.5 * P), rtol=1e-12)


def test_schedule_free_steps_by_hand():
    """Step 1: c = 1, so x1 = y1 = z1 = y0 - lr sign(g1). Step 2: c = 1/2, so x2 = (z1 + z2) / 2 and
    y2 = b1 x2 + (1 - b1) z2, with z2 = z1 - lr g2 / sqrt(v_hat)."""
    b1, lr = 0.8, 0.1
    optimizer = optim.schedule_free_adamw(lr, b1=b1, eps=0.0)
    with jax.enable_x64(True):
        y0 = jnp.asarray(P)
        state = optimizer.init(y0)
        u1, state = optimizer.update(jnp.asarray(G1), state, y0)
        y1 = optim.apply_updates(y0, u1)
        u2, state = optimizer.update(jnp.asarray(G2), state, y1)
        x2 = optimizer.eval_params(state, optim.apply_updates(y1, u2))
    z1 = P - lr * np.sign(G1)
    np.testing.assert_allclose(u1, z1 - P, rtol=1e-12)
    z2 = z1 - lr * G2 / np.sqrt((0.999 * 0.001 * G1**2 + 0.001 * G2**2) / (1 - 0.999**2))
    np.testing.assert_allclose(x2, (z1 + z2) / 2, rtol=1e-12)
    np.testing.assert_allclose(u2, b1 * (z1 + z2) / 2 + (1 - b1) * z2 - z1, rtol=1e-12)


def newton_schulz(m, coefficients=(3.4445, -4.7750, 2.0315), steps=5, eps=1e-8):
    """Muon's orthogonalisation in numpy: on M^T when M is taller than wide, X = M / (|M|_F + eps), then
    X <- a X + (b A + c A A) X with A = X X^T."""
    transposed = m.shape[0] > m.shape[1]
    x = m.T if transposed else m
    x = x / (np.linalg.norm(x) + eps)
    a, b, c = coefficients
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


@pytest.mark.parametrize("consistent_rms", [None, 0.2])
def test_muon_first_step_by_hand(consistent_rms):
    """A tall (5, 3) and a wide (3, 5) matrix get -lr s NS(M), M = g (1 + beta / (1 + beta)) (Nesterov, bias
    corrected), s = sqrt(max(1, fan_out / fan_in)) with fan_in = axis 0 (1 and sqrt(5/3)), or
    sqrt(max(fan_in, fan_out)) consistent_rms; a bias gets NAdamW's first step, -lr sign(g) 28/19."""
    rng = np.random.default_rng(3)
    params = {"tall": rng.normal(size=(5, 3)), "wide": rng.normal(size=(3, 5)), "b": rng.normal(size=3)}
    grads = {"tall": rng.normal(size=(5, 3)), "wide": rng.normal(size=(3, 5)), "b": rng.normal(size=3)}
    with jax.enable_x64(True):
        optimizer = optim.muon(0.1, consistent_rms=consistent_rms)
        tree = jax.tree.map(jnp.asarray, params)
        updates, _ = jax.jit(optimizer.update)(jax.tree.map(jnp.asarray, grads), optimizer.init(tree), tree)
    for name, scale in (("tall", 1.0), ("wide", math.sqrt(5 / 3))):
        if consistent_rms is not None:
            scale = math.sqrt(5) * consistent_rms
        orthogonal = newton_schulz(grads[name] * (1 + 0.95 / 1.95))
        np.testing.assert_allclose(updates[name], -0.1 * scale * orthogonal, rtol=1e-9)
        singular_values = np.linalg.svd(orthogonal, compute_uv=False)
        assert singular_values.min() > 0.5 and singular_values.max() < 1.5  # what the quintic is for
    g = grads["b"]
    np.testing.assert_allclose(updates["b"], -0.1 * (28 / 19) * g / (np.abs(g) + 1e-8), rtol=1e-12)


# --------------------------------------------------------------------------- jit, state, hyperparameters as data

NEW_OPTIMIZERS = {
    "adamw": lambda: optim.adamw(1e-2, weight_decay=0.1, mask=matrices_only),
    "adamw_decay_schedule": lambda: optim.adamw(1e-2, weight_decay=OURS["decay"]),
    "nadamw": lambda: optim.nadamw(1e-2, weight_decay=0.1, mask=SMALL_MASK),
    "lion": lambda: optim.lion(1e-3),
    "muon": lambda: optim.muon(1e-2, weight_decay=0.1, consistent_rms=0.2),
    "schedule_free_adamw": lambda: optim.schedule_free_adamw(1e-2, warmup_steps=3),
    "clip_then_adamw": lambda: optim.chain(optim.clip_by_global_norm(1.0), optim.adamw(1e-2)),
}


@pytest.mark.parametrize("make", NEW_OPTIMIZERS.values(), ids=NEW_OPTIMIZERS.keys())
def test_jit_equals_eager_and_keeps_state_structure_and_dtypes(make):
    """In float32, where 1 - b2^t (0.003 at t = 3) keeps about 4 significant digits of b2^t and XLA's pow rounds
    differently alone and fused: Adam's steps differ by 1e-5 of their size jitted and eager (measured): rtol 1e-4."""
    optimizer = make()
    start, loss, batch = problems(jnp.float32, network=False)
    gradient = jax.jit(jax.grad(loss))
    state = optimizer.init(start)
    structure, dtypes = jax.tree.structure(state), [leaf.dtype for leaf in jax.tree.leaves(state)]
    assert jnp.dtype(jnp.float32) in dtypes and jnp.dtype(jnp.float64) not in dtypes
    params, eager_state, jit_state = start, state, state
    for _ in range(4):  # from the second step on, the state is no longer zeros
        grads = gradient(params, batch)
        eager_updates, eager_state = optimizer.update(grads, eager_state, params)
        jit_updates, jit_state = jax.jit(optimizer.update)(grads, jit_state, params)
        for new in (eager_state, jit_state):
            assert jax.tree.structure(new) == structure
            assert [leaf.dtype for leaf in jax.tree.leaves(new)] == dtypes
        assert jax.tree.structure(eager_updates) == jax.tree.structure(params)
        assert [u.dtype for u in jax.tree.leaves(eager_updates)] == [p.dtype for p in jax.tree.leaves(params)]
        # the new params rather than the updates: schedule-free's update is a difference of nearby params
        eager_params = optim.apply_updates(params, eager_updates)
        assert_trees_close_to_scale(optim.apply_updates(params, jit_updates), eager_params, rtol=1e-4)
        assert_trees_close_to_scale(jit_state, eager_state, rtol=1e-4)
        params = eager_params
    assert largest_gap(params, start) > 1e-3


# (factory, the arguments given, a hyperparameter to change in the state, its new value)
INJECTED = [
    (optim.adamw, {"learning_rate": 1e-2, "weight_decay": 0.1}, "weight_decay", 0.3),
    (optim.lion, {"learning_rate": 1e-3, "weight_decay": 0.1, "mask": SMALL_MASK}, "b1", 0.5),
    (optim.muon, {"learning_rate": 1e-2, "weight_decay": 0.1, "consistent_rms": 0.2}, "beta", 0.8),
    # b1 changed after init: the update and eval_params use the injected value (the state's stored copy, which
    # only schedule_free_eval_params reads, stays behind; populations build each member's state with its own)
    (optim.schedule_free_adamw, {"learning_rate": 1e-2, "warmup_steps": 10, "b1": 0.5}, "b1", 0.8),
]


@pytest.mark.parametrize(
    "factory, arguments, name, value", INJECTED, ids=["adamw", "lion", "muon", "schedule_free_adamw"]
)
def test_inject_hyperparams_equals_the_plain_optimizer(factory, arguments, name, value):
    """Injected with the given values it follows the plain optimizer; with one value changed in its state, the
    plain optimizer built with that value (so the state's value is the one used). eval_params too."""
    with jax.enable_x64(True):
        params, loss, batch = problems(jnp.float64, network=False)
        injected = hyperparams.inject_hyperparams(factory)(**arguments)
        assert {"learning_rate", name} <= set(injected.init(params).hyperparams)
        plain, changed = factory(**arguments), factory(**{**arguments, name: value})
        assert (injected.eval_params is None) == (plain.eval_params is None)
        evaluate = plain.eval_params is not None
        optimizers = [injected, plain, with_hyperparams(injected, **{name: value}), changed]
        path, reference, changed_path, changed_reference = paths(optimizers, params, loss, batch, evaluate=evaluate)
    if evaluate:  # pairs (params, eval params)
        (path, x), (reference, x_reference) = path, reference
        (changed_path, changed_x), (changed_reference, changed_x_reference) = changed_path, changed_reference
    rtol = 1e-9 if factory is optim.muon else 1e-12
    assert_trees_close_to_scale(path, reference, rtol=rtol)
    assert_trees_close_to_scale(changed_path, changed_reference, rtol=rtol)
    assert largest_gap(at(path, -1), at(changed_path, -1)) > 1e-3, "the changed value must change the path"
    if evaluate:
        assert_trees_close_to_scale(x, x_reference, rtol=rtol)
        assert_trees_close_to_scale(changed_x, changed_x_reference, rtol=rtol)


# --------------------------------------------------------------------------- bad input


def params_for_masks():
    return small_network(jnp.float32)[0]  # [{"w", "b"}, {"w", "b"}]


BAD = [
    ("adamw_negative_decay", lambda: optim.adamw(1e-3, weight_decay=-1e-4), ValueError, "weight_decay must be"),
    ("adamw_nan_decay", lambda: optim.adamw(1e-3, weight_decay=float("nan")), ValueError, "weight_decay must be"),
    ("adamw_inf_decay", lambda: optim.adamw(1e-3, weight_decay=math.inf), ValueError, "weight_decay must be"),
    ("adamw_string_decay", lambda: optim.adamw(1e-3, weight_decay="0.1"), TypeError, "weight_decay must be"),
    ("nadamw_negative_decay", lambda: optim.nadamw(1e-3, weight_decay=-1.0), ValueError, "weight_decay must be"),
    ("lion_negative_decay", lambda: optim.lion(1e-4, weight_decay=-1e-3), ValueError, "weight_decay must be"),
    ("lion_inf_decay", lambda: optim.lion(1e-4, weight_decay=-math.inf), ValueError, "weight_decay must be"),
    ("muon_negative_decay", lambda: optim.muon(1e-3, weight_decay=-0.1), ValueError, "weight_decay must be"),
    ("muon_nan_decay", lambda: optim.muon(1e-3, weight_decay=float("nan")), ValueError, "weight_decay must be"),
    ("muon_negative_adam_decay", lambda: optim.muon(1e-3, adam_weight_decay=-0.1), ValueError, "weight_decay must be"),
    ("sf_negative_decay", lambda: optim.schedule_free_adamw(weight_decay=-0.1), ValueError, "weight_decay must be"),
    ("sf_inf_decay", lambda: optim.schedule_free_adamw(weight_decay=math.inf), ValueError, "weight_decay must be"),
    ("ns_steps_zero", lambda: optim.muon(1e-3, ns_steps=0), ValueError, "ns_steps"),
    ("ns_steps_negative", lambda: optim.muon(1e-3, ns_steps=-5), ValueError, "ns_steps"),
    ("ns_steps_fraction", lambda: optim.muon(1e-3, ns_steps=2.5), TypeError, "ns_steps"),  # as range(2.5)
    ("ns_steps_string", lambda: optim.muon(1e-3, ns_steps="5"), TypeError, "ns_steps"),
    ("ns_coeffs_two", lambda: optim.muon(1e-3, ns_coeffs=(3.4445, -4.7750)), ValueError, "ns_coeffs"),
    ("ns_coeffs_four", lambda: optim.muon(1e-3, ns_coeffs=(1.0, 2.0, 3.0, 4.0)), ValueError, "ns_coeffs"),
    ("ns_coeffs_nan", lambda: optim.muon(1e-3, ns_coeffs=(float("nan"), 1.0, 1.0)), ValueError, "ns_coeffs"),
    ("ns_coeffs_string", lambda: optim.muon(1e-3, ns_coeffs=(3.4445, "x", 2.0315)), TypeError, "ns_coeffs"),
    ("sf_b1_zero", lambda: optim.schedule_free_adamw(b1=0.0), ValueError, r"b1 must be in \(0, 1\)"),
    ("sf_b1_one", lambda: optim.schedule_free_adamw(b1=1.0), ValueError, r"b1 must be in \(0, 1\)"),
    ("sf_b1_negative", lambda: optim.schedule_free_adamw(b1=-0.5), ValueError, r"b1 must be in \(0, 1\)"),
    ("max_norm_zero", lambda: optim.clip_by_global_norm(0.0), ValueError, "max_norm must be > 0"),
    ("max_norm_negative", lambda: optim.clip_by_global_norm(-1.0), ValueError, "max_norm must be > 0"),
    ("max_norm_nan", lambda: optim.clip_by_global_norm(float("nan")), ValueError, "max_norm must be > 0"),
    ("max_norm_string", lambda: optim.clip_by_global_norm("1.0"), TypeError, "max_norm"),
    ("adamw_negative_lr", lambda: optim.adamw(-1e-3), ValueError, "learning_rate must be > 0"),
    ("lion_zero_lr", lambda: optim.lion(0.0), ValueError, "learning_rate must be > 0"),
    ("muon_nan_lr", lambda: optim.muon(float("nan")), ValueError, "learning_rate must be > 0"),
    ("muon_negative_adam_lr", lambda: optim.muon(1e-3, adam_learning_rate=-1.0), ValueError, "adam_learning_rate"),
    ("sf_negative_lr", lambda: optim.schedule_free_adamw(-1e-3), ValueError, "learning_rate must be > 0"),
    ("nadam_b1_one", lambda: optim.nadam(1e-3, b1=1.0), ValueError, "b1"),
    ("lion_b2_above_one", lambda: optim.lion(1e-4, b2=1.5), ValueError, "b2"),
    ("muon_beta_one", lambda: optim.muon(1e-3, beta=1.0), ValueError, "beta"),
    # a mask that does not fit the params fails at init, naming the mask
    ("adamw_mask_tree", lambda: optim.adamw(1e-3, mask={"w": True}).init(params_for_masks()), ValueError, "mask"),
    (
        "adamw_mask_function",
        lambda: optim.adamw(1e-3, mask=lambda p: [True, False, True]).init(params_for_masks()),
        ValueError,
        "mask",
    ),
    ("nadamw_mask", lambda: optim.nadamw(1e-3, mask=[True]).init(params_for_masks()), ValueError, "mask"),
    ("lion_mask", lambda: optim.lion(1e-4, mask=({"w": True},)).init(params_for_masks()), ValueError, "mask"),
    (
        "muon_mask",
        lambda: optim.muon(1e-3, weight_decay=0.1, weight_decay_mask={"x": True}).init(params_for_masks()),
        ValueError,
        "mask",
    ),
]


@pytest.mark.parametrize("make, error, message", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_raises_at_construction_or_init(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_fitting_masks_and_decay_schedules_are_accepted():
    """The counterpart of the mask cases above: a full mask, a prefix mask, a function and a decay schedule."""
    params = params_for_masks()
    for optimizer in (
        optim.adamw(1e-3, mask=[{"w": True, "b": False}, True]),
        optim.lion(1e-4, mask=lambda p: [{"w": True, "b": False}] * 2),
        optim.muon(1e-3, weight_decay=schedules.exponential_decay(0.1, 10, 0.5), weight_decay_mask=[True, False]),
    ):
        updates, _ = jax.jit(optimizer.update)(params, optimizer.init(params), params)
        assert jax.tree.structure(updates) == jax.tree.structure(params)


# --------------------------------------------------------------------------- names

NEW_NAMES = ("adamw", "nadam", "nadamw", "lion", "muon", "schedule_free_adamw")


@pytest.mark.parametrize("name", NEW_NAMES)
def test_from_name(name):
    """One update from the name equals one from the factory at the default learning rate, or at a given one."""
    assert name in optim.NAMES and optim.FAMILIES[name] is getattr(optim, name)
    default = optim.default_learning_rate(name)
    assert isinstance(default, float) and 0 < default < 1
    params, loss, batch = problems(jnp.float32, network=False)
    grads = jax.grad(loss)(params, batch)

    def first_update(optimizer):
        return optimizer.update(grads, optimizer.init(params), params)[0]

    by_name = first_update(optim.from_name(name))
    assert_trees_close(by_name, first_update(getattr(optim, name)(default)), rtol=1e-6)
    assert largest_gap(by_name, jax.tree.map(jnp.zeros_like, by_name)) > 0.1 * default
    given = first_update(optim.from_name(name, 3 * default))
    assert_trees_close(given, first_update(getattr(optim, name)(3 * default)), rtol=1e-6)
    assert largest_gap(given, by_name) > 0.1 * default, "the learning rate given must be the one used"
