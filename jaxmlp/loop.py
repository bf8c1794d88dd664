"""The host loop that `fit` and `fit_population` share: resume, run epochs, report, call back, checkpoint.

    state, records, identity = resume(checkpoint_dir, state, epochs=..., verbose=..., **configuration)
    state, records = run_epochs(run_epoch, state, records, epochs=..., identity=identity, ...)
    history = history_of(records, compile_seconds)              # one model
    histories = member_histories(records, members, compile_seconds)   # a population

The compiled work is the caller's `run_epoch(state, active) -> (state, sums,
val_sums)`: one jitted program that trains an epoch, validates, and keeps the old
state of any member whose numbers went non-finite (`train.guarded_epoch`). The
host only turns the summed losses and counts into means, decides who diverged,
and writes. What one epoch leaves behind is a *record*:

    {"epoch": 3, "loss": 0.08, "accuracy": 0.97, "val_loss": 0.1, "val_accuracy": 0.97, "seconds": 0.55}

for one model, and for a population the same keys with one value per member
(None for a member that has diverged). The records are the single source of
truth: they go into every checkpoint, and the Histories are read off them, so a
resumed run reports every epoch, also those before the interruption.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import checkpoint, files, model, optim, parallel


class History(NamedTuple):
    """What `fit` reports: per-epoch metrics as Keras's `History.history`, plus timings."""

    metrics: dict[str, list[float]]  # "loss", "accuracy" and, with validation, "val_loss", "val_accuracy"
    seconds: list[float]  # wall time of each epoch, its validation included
    compile_seconds: float  # tracing and compiling the epoch program
    diverged_at_epoch: int | None = None  # populations: the 1-based epoch whose loss went NaN or infinite


class Diverged(ValueError):
    """The loss became NaN or infinite. `state` is the last finite state, `history` what came before."""

    def __init__(self, message: str, epoch: int, state, history: History):
        super().__init__(message)
        self.epoch, self.state, self.history = epoch, state, history


# --------------------------------------------------------------------------- resuming


def resume(checkpoint_dir, state, *, epochs: int, verbose: bool, **configuration):
    """(state, records, identity): from the newest checkpoint in `checkpoint_dir` if there is one.

    With no checkpoint there: (state, [], identity); with no checkpoint_dir: (state, [], None).
    `state` is the fresh state, the template the checkpoint must fit; `configuration`
    holds the rest of `run_identity`'s arguments. Removes the temporaries a killed run
    left in the folder first. Raises ValueError when the folder holds other files, an
    unreadable checkpoint, one of another configuration (checkpoint.ConfigurationMismatch),
    or one past `epochs`; nothing is deleted then.
    """
    if checkpoint_dir is None:
        return state, [], None
    identity = run_identity(state=state, **configuration)
    if parallel.is_main_process():
        files.remove_stale_temporaries(checkpoint_dir)
    restored = checkpoint.restore(checkpoint_dir, state, identity)
    if restored is None:
        return state, [], identity
    state, epoch, records = restored
    if epoch > epochs:
        raise ValueError(
            f"{checkpoint.checkpoint_path(checkpoint_dir, epoch)} is after epoch {epoch}, past epochs={epochs}; "
            f"ask for at least {epoch} epochs, or use another folder"
        )
    if verbose and parallel.is_main_process():
        print(f"resuming after epoch {epoch} from {checkpoint_dir}", flush=True)
    return state, records, identity


def run_identity(
    *, state, member_state, optimizer, data, batch_size: int, regularization, hyperparams=None, precision="float32"
) -> dict:
    """What makes a run the run it is, as a checkpoint stores it and `resume` compares it.

    state: the whole initial state (all members); member_state: one member's, to probe
    the optimizer with; data: (x, y, validation or None) as trained on; hyperparams:
    a population's {name: values}; precision: how the matmuls compute ("float32",
    "tf32", "bf16"), so that a run is never resumed at another precision. The
    optimizer is known by what it does: the digest of its first three updates of a
    fixed probe gradient, which tells apart families, hyperparameters and schedules
    that move in those steps.
    """
    x, y, validation = data
    sizes = model.layer_sizes(member_state.params)
    found = {"model": "-".join(map(str, sizes)) + f" {member_state.params[0]['w'].dtype}"}
    if hyperparams is not None:
        found["members"] = state.key.shape[0]
        found["hyperparams"] = _plain(hyperparams)
    found |= {
        "precision": precision,
        "batch_size": batch_size,
        "regularization": None if regularization is None else _plain(regularization._asdict()),
        "training_data": _data_identity((x, y)),
        "validation_data": None if validation is None else _data_identity(validation),
        "initial_state": checkpoint.fingerprint(state),
        "optimizer": _optimizer_fingerprint(optimizer, member_state),
    }
    return found


