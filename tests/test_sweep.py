"""Sweeps: grids, rungs, successive halving that compacts survivors, results and the best member's files."""

import csv
import json
import logging
import os
import subprocess
import sys

import jax
import pytest
from helpers import REPO

from jaxmlp import checkpoint, loop, sweep, train


def test_rungs_and_log_ranges_are_the_hand_computed_ones():
    assert sweep.rungs(1, 9, 3) == [1, 3, 9]
    assert sweep.rungs(2, 10, 3) == [2, 6, 10]
    assert sweep.rungs(1, 10, 3) == [1, 3, 9, 10]
    assert sweep.rungs(3, 3, 2) == [3] and sweep.rungs(1, 5, None) == [5]
    assert sweep.log_range(1e-4, 1e-1, 4) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1], rel=1e-12)
    assert sweep.log_range(1e-4, 1e-1, 16)[1] == pytest.approx(10 ** (-4 + 3 / 15), rel=1e-12)
    for bad, message in (((1, 9, 1), "halving must be an integer >= 2"), ((10, 9, 3), "min_epochs must be in 1..")):
        with pytest.raises(ValueError, match=message):
            sweep.rungs(*bad)
    with pytest.raises(ValueError, match="at least 2 values; got 0"):
        sweep.log_range(1e-3, 1e-2, 0)


def outcome(val_accuracy, diverged_at_epoch=None):
    history = loop.History({"val_accuracy": [0.5, val_accuracy]}, [1.0, 1.0], 0.0, diverged_at_epoch)
    return sweep.Outcome(sweep.Member("adam", 1e-3, 0), history, None)


def test_survivors_are_the_best_fraction_with_the_diverged_out_first():
    outcomes = [outcome(0.9), outcome(0.95), outcome(0.1, diverged_at_epoch=2), outcome(0.97), outcome(0.95)]
    racing = [0, 1, 2, 3, 4]
    assert sweep.survivors(outcomes, racing, 2, "val_accuracy") == [1, 3]  # ties keep grid order
    assert sweep.survivors(outcomes, racing, 5, "val_accuracy") == [3]
    assert sweep.survivors(outcomes, [2, 0], 3, "val_accuracy") == [0]  # at least one; a diverged one last
    losses = [outcome(v) for v in (0.3, 0.1, 0.2)]
    losses = [
        o._replace(history=o.history._replace(metrics={"val_loss": o.history.metrics["val_accuracy"]})) for o in losses
    ]
    assert sweep.survivors(losses, [0, 1, 2], 3, "val_loss") == [1]  # the lowest loss


def test_the_grid_is_the_cross_product_and_every_value_is_checked():
    members = sweep.grid(
        ["momentum", "sgd"],
        learning_rates=[0.01, 0.1],
        seeds=[0, 1],
        hp={"momentum": [0.5, 0.9]},
        regularization={"dropout": [0.0, 0.2]},
    )
    assert len(members) == 2 * 2 * 2 * 2 * 2
    first = members[0]
    assert first == sweep.Member("momentum", 0.01, 0, 512, 128, (("momentum", 0.5),), first.regularization)
    assert first.config() == {
        "optimizer": "momentum",
        "learning_rate": 0.01,
        "seed": 0,
        "hidden": 512,
        "batch_size": 128,
        "momentum": 0.5,
        "dropout": 0.0,
        "label_smoothing": 0.0,
        "l2": 0.0,
    }
    assert {m.population_key() for m in members} == {
        ("momentum", 512, 128, ("momentum",)),
        ("sgd", 512, 128, ("momentum",)),
    }
    assert [m.learning_rate for m in sweep.grid(["rmsprop", "sgd"])] == [1e-3, 0.01]  # each family's default

    bad = [
        (dict(optimizers=["adam"], hp={"momentum": [0.9]}), "adam has no hyperparameter momentum; its .* b1, b2, eps"),
        (dict(optimizers=["rmsprop"], hp={"decay": [0.9, 1.5]}), r"decay must be in \[0, 1\); got 1.5"),
        (dict(optimizers=["adam"], learning_rates=[-1.0]), "learning_rate must be > 0"),
        (dict(optimizers=["adam"], regularization={"dropout": [1.5]}), r"dropout must be in \[0, 1\)"),
        (dict(optimizers=["adam"], seeds=[]), "--seed has no values"),
        (dict(optimizers=[]), "--optimizer has no values"),
        (dict(optimizers=["adamw9"]), "unknown optimizer 'adamw9'; choose from sgd, momentum"),
        (dict(optimizers=["adam"], hidden=[0]), "hidden must be integers >= 1; got 0"),
    ]
    for arguments, message in bad:
        with pytest.raises(ValueError, match=message):
            sweep.grid(**arguments)


