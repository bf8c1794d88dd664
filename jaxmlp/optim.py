"""Hand-written optimizers in optax's protocol, each proven equal to its optax twin.

An optimizer is a `GradientTransformation(init, update)`:

    state = optimizer.init(params)
    updates, state = optimizer.update(grads, state, params)   # updates carry the minus sign
    params = apply_updates(params, updates)                   # so this only adds

That is optax's protocol, so an optax optimizer works wherever these do, and these
work inside `optax.chain`. Each optimizer keeps one NamedTuple state whose fields
are named after the maths (`trace`, `nu`, `mu`, `count`); hyperparameters live in
the closure, never in the state (`jaxmlp.hyperparams.inject_hyperparams` puts them
there as arrays, when asked).

Notation: g is the gradient, t = 1, 2, ... the step, lr_t the learning rate of
step t (a float, or a schedule evaluated at t - 1, so the first step uses
schedule(0), as in optax and Keras). Every operation is elementwise.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Params = Any  # any pytree of arrays
Updates = Any  # a pytree shaped like Params
OptState = Any
Schedule = Callable[[jax.Array], jax.Array]  # step count (int32 scalar) -> learning rate


class GradientTransformation(NamedTuple):
    """A pair of pure functions, as in optax (`optax.GradientTransformation`)."""

    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]  # (grads, state, params=None) -> (updates, state)


def apply_updates(params: Params, updates: Updates) -> Params:
    """params + updates, leaf by leaf, cast back to each parameter's dtype (as optax)."""
    return jax.tree.map(lambda p, u: jnp.asarray(p + u).astype(jnp.asarray(p).dtype), params, updates)


# --------------------------------------------------------------------------- states


class SgdState(NamedTuple):
    count: jax.Array  # shape (), int32: updates made so far; drives schedules
    trace: Updates | None  # m, the momentum buffer of raw gradients; None without momentum


class RmsPropState(NamedTuple):
    count: jax.Array  # shape (), int32
    nu: Updates  # running mean of g^2
    mu: Updates | None  # running mean of g (centered only)
    trace: Updates | None  # momentum buffer of lr-scaled steps (momentum only)


class AdagradState(NamedTuple):
    count: jax.Array  # shape (), int32
    sum_of_squares: Updates  # G, the sum of every g^2 so far


class AdamState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Updates  # first moment, running mean of g
    nu: Updates  # second moment, running mean of g^2


# --------------------------------------------------------------------------- helpers


def _zeros(params: Params) -> Updates:
    return jax.tree.map(jnp.zeros_like, params)


def _count0() -> jax.Array:
    return jnp.zeros([], jnp.int32)


def _learning_rate_at(learning_rate, count):
    """lr_t: the schedule at the count *before* this step, or the constant."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _scale(step_size, tree: Updates) -> Updates:
    """step_size * tree, with the step size cast to each leaf's dtype (as optax)."""
    return jax.tree.map(lambda x: jnp.asarray(step_size, x.dtype) * x, tree)


def _check(name: str, value, ok: Callable[[float], bool], expected: str) -> None:
    """TypeError unless `value` is a number, ValueError unless `ok(value)`.

    Traced values (hyperparameters as data, inside jit or vmap) are not checked.
    """
    if isinstance(value, jax.core.Tracer):
        return
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or getattr(value, "shape", None) == ()):
        raise TypeError(f"{name} must be a number {expected}; got {value!r}")
    if not ok(float(value)):
        raise ValueError(f"{name} must be {expected}; got {value}")


def _check_learning_rate(learning_rate) -> None:
    if callable(learning_rate):  # a schedule: its values are the caller's business
        return
    _check("learning_rate", learning_rate, lambda v: v > 0, "> 0 (e.g. 1e-3), or a schedule")


def _check_decay(name: str, value) -> None:
    _check(name, value, lambda v: 0 <= v < 1, "in [0, 1)")


def _check_eps(value) -> None:
    _check("eps", value, lambda v: v >= 0, ">= 0")


def _is_zero(value) -> bool:
    """True for a concrete 0; False for anything else, traced values included."""
    return isinstance(value, numbers.Real) and value == 0


# --------------------------------------------------------------------------- optimizers


def sgd(learning_rate, momentum=0.0, nesterov: bool = False) -> GradientTransformation:
    r"""Stochastic gradient descent, with optional heavy-ball or Nesterov momentum.

        plain:     u_t = -lr_t g_t
        momentum:  m_t = g_t + momentum m_{t-1},   m_0 = 0
                   u_t = -lr_t m_t                       (heavy ball)
                   u_t = -lr_t (g_t + momentum m_t)      (nesterov=True)

    The trace m accumulates raw gradients, before the learning rate is applied.

    Exact optax equivalent: `optax.sgd(learning_rate, momentum=momentum or None, nesterov=nesterov)`.
    Keras: `SGD(learning_rate, momentum, nesterov)` keeps v = momentum v - lr g
    instead; the two agree exactly for a constant learning rate and drift apart
    under a schedule.
    """
    _check_learning_rate(learning_rate)
    _check_decay("momentum", momentum)
    use_trace = not _is_zero(momentum)

    def init(params):
        return SgdState(count=_count0(), trace=_zeros(params) if use_trace else None)

    def update(grads, state, params=None):
        del params
        direction, trace = grads, None
        if use_trace:
            trace = jax.tree.map(lambda g, m: g + momentum * m, grads, state.trace)
            direction = jax.tree.map(lambda g, m: g + momentum * m, grads, trace) if nesterov else trace
        updates = _scale(-_learning_rate_at(learning_rate, state.count), direction)
        return updates, SgdState(count=state.count + 1, trace=trace)

    return GradientTransformation(init, update)


