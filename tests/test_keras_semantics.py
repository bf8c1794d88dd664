"""Keras 3.15.1's AdamW, Nadam, Lion, Muon, ScheduleFreeAdamW and global_clipnorm, against ours.

Keras is not installed: each Keras update rule is written below as a small numpy float64 reference, read
from keras-team/keras tag v3.15.1 (file and lines cited on each; the optimizer files are unchanged on
master as of 2026-08). The references are checked against the numbers of Keras's own tests first. Then
each optimizer of ours runs 50 steps of a least-squares problem (a 4x3 matrix and a bias, gradients
recomputed at each iterate) beside its Keras reference: where one configuration makes the maths the same,
the trajectories agree to rtol 1e-10; where they differ, the test measures by how much.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmlp import optim as ours

STEPS = 50

# Keras 3.15.1's defaults (documentation only; nothing below tests them). From the __init__ signatures in
# keras/src/optimizers/{adamw,nadam,lion,muon,schedule_free_adamw}.py. weight_decay None = no decay.
KERAS_DEFAULTS = {
    "adamw": dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=0.004),  # adamw.py L53-60
    "nadam": dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7, weight_decay=None),  # nadam.py L39-45
    "lion": dict(learning_rate=1e-3, beta_1=0.9, beta_2=0.99, weight_decay=None),  # lion.py L44-49
    "muon": dict(  # muon.py L83-110; epsilon is the Adam branch's, the Newton-Schulz eps is a fixed 1e-7
        learning_rate=1e-3,
        momentum=0.95,
        nesterov=True,
        ns_steps=5,
        rms_rate=0.2,
        epsilon=1e-7,
        weight_decay=0.004,
        adam_beta_1=0.9,
        adam_beta_2=0.999,
        adam_weight_decay=0.004,
        adam_lr_ratio=1,
    ),
    "schedule_free_adamw": dict(  # schedule_free_adamw.py L56-63
        learning_rate=0.0025, beta_1=0.9, beta_2=0.999, epsilon=1e-8, warmup_steps=0, weight_decay=None
    ),
}


@pytest.fixture(autouse=True)
def float64():
    with jax.enable_x64(True):
        yield


# --------------------------------------------------------------------------- the problem

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(8, 4)), RNG.normal(size=(8, 3))
W0, B0 = RNG.normal(size=(4, 3)), RNG.normal(size=3)


def lsq_grad(w, b, scale=1.0):
    """Gradient of scale * |X w + b - Y|^2 / (2 * 8), for a (4, 3) matrix w and a (3,) bias b."""
    r = X @ w + b - Y
    return scale * (X.T @ r) / 8, scale * r.sum(0) / 8


def matrix_grad(w, scale=1.0):
    """The same problem with the bias fixed at B0 and the matrix alone trained."""
    return (lsq_grad(w, B0, scale)[0],)


def run_ours(optimizer, params=(W0, B0), grad=lsq_grad, steps=STEPS):
    """(p_1, ..., p_steps) and the final state of ours, each gradient taken at the current iterate."""

    @jax.jit
    def step(p, state, g):
        updates, state = optimizer.update(g, state, p)
        return ours.apply_updates(p, updates), state

    p = tuple(jnp.asarray(a, jnp.float64) for a in params)
    state, path = optimizer.init(p), []
    for _ in range(steps):
        p, state = step(p, state, grad(*(np.asarray(a) for a in p)))
        path.append(tuple(np.asarray(a) for a in p))
    return path, state


def run_keras(reference, params=(W0, B0), grad=lsq_grad, steps=STEPS):
    """(p_1, ..., p_steps) of a Keras reference below, each gradient taken at the current iterate."""
    p, path = [np.array(a, np.float64) for a in params], []
    for _ in range(steps):
        p = reference.apply(grad(*p), p)
        path.append(tuple(p))
    return path


def rel_diff(path, other):
    """max |a - b| / max |b| over every iterate, the largest over the leaves: 0 for equal trajectories."""
    return max(
        np.abs(np.stack(a) - np.stack(b)).max() / np.abs(np.stack(b)).max() for a, b in zip(zip(*path), zip(*other))
    )


def moved(path, params=(W0, B0)):
    """How far the last iterate is from the start, relative to the start's scale."""
    return max(np.abs(a - p).max() / np.abs(p).max() for a, p in zip(path[-1], params))