def test_the_memory_estimate_is_the_hand_computed_one():
    rmsprop = sweep.Member("rmsprop", 1e-3, 0)  # 407,050 parameters, one slot (nu)
    assert sweep.member_bytes(rmsprop) == 4 * (407_050 * 7 + 128 * (784 + 4 * 512 + 40))
    adam = sweep.Member("adam", 1e-3, 0, hidden=32, batch_size=64)  # 25,450 parameters, two slots
    assert sweep.member_bytes(adam) == 4 * (25_450 * 9 + 64 * (784 + 4 * 32 + 40))
    assert sweep.population_limit(rmsprop, max_population=7) == 7
    assert sweep.population_limit(rmsprop) == sweep.device_memory() // 2 // sweep.member_bytes(rmsprop)


class CompileLog(logging.Handler):
    """Counts XLA compilations of the population epoch (what `jax.log_compiles` logs), cached ones excluded."""

    def __init__(self):
        super().__init__()
        self.programs = 0

    def emit(self, record):
        self.programs += "XLA compilation of jit(population_epoch)" in record.getMessage()


@pytest.fixture(scope="module")
def halved(mnist, tmp_path_factory):
    """Four RMSProp members (one diverges), 3 epochs, halving 2: rungs at 1, 2 and 3; compilations counted."""
    (x, y), (x_test, y_test) = mnist
    members = sweep.grid(["rmsprop"], learning_rates=[1e-4, 1e-3, 1e30, 3e-3], hidden=[32], batch_sizes=[64])
    compiled = CompileLog()
    logging.getLogger("jax._src.dispatch").addHandler(compiled)
    try:
        with jax.log_compiles():
            result = sweep.run(
                members, x[:1200], y[:1200], epochs=3, halving=2, test_data=(x_test[:500], y_test[:500]), verbose=True
            )
    finally:
        logging.getLogger("jax._src.dispatch").removeHandler(compiled)
    folder = sweep.save(result, tmp_path_factory.mktemp("sweep"))
    return members, result, folder, compiled.programs


def test_halving_ranks_on_validation_and_compiles_once_per_population_size(halved, capsys):
    members, result, _, compiled = halved
    assert result.rungs == [1, 2, 3] and result.programs == compiled == 3  # populations of 4, 2 and 1
    trained = [o.epochs_trained for o in result.outcomes]
    diverged = result.outcomes[2].history.diverged_at_epoch
    assert diverged == 1 and trained[2] == 0
    after_one = [o.history.metrics["val_accuracy"][0] if o.epochs_trained else None for o in result.outcomes]
    kept = sorted((i for i in (0, 1, 3)), key=lambda i: -after_one[i])[:2]  # the best 2 of the 3 still finite
    assert [i for i in range(4) if trained[i] >= 2] == sorted(kept)
    assert sorted(trained) == [0, 1, 2, 3]
    best = result.best
    assert trained[best] == 3 and result.outcomes[best].final("val_accuracy") is not None
    for o in result.outcomes:  # the test set is read for every member that did not diverge
        assert (o.test is None) == (o.history.diverged_at_epoch is not None)


