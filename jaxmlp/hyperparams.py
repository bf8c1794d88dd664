"""Hyperparameters as data: an optimizer whose learning rate (decay, momentum, ...) lives in its state.

An optimizer of `jaxmlp.optim` keeps its hyperparameters in a closure, so each
value is a constant of the compiled program: a sweep over ten learning rates
compiles ten times. `inject_hyperparams` moves them into the state as arrays, so
one compiled program serves every value, and `jax.vmap` can train a population
of models whose learning rates differ.
"""

from __future__ import annotations

import inspect
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
    """{name: default} of the factory's arguments whose default is a float: what can be data.

    numeric_defaults(rmsprop) == {"learning_rate": 1e-3, "decay": 0.9, "eps": 1e-7, "momentum": 0.0}
    Booleans and ints (Muon's `ns_steps`, a loop count) shape the program, so they stay fixed.
    """
    return {
        name: p.default for name, p in inspect.signature(factory).parameters.items() if isinstance(p.default, float)
    }


def inject_hyperparams(factory: Callable[..., GradientTransformation]):
    """Make an optimizer's numeric hyperparameters state, so they can vary without recompiling.

        opt = inject_hyperparams(rmsprop)(learning_rate=1e-3)
        state = opt.init(params)   # state.hyperparams == {"learning_rate": 1e-3, "decay": 0.9, ...}

    Every numeric argument (one whose default is a float, given or defaulted, or a
    required one such as sgd's learning rate, unless given a schedule) becomes a
    scalar array in `state.hyperparams`; the rest (`centered`, `nesterov`,
    `ns_steps`, a schedule) stay fixed in the closure. A population of models can
    then be trained with `jax.vmap` over states whose learning rates differ, with one
    compilation. The same idea as `optax.inject_hyperparams`. Momentum given as data
    always keeps a trace, so its value may be 0 in some members and not in others.
    The values may be traced (to `vmap` `init` over members); an optimizer's
    `eval_params` is kept, and reads the values from the state as `update` does.
    """
    parameters = inspect.signature(factory).parameters
    defaults = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    # float defaults, and the required arguments (the learning rate of sgd) when given a value rather than a schedule
    numeric_names = set(numeric_defaults(factory)) | {name for name in parameters if name not in defaults}

    def build(**kwargs) -> GradientTransformation:
        plain = factory(**kwargs)  # validates the values once, with clear messages
        arguments = {**defaults, **kwargs}
        numeric = {k: v for k, v in arguments.items() if k in numeric_names and not callable(v)}
        fixed = {k: v for k, v in arguments.items() if k not in numeric}

        def init(params):
            hyperparams = {k: jnp.asarray(v) for k, v in numeric.items()}
            return InjectHyperparamsState(hyperparams, factory(**fixed, **hyperparams).init(params))

        def update(grads, state, params=None):
            inner = factory(**fixed, **state.hyperparams)
            updates, inner_state = inner.update(grads, state.inner_state, params)
            return updates, InjectHyperparamsState(state.hyperparams, inner_state)

        def eval_params(state, params):
            return factory(**fixed, **state.hyperparams).eval_params(state.inner_state, params)

        return GradientTransformation(init, update, eval_params if getattr(plain, "eval_params", None) else None)

    return build
