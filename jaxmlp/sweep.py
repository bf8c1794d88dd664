"""Sweeps: a grid of configurations trained as populations, with successive halving.

    members = grid(["rmsprop", "adam"], learning_rates=log_range(1e-4, 1e-1, 16), seeds=[0, 1])
    result = run(members, x, y, epochs=9, halving=3, min_epochs=1, test_data=(x_test, y_test))
    save(result, "runs/sweep")     # results.json, results.csv, best/

A grid is a list of `Member`s, one configuration each. Members that share a
population key (optimizer family, hidden width, batch size, and which of the
family's hyperparameters are swept) train as one population
(`population.fit_population`): one compiled program, every member's learning
rate, hyperparameters, regularisation and seed as data.

Successive halving (Jamieson & Talwalkar, 2015): with `halving=eta` every member
trains `min_epochs` epochs, the rungs; then only the best floor(n / eta) of the n
still in the race (at least one, ranked on the `select` metric, diverged members
out first) go on to min_epochs * eta epochs, then min_epochs * eta^2, ..., up to
`epochs`. Survivors are gathered into a smaller population, so an eliminated
member costs nothing afterwards, and since members never exchange a number a
survivor trains on exactly as it would have without halving (up to the order in
which XLA sums: its CPU kernels choose a reduction order by the population size).
Ranking is always on validation; the test set is evaluated for reading only.
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import checkpoint, files, hyperparams, inputs, loop, model, optim, parallel, population, regularize

SELECT = {"val_accuracy": max, "val_loss": min}  # how each ranking metric picks its best
SWEPT_REGULARIZATION = ("dropout", "label_smoothing", "l2")  # always in a result row; other fields when used
RESULT_METRICS = (
    "epochs_trained",
    "diverged_at_epoch",
    "loss",
    "accuracy",
    "val_loss",
    "val_accuracy",
    "test_accuracy",
)


class Member(NamedTuple):
    """One configuration of a sweep. Initialised and shuffled as `mnist_seed.py --seed seed`."""

    optimizer: str  # a family of optim.FAMILIES
    learning_rate: float
    seed: int
    hidden: int = 512  # width of the hidden layer: 784 -> hidden -> 10
    batch_size: int = 128
    hyperparams: tuple[tuple[str, float], ...] = ()  # the family's other swept hyperparameters, (name, value)
    regularization: regularize.Regularization = regularize.Regularization()

    def population_key(self) -> tuple:
        """Members with equal keys share one compiled program."""
        return (self.optimizer, self.hidden, self.batch_size, tuple(name for name, _ in self.hyperparams))

    def config(self) -> dict:
        """Every value of the configuration, flat: what a result row and best/config.json hold."""
        used = {k: v for k, v in self.regularization._asdict().items() if k in SWEPT_REGULARIZATION or v}
        return {
            "optimizer": self.optimizer,
            "learning_rate": self.learning_rate,
            "seed": self.seed,
            "hidden": self.hidden,
            "batch_size": self.batch_size,
            **dict(self.hyperparams),
            **used,
        }


class Outcome(NamedTuple):
    """What one member of a sweep did."""

    member: Member
    history: loop.History  # every epoch it trained, over all its rungs
    test: dict | None  # {"loss", "accuracy"} of its final parameters; None if it diverged or none was given

    @property
    def epochs_trained(self) -> int:
        return len(self.history.seconds)

    def final(self, metric: str):
        """The metric after its last epoch; None for a member that diverged."""
        values = self.history.metrics.get(metric, [])
        return None if self.history.diverged_at_epoch is not None or not values else values[-1]


class SweepResult(NamedTuple):
    outcomes: list[Outcome]  # in the order of the grid
    best: int | None  # index of the best member by `select` among those that trained every epoch
    best_params: model.Params | None  # its parameters, on the host
    select: str
    rungs: list[int]  # epochs at which members were ranked; the last is `epochs`
    settings: dict  # epochs, halving, min_epochs, precision, validation, ...: what every member shares
    programs: int  # populations compiled (one per population key and size)
    compile_seconds: float  # their compilation, summed
    seconds: float  # the whole sweep, compilation and the test evaluation included


# --------------------------------------------------------------------------- the grid


def log_range(low: float, high: float, count: int) -> list[float]:
    """`count` values from low to high, both included, evenly spaced in log: log_range(1e-4, 1e-1, 4) ->
    [1e-4, 1e-3, 1e-2, 1e-1]."""
    if not (isinstance(count, int) and count >= 2):
        raise ValueError(f"a log range needs at least 2 values; got {count}")
    if not (0 < low < high < math.inf):
        raise ValueError(f"a log range needs 0 < low < high; got {low:g} and {high:g}")
    return [float(v) for v in np.geomspace(low, high, count)]


def family_hyperparameters(family: str) -> dict[str, float]:
    """{name: default} of what `hp` may sweep for the family: its numeric arguments except the learning rate."""
    return {k: v for k, v in hyperparams.numeric_defaults(_factory(family)).items() if k != "learning_rate"}


def grid(
    optimizers: Sequence[str],
    *,
    learning_rates: Sequence[float] | None = None,
    seeds: Sequence[int] = (0,),
    hp: dict[str, Sequence[float]] | None = None,
    hidden: Sequence[int] = (512,),
    batch_sizes: Sequence[int] = (128,),
    regularization: dict[str, Sequence[float]] | None = None,
) -> list[Member]:
    """The cross product of every value given, as Members, optimizer-major.

    learning_rates: default each family's own (`optim.default_learning_rate`).
    hp: {hyperparameter: values}, each a hyperparameter of every family given
      (`family_hyperparameters`), e.g. {"momentum": [0.8, 0.9]}.
    regularization: {field of regularize.Regularization: values}, e.g. {"dropout": [0, 0.3]}.
    Every value is checked as the optimizer and `fit` check theirs: a ValueError names
    the first that is out of range, before anything trains.
    """
    hp, regularization = dict(hp or {}), dict(regularization or {})
    given = {
        "--optimizer": optimizers,
        "--lr": learning_rates or [None],
        "--seed": seeds,
        "--hidden": hidden,
        "--batch-size": batch_sizes,
        **{f"--hp {name}": values for name, values in hp.items()},
        **{f"--{name.replace('_', '-')}": values for name, values in regularization.items()},
    }
    for flag, values in given.items():
        if len(values) == 0:
            raise ValueError(f"{flag} has no values; give at least one")
    for family in optimizers:
        _factory(family)
        unknown = sorted(set(hp) - set(family_hyperparameters(family)))
        if unknown:
            names = ", ".join(family_hyperparameters(family)) or "none besides the learning rate"
            raise ValueError(f"{family} has no hyperparameter {', '.join(unknown)}; its hyperparameters are {names}")
    unknown = sorted(set(regularization) - set(regularize.Regularization._fields))
    if unknown:
        raise ValueError(
            f"no regularization {', '.join(unknown)}; choose from {', '.join(regularize.Regularization._fields)}"
        )
    for name, values in (("hidden", hidden), ("batch_size", batch_sizes), ("seed", seeds)):
        low = 0 if name == "seed" else 1
        bad = [v for v in values if not isinstance(v, (int, np.integer)) or v < low]
        if bad:
            raise ValueError(f"{name} must be integers >= {low}; got {bad[0]}")

    members = []
    hp_names, reg_names = list(hp), list(regularization)
    for family, lr, seed, width, batch, *rest in itertools.product(
        optimizers, learning_rates or [None], seeds, hidden, batch_sizes, *hp.values(), *regularization.values()
    ):
        hp_values, reg_values = rest[: len(hp_names)], rest[len(hp_names) :]
        lr = optim.default_learning_rate(family) if lr is None else float(lr)
        swept = tuple((name, float(v)) for name, v in zip(hp_names, hp_values))
        _factory(family)(learning_rate=lr, **dict(swept))  # checks every value, with its name
        reg = regularize.Regularization(**{name: float(v) for name, v in zip(reg_names, reg_values)})
        regularize.check(reg)
        members.append(Member(family, lr, int(seed), int(width), int(batch), swept, reg))
    return members


def rungs(min_epochs: int, epochs: int, eta: int | None) -> list[int]:
    """The epochs at which members are ranked: r, r eta, r eta^2, ... below `epochs`, then `epochs`.

    rungs(1, 9, 3) == [1, 3, 9];  rungs(2, 10, 3) == [2, 6, 10];  without halving, [epochs].
    """
    if eta is None:
        return [epochs]
    if not (isinstance(eta, int) and eta >= 2):
        raise ValueError(f"halving must be an integer >= 2 (e.g. 3: keep the best third at each rung); got {eta}")
    if not 1 <= min_epochs <= epochs:
        raise ValueError(f"min_epochs must be in 1..epochs={epochs}; got {min_epochs}")
    found = [min_epochs]
    while found[-1] * eta < epochs:
        found.append(found[-1] * eta)
    return found + [epochs] if found[-1] != epochs else found


def survivors(outcomes: Sequence[Outcome], racing: Sequence[int], eta: int, select: str) -> list[int]:
    """The best floor(len(racing) / eta) of `racing` (at least one) by `select`, in grid order.

    Members that diverged rank last, so they go first; ties keep grid order.
    """
    keep = max(1, len(racing) // eta)
    sign = 1 if SELECT[select] is max else -1

    def rank(i):
        value = outcomes[i].final(select)
        return (value is None, -sign * value if value is not None else 0.0, racing.index(i))

    return sorted(sorted(racing, key=rank)[:keep])


# --------------------------------------------------------------------------- memory


def member_bytes(member: Member, features: int = 784, classes: int = 10) -> int:
    """A generous estimate of the device memory one member needs while it trains.

        4 bytes x (P (5 + 2 S) + B (features + 4 hidden + 4 classes))

    P parameters and S optimizer slots of P numbers each (parameters, gradients,
    updates and the kept last finite state; optimizer state old and new), and
    the activations of a batch of B rows with their gradients.
    """
    sizes = (features, member.hidden, classes)
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    like = jax.eval_shape(lambda: model.init_mlp(jax.random.key(0), sizes))
    optimizer = _factory(member.optimizer)(learning_rate=member.learning_rate, **dict(member.hyperparams))
    slots = sum(leaf.size for leaf in jax.tree.leaves(jax.eval_shape(optimizer.init, like))) // params
    return 4 * (params * (5 + 2 * slots) + member.batch_size * (features + 4 * member.hidden + 4 * classes))


def device_memory(devices=None) -> int:
    """Bytes the devices may hold together: their memory limit (GPU, TPU), or the host's memory (CPU)."""
    devices = devices or jax.devices()
    limits = [(d.memory_stats() or {}).get("bytes_limit") for d in devices]
    if all(limits):
        return int(sum(limits))
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def population_limit(member: Member, max_population: int | None = None, devices=None) -> int:
    """The most members of this shape one population may hold: `max_population`, or what half the memory fits."""
    if max_population is not None:
        return max_population
    return max(1, device_memory(devices) // 2 // member_bytes(member))


# --------------------------------------------------------------------------- running


def run(
    members: Sequence[Member],
    x,
    y,
    *,
    epochs: int,
    validation_split: float = 0.2,
    validation_data=None,
    halving: int | None = None,
    min_epochs: int = 1,
    select: str = "val_accuracy",
    max_population: int | None = None,
    precision: str = "float32",
    schedule=None,
    test_data=None,
    checkpoint_dir=None,
    verbose: bool = False,
    devices=None,
) -> SweepResult:
    """Train every member, as populations, ranking on validation with successive halving if asked.

    Args:
      members: the grid (`grid`).
      x, y, epochs, validation_split, validation_data, precision, devices: as in `fit_population`.
      halving: eta >= 2 for successive halving, with rungs from `min_epochs` (see `rungs`);
        None trains every member every epoch.
      select: "val_accuracy" or "val_loss", what ranks members at each rung and picks the best.
      max_population: the most members in one compiled population; larger populations
        are split into pieces run one after another. Default: what fits in half the
        device memory (`population_limit`).
      schedule: multiplies every learning rate, as in `fit_population`.
      test_data: (x_test, y_test), evaluated for every member at the end, for reading only.
      checkpoint_dir: a folder of checkpoints, one per population, rung and piece; a sweep
        killed and run again with the same arguments resumes where it was.
      verbose: one line per epoch: population, epoch, members training, best value so far, seconds.
    """
    if select not in SELECT:
        raise ValueError(f"select must be one of {', '.join(SELECT)}; got {select!r}")
    if validation_data is None and not validation_split:
        raise ValueError("a sweep ranks on validation: give validation_split > 0 or validation_data")
    if not members:
        raise ValueError("the grid is empty; give at least one member")
    if max_population is not None:
        inputs.check_count("max_population", max_population)
    schedule_of = rungs(min_epochs, epochs, halving)
    start = time.perf_counter()
    histories: list[list[loop.History]] = [[] for _ in members]  # one History per rung trained
    last: dict[int, tuple] = {}  # member -> (the stacked state of its last population, its index there)
    racing, done, programs, compile_seconds, best_so_far = list(range(len(members))), 0, set(), 0.0, [None]
    for rung, end in enumerate(schedule_of):
        for key, chunk, name in _populations(members, racing, rung, max_population, devices):
            folder = None if checkpoint_dir is None else Path(checkpoint_dir) / name
            if verbose:
                _report_resume(name, folder)
            states, chunk_histories = _train_population(
                [members[i] for i in chunk],
                [last.get(i) for i in chunk],
                x,
                y,
                epochs=end,
                initial_epoch=done,
                validation_split=validation_split,
                validation_data=validation_data,
                precision=precision,
                schedule=schedule,
                checkpoint_dir=folder,
                on_epoch_end=_progress(name, end, select, best_so_far) if verbose else None,
                devices=devices,
            )
            programs.add((key, len(chunk)))
            compile_seconds += chunk_histories[0].compile_seconds
            for j, (i, history) in enumerate(zip(chunk, chunk_histories)):
                histories[i].append(history)
                last[i] = (states, j)
        done = end
        outcomes = [Outcome(m, _joined(h), None) for m, h in zip(members, histories)]
        if rung + 1 < len(schedule_of):  # the best 1/eta of those that raced this rung go on, the diverged first out
            racing = survivors(outcomes, racing, halving, select)
        racing = [i for i in racing if outcomes[i].history.diverged_at_epoch is None]
        if verbose and parallel.is_main_process() and rung + 1 < len(schedule_of):
            print(f"rung {rung + 1} at epoch {end}: {len(racing)} members go on to epoch {schedule_of[rung + 1]}")
        if not racing:
            break

    tests = _evaluate_last(last, members, test_data, precision) if test_data is not None else {}
    outcomes = [
        o._replace(test=tests.get(i) if o.history.diverged_at_epoch is None else None) for i, o in enumerate(outcomes)
    ]
    finished = [i for i in racing if outcomes[i].epochs_trained == epochs]
    best = SELECT[select](finished, key=lambda i: outcomes[i].final(select)) if finished else None
    best_params = None
    if best is not None:
        states, j = last[best]
        evaluated = population.evaluation_params(states, _factory(members[best].optimizer))
        best_params = parallel.to_host(population.member(evaluated, j))
    settings = {
        "epochs": epochs,
        "halving": halving,
        "min_epochs": min_epochs if halving else None,
        "select": select,
        "precision": precision,
        "validation": "validation_data"
        if validation_data is not None
        else f"last {validation_split:g} of the training data",
        "schedule": None if schedule is None else getattr(schedule, "__name__", repr(schedule)),
        "training_images": len(x),
    }
    return SweepResult(
        outcomes,
        best,
        best_params,
        select,
        schedule_of,
        settings,
        len(programs),
        compile_seconds,
        time.perf_counter() - start,
    )


def _factory(family: str):
    if family not in optim.FAMILIES:
        raise ValueError(f"unknown optimizer {family!r}; choose from {', '.join(optim.NAMES)}")
    return optim.FAMILIES[family]


def _populations(members: Sequence[Member], racing: list[int], rung: int, max_population, devices):
    """(population key, member indices, checkpoint folder name) of each population a rung trains.

    Racing members sharing a population key form one population, split into pieces of
    at most `population_limit` members; grid order throughout, so a rerun finds the same.
    """
    groups: dict[tuple, list[int]] = {}
    for i in racing:
        groups.setdefault(members[i].population_key(), []).append(i)
    for key, indices in groups.items():
        first = members[indices[0]]
        limit = population_limit(first, max_population, devices)
        name = f"{first.optimizer}-h{first.hidden}-b{first.batch_size}" + "".join(f"-{n}" for n, _ in first.hyperparams)
        for piece, start in enumerate(range(0, len(indices), limit)):
            suffix = f"-piece{piece + 1}" if len(indices) > limit else ""
            yield key, indices[start : start + limit], f"{name}/rung{rung + 1}{suffix}"


def _report_resume(name: str, folder) -> None:
    """Say so when a population resumes from a checkpoint (process 0)."""
    if folder is None or not folder.is_dir() or not parallel.is_main_process():
        return
    saved = checkpoint.latest_checkpoint(folder)
    if saved is not None:
        print(f"resuming {name} after epoch {checkpoint.read_meta(saved)['epoch']}", flush=True)


def _train_population(members: list[Member], previous: list, x, y, **options):
    """fit_population for one population: (stacked states, one History per member).

    A first rung starts from each member's seed; a later one gathers the survivors'
    states (`previous`: (stacked state, index) per member) into one population.
    """
    if previous[0] is None:
        init_keys, shuffle_keys = population.member_keys([m.seed for m in members])
        start, keys = population.init_population(init_keys, (784, members[0].hidden, 10)), shuffle_keys
    else:
        pieces = _by_population(previous)  # survivors of one earlier population are taken together
        gathered = [population.member(states, np.asarray(js)) for states, js in pieces]
        start, keys = jax.tree.map(lambda *leaves: jnp.concatenate(leaves), *gathered), None
    names = [name for name, _ in members[0].hyperparams]
    values = {"learning_rate": [m.learning_rate for m in members]}
    values |= {name: [dict(m.hyperparams)[name] for m in members] for name in names}
    used = [m.regularization for m in members]
    regularization = regularize.Regularization(*map(list, zip(*used))) if any(any(r) for r in used) else None
    return population.fit_population(
        start,
        x,
        y,
        optimizer_factory=_factory(members[0].optimizer),
        hyperparams=values,
        keys=keys,
        batch_size=members[0].batch_size,
        regularization=regularization,
        **options,
    )


def _joined(rung_histories: list[loop.History]) -> loop.History:
    """One History from a member's rungs, in order."""
    if not rung_histories:
        return loop.History({}, [], 0.0)
    metrics = {name: [v for h in rung_histories for v in h.metrics[name]] for name in rung_histories[0].metrics}
    diverged = next((h.diverged_at_epoch for h in rung_histories if h.diverged_at_epoch is not None), None)
    return loop.History(
        metrics,
        [s for h in rung_histories for s in h.seconds],
        sum(h.compile_seconds for h in rung_histories),
        diverged,
    )


def _by_population(pairs) -> list[tuple]:
    """[(stacked state, [item, ...]), ...]: (state, item) pairs grouped by the population state they belong to,
    in order of first appearance."""
    groups: dict[int, tuple] = {}
    for states, item in pairs:
        groups.setdefault(id(states), (states, []))[1].append(item)
    return list(groups.values())


def _evaluate_last(last: dict, members: list[Member], test_data, precision: str) -> dict[int, dict]:
    """{member: {"loss", "accuracy"}} on the test data, for every member's last evaluation parameters."""
    found = {}
    for states, pairs in _by_population((states, (i, j)) for i, (states, j) in last.items()):
        evaluated = population.evaluation_params(states, _factory(members[pairs[0][0]].optimizer))
        scores = population.evaluate_population(evaluated, *test_data, precision=precision)
        found |= {i: scores[j] for i, j in pairs}
    return found


def _progress(name: str, epochs: int, select: str, best_so_far: list):
    """on_epoch_end printing one line: population, epoch, members still training, best value so far, seconds."""

    def report(epoch, logs, _states):
        values = [v for v in logs.get(select, []) if v is not None]
        if values:
            candidate = SELECT[select](values)
            best_so_far[0] = candidate if best_so_far[0] is None else SELECT[select](best_so_far[0], candidate)
        if parallel.is_main_process():
            best = "none yet" if best_so_far[0] is None else f"{best_so_far[0]:.4f}"
            print(
                f"{name}: epoch {epoch}/{epochs} - {len(values)} of {len(logs['loss'])} training - "
                f"best {select} so far {best} - {logs['seconds']:.2f}s",
                flush=True,
            )

    return report


# --------------------------------------------------------------------------- results


def rows(result: SweepResult, histories: bool = False) -> list[dict]:
    """One flat row per member: every swept value, epochs_trained, diverged_at_epoch, the final metrics;
    with `histories`, also each member's per-epoch metrics as "history"."""
    names = list(dict.fromkeys(k for o in result.outcomes for k in o.member.config()))
    found = []
    for o in result.outcomes:
        config = o.member.config()
        found.append(
            {
                **{name: config.get(name) for name in names},
                "epochs_trained": o.epochs_trained,
                "diverged_at_epoch": o.history.diverged_at_epoch,
                **{metric: o.final(metric) for metric in RESULT_METRICS[2:-1]},
                "test_accuracy": None if o.test is None else o.test["accuracy"],
                **({"history": o.history.metrics} if histories else {}),
            }
        )
    return found


def save(result: SweepResult, folder, extra: dict | None = None) -> Path:
    """results.json (rows with their per-epoch `history`), results.csv (the rows), and best/.

    best/ holds the best member's params.npz (load it with `checkpoint.load_pytree`
    and `model.init_mlp` of config.json's sizes as the template), config.json (its
    configuration and what every member shared) and summary.json (its validation
    and test metrics). `extra` joins results.json (timings, environment).
    """
    folder = Path(folder)
    table = rows(result)
    summary = {
        "select": result.select,
        "rungs": result.rungs,
        "programs": result.programs,
        "seconds": result.seconds,
        "members": len(table),
        "best": None if result.best is None else table[result.best],
        **result.settings,
    }
    files.write_json(folder / "results.json", {**summary, **(extra or {}), "results": rows(result, histories=True)})
    files.write_csv(folder / "results.csv", table)
    if result.best is not None:
        best = result.outcomes[result.best]
        config = {**best.member.config(), "sizes": [784, best.member.hidden, 10], **result.settings}
        checkpoint.save_pytree(folder / "best" / "params.npz", result.best_params)
        files.write_json(folder / "best" / "config.json", config)
        metrics = {m: best.final(m) for m in ("loss", "accuracy", "val_loss", "val_accuracy")}
        files.write_json(
            folder / "best" / "summary.json",
            {
                **metrics,
                "test_loss": best.test and best.test["loss"],
                "test_accuracy": best.test and best.test["accuracy"],
            },
        )
    return folder