def rmsprop(
    learning_rate=1e-3,
    decay=0.9,
    eps=1e-7,
    centered: bool = False,
    momentum=0.0,
    eps_in_sqrt: bool = True,
) -> GradientTransformation:
    r"""RMSProp (Hinton, lecture 6e). The defaults are Keras's `optimizer = "rmsprop"`.

        nu_t = decay nu_{t-1} + (1 - decay) g_t^2              nu_0 = 0
        mu_t = decay mu_{t-1} + (1 - decay) g_t                mu_0 = 0 (centered only)
        D_t  = nu_t               or  nu_t - mu_t^2  (centered)
        s_t  = g_t / sqrt(D_t + eps)      eps INSIDE the root (eps_in_sqrt=True: optax, Keras >= 2.11)
        s_t  = g_t / (sqrt(D_t) + eps)    eps outside (eps_in_sqrt=False: PyTorch, Keras <= 2.3)
        v_t  = -lr_t s_t
        u_t  = v_t                        or, with momentum:  tr_t = v_t + momentum tr_{t-1};  u_t = tr_t

    Unlike `sgd`, the momentum trace accumulates lr-scaled steps (as optax, Keras
    and jax.example_libraries do). With nu_0 = 0 the first step is
    -lr g / sqrt(0.1 g^2 + eps), about 3.16 lr sign(g).

    Exact optax equivalent: `optax.rmsprop(learning_rate, decay=decay, eps=eps,
    centered=centered, momentum=momentum or None, eps_in_sqrt=eps_in_sqrt)`; note that
    optax's default eps is 1e-8, Keras's 1e-7. Exact Keras 3 equivalent (for
    eps_in_sqrt=True): `RMSprop(learning_rate, rho=decay, momentum=momentum,
    epsilon=eps, centered=centered)`.
    """
    _check_learning_rate(learning_rate)
    _check_decay("decay", decay)
    _check_eps(eps)
    _check_decay("momentum", momentum)
    use_trace = not _is_zero(momentum)

    def init(params):
        return RmsPropState(
            count=_count0(),
            nu=_zeros(params),
            mu=_zeros(params) if centered else None,
            trace=_zeros(params) if use_trace else None,
        )

    def update(grads, state, params=None):
        del params
        nu = jax.tree.map(lambda g, n: (1 - decay) * g**2 + decay * n, grads, state.nu)
        mu, denominator = None, nu
        if centered:
            mu = jax.tree.map(lambda g, m: (1 - decay) * g + decay * m, grads, state.mu)
            denominator = jax.tree.map(lambda n, m: n - m**2, nu, mu)
        if eps_in_sqrt:
            scaled = jax.tree.map(lambda g, d: jax.lax.rsqrt(d + eps) * g, grads, denominator)
        else:
            scaled = jax.tree.map(lambda g, d: (1 / (jnp.sqrt(d) + eps)) * g, grads, denominator)
        updates, trace = _scale(-_learning_rate_at(learning_rate, state.count), scaled), None
        if use_trace:
            trace = updates = jax.tree.map(lambda v, tr: v + momentum * tr, updates, state.trace)
        return updates, RmsPropState(count=state.count + 1, nu=nu, mu=mu, trace=trace)

    return GradientTransformation(init, update)