# --------------------------------------------------------------------------- Keras 3.15.1 in numpy


def keras_clip_by_global_norm(grads, clip_norm):
    # base_optimizer.py L1181-1197: the norm of the stacked per-tensor sums of squares, then a *multiplication*
    # by clip * min(1 / n, 1 / clip) (c * (1 / c) when not clipping), plus (n - n) to turn inf/NaN into NaN.
    with np.errstate(divide="ignore", invalid="ignore"):
        n = np.sqrt(np.sum([np.sum(np.square(g)) for g in grads]))
        scale = clip_norm * np.minimum(1.0 / n, 1.0 / clip_norm) + (n - n)
    return [g * scale for g in grads]


class Keras:
    """BaseOptimizer.apply (base_optimizer.py L466-533, L586-594; backend/jax/optimizer.py L78-85).

    Per call: clip the gradients (global_clipnorm, L870-881); decay every variable on its own,
    p <- p - p * wd * lr, with lr the schedule at `iterations` (L952-959, L777-781); then one update_step
    per variable with the same lr; then iterations += 1.
    """

    def __init__(self, learning_rate, weight_decay=None, global_clipnorm=None):
        self.learning_rate, self.weight_decay, self.global_clipnorm = learning_rate, weight_decay, global_clipnorm
        self.iterations, self.built = 0, False

    def apply(self, grads, variables):
        if not self.built:
            self.build(variables)
            self.built = True
        grads = [np.asarray(g, np.float64) for g in grads]
        if self.global_clipnorm:
            grads = keras_clip_by_global_norm(grads, self.global_clipnorm)
        lr = self.learning_rate(self.iterations) if callable(self.learning_rate) else self.learning_rate
        variables = [self.decay(i, v, lr) for i, v in enumerate(variables)]
        self.before_steps()
        variables = [self.update_step(i, g, v, lr) for i, (g, v) in enumerate(zip(grads, variables))]
        self.iterations += 1
        return variables

    def decay(self, i, v, lr):
        return v if self.weight_decay is None else v - v * self.weight_decay * lr

    def before_steps(self):
        pass

    def zeros(self, variables):
        return [np.zeros_like(v) for v in variables]


class KerasAdamW(Keras):
    """adam.py L102-137 (AdamW = Adam with weight_decay, adamw.py): "epsilon hat" outside the uncorrected sqrt(v)."""

    def __init__(self, learning_rate, weight_decay=0.004, beta_1=0.9, beta_2=0.999, epsilon=1e-7, **kw):
        super().__init__(learning_rate, weight_decay, **kw)
        self.b1, self.b2, self.eps = beta_1, beta_2, epsilon

    def build(self, variables):
        self.m, self.v = self.zeros(variables), self.zeros(variables)

    def update_step(self, i, g, p, lr):
        t = self.iterations + 1
        alpha = lr * math.sqrt(1 - self.b2**t) / (1 - self.b1**t)
        self.m[i] = self.m[i] + (g - self.m[i]) * (1 - self.b1)
        self.v[i] = self.v[i] + (g * g - self.v[i]) * (1 - self.b2)
        return p - self.m[i] * alpha / (np.sqrt(self.v[i]) + self.eps)


class KerasNadam(Keras):
    """nadam.py L95-146: Dozat's momentum schedule u_t = b1 (1 - 0.5 * 0.96^t), u_prod_t = u_1 ... u_t.

    m_hat = u_{t+1} m / (1 - u_prod_t u_{t+1}) + (1 - u_t) g / (1 - u_prod_t); p -= lr m_hat / (sqrt(v_hat) + eps),
    eps outside the *bias-corrected* sqrt (unlike Keras's Adam). `schedule_decay` is 0.96 in Keras (a constant
    there); 0 switches the schedule off (u_t = b1), which no Keras argument can do.
    """

    def __init__(self, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-7, schedule_decay=0.96, **kw):
        super().__init__(learning_rate, **kw)
        self.b1, self.b2, self.eps, self.decay_rate = beta_1, beta_2, epsilon, schedule_decay
        self.u_product = 1.0

    def u(self, t):
        return self.b1 * (1.0 - 0.5 * self.decay_rate**t)

    def build(self, variables):
        self.m, self.v = self.zeros(variables), self.zeros(variables)

    def before_steps(self):  # L95-106, once per apply, before the per-variable steps
        self.u_product = self.u_product * self.u(self.iterations + 1)

    def update_step(self, i, g, p, lr):
        t = self.iterations + 1
        u_t, u_next = self.u(t), self.u(t + 1)
        self.m[i] = self.m[i] + (g - self.m[i]) * (1 - self.b1)
        self.v[i] = self.v[i] + (g * g - self.v[i]) * (1 - self.b2)
        m_hat = u_next * self.m[i] / (1 - self.u_product * u_next) + (1 - u_t) * g / (1 - self.u_product)
        v_hat = self.v[i] / (1 - self.b2**t)
        return p - m_hat * lr / (np.sqrt(v_hat) + self.eps)


