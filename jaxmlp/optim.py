"""Hand-written optimizers in optax's protocol, each proven equal to its optax twin.

An optimizer is a `GradientTransformation(init, update)`:

    state = optimizer.init(params)
    updates, state = optimizer.update(grads, state, params)   # updates carry the minus sign
    params = apply_updates(params, updates)                   # so this only adds

That is optax's protocol, so an optax optimizer works wherever these do, and these
work inside `optax.chain`. Each optimizer keeps one NamedTuple state whose fields
are named after the maths (`trace`, `nu`, `mu`, `count`); hyperparameters live in
the closure, never in the state (`jaxmlp.hyperparams.inject_hyperparams` puts them
there as arrays, when asked). An optimizer whose evaluation point is not the point
it trains at (schedule-free) also has `eval_params(state, params)`; `fit` validates
and the scripts evaluate and save those parameters (`train.evaluation_params`).

The families: sgd (plain, momentum, Nesterov), rmsprop, adagrad, adam, adamw,
nadam, nadamw, lion, muon and schedule_free_adamw; clip_by_global_norm and chain
build pipelines such as `chain(clip_by_global_norm(1.0), adamw(1e-3))`.

Notation: g is the gradient, p the parameter, t = 1, 2, ... the step, lr_t the
learning rate of step t (a float, or a schedule evaluated at t - 1, so the first
step uses schedule(0), as in optax and Keras). Every operation is elementwise
except in Muon's Newton-Schulz iteration and the global norm.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Params = Any  # any pytree of arrays
Updates = Any  # a pytree shaped like Params
OptState = Any
Schedule = Callable[[jax.Array], jax.Array]  # step count (int32 scalar) -> learning rate


class GradientTransformation(NamedTuple):
    """A pair of pure functions, as in optax (`optax.GradientTransformation`)."""

    init: Callable[[Params], OptState]
    update: Callable[..., tuple[Updates, OptState]]  # (grads, state, params=None) -> (updates, state)
    eval_params: Callable[[OptState, Params], Params] | None = None  # (state, params) -> what to evaluate


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


class AdamState(NamedTuple):  # adam, adamw, nadam, nadamw
    count: jax.Array  # shape (), int32
    mu: Updates  # first moment, running mean of g
    nu: Updates  # second moment, running mean of g^2


class LionState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Updates  # running mean of g with rate b2; the step's sign is taken of another mean, with b1


class MuonState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Updates  # momentum: running mean of g, with beta for matrices and adam_b1 for the other leaves
    nu: Updates  # running mean of g^2 for the leaves that are not matrices (AdamW's); None for matrices


class ScheduleFreeState(NamedTuple):
    b1: jax.Array  # shape (): the interpolation weight, kept for schedule_free_eval_params (as optax)
    weight_sum: jax.Array  # shape (): sum of the averaging weights so far
    step_count: jax.Array  # shape (), int32: t, 1 before the first step
    max_lr: jax.Array  # shape (): the largest learning rate so far
    nu: Updates  # running mean of g^2, the base AdamW step's second moment (no first moment)
    z: Params  # the base sequence the AdamW steps are taken on; y, the params, sits between z and x


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


def _check_learning_rate(learning_rate, name: str = "learning_rate") -> None:
    if callable(learning_rate):  # a schedule: its values are the caller's business
        return
    _check(name, learning_rate, lambda v: v > 0, "> 0 (e.g. 1e-3), or a schedule")


def _check_decay(name: str, value) -> None:
    _check(name, value, lambda v: 0 <= v < 1, "in [0, 1)")


def _check_eps(value) -> None:
    _check("eps", value, lambda v: v >= 0, ">= 0")


def _is_zero(value) -> bool:
    """True for a concrete 0; False for anything else, traced values included."""
    return isinstance(value, numbers.Real) and value == 0


def _check_weight_decay(name: str, value) -> None:
    if callable(value):  # a schedule of the step count
        return
    _check(name, value, lambda v: 0 <= v < math.inf, ">= 0 and finite (e.g. 1e-4), or a schedule")


def _ema(new: Updates, average: Updates, decay) -> Updates:
    """(1 - decay) new + decay average, leaf by leaf: one step of an exponential moving average."""
    return jax.tree.map(lambda g, m: (1 - decay) * g + decay * m, new, average)


def _squares(tree: Updates) -> Updates:
    return jax.tree.map(lambda g: g**2, tree)


def _debiased(tree: Updates, decay, t) -> Updates:
    """tree / (1 - decay^t): bias correction. The power is computed in float32 at least (decay^t
    underflows in bfloat16), then cast to each leaf's dtype for the division."""
    correction = 1 - decay**t
    return jax.tree.map(lambda x: x / correction.astype(x.dtype), tree)


