"""Reliability: divergence stops cleanly, a killed run resumes bitwise, runs repeat, memory stays flat."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from helpers import (
    REPO,
    assert_trees_equal,
    mnist_dir,
    poisoned,
    random_data,
    read_npz,
    run_in_process,
    small_fashion_mnist,
)

from jaxmlp import checkpoint, files, model, optim, train

SEED_SCRIPT = REPO / "experiments" / "mnist_seed.py"


def test_fit_stops_at_the_diverging_epoch_and_hands_back_the_last_finite_state():
    x, y = random_data(320)  # 5 steps of 64 per epoch
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    seen = []
    with pytest.raises(train.Diverged, match="diverged in epoch 3: the loss became nan.*learning rate") as info:
        train.fit(
            params,
            x,
            y,
            optimizer=poisoned(optim.sgd(0.01), after_steps=12),
            epochs=5,
            batch_size=64,
            on_epoch_end=lambda epoch, logs, state: seen.append(epoch),
        )
    assert seen == [1, 2]  # callbacks (and so checkpoints) only ever see finite epochs
    assert info.value.epoch == 3 and len(info.value.history.metrics["loss"]) == 2
    assert all(np.isfinite(leaf).all() for leaf in jax.tree.leaves(info.value.state.params))
    finite, _ = train.fit(params, x, y, optimizer=poisoned(optim.sgd(0.01), after_steps=12), epochs=2, batch_size=64)
    assert_trees_equal(info.value.state.params, finite.params)  # exactly the state after epoch 2


def test_a_diverging_run_exits_with_one_line_and_keeps_its_last_finite_checkpoint(tmp_path, capsys, monkeypatch):
    data_dir = small_fashion_mnist(tmp_path / "data")  # 160 training images: 4 steps of 50 per epoch
    real = optim.from_name
    monkeypatch.setattr(optim, "from_name", lambda name, lr=None: poisoned(real(name, lr), after_steps=4))
    out = tmp_path / "out"
    argv = [
        "--dataset",
        "fashion_mnist",
        "--data-dir",
        str(data_dir),
        "--out",
        str(out),
        "--epochs",
        "3",
        "--hidden",
        "8",
        "--batch-size",
        "50",
    ]
    code, _, err = run_in_process(SEED_SCRIPT, argv, capsys)
    assert code == 1
    assert err.startswith("error: training diverged in epoch 2: the loss became nan") and "learning rate" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-00001.npz"]
    with np.load(out / "checkpoints" / "epoch-00001.npz") as saved:
        assert all(np.isfinite(saved[name]).all() for name in saved.files if name.startswith("params/"))
    assert not (out / "params.npz").exists()  # no NaN parameters written as the result
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1]


def run_seed(out, epochs=6, extra=()):
    return [
        sys.executable,
        str(SEED_SCRIPT),
        "--data-dir",
        str(mnist_dir()),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "--hidden",
        "64",
        *extra,
    ]


def without_seconds(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


def test_a_run_killed_mid_epoch_resumes_and_ends_bitwise_as_an_uninterrupted_one(mnist, tmp_path):
    whole = subprocess.run(run_seed(tmp_path / "whole"), capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr

    out = tmp_path / "killed"
    victim = subprocess.Popen(run_seed(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "epoch-00002.npz").exists():  # two epochs done, the third under way
        assert victim.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (out / "params.npz").exists()

    resumed = subprocess.run(run_seed(out), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch 2" in resumed.stdout or "resuming after epoch 3" in resumed.stdout
    assert_trees_equal(read_npz(out / "params.npz"), read_npz(tmp_path / "whole" / "params.npz"))  # bitwise, on CPU
    assert without_seconds(out / "metrics.jsonl") == without_seconds(tmp_path / "whole" / "metrics.jsonl")
    assert [r["epoch"] for r in without_seconds(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert not [p for p in out.rglob("*") if files.is_temporary(p)]  # what the kill left half-written is gone


def test_a_run_removes_the_temporaries_a_killed_run_left_and_nothing_else(tmp_path, capsys):
    data_dir = small_fashion_mnist(tmp_path / "data")
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    stale = [out / "metrics.jsonl.a1b2c3.jaxmlp-tmp", out / "checkpoints" / "epoch-00002.npz.d4e5f6.jaxmlp-tmp"]
    kept = [out / "notes.tmp", out / "metrics.jsonl.part", out / "sub" / "x.jaxmlp-tmp"]
    (out / "sub").mkdir()
    for path in stale + kept:
        path.write_bytes(b"half-written by a killed run")
    argv = ["--dataset", "fashion_mnist", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "1"]
    code, _, err = run_in_process(SEED_SCRIPT, [*argv, "--hidden", "8", "--batch-size", "50"], capsys)
    assert code == 0, err
    assert not any(path.exists() for path in stale)
    assert all(path.read_bytes() == b"half-written by a killed run" for path in kept)  # not ours: untouched


def test_a_checkpoint_of_another_configuration_is_refused_and_fresh_starts_over(tmp_path, capsys):
    data_dir = small_fashion_mnist(tmp_path / "data")
    common = [
        "--dataset",
        "fashion_mnist",
        "--data-dir",
        str(data_dir),
        "--out",
        str(tmp_path / "out"),
        "--batch-size",
        "50",
        "--epochs",
        "2",
    ]
    assert run_in_process(SEED_SCRIPT, [*common, "--hidden", "8"], capsys)[0] == 0
    code, _, err = run_in_process(SEED_SCRIPT, [*common, "--hidden", "16"], capsys)
    expected = 'epoch-00002.npz belongs to another configuration (model: "784-8-10 float32" there, "784-16-10 float32"'
    assert code == 1 and expected in err
    assert "start over with --fresh" in err
    code, out, err = run_in_process(SEED_SCRIPT, [*common, "--hidden", "16", "--fresh"], capsys)
    assert code == 0, err
    assert "resuming" not in out
    identity = checkpoint.read_meta(checkpoint.latest_checkpoint(tmp_path / "out" / "checkpoints"))["identity"]
    assert identity["model"] == "784-16-10 float32"
    code, _, err = run_in_process(SEED_SCRIPT, [*common[:-1], "1", "--hidden", "16"], capsys)
    assert code == 1 and "is after epoch 2, past epochs=1" in err


def test_a_damaged_checkpoint_is_named_in_the_error(tmp_path, capsys):
    data_dir = small_fashion_mnist(tmp_path / "data")
    folder = tmp_path / "out" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "epoch-00001.npz").write_bytes(b"PK\x03\x04 truncated")
    argv = ["--dataset", "fashion_mnist", "--data-dir", str(data_dir), "--out", str(tmp_path / "out")]
    code, _, err = run_in_process(SEED_SCRIPT, argv, capsys)
    assert code == 1 and err.startswith(f"error: {folder / 'epoch-00001.npz'}: not a readable .npz file")


def test_loading_a_checkpoint_checks_its_tree_against_the_state(tmp_path):
    params = model.init_mlp(jax.random.key(0), (784, 8, 10))
    state = train.init_train_state(params, optim.rmsprop(), jax.random.key(1))
    checkpoint.save_checkpoint(tmp_path, state, 1, [], {"hidden": 8})
    restored, epoch, _ = checkpoint.restore(tmp_path, state, {"hidden": 8})
    assert epoch == 1 and jax.random.key_data(restored.key).tolist() == jax.random.key_data(state.key).tolist()
    other = train.init_train_state(params, optim.adam(1e-3), jax.random.key(1))  # another optimizer state
    with pytest.raises(ValueError, match="holds arrays"):
        checkpoint.restore(tmp_path, other, {"hidden": 8})
    wider = train.init_train_state(model.init_mlp(jax.random.key(0), (784, 9, 10)), optim.rmsprop(), jax.random.key(1))
    with pytest.raises(ValueError, match=r"params/0/b is float32\[8\], expected float32\[9\]"):
        checkpoint.restore(tmp_path, wider, {"hidden": 8})


def test_the_same_seed_and_configuration_give_identical_results(tmp_path, capsys):
    data_dir = small_fashion_mnist(tmp_path / "data")
    for name in ("a", "b"):
        argv = [
            "--dataset",
            "fashion_mnist",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / name),
            "--epochs",
            "3",
            "--hidden",
            "8",
            "--batch-size",
            "50",
            "--seed",
            "7",
        ]
        assert run_in_process(SEED_SCRIPT, argv, capsys)[0] == 0
    assert_trees_equal(read_npz(tmp_path / "a" / "params.npz"), read_npz(tmp_path / "b" / "params.npz"))
    assert without_seconds(tmp_path / "a" / "metrics.jsonl") == without_seconds(tmp_path / "b" / "metrics.jsonl")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc (Linux)")
def test_host_memory_does_not_grow_per_epoch():
    def resident_mb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))

    x, y = random_data(2000)
    rss = {}
    params = model.init_mlp(jax.random.key(0), (784, 512, 10))  # a kept copy of the state would be ~5 MB an epoch
    train.fit(
        params,
        x,
        y,
        epochs=50,
        batch_size=128,
        validation_split=0.2,
        on_epoch_end=lambda epoch, logs, state: rss.__setitem__(epoch, resident_mb()),
    )
    assert rss[50] - rss[10] < 25  # measured: 6 to 12 MB of allocator warm-up, flat afterwards