def _data_identity(examples) -> str:
    """The number of samples, for the reader, and a digest of (x, y): "48000 samples, blake2b:..."."""
    return f"{len(examples[0])} samples, {checkpoint.fingerprint(examples)}"


def _plain(values: dict) -> dict:
    """{name: float or list of floats}: what JSON stores and compares exactly."""
    return {name: np.asarray(value, np.float64).tolist() for name, value in values.items()}


def _optimizer_fingerprint(optimizer, member_state) -> str:
    params, opt_state = member_state.params, member_state.opt_state
    probe = jax.tree.map(lambda p: jnp.cos(jnp.arange(p.size, dtype=p.dtype)).reshape(p.shape), params)
    for _ in range(3):
        updates, opt_state = optimizer.update(probe, opt_state, params)
        params = optim.apply_updates(params, updates)
    return checkpoint.fingerprint(params)


# --------------------------------------------------------------------------- the epochs


def sample_counts(x, validation) -> tuple[int, int | None]:
    """(training samples, validation samples or None): what the epoch's sums are divided by."""
    return len(x), None if validation is None else len(validation[0])


def means(sums, count: int) -> dict[str, np.ndarray]:
    """[summed loss, number correct] of each member, (M, 2) or (2,), -> {"loss", "accuracy"}: (M,), in float64."""
    totals = np.asarray(sums, np.float64).reshape(-1, 2)
    return {"loss": totals[:, 0] / count, "accuracy": totals[:, 1] / count}


def epoch_means(sums, val_sums, count: int, val_count: int | None) -> dict[str, np.ndarray]:
    """The epoch's means, and with validation sums also "val_loss" and "val_accuracy"."""
    found = means(sums, count)
    if val_sums is not None:
        found.update({"val_" + name: values for name, values in means(val_sums, val_count).items()})
    return found


def run_epochs(
    run_epoch: Callable,
    state,
    records: list[dict],
    *,
    epochs: int,
    initial_epoch: int = 0,
    counts: tuple[int, int | None],
    members: int | None,
    compile_seconds: float,
    checkpoint_dir=None,
    identity: dict | None = None,
    unpadded: Callable = lambda state: state,
    on_epoch_end: Callable | None = None,
    verbose: bool = False,
):
    """Run the epochs after the last recorded one (after `initial_epoch` when there is none) up to
    `epochs`; returns (state, records).

    run_epoch(state, active) -> (state, sums, val_sums, finite): sums (M, 2) or (2,) and
      finite (M,) or () on any device, active: (K,) bools on the host, False for the members
      that have diverged; M >= K (rows past K are a population's padding). A member went
      non-finite when `finite` says so (its parameters or optimizer state too) or its means did.
    members: None for one model, which raises Diverged at its first non-finite epoch;
      K for a population, whose members are flagged instead (their records hold None
      from then on) and whose loop ends early once every member has diverged.
    unpadded(state): the state without a population's padding, as checkpoints and callbacks see it.
    After each epoch, in this order: the checkpoint (process 0 writes), the verbose line
    (process 0 prints), then on_epoch_end(epoch, logs, state) with logs = the record
    without "epoch".
    """
    active = np.array([value is not None for value in records[-1]["loss"]]) if members and records else True
    if members:
        active = np.broadcast_to(active, (members,)).copy()
    main = parallel.is_main_process()
    for epoch in range((records[-1]["epoch"] if records else initial_epoch) + 1, epochs + 1):
        start = time.perf_counter()
        state, sums, val_sums, finite = run_epoch(state, active)
        size = members or 1  # rows past it are a population's padding
        means = epoch_means(parallel.to_host(sums), parallel.to_host(val_sums), *counts)
        means = {name: values[:size] for name, values in means.items()}
        seconds = time.perf_counter() - start
        finite = np.reshape(parallel.to_host(finite), -1)[:size] & np.all([np.isfinite(v) for v in means.values()], 0)
        if members is None:
            logs = {name: float(values[0]) for name, values in means.items()}
            if not finite[0]:
                raise Diverged(_divergence_message(epoch, logs), epoch, state, history_of(records, compile_seconds))
        else:
            active &= finite
            logs = {name: [float(v) if a else None for v, a in zip(values, active)] for name, values in means.items()}
        records.append({"epoch": epoch, **logs, "seconds": seconds})
        visible = unpadded(state) if checkpoint_dir is not None or on_epoch_end is not None else None
        if checkpoint_dir is not None:
            saved = parallel.to_host(visible)  # every process takes part in gathering; process 0 writes
            if main:
                checkpoint.save_checkpoint(checkpoint_dir, saved, epoch, records, identity)
        if verbose and main:
            print(format_record(records[-1], epochs), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch, {**logs, "seconds": seconds}, visible)
        if members and not active.any():
            break
    return state, records