def _mean_estimate(mu: Updates, grads: Updates, decay, t, nesterov: bool) -> Updates:
    """The bias-corrected running mean: mu_t / (1 - d^t), or with Nesterov's look-ahead
    d mu_t / (1 - d^(t+1)) + (1 - d) g_t / (1 - d^t) (optax's NAdam form)."""
    if not nesterov:
        return _debiased(mu, decay, t)
    return jax.tree.map(
        lambda m, g: decay * m + (1 - decay) * g, _debiased(mu, decay, t + 1), _debiased(grads, decay, t)
    )


def _decay_mask(mask, params: Params) -> Params:
    """The mask as a tree of bools shaped like `params`: True where weight decay applies.

    `mask` is None (everywhere), a pytree of bools with the params' structure or a prefix of it
    (one bool for a whole subtree), or a function params -> such a pytree.
    """
    if mask is None:
        return jax.tree.map(lambda _: True, params)
    given = mask(params) if callable(mask) else mask
    for leaf in jax.tree.leaves(given):
        if not isinstance(leaf, (bool, np.bool_)):
            raise TypeError(f"mask leaves must be True or False (decay or not); got {leaf!r}")
    try:
        return jax.tree.map(lambda on, subtree: jax.tree.map(lambda _: bool(on), subtree), given, params)
    except ValueError:
        raise ValueError(
            f"mask must have the params' tree structure (or a prefix of it); got {jax.tree.structure(given)} "
            f"for params {jax.tree.structure(params)}"
        ) from None


def _weight_decayed(updates: Updates, params: Params, weight_decay, mask, count) -> Updates:
    """u + wd_t p where the mask is True: decoupled weight decay, applied before the learning rate.

    wd_t is the constant, or a schedule evaluated at the count before the step; a constant 0
    adds nothing (as optax, which then skips the term).
    """
    if _is_zero(weight_decay):
        return updates
    if params is None:
        raise ValueError("weight decay needs the parameters: call update(grads, state, params)")
    rate = weight_decay(count) if callable(weight_decay) else weight_decay
    return jax.tree.map(lambda u, p, on: u + rate * p if on else u, updates, params, _decay_mask(mask, params))


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
        nu = _ema(_squares(grads), state.nu, decay)
        mu, denominator = None, nu
        if centered:
            mu = _ema(grads, state.mu, decay)
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


def adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, *, nesterov: bool = False) -> GradientTransformation:
    r"""Adam (Kingma & Ba, 2015, Algorithm 1): `adamw` without weight decay; see there for the rule.

    eps sits OUTSIDE the root, on the bias-corrected nu; eps_root inside it.
    nesterov=True is `nadam`.

    Exact optax equivalent: `optax.adam(learning_rate, b1, b2, eps, eps_root, nesterov=nesterov)`.
    Keras's `Adam(epsilon=1e-7)` adds eps to the *uncorrected* sqrt(nu) ("epsilon hat"),
    which equals this rule only for eps = 0: `Adam(learning_rate, b1, b2, epsilon=0)`.
    """
    return adamw(learning_rate, b1, b2, eps, eps_root, weight_decay=0.0, nesterov=nesterov)