def adagrad(learning_rate, initial_accumulator_value=0.1, eps=1e-7) -> GradientTransformation:
    r"""Adagrad (Duchi et al., 2011).

        G_t = G_{t-1} + g_t^2                       G_0 = initial_accumulator_value
        u_t = -lr_t g_t / sqrt(G_t + eps)           eps INSIDE the root; u = 0 where G_t = 0

    Exact optax equivalent: `optax.adagrad(learning_rate, initial_accumulator_value, eps)`.
    Exact Keras equivalent: `Adagrad(learning_rate, initial_accumulator_value, epsilon=eps)`.
    (`jax.example_libraries.optimizers.adagrad` starts at 0 and adds momentum 0.9 by default.)
    """
    _check_learning_rate(learning_rate)
    _check("initial_accumulator_value", initial_accumulator_value, lambda v: v >= 0, ">= 0")
    _check_eps(eps)

    def init(params):
        return AdagradState(
            count=_count0(),
            sum_of_squares=jax.tree.map(lambda p: jnp.full_like(p, initial_accumulator_value), params),
        )

    def update(grads, state, params=None):
        del params
        sum_of_squares = jax.tree.map(lambda g, s: s + g**2, grads, state.sum_of_squares)
        scaled = jax.tree.map(lambda g, s: jnp.where(s > 0, jax.lax.rsqrt(s + eps), 0.0) * g, grads, sum_of_squares)
        updates = _scale(-_learning_rate_at(learning_rate, state.count), scaled)
        return updates, AdagradState(count=state.count + 1, sum_of_squares=sum_of_squares)

    return GradientTransformation(init, update)


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    r"""Adam (Kingma & Ba, 2015, Algorithm 1).

        mu_t = b1 mu_{t-1} + (1 - b1) g_t          mu_0 = 0
        nu_t = b2 nu_{t-1} + (1 - b2) g_t^2        nu_0 = 0
        u_t  = -lr_t mu_hat / (sqrt(nu_hat) + eps),  mu_hat = mu_t / (1 - b1^t),  nu_hat = nu_t / (1 - b2^t)

    eps sits OUTSIDE the root, on the bias-corrected nu.

    Exact optax equivalent: `optax.adam(learning_rate, b1, b2, eps)`. Keras's
    `Adam(epsilon=1e-7)` adds eps to the *uncorrected* sqrt(nu) ("epsilon hat"),
    which equals this rule only for eps = 0: `Adam(learning_rate, b1, b2, epsilon=0)`.
    """
    _check_learning_rate(learning_rate)
    _check_decay("b1", b1)
    _check_decay("b2", b2)
    _check_eps(eps)

    def init(params):
        return AdamState(count=_count0(), mu=_zeros(params), nu=_zeros(params))

    def update(grads, state, params=None):
        del params
        t = state.count + 1
        mu = jax.tree.map(lambda g, m: (1 - b1) * g + b1 * m, grads, state.mu)
        nu = jax.tree.map(lambda g, n: (1 - b2) * g**2 + b2 * n, grads, state.nu)
        # 1 - b^t is computed once, in float32 at least (b^t underflows in bfloat16), then cast per leaf.
        correction1, correction2 = 1 - b1**t, 1 - b2**t
        mu_hat = jax.tree.map(lambda m: m / correction1.astype(m.dtype), mu)
        nu_hat = jax.tree.map(lambda n: n / correction2.astype(n.dtype), nu)
        scaled = jax.tree.map(lambda m, n: m / (jnp.sqrt(n) + eps), mu_hat, nu_hat)
        updates = _scale(-_learning_rate_at(learning_rate, state.count), scaled)
        return updates, AdamState(count=t, mu=mu, nu=nu)

    return GradientTransformation(init, update)


# --------------------------------------------------------------------------- by name


def _momentum(learning_rate, momentum=0.9) -> GradientTransformation:
    """`sgd` with heavy-ball momentum, 0.9 unless given: the family `momentum` names."""
    return sgd(learning_rate, momentum=momentum)


def _nesterov(learning_rate, momentum=0.9) -> GradientTransformation:
    """`sgd` with Nesterov momentum, 0.9 unless given: the family `nesterov` names."""
    return sgd(learning_rate, momentum=momentum, nesterov=True)


# name -> factory. A family's hyperparameters are its factory's numeric arguments after
# the learning rate (`hyperparams.numeric_defaults`); populations and sweeps vary them as data.
FAMILIES = {
    "sgd": sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "rmsprop": rmsprop,
    "adagrad": adagrad,
    "adam": adam,
}
NAMES = tuple(FAMILIES)
KERAS_LEARNING_RATES = {"sgd": 0.01, "momentum": 0.01, "nesterov": 0.01, "rmsprop": 1e-3, "adagrad": 1e-3, "adam": 1e-3}


def default_learning_rate(name: str) -> float:
    """Keras's default for the optimizer `name`; 1e-3 for `optax.<alias>`."""
    return KERAS_LEARNING_RATES.get(name, 1e-3)


def from_name(name: str, learning_rate=None):
    """The optimizer a name stands for, as on the command line.

    `sgd`, `momentum` (0.9), `nesterov` (0.9), `rmsprop`, `adagrad`, `adam`, each
    with Keras's default learning rate unless one is given; or `optax.<alias>`
    for any optax optimizer (e.g. `optax.adamw`), called as
    `optax.<alias>(learning_rate)` with 1e-3 by default.
    """
    if not isinstance(name, str):
        raise TypeError(f"optimizer name must be a string such as 'rmsprop'; got {name!r}")
    if learning_rate is None:
        learning_rate = default_learning_rate(name)
    if name.startswith("optax."):
        import optax

        alias = getattr(optax, name[len("optax.") :], None)
        if not callable(alias):
            raise ValueError(f"unknown optimizer {name!r}: optax has no optimizer called {name[6:]!r}")
        _check_learning_rate(learning_rate)
        return alias(learning_rate)
    if name not in FAMILIES:
        choices = ", ".join(NAMES)
        raise ValueError(f"unknown optimizer {name!r}; choose one of {choices}, or optax.<name> (e.g. optax.adamw)")
    return FAMILIES[name](learning_rate)
