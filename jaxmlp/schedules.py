"""Learning-rate schedules: plain functions from the step count to a learning rate.

A schedule is called with the number of updates made so far (an int32 scalar,
0 for the first step) and returns the learning rate of the next step, so
`optimizer(learning_rate=schedule)` uses schedule(0) first, as optax and Keras do.
Each one here equals the optax schedule named in its docstring; optax's
schedules, being plain callables, work as they are.
"""

from __future__ import annotations

import jax.numpy as jnp


def _require_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int (a number of steps); got {value!r}")


def constant(value):
    """lr(n) = value.  optax.constant_schedule(value)."""

    def schedule(count):
        return jnp.full([], value, jnp.result_type(float))

    return schedule


def exponential_decay(init_value, transition_steps, decay_rate, staircase=False):
    """lr(n) = init_value * decay_rate ** (n / transition_steps)   (n // transition_steps if staircase).

    optax.exponential_decay(init_value, transition_steps, decay_rate, staircase=staircase);
    Keras's ExponentialDecay(init_value, transition_steps, decay_rate, staircase) is the same rule.
    """
    _require_positive_int("transition_steps", transition_steps)

    def schedule(count):
        exponent = count / float(transition_steps)  # a float divisor keeps float64 under x64
        return init_value * decay_rate ** (jnp.floor(exponent) if staircase else exponent)

    return schedule


def cosine_decay(init_value, decay_steps, alpha=0.0):
    """lr(n) = init_value * ((1 - alpha) * (1 + cos(pi * min(n, decay_steps) / decay_steps)) / 2 + alpha).

    optax.cosine_decay_schedule(init_value, decay_steps, alpha); Keras's CosineDecay.
    """
    _require_positive_int("decay_steps", decay_steps)

    def schedule(count):
        progress = jnp.minimum(count, decay_steps) / float(decay_steps)
        return init_value * ((1 - alpha) * 0.5 * (1 + jnp.cos(jnp.pi * progress)) + alpha)

    return schedule


def linear_warmup(peak_value, warmup_steps, init_value=0.0, after=None):
    """Linear rise from init_value to peak_value over warmup_steps, then `after(n - warmup_steps)`.

    Without `after`, the rate stays at peak_value: optax.linear_schedule(init_value,
    peak_value, warmup_steps). With `after=cosine_decay(peak_value, decay_steps)` this
    is optax.warmup_cosine_decay_schedule(init_value, peak_value, warmup_steps,
    warmup_steps + decay_steps).
    """
    _require_positive_int("warmup_steps", warmup_steps)

    def schedule(count):
        # peak - (peak - init) * (steps left / warmup_steps): optax's rounding, so equal to its bits in float32.
        remaining = 1 - jnp.clip(count, 0, warmup_steps) / float(warmup_steps)
        rising = (init_value - peak_value) * remaining + peak_value
        if after is None:
            return rising
        return jnp.where(count < warmup_steps, rising, after(count - warmup_steps))

    return schedule