def adamw(
    learning_rate,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    weight_decay=1e-4,
    mask=None,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

        mu_t  = b1 mu_{t-1} + (1 - b1) g_t             mu_0 = 0
        nu_t  = b2 nu_{t-1} + (1 - b2) g_t^2           nu_0 = 0
        mu_hat = mu_t / (1 - b1^t)
               or, nesterov=True:  b1 mu_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)
        nu_hat = nu_t / (1 - b2^t)
        u_t   = -lr_t (mu_hat / (sqrt(nu_hat + eps_root) + eps) + wd p_{t-1})

    eps sits OUTSIDE the root and eps_root inside it, both on the bias-corrected nu.
    The decay is multiplied by the learning rate (PyTorch's and optax's convention,
    not the paper's schedule multiplier alone) and applies where `mask` is True: a
    pytree of bools shaped like the params (or a prefix), or a function of the params.
    `weight_decay` may be a schedule of the step count.

    Exact optax equivalent: `optax.adamw(learning_rate, b1, b2, eps, eps_root,
    weight_decay=weight_decay, mask=mask, nesterov=nesterov)`; a mask function is
    called on the params here and on the updates by optax, the same for masks of
    shapes or names. Keras 3: `AdamW` uses "epsilon hat" (see `adam`) and
    subtracts lr wd p before the step; equal for epsilon=0.
    """
    _check_learning_rate(learning_rate)
    _check_decay("b1", b1)
    _check_decay("b2", b2)
    _check_eps(eps)
    _check("eps_root", eps_root, lambda v: v >= 0, ">= 0")
    _check_weight_decay("weight_decay", weight_decay)

    def init(params):
        if not _is_zero(weight_decay):
            _decay_mask(mask, params)  # a mask that does not fit the params fails here, not later
        return AdamState(count=_count0(), mu=_zeros(params), nu=_zeros(params))

    def update(grads, state, params=None):
        t = state.count + 1
        mu, nu = _ema(grads, state.mu, b1), _ema(_squares(grads), state.nu, b2)
        mu_hat, nu_hat = _mean_estimate(mu, grads, b1, t, nesterov), _debiased(nu, b2, t)
        direction = jax.tree.map(lambda m, v: m / (jnp.sqrt(v + eps_root) + eps), mu_hat, nu_hat)
        direction = _weight_decayed(direction, params, weight_decay, mask, state.count)
        updates = _scale(-_learning_rate_at(learning_rate, state.count), direction)
        return updates, AdamState(count=t, mu=mu, nu=nu)

    return GradientTransformation(init, update)


def nadam(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0) -> GradientTransformation:
    r"""NAdam (Dozat, 2016) in optax's form: `adam(..., nesterov=True)`, without the paper's extra b2 factor.

        u_t = -lr_t (b1 mu_t / (1 - b1^(t+1)) + (1 - b1) g_t / (1 - b1^t)) / (sqrt(nu_hat + eps_root) + eps)

    Exact optax equivalent: `optax.nadam(learning_rate, b1, b2, eps, eps_root)`. Keras's
    `Nadam` follows Dozat's momentum schedule b1 (1 - 0.5 * 0.96^t) instead: another rule.
    """
    return adam(learning_rate, b1, b2, eps, eps_root, nesterov=True)


def nadamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, weight_decay=1e-4, mask=None):
    r"""NAdamW: `adamw(..., nesterov=True)`, NAdam with decoupled weight decay.

    Exact optax equivalent: `optax.nadamw(learning_rate, b1, b2, eps, eps_root, weight_decay=weight_decay,
    mask=mask)`. Keras 3's closest, `Nadam(weight_decay=wd)`, follows Dozat's momentum schedule.
    """
    return adamw(learning_rate, b1, b2, eps, eps_root, weight_decay, mask, nesterov=True)


def lion(learning_rate, b1=0.9, b2=0.99, weight_decay=1e-3, mask=None) -> GradientTransformation:
    r"""Lion (Chen et al., 2023, "Symbolic Discovery of Optimization Algorithms").

        c_t  = (1 - b1) g_t + b1 mu_{t-1}            the step's direction: an interpolation ...
        u_t  = -lr_t (sign(c_t) + wd p_{t-1})        ... of which only the sign is used
        mu_t = b2 mu_{t-1} + (1 - b2) g_t            mu_0 = 0; the memory decays more slowly (b2 > b1)

    Every coordinate moves by exactly lr (plus the decay), so Lion's learning rate is
    typically 3-10x smaller than AdamW's. No eps: there is no division.

    Exact optax equivalent: `optax.lion(learning_rate, b1, b2, weight_decay=weight_decay, mask=mask)`;
    note its default decay, 1e-3. Keras 3: `Lion(learning_rate, beta_1=b1, beta_2=b2,
    weight_decay=weight_decay)` is the same rule (its decay defaults to none).
    """
    _check_learning_rate(learning_rate)
    _check_decay("b1", b1)
    _check_decay("b2", b2)
    _check_weight_decay("weight_decay", weight_decay)

    def init(params):
        if not _is_zero(weight_decay):
            _decay_mask(mask, params)
        return LionState(count=_count0(), mu=_zeros(params))

    def update(grads, state, params=None):
        # (1.0 - b1) in Python's double, then rounded to the leaf's dtype, as optax does.
        direction = jax.tree.map(lambda g, m: jnp.sign((1.0 - b1) * g + b1 * m), grads, state.mu)
        direction = _weight_decayed(direction, params, weight_decay, mask, state.count)
        updates = _scale(-_learning_rate_at(learning_rate, state.count), direction)
        return updates, LionState(count=state.count + 1, mu=_ema(grads, state.mu, b2))

    return GradientTransformation(init, update)


MUON_NS_COEFFS = (3.4445, -4.7750, 2.0315)  # Keller Jordan's quintic: steep at 0, singular values -> ~[0.7, 1.2]


def muon(
    learning_rate,
    ns_coeffs=MUON_NS_COEFFS,
    ns_steps: int = 5,
    beta=0.95,
    eps=1e-8,
    weight_decay=0.0,
    weight_decay_mask=None,
    *,
    nesterov: bool = True,
    adam_b1=0.9,
    adam_b2=0.999,
    adam_eps_root=0.0,
    adam_weight_decay=0.0,
    adam_learning_rate=None,
    consistent_rms=None,
) -> GradientTransformation:
    r"""Muon (Jordan et al., 2024): momentum orthogonalised by Newton-Schulz, for matrices.

    Every 2-D parameter W (n_in, n_out) gets
        mu_t = beta mu_{t-1} + (1 - beta) g_t                  mu_0 = 0
        M_t  = mu_t / (1 - beta^t)
               or, nesterov=True:  beta mu_t / (1 - beta^(t+1)) + (1 - beta) g_t / (1 - beta^t)
        O_t  = NS(M_t)             approximately U V^T for M_t = U S V^T (below)
        u_t  = -lr_t (s O_t + wd W_{t-1})
               s = sqrt(max(1, n_out / n_in)),  or sqrt(max(n_in, n_out)) consistent_rms when given
    and every other leaf (the biases) gets `adamw(adam_learning_rate or learning_rate, adam_b1,
    adam_b2, eps, adam_eps_root, adam_weight_decay, nesterov=nesterov)`: NAdamW by default.

    NS, with (a, b, c) = ns_coeffs, on M^T when M has more rows than columns (so that
    X X^T is the smaller Gram matrix), transposed back after:
        X_0 = M / (||M||_F + eps)                   eps OUTSIDE the norm; ||X_0|| <= 1
        X_{k+1} = a X_k + (b A_k + c A_k A_k) X_k,   A_k = X_k X_k^T,   k < ns_steps
    An odd polynomial in X, it maps each singular value s to a s + b s^3 + c s^5 and
    keeps the singular vectors; five steps push every s in (0, 1] near 1.

    Exact optax equivalent: `optax.contrib.muon(learning_rate, ns_coeffs, ns_steps, beta, eps,
    weight_decay, weight_decay_mask, nesterov=nesterov, adam_b1=adam_b1, adam_b2=adam_b2,
    adam_eps_root=adam_eps_root, adam_weight_decay=adam_weight_decay,
    adam_learning_rate=adam_learning_rate, consistent_rms=consistent_rms)` (optax 0.2.8; its
    scaling changed in 0.2.5, 0.2.7 and 0.2.8). The matmuls run in the parameters' dtype at
    the backend's default precision, as optax's (TF32 on recent NVIDIA GPUs). Keras 3's
    `Muon(nesterov=False, epsilon=0)` is `muon(eps=0, nesterov=False, consistent_rms=0.2)` for
    matrices but plain Adam for the rest: see docs/optimizers.md.
    """
    _check_learning_rate(learning_rate)
    if adam_learning_rate is not None:
        _check_learning_rate(adam_learning_rate, "adam_learning_rate")
    coefficients = _check_ns_coeffs(ns_coeffs)
    if isinstance(ns_steps, bool) or not isinstance(ns_steps, numbers.Integral):
        raise TypeError(f"ns_steps must be an int >= 1 (Newton-Schulz iterations, e.g. 5); got {ns_steps!r}")
    if ns_steps < 1:
        raise ValueError(f"ns_steps must be an int >= 1 (Newton-Schulz iterations, e.g. 5); got {ns_steps}")
    _check_decay("beta", beta)
    _check_eps(eps)
    _check_weight_decay("weight_decay", weight_decay)
    _check_decay("adam_b1", adam_b1)
    _check_decay("adam_b2", adam_b2)
    _check("adam_eps_root", adam_eps_root, lambda v: v >= 0, ">= 0")
    _check_weight_decay("adam_weight_decay", adam_weight_decay)
    if consistent_rms is not None:
        _check("consistent_rms", consistent_rms, lambda v: v > 0, "> 0 (e.g. 0.2), or None")
    adam_rate = learning_rate if adam_learning_rate is None else adam_learning_rate

    def init(params):
        matrices = _matrices(params)
        if not _is_zero(weight_decay):
            _decay_mask(weight_decay_mask, params)
        nu = jax.tree.map(lambda p, matrix: None if matrix else jnp.zeros_like(p), params, matrices)
        return MuonState(count=_count0(), mu=_zeros(params), nu=nu)

    def update(grads, state, params=None):
        t = state.count + 1
        matrices = _matrices(grads)
        mu = jax.tree.map(lambda g, m, matrix: _ema(g, m, beta if matrix else adam_b1), grads, state.mu, matrices)
        nu = jax.tree.map(lambda g, v: None if v is None else _ema(g**2, v, adam_b2), grads, state.nu)

        def direction(g, m, v):
            if v is None:  # a matrix: Muon
                orthogonal = _newton_schulz(_mean_estimate(m, g, beta, t, nesterov), coefficients, ns_steps, eps)
                return _shape_factor(g.shape, consistent_rms) * orthogonal
            m_hat, v_hat = _mean_estimate(m, g, adam_b1, t, nesterov), _debiased(v, adam_b2, t)
            return m_hat / (jnp.sqrt(v_hat + adam_eps_root) + eps)

        directions = jax.tree.map(direction, grads, mu, nu)
        if not _is_zero(weight_decay):
            decayed = jax.tree.map(lambda on, matrix: on and matrix, _decay_mask(weight_decay_mask, grads), matrices)
            directions = _weight_decayed(directions, params, weight_decay, decayed, state.count)
        others = jax.tree.map(lambda matrix: not matrix, matrices)
        directions = _weight_decayed(directions, params, adam_weight_decay, others, state.count)
        step, adam_step = (-_learning_rate_at(rate, state.count) for rate in (learning_rate, adam_rate))
        updates = jax.tree.map(
            lambda d, matrix: jnp.asarray(step if matrix else adam_step, d.dtype) * d, directions, matrices
        )
        return updates, MuonState(count=t, mu=mu, nu=nu)

    return GradientTransformation(init, update)


def _check_ns_coeffs(ns_coeffs) -> tuple[float, float, float]:
    """ns_coeffs as three floats (a, b, c), or a TypeError / ValueError saying what it must be."""
    expected = f"ns_coeffs must be three numbers (a, b, c), e.g. {MUON_NS_COEFFS}; got {ns_coeffs!r}"
    if not isinstance(ns_coeffs, (tuple, list)):
        raise TypeError(expected)
    if len(ns_coeffs) != 3:
        raise ValueError(expected)
    for i, value in enumerate(ns_coeffs):
        _check(f"ns_coeffs[{i}]", value, math.isfinite, "finite")
    return tuple(float(c) for c in ns_coeffs)


def _matrices(tree) -> Any:
    """True for each 2-D leaf (Muon's), False for the others (AdamW's)."""
    return jax.tree.map(lambda leaf: jnp.ndim(leaf) == 2, tree)


def _newton_schulz(m: jax.Array, coefficients, steps: int, eps) -> jax.Array:
    """NS(M) of `muon`: five (steps) rounds of X <- a X + (b A + c A A) X, A = X X^T, from X = M / (||M||_F + eps)."""
    transposed = m.shape[0] > m.shape[1]
    x = m.T if transposed else m  # (r, c) with r <= c: A is (r, r)
    x = x / (jnp.linalg.norm(x) + eps)
    a, b, c = (jnp.asarray(k, x.dtype) for k in coefficients)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + (c * gram) @ gram) @ x
    return x.T if transposed else x


def _shape_factor(shape: tuple[int, int], consistent_rms) -> jax.Array:
    """Muon's scale of an (n_in, n_out) matrix: sqrt(max(1, n_out / n_in)), or sqrt(max(n_in, n_out)) rms."""
    fan_in, fan_out = shape
    if consistent_rms is None:
        return jnp.sqrt(jnp.maximum(1, fan_out / fan_in))
    return jnp.sqrt(jnp.maximum(fan_in, fan_out)) * consistent_rms


def schedule_free_adamw(
    learning_rate=0.0025,
    warmup_steps: int | None = None,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    weight_lr_power=2.0,
) -> GradientTransformation:
    r"""Schedule-free AdamW (Defazio et al., 2024, "The Road Less Scheduled"): no decay schedule needed.

    Three sequences: z takes the AdamW steps, x is a weighted average of the z's (the
    point to evaluate), and y, where the gradient is taken, lies between them. The
    params are y; the state holds z; x is recomputed from them. With t = 1, 2, ...:
        max_lr_t = max(max_lr_{t-1}, lr(t))
        c_t      = w_t / (w_1 + ... + w_t),   w_t = max_lr_t ^ weight_lr_power   (0 where 0/0)
        nu_t     = b2 nu_{t-1} + (1 - b2) g_t^2              (g_t taken at y_{t-1})
        z_t      = z_{t-1} - lr(t - 1) (g_t / (sqrt(nu_t / (1 - b2^t)) + eps) + wd y_{t-1})
        x_{t-1}  = (y_{t-1} - (1 - b1) z_{t-1}) / b1
        x_t      = (1 - c_t) x_{t-1} + c_t z_t
        y_t      = b1 x_t + (1 - b1) z_t,          u_t = y_t - y_{t-1}
    z_0 = y_0 = x_0 = the initial params. eps sits OUTSIDE the root. A schedule is
    evaluated at t for the weights and at t - 1 for the step (optax's two counters);
    with `warmup_steps` the rate rises linearly from 0 (`schedules.linear_warmup`), so
    the first step's rate is 0. b1 must be > 0: x is recovered by dividing by it.

    `eval_params` (and `schedule_free_eval_params`) give x, which is what to validate,
    test and save; `fit` and the scripts do so.

    Exact optax equivalent: `optax.contrib.schedule_free_adamw(learning_rate, warmup_steps, b1,
    b2, eps, weight_decay, weight_lr_power)` with `optax.contrib.schedule_free_eval_params`.
    Keras 3's `ScheduleFreeAdamW` weights every step alike (c_t = 1/t) and decays y rather
    than z: this rule for a constant rate without warm-up or weight decay.
    """
    if warmup_steps is not None:
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps <= 0:
            raise ValueError(f"warmup_steps must be a positive int or None; got {warmup_steps!r}")
        if callable(learning_rate):
            raise ValueError("warmup_steps needs a constant learning_rate; put the warm-up in the schedule instead")
    _check_learning_rate(learning_rate)
    _check("b1", b1, lambda v: 0 < v < 1, "in (0, 1): x = (y - (1 - b1) z) / b1")
    _check_decay("b2", b2)
    _check_eps(eps)
    _check_weight_decay("weight_decay", weight_decay)
    _check("weight_lr_power", weight_lr_power, lambda v: 0 <= v < math.inf, ">= 0 and finite")
    if warmup_steps is not None:
        from jaxmlp import schedules  # schedules imports nothing of ours; kept local to say what needs it

        learning_rate = schedules.linear_warmup(learning_rate, warmup_steps)

    def init(params):
        dtype = min((leaf.dtype for leaf in jax.tree.leaves(params)), key=lambda d: d.itemsize)
        return ScheduleFreeState(
            b1=jnp.asarray(b1, dtype),
            weight_sum=jnp.zeros([], dtype),
            step_count=jnp.ones([], jnp.int32),
            max_lr=jnp.zeros([], dtype),
            nu=_zeros(params),
            z=jax.tree.map(jnp.copy, params),
        )

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("schedule_free_adamw needs the parameters: call update(grads, state, params)")
        t = state.step_count
        rate = learning_rate
        if callable(learning_rate):
            rate = jnp.asarray(learning_rate(t), state.max_lr.dtype)
        max_lr = jnp.maximum(state.max_lr, rate)
        weight = max_lr**weight_lr_power
        weight_sum = state.weight_sum + weight
        undefined = jnp.logical_or(jnp.isnan(weight), jnp.isnan(weight_sum))
        c = jnp.where(undefined, jnp.nan, jnp.nan_to_num(weight / weight_sum, nan=0.0, posinf=jnp.inf))

        nu = _ema(_squares(grads), state.nu, b2)
        step = jax.tree.map(lambda g, v: (1 / (jnp.sqrt(v) + eps)) * g, grads, _debiased(nu, b2, t))
        step = _weight_decayed(step, params, weight_decay, None, t - 1)
        z = apply_updates(state.z, _scale(-_learning_rate_at(learning_rate, t - 1), step))
        x = jax.tree.map(lambda x, z: (1.0 - c) * x + c * z, _average(params, state.z, b1), z)
        updates = jax.tree.map(lambda x, z, y: (b1 * x + (1.0 - b1) * z) - y, x, z, params)
        return updates, ScheduleFreeState(state.b1, weight_sum, t + 1, max_lr, nu, z)

    def eval_params(state, params):  # x with the b1 the update uses: the closure's, or the injected one
        return _average(params, state.z, b1)

    return GradientTransformation(init, update, eval_params)


def schedule_free_eval_params(state: ScheduleFreeState, params: Params) -> Params:
    """x = (y - (1 - b1) z) / b1: the schedule-free average, the parameters to evaluate.

    `params` is y, what the optimizer trains; b1 is the one stored in the state at `init`
    (an array, so in float32 its last bits can differ from the x of the update and of the
    optimizer's `eval_params`, which use the b1 it was built with).
    Exact optax equivalent: `optax.contrib.schedule_free_eval_params(state, params)`.
    """
    if not isinstance(state, ScheduleFreeState):
        raise TypeError(
            f"schedule_free_eval_params needs the state of schedule_free_adamw; got {type(state).__name__} "
            "(for a chain or injected hyperparameters use the optimizer's eval_params)"
        )
    return _average(params, state.z, state.b1)


def _average(y: Params, z: Params, b1) -> Params:
    """x = (y - (1 - b1) z) / b1, from y = b1 x + (1 - b1) z."""
    return jax.tree.map(lambda y, z: (y - (1.0 - b1) * z) / b1, y, z)


# --------------------------------------------------------------------------- pipelines


def clip_by_global_norm(max_norm) -> GradientTransformation:
    r"""Scale the whole gradient down when its global norm exceeds max_norm (Pascanu et al., 2013).

        n = sqrt(sum over leaves of sum(g^2))        the norm of all parameters together
        u = g                if n < max_norm
            (g / n) max_norm otherwise               the direction kept, the length capped

    No state. Exact optax equivalent: `optax.clip_by_global_norm(max_norm)`; Keras's
    `global_clipnorm` multiplies by max_norm min(1 / n, 1 / max_norm), the same maths.
    """
    _check("max_norm", max_norm, lambda v: 0 < v < math.inf, "> 0 and finite (e.g. 1.0)")

    def init(params):
        del params
        return ()

    def update(grads, state, params=None):
        del params
        norm = global_norm(grads)
        clipped = jax.tree.map(lambda g: jnp.where(norm < max_norm, g, (g / norm.astype(g.dtype)) * max_norm), grads)
        return clipped, state

    return GradientTransformation(init, update)


def global_norm(tree) -> jax.Array:
    """sqrt of the sum of every element squared, the leaves summed left to right (as optax)."""
    return jnp.sqrt(sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(tree)))