def test_a_sweep_writes_rows_csv_and_a_best_member_the_package_can_load(halved, mnist):
    members, result, folder, _ = halved
    saved = json.loads((folder / "results.json").read_text())
    assert saved["rungs"] == [1, 2, 3] and saved["members"] == 4 and saved["select"] == "val_accuracy"
    rows = saved["results"]
    assert [row["learning_rate"] for row in rows] == [1e-4, 1e-3, 1e30, 3e-3]
    assert set(rows[0]) >= {"optimizer", "seed", "hidden", "batch_size", "dropout", "label_smoothing", "l2"}
    assert set(rows[0]) >= set(sweep.RESULT_METRICS) | {"history"}
    diverged = rows[2]
    assert diverged["diverged_at_epoch"] == 1 and diverged["val_accuracy"] is None and diverged["test_accuracy"] is None
    for row, o in zip(rows, result.outcomes):
        assert row["epochs_trained"] == len(row["history"].get("val_accuracy", [])) == o.epochs_trained
    with open(folder / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and table[2]["val_accuracy"] == "" and float(table[1]["learning_rate"]) == 1e-3
    assert saved["best"] == {k: v for k, v in rows[result.best].items() if k != "history"}

    params = checkpoint.load_params(folder / "best" / "params.npz")
    config = json.loads((folder / "best" / "config.json").read_text())
    summary = json.loads((folder / "best" / "summary.json").read_text())
    assert config["sizes"] == [784, 32, 10] and config["learning_rate"] == members[result.best].learning_rate
    assert config["epochs"] == 3 and config["precision"] == "float32"
    (_, _), (x_test, y_test) = mnist
    assert train.evaluate(params, x_test[:500], y_test[:500])["accuracy"] == summary["test_accuracy"]
    assert summary["val_accuracy"] == rows[result.best]["val_accuracy"]


SURVIVORS_SCRIPT = """
from helpers import assert_trees_equal, random_data
from jaxmlp import sweep
x, y = random_data(640)
members = sweep.grid(["adam"], learning_rates=[1e-3, 3e-3, 1e-2, 3e-2], hidden=[16], batch_sizes=[64])
full = sweep.run(members, x, y, epochs=3, validation_split=0.25)
halved = sweep.run(members, x, y, epochs=3, validation_split=0.25, halving=2, max_population=3)
assert halved.programs == 3, halved.programs  # rung 1 in pieces of 3 and 1 members, then 2, then 1 again
for whole, part in zip(full.outcomes, halved.outcomes):
    for name, values in part.history.metrics.items():  # exactly, every epoch it trained
        assert values == whole.history.metrics[name][: part.epochs_trained], name
assert halved.outcomes[halved.best].epochs_trained == 3 and full.best == halved.best, (full.best, halved.best)
assert_trees_equal(halved.best_params, full.best_params)
print("survivors exact")
"""


def test_a_survivor_trains_exactly_as_in_the_sweep_without_halving():
    """Bitwise, with XLA's CPU reduction fusion (YNNPACK) off: it picks a summation order by population size.

    With the fusion on, a population of fewer than 4 members sums over a batch in another order than a
    larger one does, so a survivor gathered into a population of 1 to 3 differs from its twin by rounding.
    """
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type="
    result = subprocess.run(
        [sys.executable, "-c", SURVIVORS_SCRIPT],
        env={**os.environ, "XLA_FLAGS": flags, "PYTHONPATH": str(REPO / "tests")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "survivors exact" in result.stdout


def test_sweep_errors_name_what_to_fix(mnist):
    (x, y), _ = mnist
    members = sweep.grid(["adam"], hidden=[16])
    with pytest.raises(ValueError, match="select must be one of val_accuracy, val_loss"):
        sweep.run(members, x[:100], y[:100], epochs=1, select="accuracy")
    with pytest.raises(ValueError, match="ranks on validation"):
        sweep.run(members, x[:100], y[:100], epochs=1, validation_split=0.0)
    with pytest.raises(ValueError, match="the grid is empty"):
        sweep.run([], x[:100], y[:100], epochs=1)
    with pytest.raises(ValueError, match="max_population must be"):
        sweep.run(members, x[:100], y[:100], epochs=1, max_population=0)


def test_a_schedule_free_sweep_tests_and_keeps_each_members_evaluation_parameters():
    """The best member's parameters and every test score are schedule-free's x, as fit would give them alone."""
    from helpers import assert_trees_close, random_data

    from jaxmlp import model, optim, population

    (x, y), test = random_data(500), random_data(200, seed=1)
    members = sweep.grid(["schedule_free_adamw"], learning_rates=[3e-3, 1e-2], seeds=[0, 1], hidden=[16])
    result = sweep.run(members, x, y, epochs=2, validation_split=0.2, test_data=test, select="val_loss")
    for outcome in result.outcomes:
        assert outcome.test is not None and outcome.epochs_trained == 2
    best = result.outcomes[result.best].member
    init_keys, shuffle_keys = population.member_keys([best.seed])
    optimizer = optim.FAMILIES[best.optimizer](best.learning_rate)
    start = train.init_train_state(model.init_mlp(init_keys[0], (784, 16, 10)), optimizer, shuffle_keys[0])
    alone, _ = train.fit(start, x, y, optimizer=optimizer, epochs=2, batch_size=128, validation_split=0.2)
    assert_trees_close(result.best_params, train.evaluation_params(alone, optimizer), rtol=1e-4, atol=1e-5)
    assert not jax.numpy.allclose(result.best_params[0]["w"], alone.params[0]["w"], atol=1e-4)  # x, not y
    tested = train.evaluate(result.best_params, *test)
    assert tested["loss"] == pytest.approx(result.outcomes[result.best].test["loss"], rel=1e-5)
