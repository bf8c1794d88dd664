"""How SGD, momentum, Nesterov, Adagrad, RMSProp, Adam, AdamW and Lion move on two 2-D landscapes.

    python experiments/optimizer_paths.py --out O [--steps 300]

The landscapes: an ill-conditioned quadratic ravine, f(x, y) = (x^2 + 50 y^2) / 2
(the y direction 50 times steeper than x), started at (-7, 1.5); and Rosenbrock's
banana, f(x, y) = (1 - x)^2 + 100 (y - x^2)^2, started at (-1.5, 2), minimum at
(1, 1). Each optimizer runs at the learning rate of a half-decade grid (1e-4 ... 1)
whose path has the lowest mean log f over --steps steps without leaving the plotted
window, so each is shown at its best; the grid runs as one vmapped program per
optimizer. Every optimizer keeps its defaults (`jaxmlp.optim`) but AdamW, drawn with
a decoupled decay of 0.1, a common choice in practice: at its default, 1e-4, its path
is Adam's to the width of a line and would hide it. The decay pulls every step
towards the origin: on the ravine, whose minimum is the origin, that helps; on
Rosenbrock, minimum at (1, 1), AdamW settles where the decay balances the gradient,
short of the minimum. Lion steps by the sign of its momentum, so every coordinate
moves by exactly the rate at every step (diagonal moves); its slowly decaying
memory (b2 = 0.99) keeps the sign long after the minimum is passed, so on the ravine
every rate fast enough to get there carries it out of the window (to x = +4), and
it is drawn at the fastest rate that stays in, still on its way.

Muon is not drawn. It is an optimizer for matrices: it orthogonalises a weight
matrix's momentum by Newton-Schulz, and only 2-D leaves get that step (the others,
here a point of shape (2,), get its NAdamW fallback, so "Muon" on these landscapes
would draw NAdamW). Even with the point as a 1x2 or 2x1 matrix, its one singular
value is its length, which Newton-Schulz first normalises to 1 and then takes to
about 0.70 (five steps of Muon's quintic from 1): every nonzero momentum comes out
as 0.70 times its unit vector. The step is normalised steepest descent with
momentum, a fixed length (0.70 lr, times Muon's shape factor) in the momentum's
direction, sign-free, unlike Lion's. A 2-D point problem says nothing about what
Muon does to a matrix.

Writes paths.png (the trajectories over contour lines), loss.png (f against step)
and paths.json (chosen rates, final points and values).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import cli, files, optim, plot
from jaxmlp.hyperparams import inject_hyperparams

GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0)
OPTIMIZERS = {
    "SGD": (optim.sgd, {}),
    "momentum": (optim.sgd, {"momentum": 0.9}),
    "Nesterov": (optim.sgd, {"momentum": 0.9, "nesterov": True}),
    "Adagrad": (optim.adagrad, {}),
    "RMSProp": (optim.rmsprop, {}),
    "Adam": (optim.adam, {}),
    "AdamW": (optim.adamw, {"weight_decay": 0.1}),
    "Lion": (optim.lion, {}),
}


def ravine(p):
    return 0.5 * (p[0] ** 2 + 50 * p[1] ** 2)


def rosenbrock(p):
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


PROBLEMS = {  # name -> (function, start, plotted window (x0, x1, y0, y1))
    "ravine": (ravine, (-7.0, 1.5), (-8.0, 2.0, -2.0, 2.0)),
    "Rosenbrock": (rosenbrock, (-1.5, 2.0), (-2.0, 2.0, -1.0, 3.0)),
}


def paths_for_rates(function, start, factory, fixed, rates, steps):
    """Every iterate (R, steps + 1, 2) of the optimizer at each of R learning rates, in one program."""
    optimizer = inject_hyperparams(factory)(learning_rate=rates[0], **fixed)
    point = jnp.asarray(start)

    def run(rate):
        state = optimizer.init(point)
        state = state._replace(hyperparams={**state.hyperparams, "learning_rate": rate})

        def step(carry, _):
            p, s = carry
            updates, s = optimizer.update(jax.grad(function)(p), s, p)
            p = optim.apply_updates(p, updates)
            return (p, s), p

        _, path = jax.lax.scan(step, (point, state), None, length=steps)
        return jnp.concatenate([point[None], path])

    return np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(rates)))


def best_path(function, start, window, factory, fixed, steps):
    """(learning rate, path) with the lowest mean log10 f along the way, among paths that stay in the window.

    The mean over the whole path rewards getting low early and staying low, not a
    lucky last step: the rate a practitioner would keep.
    """
    paths = paths_for_rates(function, start, factory, fixed, GRID, steps)
    x0, x1, y0, y1 = window
    scores = []
    for path in paths:
        inside = (
            np.isfinite(path).all()
            and (path[:, 0] >= x0).all()
            and (path[:, 0] <= x1).all()
            and (path[:, 1] >= y0).all()
            and (path[:, 1] <= y1).all()
        )
        scores.append(float(np.mean(np.log10(function(path.T) + 1e-30))) if inside else np.inf)
    best = int(np.argmin(scores))
    return GRID[best], paths[best]


def parse_args(argv):
    parser = cli.experiment_parser(__doc__, "runs/optimizer_paths", data_dir=False)
    parser.add_argument("--steps", type=cli.positive_int, default=300)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    results, paths = {}, {}
    for problem, (function, start, window) in PROBLEMS.items():
        results[problem], paths[problem] = {}, {}
        for name, (factory, fixed) in OPTIMIZERS.items():
            rate, path = best_path(function, start, window, factory, fixed, args.steps)
            paths[problem][name] = path
            final = float(function(path[-1]))
            results[problem][name] = {"learning_rate": rate, "final_point": path[-1].tolist(), "final_value": final}
            print(
                f"{problem:<11} {name:<9} lr {rate:<7g} after {args.steps} steps at "
                f"({path[-1][0]:+.4f}, {path[-1][1]:+.4f}), f = {final:.3g}"
            )
    plot.plot_paths(
        {problem: (PROBLEMS[problem][0], PROBLEMS[problem][2], paths[problem]) for problem in PROBLEMS},
        out / "paths.png",
    )
    plot.plot_losses(
        {
            problem: {name: [float(PROBLEMS[problem][0](p)) for p in path] for name, path in runs.items()}
            for problem, runs in paths.items()
        },
        out / "loss.png",
    )
    files.write_json(out / "paths.json", {"steps": args.steps, "results": results})
    print(f"wrote {out}/paths.png, loss.png and paths.json")


if __name__ == "__main__":
    cli.run(main)