def chain(*transforms) -> GradientTransformation:
    """Apply transforms in order, each to the previous one's updates: `chain(clip_by_global_norm(1.0), adamw(1e-3))`.

    The state is the tuple of the transforms' states; every transform sees the same
    params. At most one transform may have `eval_params` (schedule-free); the chain
    then has it too. Exact optax equivalent: `optax.chain(*transforms)`; optax's
    transforms work inside ours, and ours inside optax's.
    """
    for i, transform in enumerate(transforms):
        if not (callable(getattr(transform, "init", None)) and callable(getattr(transform, "update", None))):
            raise TypeError(f"chain takes optimizers (init and update); argument {i} is {transform!r}")
    evaluated = [i for i, t in enumerate(transforms) if getattr(t, "eval_params", None) is not None]
    if len(evaluated) > 1:
        raise ValueError(f"chain takes at most one transform with eval_params (a schedule-free one); got {evaluated}")

    def init(params):
        return tuple(transform.init(params) for transform in transforms)

    def update(grads, state, params=None):
        states = []
        for transform, inner in zip(transforms, state, strict=True):
            grads, inner = transform.update(grads, inner, params)
            states.append(inner)
        return grads, tuple(states)

    eval_params = None
    if evaluated:
        i = evaluated[0]

        def eval_params(state, params):
            return transforms[i].eval_params(state[i], params)

    return GradientTransformation(init, update, eval_params)


