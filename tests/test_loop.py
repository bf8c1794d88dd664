"""The host loop fit and fit_population share: checkpoints and resume in the library, refusals, progress lines."""

import re

import jax
import numpy as np
import pytest
from helpers import assert_trees_equal, poisoned, random_data

from jaxmlp import checkpoint, loop, model, optim, train

X, Y = random_data(400)


class Crash(Exception):
    """Stands for a kill: raised by on_epoch_end, after that epoch's checkpoint was written."""


def crash_after(epoch):
    def on_epoch_end(done, logs, state):
        if done == epoch:
            raise Crash

    return on_epoch_end


def fit(folder=None, epochs=4, **options):
    params = model.init_mlp(jax.random.key(0), (784, 16, 10))
    options = {"optimizer": optim.rmsprop(3e-3), "batch_size": 64, "validation_split": 0.25, **options}
    return train.fit(params, X, Y, epochs=epochs, key=jax.random.key(1), checkpoint_dir=folder, **options)


def folder_contents(folder):
    """Every file under `folder` with its bytes: what a refusal must leave as it was."""
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_fit_resumes_from_its_checkpoints_and_ends_bitwise_as_a_run_never_stopped(tmp_path):
    whole, whole_history = fit()
    with pytest.raises(Crash):
        fit(tmp_path, on_epoch_end=crash_after(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-00001.npz", "epoch-00002.npz"]
    seen = []
    resumed, history = fit(tmp_path, on_epoch_end=lambda epoch, logs, state: seen.append(epoch))
    assert seen == [3, 4]  # only the epochs left were trained
    assert_trees_equal(resumed, whole)  # parameters, optimizer state and PRNG key, bitwise (CPU)
    assert history.metrics == whole_history.metrics  # the History covers every epoch, those before the crash too
    assert len(history.seconds) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-00003.npz", "epoch-00004.npz"]  # newest two kept
    seen.clear()
    again, _ = fit(tmp_path, on_epoch_end=lambda epoch, logs, state: seen.append(epoch))
    assert seen == [] and np.array_equal(again.params[0]["w"], whole.params[0]["w"])  # nothing left to train


def test_a_checkpoint_of_another_configuration_is_refused_with_the_differences_named(tmp_path):
    fit(tmp_path, epochs=1)
    before = folder_contents(tmp_path)
    cases = [
        ({"batch_size": 32}, "batch_size: 64 there, 32 now"),
        ({"optimizer": optim.rmsprop(1e-3)}, "optimizer differs"),  # another learning rate
        ({"optimizer": optim.adam(3e-3)}, "optimizer differs"),  # another family
        ({"validation_split": 0.5}, 'training_data: "300 samples, blake2b:'),
    ]
    for change, named in cases:
        with pytest.raises(checkpoint.ConfigurationMismatch, match="belongs to another configuration") as info:
            fit(tmp_path, **change)
        assert str(info.value).startswith(str(tmp_path / "epoch-00001.npz")) and named in str(info.value)
        assert len(str(info.value).splitlines()) == 1
    assert folder_contents(tmp_path) == before  # nothing deleted or overwritten
    _, history = fit(tmp_path, epochs=2)  # the same configuration still resumes
    assert len(history.seconds) == 2


def test_a_folder_that_is_not_ours_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path} holds files that are not jaxmlp checkpoints (notes")):
        fit(tmp_path)
    assert folder_contents(tmp_path) == {(tmp_path / "notes.txt").relative_to(tmp_path): b"my notes"}
    with pytest.raises(ValueError, match="is a file, not a folder of checkpoints"):
        fit(tmp_path / "notes.txt")


def test_a_damaged_or_foreign_checkpoint_is_named(tmp_path):
    truncated, foreign = tmp_path / "truncated", tmp_path / "foreign"
    fit(truncated, epochs=1)
    path = truncated / "epoch-00001.npz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=re.escape(f"{path}: not a readable .npz file")):
        fit(truncated)
    assert path.stat().st_size == 200  # left for the user to look at
    foreign.mkdir()
    checkpoint.save_pytree(foreign / "epoch-00001.npz", {"w": np.zeros(3)})  # an npz, but not a checkpoint
    with pytest.raises(ValueError, match="epoch-00001.npz: holds no metadata; it was not written as a checkpoint"):
        fit(foreign)


def test_checkpoints_past_the_epochs_asked_for_are_refused(tmp_path):
    fit(tmp_path, epochs=3)
    with pytest.raises(ValueError, match=r"epoch-00003.npz is after epoch 3, past epochs=2; ask for at least 3"):
        fit(tmp_path, epochs=2)


def test_stale_temporaries_in_the_checkpoint_folder_are_removed_when_fit_starts(tmp_path):
    stale = tmp_path / "epoch-00001.npz.k2j3h4.jaxmlp-tmp"
    stale.write_bytes(b"a kill landed here")
    fit(tmp_path, epochs=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epoch-00001.npz"]


def test_parameters_gone_non_finite_stop_fit_even_when_the_loss_was_finite():
    x, y = random_data(320)  # 5 steps of 64 per epoch, no validation to notice
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    last_step_of_epoch_2 = poisoned(optim.sgd(0.01), after_steps=9)  # its loss is computed before the NaN update
    message = "diverged in epoch 2: the parameters or the optimizer state became NaN or infinite"
    with pytest.raises(train.Diverged, match=message) as info:
        train.fit(params, x, y, optimizer=last_step_of_epoch_2, epochs=3, batch_size=64)
    after_one, _ = train.fit(params, x, y, optimizer=poisoned(optim.sgd(0.01), after_steps=9), epochs=1, batch_size=64)
    assert_trees_equal(info.value.state.params, after_one.params)
    assert len(info.value.history.metrics["loss"]) == 1


def test_the_progress_line_of_a_model_and_of_a_population():
    one = {"epoch": 2, "loss": 0.25, "accuracy": 0.875, "val_loss": 0.5, "val_accuracy": 0.75, "seconds": 1.234}
    assert loop.format_record(one, 5) == (
        "Epoch 2/5 - 1.23s - loss: 0.2500 - accuracy: 0.8750 - val_loss: 0.5000 - val_accuracy: 0.7500"
    )
    population = {"epoch": 1, "loss": [0.3, None, 0.2], "accuracy": [0.9, None, 0.8], "seconds": 3.0}
    assert loop.format_record(population, 5) == (
        "Epoch 1/5 - 3.00s - accuracy best 0.9000, median 0.8500, worst 0.8000 - diverged 1 of 3"
    )
    population["val_accuracy"] = [0.6, None, 0.7]
    assert "val_accuracy best 0.7000, median 0.6500, worst 0.6000" in loop.format_record(population, 5)
    gone = {"epoch": 1, "loss": [None, None], "accuracy": [None, None], "seconds": 0.5}
    assert loop.format_record(gone, 5) == "Epoch 1/5 - 0.50s - diverged 2 of 2"


def test_schedule_free_resumes_bitwise_with_its_average_and_step_count(tmp_path):
    optimizer = optim.schedule_free_adamw(3e-3, warmup_steps=4)
    whole, whole_history = fit(optimizer=optimizer)
    with pytest.raises(Crash):
        fit(tmp_path, optimizer=optimizer, on_epoch_end=crash_after(2))
    resumed, history = fit(tmp_path, optimizer=optimizer)
    assert_trees_equal(resumed, whole)  # y, z, the weight sum, the step count: bitwise (CPU)
    assert history.metrics == whole_history.metrics
