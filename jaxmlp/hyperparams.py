"""Hyperparameters as data: an optimizer whose learning rate (decay, momentum, ...) lives in its state.

An optimizer of `jaxmlp.optim` keeps its hyperparameters in a closure, so each
value is a constant of the compiled program: a sweep over ten learning rates
compiles ten times. `inject_hyperparams` moves them into the state as arrays, so
one compiled program serves every value, and `jax.vmap` can train a population
of models whose learning rates differ.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxmlp.optim import GradientTransformation

OptState = Any


class InjectHyperparamsState(NamedTuple):
    hyperparams: dict[str, jax.Array]  # numeric hyperparameters as arrays: vmap over them
    inner_state: OptState


def numeric_defaults(factory: Callable[..., GradientTransformation]) -> dict[str, float]:
    """{name: default} of the factory's numeric arguments (booleans excluded): what can be data.

    numeric_defaults(rmsprop) == {"learning_rate": 1e-3, "decay": 0.9, "eps": 1e-7, "momentum": 0.0}
    """
    return {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if isinstance(p.default, numbers.Real) and not isinstance(p.default, bool)
    }


def inject_hyperparams(factory: Callable[..., GradientTransformation]):
    """Make an optimizer's numeric hyperparameters state, so they can vary without recompiling.

        opt = inject_hyperparams(rmsprop)(learning_rate=1e-3)
        state = opt.init(params)   # state.hyperparams == {"learning_rate": 1e-3, "decay": 0.9, ...}

    Every numeric argument (given or defaulted, booleans excluded) becomes a scalar
    array in `state.hyperparams`; the rest (`centered`, `nesterov`, a schedule)
    stay fixed in the closure. A population of models can then be trained with
    `jax.vmap` over states whose learning rates differ, with one compilation. The
    same idea as `optax.inject_hyperparams`. Momentum given as data always keeps a
    trace, so its value may be 0 in some members and not in others.
    """
    defaults = {
        name: p.default
        for name, p in inspect.signature(factory).parameters.items()
        if p.default is not inspect.Parameter.empty
    }

    def build(**kwargs) -> GradientTransformation:
        factory(**kwargs)  # validates the values once, with clear messages
        arguments = {**defaults, **kwargs}
        numeric = {k: v for k, v in arguments.items() if isinstance(v, numbers.Real) and not isinstance(v, bool)}
        fixed = {k: v for k, v in arguments.items() if k not in numeric}

        def init(params):
            hyperparams = {k: jnp.asarray(v) for k, v in numeric.items()}
            return InjectHyperparamsState(hyperparams, factory(**fixed, **hyperparams).init(params))

        def update(grads, state, params=None):
            inner = factory(**fixed, **state.hyperparams)
            updates, inner_state = inner.update(grads, state.inner_state, params)
            return updates, InjectHyperparamsState(state.hyperparams, inner_state)

        return GradientTransformation(init, update)

    return build