# --------------------------------------------------------------------------- by name


def _momentum(learning_rate, momentum=0.9) -> GradientTransformation:
    """`sgd` with heavy-ball momentum, 0.9 unless given: the family `momentum` names."""
    return sgd(learning_rate, momentum=momentum)


def _nesterov(learning_rate, momentum=0.9) -> GradientTransformation:
    """`sgd` with Nesterov momentum, 0.9 unless given: the family `nesterov` names."""
    return sgd(learning_rate, momentum=momentum, nesterov=True)


# name -> factory. A family's hyperparameters are its factory's float arguments after
# the learning rate (`hyperparams.numeric_defaults`); populations and sweeps vary them as data.
FAMILIES = {
    "sgd": sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "rmsprop": rmsprop,
    "adagrad": adagrad,
    "adam": adam,
    "adamw": adamw,
    "nadam": nadam,
    "nadamw": nadamw,
    "lion": lion,
    "muon": muon,
    "schedule_free_adamw": schedule_free_adamw,
}
NAMES = tuple(FAMILIES)
# Keras 3's default where Keras has the optimizer (keras/src/optimizers/<name>.py); NAdamW, which
# Keras lacks and optax gives no default, takes Keras's Nadam's; schedule-free AdamW optax's own.
DEFAULT_LEARNING_RATES = {
    "sgd": 0.01,
    "momentum": 0.01,
    "nesterov": 0.01,
    "rmsprop": 1e-3,
    "adagrad": 1e-3,
    "adam": 1e-3,
    "adamw": 1e-3,
    "nadam": 1e-3,
    "nadamw": 1e-3,
    "lion": 1e-3,
    "muon": 1e-3,
    "schedule_free_adamw": 0.0025,
}


def default_learning_rate(name: str) -> float:
    """The default learning rate of the family `name` (`DEFAULT_LEARNING_RATES`); 1e-3 for `optax.<alias>`."""
    return DEFAULT_LEARNING_RATES.get(name, 1e-3)


def from_name(name: str, learning_rate=None):
    """The optimizer a name stands for, as on the command line.

    `sgd`, `momentum` (0.9), `nesterov` (0.9), `rmsprop`, `adagrad`, `adam`, `adamw`,
    `nadam`, `nadamw`, `lion`, `muon`, `schedule_free_adamw`, each with its default
    learning rate (`DEFAULT_LEARNING_RATES`) unless one is given; or `optax.<alias>`
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