class KerasLion(Keras):
    """lion.py L96-121: p -= lr sign(b1 m + (1 - b1) g); then m = b2 m + (1 - b2) g. weight_decay None by default."""

    def __init__(self, learning_rate, beta_1=0.9, beta_2=0.99, **kw):
        super().__init__(learning_rate, **kw)
        self.b1, self.b2 = beta_1, beta_2

    def build(self, variables):
        self.m = self.zeros(variables)

    def update_step(self, i, g, p, lr):
        p = p - lr * np.sign(self.m[i] * self.b1 + g * (1.0 - self.b1))
        self.m[i] = self.m[i] * self.b2 + g * (1.0 - self.b2)
        return p


def keras_newton_schulz(x, steps=5, a=3.4445, b=-4.7750, c=2.0315, eps=1e-7):
    """muon.py L260-291: transpose if rows > cols; x / (|x|_F + 1e-7); x <- a x + (b A + c A A) x, A = x x^T."""
    transposed = x.shape[0] > x.shape[1]
    x = x.T if transposed else x
    x = x / (np.linalg.norm(x) + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


class KerasMuon(Keras):
    """muon.py: 2-D variables get Muon (L141-151; Keras also sends variables whose path contains "embedding"
    and those matching `exclude_layers` to Adam), everything else Keras's Adam with epsilon hat (L208-236).

    Muon (L198-206): m = momentum m + g (no damping, no bias correction); D = g + momentum m (nesterov) or m;
    p -= lr NS(D) sqrt(max(rows, cols)) rms_rate (lr_adjust, L246-258; rms_rate None: no factor).
    Decay (L293-305): weight_decay on Muon variables, adam_weight_decay on Adam ones, both times lr.
    `ns_eps` is Keras's fixed 1e-7 in Newton-Schulz; 0 is for showing the rest equals ours exactly.
    """

    def __init__(
        self,
        learning_rate,
        adam_beta_1=0.9,
        adam_beta_2=0.999,
        adam_weight_decay=0.004,
        epsilon=1e-7,
        weight_decay=0.004,
        adam_lr_ratio=1,
        momentum=0.95,
        ns_steps=5,
        nesterov=True,
        rms_rate=0.2,
        ns_eps=1e-7,
        **kw,
    ):
        super().__init__(learning_rate, weight_decay, **kw)
        self.adam = KerasAdamW(learning_rate, adam_weight_decay, adam_beta_1, adam_beta_2, epsilon)
        self.adam_weight_decay, self.adam_lr_ratio = adam_weight_decay, adam_lr_ratio
        self.momentum, self.ns_steps, self.nesterov, self.rms_rate, self.ns_eps = (
            momentum,
            ns_steps,
            nesterov,
            rms_rate,
            ns_eps,
        )

    def build(self, variables):
        self.is_muon = [v.ndim == 2 for v in variables]
        self.m = self.zeros(variables)
        self.adam.build(variables)

    def decay(self, i, v, lr):
        wd = self.weight_decay if self.is_muon[i] else self.adam_weight_decay
        return v if wd is None else v - v * wd * lr

    def update_step(self, i, g, p, lr):
        if not self.is_muon[i]:
            self.adam.iterations = self.iterations
            return self.adam.update_step(i, g, p, lr * self.adam_lr_ratio)
        self.m[i] = self.m[i] + (g + self.m[i] * (self.momentum - 1))
        direction = g + self.momentum * self.m[i] if self.nesterov else self.m[i]
        update = lr * keras_newton_schulz(direction, self.ns_steps, eps=self.ns_eps)
        if self.rms_rate is not None:
            update = update * math.sqrt(max(update.shape)) * self.rms_rate
        return p - update


class KerasScheduleFreeAdamW(Keras):
    """schedule_free_adamw.py L116-181. The variable is y; z ("momentum") starts at y.

    lr_t = lr min(t / warmup, 1) when warmup_steps > 0; v = b2 v + (1 - b2) g^2;
    z' = z - lr_t g / (sqrt(v / (1 - b2^t)) + eps); x = (y - (1 - b1) z) / b1; x' = (1 - 1/t) x + z' / t;
    y' = (1 - b1) z' + b1 x'. Weight decay comes from BaseOptimizer: y <- y - y wd lr *before* this step,
    with the lr before warm-up.
    """

    def __init__(self, learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8, warmup_steps=0, **kw):
        super().__init__(learning_rate, **kw)
        self.b1, self.b2, self.eps, self.warmup_steps = beta_1, beta_2, epsilon, warmup_steps

    def build(self, variables):
        self.z, self.v = [np.array(v) for v in variables], self.zeros(variables)

    def update_step(self, i, g, y, lr):
        t = self.iterations + 1
        if self.warmup_steps > 0:
            lr = lr * min(t / self.warmup_steps, 1.0)
        z_old = self.z[i]
        self.v[i] = self.v[i] + (g * g - self.v[i]) * (1 - self.b2)
        self.z[i] = z_old - lr * g / (np.sqrt(self.v[i] / (1 - self.b2**t)) + self.eps)
        x_old = (y - (1 - self.b1) * z_old) / self.b1
        x = (1 - 1.0 / t) * x_old + (1.0 / t) * self.z[i]
        return (1 - self.b1) * self.z[i] + self.b1 * x

    def eval_params(self, variables):
        """x = (y - (1 - b1) z) / b1: what Keras does not compute for evaluation (it evaluates at y)."""
        return [(y - (1 - self.b1) * z) / self.b1 for y, z in zip(variables, self.z)]


# --------------------------------------------------------------------------- the references vs Keras's tests


def keras_golden(reference, golden):
    """Keras's golden-test protocol: a first step with gradient 0.01, then steps with 0.1, 0.2, ..., 1.0."""
    x = [np.ones(10)]
    x = reference.apply([np.full(10, 0.01)], x)
    for row in golden:
        np.testing.assert_allclose(x[0], row, rtol=5e-4, atol=5e-4)
        x = reference.apply([np.arange(1, 11) / 10], x)


def test_references_reproduce_keras_own_test_numbers():
    """The numpy references give the numbers of Keras 3.15.1's tests (*_test.py), at Keras's tolerances."""
    grads, start = [np.array([1.0, 6.0, 7.0, 2.0])], [np.array([1.0, 2.0, 3.0, 4.0])]
    # adamw_test.py test_single_step, test_weight_decay, test_correctness_with_golden
    np.testing.assert_allclose(KerasAdamW(0.5).apply(grads, start)[0], [0.4980, 1.4960, 2.494, 3.492], atol=1e-4)
    var = [np.array(2.0)]
    for _ in range(3):  # test_weight_decay: three fresh AdamW(1.0) steps on var1 with a zero gradient
        var = KerasAdamW(1.0).apply([np.zeros(())], var)
    assert var[0] == pytest.approx(1.9760959, abs=1e-6)
    adamw_golden = [
        [0.4998] * 10,
        [0.2486, 0.2475, 0.2463, 0.2451, 0.244, 0.2428, 0.2417, 0.2405, 0.2394, 0.2382],
        [0.1223, 0.1198, 0.1174, 0.1149, 0.1124, 0.11, 0.1075, 0.1051, 0.1027, 0.1003],
        [0.0586, 0.0549, 0.0512, 0.0475, 0.0439, 0.0402, 0.0366, 0.033, 0.0294, 0.0258],
        [0.0263, 0.0215, 0.0167, 0.012, 0.0073, 0.0026, -0.0021, -0.0067, -0.0113, -0.0159],
    ]
    keras_golden(KerasAdamW(1.0, weight_decay=0.5, epsilon=2), adamw_golden)
    # nadam_test.py test_single_step, test_correctness_with_golden
    np.testing.assert_allclose(KerasNadam(0.5).apply(grads, start)[0], [0.4686, 1.4686, 2.4686, 3.4686], atol=1e-4)
    nadam_golden = [
        [0.4281] * 10,
        [-0.1738, -0.1731, -0.1726, -0.1723, -0.1721, -0.172, -0.1719, -0.1718, -0.1718, -0.1717],
        [-0.7115, -0.7103, -0.7096, -0.7092, -0.709, -0.7088, -0.7086, -0.7085, -0.7085, -0.7084],
        [-1.2335, -1.2322, -1.2313, -1.2309, -1.2306, -1.2304, -1.2302, -1.2301, -1.23, -1.2299],
        [-1.7492, -1.7478, -1.7469, -1.7464, -1.7461, -1.7459, -1.7457, -1.7456, -1.7455, -1.7454],
    ]
    keras_golden(KerasNadam(0.5, beta_1=0.5, beta_2=0.67, epsilon=1e-5), nadam_golden)
    # lion_test.py test_single_step, test_correctness_with_golden
    np.testing.assert_allclose(KerasLion(0.5).apply(grads, start)[0], [0.5, 1.5, 2.5, 3.5], atol=1e-4)
    keras_golden(KerasLion(1e-3), [[0.999] * 10, [0.998] * 10, [0.997] * 10, [0.996] * 10, [0.995] * 10])
    # muon_test.py test_Newton_Schulz, test_muon_single_step (update_step alone, lr 0.5), test_lr_adjust_2d
    ns = keras_newton_schulz(np.array([[0.2499, 0.9105], [0.2655, 0.8824]]))
    np.testing.assert_allclose(ns, [[-0.4422, 0.6457], [0.7285, 0.2968]], atol=1e-3)
    muon = KerasMuon(0.5, weight_decay=0)
    muon.build([np.zeros((2, 2))])
    stepped = muon.update_step(0, np.array([[1.0, 6.0], [7.0, 2.0]]), np.array([[1.0, 2.0], [3.0, 4.0]]), 0.5)
    np.testing.assert_allclose(stepped, [[0.988775, 1.887053], [2.873428, 3.97035]], atol=1e-5)  # Keras: 1e-2


# --------------------------------------------------------------------------- AdamW


@pytest.mark.parametrize("learning_rate", [0.02, lambda count: 0.02 * 0.95**count], ids=["constant", "schedule"])
def test_adamw_equals_keras_with_epsilon_zero(learning_rate):
    """Keras AdamW(lr, weight_decay=wd, epsilon=0) = ours adamw(lr, eps=0, weight_decay=wd): both decay by lr_t wd p."""
    keras = run_keras(KerasAdamW(learning_rate, weight_decay=0.1, epsilon=0.0))
    path, _ = run_ours(ours.adamw(learning_rate, eps=0.0, weight_decay=0.1))
    assert moved(path) > 0.1
    assert rel_diff(path, keras) < 1e-10


def test_adamw_epsilon_hat_is_a_step_dependent_epsilon():
    """Keras's epsilon hat e equals ours eps = e / sqrt(1 - b2^t): at step 1 eps = e / sqrt(1 - b2) is exact,
    over 50 steps no constant eps is. Default 1e-7 in both: with gradients ~1 Keras moves 7e-7 less (negligible),
    with gradients ~1e-6 24% less."""
    one_step = dict(params=(W0, B0), grad=lambda w, b: lsq_grad(w, b, 1e-5), steps=1)
    keras = run_keras(KerasAdamW(0.01, weight_decay=0.0, epsilon=1e-5), **one_step)
    path, _ = run_ours(ours.adamw(0.01, eps=1e-5 / math.sqrt(1 - 0.999), weight_decay=0.0), **one_step)
    assert rel_diff(path, keras) < 1e-12
    # Default epsilons (1e-7 both), decay 0: negligible for gradients ~1, decisive for gradients ~1e-6.
    for scale, low, high in [(1.0, 1e-7, 1e-5), (1e-6, 0.15, 0.35)]:

        def grad(w, b, scale=scale):
            return lsq_grad(w, b, scale)

        keras = run_keras(KerasAdamW(0.01, weight_decay=0.0, epsilon=1e-7), grad=grad)
        path, _ = run_ours(ours.adamw(0.01, eps=1e-7, weight_decay=0.0), grad=grad)
        moved_keras, moved_ours = moved(keras), moved(path)
        assert low < abs(moved_keras / moved_ours - 1) < high, (scale, moved_keras, moved_ours)
        assert moved_keras <= moved_ours  # e / sqrt(1 - b2^t) > e: Keras's steps are the smaller


# --------------------------------------------------------------------------- Nadam


def test_nadam_without_momentum_schedule_equals_ours():
    """Keras's Nadam rule with u_t = b1 (no 0.96 schedule) and weight_decay = ours nadamw: same eps placement."""
    keras = run_keras(KerasNadam(0.02, epsilon=1e-7, schedule_decay=0.0, weight_decay=0.1))
    path, _ = run_ours(ours.nadamw(0.02, eps=1e-7, weight_decay=0.1))
    assert moved(path) > 0.1
    assert rel_diff(path, keras) < 1e-10
    keras = run_keras(KerasNadam(0.02, epsilon=1e-7, schedule_decay=0.0))
    path, _ = run_ours(ours.adam(0.02, eps=1e-7, nesterov=True))
    assert rel_diff(path, keras) < 1e-10


def test_nadam_momentum_schedule_differs():
    """Keras Nadam(lr) vs ours nadam(lr, eps=1e-7): first step 1.0628 g vs 1.4737 g (|g| >> eps), paths 5.6% apart."""
    keras = run_keras(KerasNadam(0.02))
    path, _ = run_ours(ours.nadam(0.02, eps=1e-7))
    u1, u2 = 0.9 * (1 - 0.5 * 0.96), 0.9 * (1 - 0.5 * 0.96**2)
    keras_first = u2 * 0.1 / (1 - u1 * u2) + 1.0  # m_hat / g at step 1, m_1 = 0.1 g
    ours_first = 0.9 * 0.1 / (1 - 0.9**2) + 0.1 / 0.1
    assert (keras_first, ours_first) == pytest.approx((1.0628, 1.4737), abs=1e-4)
    step_keras, step_ours = keras[0][0] - W0, path[0][0] - W0
    np.testing.assert_allclose(step_keras / step_ours, keras_first / ours_first, rtol=1e-6)
    assert rel_diff(path, keras) > 0.04


# --------------------------------------------------------------------------- Lion


@pytest.mark.parametrize(
    "keras_decay, our_decay, learning_rate",
    [(None, 0.0, 0.01), (0.5, 0.5, 0.01), (0.5, 0.5, lambda count: 0.01 * 0.97**count)],
    ids=["no-decay", "decay", "decay-schedule"],
)
def test_lion_equals_keras(keras_decay, our_decay, learning_rate):
    """Keras Lion(lr, weight_decay=None) = ours lion(lr, weight_decay=0); with decay wd both decay by lr_t wd p."""
    keras = run_keras(KerasLion(learning_rate, weight_decay=keras_decay))
    path, _ = run_ours(ours.lion(learning_rate, weight_decay=our_decay))
    assert moved(path) > 0.1
    assert rel_diff(path, keras) < 1e-10


# --------------------------------------------------------------------------- Muon

MUON = dict(momentum=0.95, weight_decay=0.1, adam_weight_decay=0.05, rms_rate=0.2)


def our_muon(nesterov, eps=0.0, consistent_rms=0.2, weight_decay=0.1, adam_weight_decay=0.05):
    return ours.muon(
        0.02,
        beta=0.95,
        eps=eps,
        weight_decay=weight_decay,
        adam_weight_decay=adam_weight_decay,
        nesterov=nesterov,
        consistent_rms=consistent_rms,
    )


def test_muon_without_nesterov_equals_consistent_rms():
    """Keras Muon(nesterov=False, epsilon=0) = ours muon(nesterov=False, eps=0, consistent_rms=0.2), matrix and
    bias, once Keras's fixed Newton-Schulz eps (1e-7) is 0: the undamped momentum is a rescaling that the
    Frobenius normalisation removes. With Keras's 1e-7 the paths agree to ~1e-9, not to rounding."""
    keras = run_keras(KerasMuon(0.02, nesterov=False, epsilon=0.0, ns_eps=0.0, **MUON))
    path, _ = run_ours(our_muon(nesterov=False))
    assert moved(path) > 0.1
    assert rel_diff(path, keras) < 1e-10
    keras = run_keras(KerasMuon(0.02, nesterov=False, epsilon=0.0, **MUON))
    assert 1e-13 < rel_diff(path, keras) < 1e-7


def noisy_matrix_grad():
    """`matrix_grad` plus fresh N(0, 1) noise each step (a minibatch's), the same sequence for every new copy."""
    noise = np.random.default_rng(1)
    return lambda w: (lsq_grad(w, B0)[0] + noise.normal(size=w.shape),)


def test_muon_nesterov_mix_differs_early():
    """With nesterov (both defaults) Keras orthogonalises g + b m (m undamped), ours b m/(1-b^(t+1)) + (1-b) g/(1-b^t)
    (m damped): relative to m, ours weighs g by (1 - b^(t+1)) / (1 - b^t) more, 1.95 at t = 1, 1.004 at t = 50,
    -> 1 (then they are proportional, so equal after Newton-Schulz). With noisy gradients: step 1 the same (both
    are g rescaled), step 2 > 3% different in direction, step 50 < 0.3%; the path differs well beyond rounding."""
    setup = dict(params=(W0,))
    keras = run_keras(KerasMuon(0.02, ns_eps=0.0, **MUON), grad=noisy_matrix_grad(), **setup)
    path, _ = run_ours(our_muon(nesterov=True), grad=noisy_matrix_grad(), **setup)

    def step_diff(t):  # |keras step t - ours step t| / |ours step t|, t >= 2
        step_keras, step_ours = keras[t - 1][0] - keras[t - 2][0], path[t - 1][0] - path[t - 2][0]
        return np.linalg.norm(step_keras - step_ours) / np.linalg.norm(step_ours)

    assert rel_diff(path[:1], keras[:1]) < 1e-12
    assert step_diff(2) > 0.03 and step_diff(STEPS) < 0.003
    assert rel_diff(path, keras) > 1e-4


def test_muon_scaling():
    """Keras rms_rate=0.2 scales by 0.2 sqrt(max(rows, cols)) (ours consistent_rms=0.2, shown equal above); ours'
    default consistent_rms=None by sqrt(max(1, cols / rows)); Keras rms_rate=None by 1. First step of a (3, 5)
    matrix, no decay, Newton-Schulz eps 0 (step 1 orthogonalises 1.95 g in Keras, 1.49 g in ours: same result)."""
    rows, cols = 3, 5
    rng = np.random.default_rng(2)
    w0, target = rng.normal(size=(rows, cols)), rng.normal(size=(rows, cols))
    setup = dict(params=(w0,), grad=lambda w: (w - target,), steps=1)
    keras_02 = run_keras(KerasMuon(0.02, weight_decay=None, rms_rate=0.2, ns_eps=0.0), **setup)[0][0] - w0
    keras_none = run_keras(KerasMuon(0.02, weight_decay=None, rms_rate=None, ns_eps=0.0), **setup)[0][0] - w0
    ours_default = run_ours(our_muon(True, consistent_rms=None, weight_decay=0.0), **setup)[0][0][0] - w0
    np.testing.assert_allclose(keras_02, 0.2 * math.sqrt(cols) / math.sqrt(cols / rows) * ours_default, rtol=1e-9)
    np.testing.assert_allclose(keras_none, ours_default / math.sqrt(cols / rows), rtol=1e-9)


def test_muon_non_matrix_branch():
    """Non-2-D leaves: Keras uses its Adam (epsilon hat, never Nesterov); ours adamw(eps, nesterov=nesterov),
    i.e. NAdamW by default: first bias step 1 + b1 / (1 + b1) = 1.4737 times Keras's (|g| >> eps)."""
    keras = run_keras(KerasMuon(0.02, weight_decay=None, adam_weight_decay=None), steps=1)
    path, _ = run_ours(our_muon(True, 1e-7, weight_decay=0.0, adam_weight_decay=0.0), steps=1)
    ratio = (path[0][1] - B0) / (keras[0][1] - B0)
    np.testing.assert_allclose(ratio, 1 + 0.9 / 1.9, rtol=1e-4)


# --------------------------------------------------------------------------- ScheduleFreeAdamW


def test_schedule_free_equals_keras_at_constant_learning_rate():
    """Keras ScheduleFreeAdamW(lr) = ours schedule_free_adamw(lr): max_lr^2 weights at a constant lr give ck = 1/t.
    Keras's evaluation point x = (y - (1 - b1) z) / b1 = ours schedule_free_eval_params (Keras itself evaluates y)."""
    reference = KerasScheduleFreeAdamW(0.05)
    keras = run_keras(reference)
    path, state = run_ours(ours.schedule_free_adamw(0.05))
    assert moved(path) > 0.1
    assert rel_diff(path, keras) < 1e-10
    x_ours = ours.schedule_free_eval_params(state, tuple(jnp.asarray(a) for a in path[-1]))
    assert rel_diff([tuple(np.asarray(a) for a in x_ours)], [tuple(reference.eval_params(keras[-1]))]) < 1e-10


def test_schedule_free_warmup():
    """Keras warm-up lr min(t/W, 1) with ck = 1/t; ours warmup_steps=W: lr 0 at step 1 (schedule at count 0) and
    ck from max_lr^2 -> 3% apart after 50 steps. Exactly Keras's: a schedule lr min((count+1)/W, 1) with
    weight_lr_power=0."""
    keras = run_keras(KerasScheduleFreeAdamW(0.05, warmup_steps=10))
    path, _ = run_ours(ours.schedule_free_adamw(0.05, warmup_steps=10))
    assert np.array_equal(path[0][0], W0) and np.abs(keras[0][0] - W0).max() > 1e-4
    assert rel_diff(path, keras) > 0.01

    def schedule(count):  # count + 1.0: float64 under x64 (int32 / int would be float32)
        return 0.05 * jnp.minimum((count + 1.0) / 10, 1.0)

    path, _ = run_ours(ours.schedule_free_adamw(schedule, weight_lr_power=0.0))
    assert rel_diff(path, keras) < 1e-10


def test_schedule_free_weight_decay_differs():
    """Keras decays y (the gradient point) by lr wd y before the step, so x shrinks by lr wd y / b1; ours adds
    wd y to the z step (optax, Defazio et al.). Same wd = 0.5: after 50 steps Keras's decay has moved the path
    33% (of max |p|) from the undecayed one, ours 39%, and the two are 13% apart."""
    keras = run_keras(KerasScheduleFreeAdamW(0.05, weight_decay=0.5))
    path, _ = run_ours(ours.schedule_free_adamw(0.05, weight_decay=0.5))
    no_decay = run_keras(KerasScheduleFreeAdamW(0.05))  # = ours without decay (test above)
    assert rel_diff(path, keras) > 0.1
    assert rel_diff(keras, no_decay) > 0.1 and rel_diff(path, no_decay) > 0.1


# --------------------------------------------------------------------------- global_clipnorm


def test_global_clipnorm_equals_chain_clip_adamw():
    """Keras AdamW(global_clipnorm=c, epsilon=0) = ours chain(clip_by_global_norm(c), adamw(eps=0)): the gradient
    is clipped, the decay is not. c = 1 clips the first steps only."""
    clip = 1.0
    norms = [math.sqrt(sum(np.sum(g**2) for g in lsq_grad(*p))) for p in [(W0, B0)]]
    keras = run_keras(KerasAdamW(0.05, weight_decay=0.1, epsilon=0.0, global_clipnorm=clip))
    path, _ = run_ours(ours.chain(ours.clip_by_global_norm(clip), ours.adamw(0.05, eps=0.0, weight_decay=0.1)))
    norms += [math.sqrt(sum(np.sum(g**2) for g in lsq_grad(*p))) for p in path[:-1]]
    assert max(norms) > clip > min(norms)
    assert rel_diff(path, keras) < 1e-10


def test_global_clipnorm_multiplies_where_ours_selects():
    """Below the threshold ours returns g bitwise, Keras multiplies by c (1/c) (1 - 2^-53 for c = 49); a gradient
    with an inf makes Keras's whole gradient NaN, ours zeroes the finite entries."""
    clip = jax.jit(lambda grads, max_norm: ours.clip_by_global_norm(max_norm).update(grads, ())[0], static_argnums=1)
    grads = (jnp.array([0.3, -1.7, 2.9]), jnp.array([[0.1, 0.2]]))
    clipped = clip(grads, 49.0)
    keras = keras_clip_by_global_norm([np.asarray(g) for g in grads], 49.0)
    for ours_leaf, keras_leaf, g in zip(clipped, keras, grads):
        assert np.array_equal(np.asarray(ours_leaf), np.asarray(g))
        assert not np.array_equal(keras_leaf, np.asarray(g))
        np.testing.assert_allclose(keras_leaf, g, rtol=2e-16)
    grads = (jnp.array([1.0, jnp.inf]), jnp.array([2.0]))
    clipped = clip(grads, 1.0)
    keras = keras_clip_by_global_norm([np.asarray(g) for g in grads], 1.0)
    assert all(np.isnan(k).all() for k in keras)
    np.testing.assert_array_equal(np.asarray(clipped[1]), [0.0])