def _divergence_message(epoch: int, logs: dict) -> str:
    last = f"the state after epoch {epoch - 1}" if epoch > 1 else "the initial state"
    if np.isfinite(list(logs.values())).all():
        what = "the parameters or the optimizer state became NaN or infinite"
    else:
        what = f"the loss became {logs['loss']} (validation loss {logs.get('val_loss')})"
    return (
        f"training diverged in epoch {epoch}: {what}; the learning rate is probably too high, try a smaller one; "
        f"{last} is the last finite one"
    )


def format_record(record: dict, epochs: int) -> str:
    """One line per epoch. One model, as Keras's verbose=2:

        Epoch 1/5 - 0.41s - loss: 0.2573 - accuracy: 0.9254 - val_loss: 0.1540 - val_accuracy: 0.9557

    A population, its best, median and worst member by validation accuracy (training
    accuracy without validation) and how many have diverged:

        Epoch 1/5 - 3.10s - val_accuracy best 0.9601, median 0.9554, worst 0.9012 - diverged 1 of 8
    """
    head = f"Epoch {record['epoch']}/{epochs} - {record['seconds']:.2f}s"
    metrics = {k: v for k, v in record.items() if k not in ("epoch", "seconds")}
    if not isinstance(metrics["loss"], list):
        return " - ".join([head, *(f"{k}: {v:.4f}" for k, v in metrics.items())])
    name = "val_accuracy" if "val_accuracy" in metrics else "accuracy"
    values = [v for v in metrics[name] if v is not None]
    diverged = f"diverged {len(metrics[name]) - len(values)} of {len(metrics[name])}"
    if not values:
        return f"{head} - {diverged}"
    best, median, worst = max(values), float(np.median(values)), min(values)
    return f"{head} - {name} best {best:.4f}, median {median:.4f}, worst {worst:.4f} - {diverged}"


# --------------------------------------------------------------------------- histories


def history_of(records: list[dict], compile_seconds: float) -> History:
    """One model's History: every recorded epoch, also those a checkpoint brought back."""
    metrics = {name: [r[name] for r in records] for name in (records[0] if records else ()) if name != "epoch"}
    seconds = metrics.pop("seconds", [])
    return History(metrics, seconds, compile_seconds)


def member_histories(records: list[dict], members: int, compile_seconds: float) -> list[History]:
    """One History per member of a population; a diverged member's ends before the epoch that diverged."""
    histories = []
    for i in range(members):
        trained = [r for r in records if r["loss"][i] is not None]
        names = [name for name in (records[0] if records else ()) if name not in ("epoch", "seconds")]
        metrics = {name: [r[name][i] for r in trained] for name in names}
        diverged_at = next((r["epoch"] for r in records if r["loss"][i] is None), None)
        histories.append(History(metrics, [r["seconds"] for r in trained], compile_seconds, diverged_at))
    return histories
