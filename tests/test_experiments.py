"""The main job end to end, its files, and its command-line errors (one line, no traceback)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers import REPO, mnist_dir, run_in_process, small_fashion_mnist

from jaxmlp import files, plot, train

SEED_SCRIPT = REPO / "experiments" / "mnist_seed.py"
COMPARE_SCRIPT = REPO / "experiments" / "compare_optimizers.py"
BENCHMARK_SCRIPT = REPO / "experiments" / "benchmark.py"
SWEEP_SCRIPT = REPO / "experiments" / "sweep.py"
EXPERIMENTS = REPO / "experiments"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_mnist_seed_runs_end_to_end_and_writes_every_file(mnist, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(SEED_SCRIPT), "--epochs", "2", "--hidden", "32", "--out", str(out)],
        env={**os.environ, "JAXMLP_DATA": str(mnist_dir())},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Total params: 25,450" in result.stdout  # 784*32 + 32 + 32*10 + 10
    assert "Epoch 2/2 - " in result.stdout and "test_accuracy: " in result.stdout

    config = json.loads((out / "config.json").read_text())
    assert config["lr"] == 0.001 and config["batch_size"] == 128 and config["data_dir"] == str(mnist_dir())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(metrics[0])
    summary = json.loads((out / "summary.json").read_text())
    for key in (
        "test_loss",
        "test_accuracy",
        "fit_seconds",
        "compile_seconds",
        "epochs",
        "devices",
        "device_kind",
        "jax_version",
    ):
        assert key in summary
    assert summary["test_accuracy"] > 0.9 and summary["devices"] >= 1 and summary["epochs"] == 2
    assert summary["true_first_10"] == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    with np.load(out / "params.npz") as params:
        assert {name: params[name].shape for name in params.files} == {
            "0/w": (784, 32),
            "0/b": (32,),
            "1/w": (32, 10),
            "1/b": (10,),
        }
    for figure in ("history.png", "predictions.png"):
        assert (out / figure).read_bytes()[:8] == PNG_MAGIC


def test_dataset_flag_reads_fashion_mnist_files(tmp_path, capsys):
    small_fashion_mnist(tmp_path / "data")
    argv = [
        "--dataset",
        "fashion_mnist",
        "--data-dir",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "out"),
        "--epochs",
        "1",
        "--hidden",
        "8",
        "--batch-size",
        "32",
        "--optimizer",
        "optax.adamw",
        "--lr",
        "0.01",
    ]
    code, out, err = run_in_process(SEED_SCRIPT, argv, capsys)
    assert code == 0, err
    assert "fashion_mnist: train (200, 28, 28)" in out
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["optimizer"] == "optax.adamw"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "-1"], "error: argument --lr: must be a finite number > 0"),
        (["--lr", "fast"], "error: argument --lr: expected a number, got 'fast'"),
        (["--batch-size", "0"], "error: argument --batch-size: must be > 0"),
        (["--epochs", "-2"], "error: argument --epochs: must be >= 0"),
        (["--validation-split", "1"], r"error: argument --validation-split: must be in [0, 1)"),
        (["--dataset", "cifar10"], "error: argument --dataset: invalid choice: 'cifar10'"),
        (["--optimizer", "rmsporp"], "error: unknown optimizer 'rmsporp'; choose one of sgd, momentum"),
        (["--data-dir", "/no/such/folder"], "error: data folder /no/such/folder does not exist"),
    ],
)
def test_bad_flags_give_one_line_and_a_nonzero_exit(argv, message, tmp_path, capsys):
    code, out, err = run_in_process(SEED_SCRIPT, [*argv, "--out", str(tmp_path / "out")], capsys)
    assert code != 0
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_a_real_process_prints_no_traceback(tmp_path):
    (tmp_path / "mnist.npz").write_bytes(b"PK\x03\x04 not really a zip")
    result = subprocess.run(
        [sys.executable, str(SEED_SCRIPT), "--data-dir", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'mnist.npz'}: not a readable .npz file")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_compare_optimizers_tunes_on_validation_and_writes_table_and_figure(mnist, tmp_path, capsys):
    argv = [
        "--data-dir",
        str(mnist_dir()),
        "--out",
        str(tmp_path),
        "--optimizers",
        "sgd,adam",
        "--grid",
        "1e-3,0.1",
        "--epochs",
        "2",
        "--tune-epochs",
        "1",
        "--train-size",
        "1000",
    ]
    code, out, err = run_in_process(COMPARE_SCRIPT, argv, capsys)
    assert code == 0, err
    results = json.loads((tmp_path / "compare.json").read_text())["results"]
    assert [r["optimizer"] for r in results] == ["sgd", "adam"]
    for r in results:
        scores = r["tuning_val_accuracy"]
        assert set(scores) == {"0.001", "0.1"}
        assert scores[str(r["learning_rate"])] == max(scores.values())  # the winner is the best on validation
        assert len(r["history"]["val_accuracy"]) == 2 and 0 < r["test_accuracy"] <= 1
    assert results[0]["learning_rate"] == 0.1  # plain SGD at 1e-3 barely moves in one epoch
    assert "| optimizer | learning rate | val accuracy | test accuracy |" in out
    assert (tmp_path / "compare.png").read_bytes()[:8] == PNG_MAGIC


def test_compare_optimizers_rejects_unknown_names(tmp_path, capsys):
    code, _, err = run_in_process(COMPARE_SCRIPT, ["--optimizers", "sgd,lion", "--out", str(tmp_path)], capsys)
    assert code == 2 and err.startswith("error: argument --optimizers: unknown lion; choose from sgd,momentum")


@pytest.mark.parametrize("setting", ["folder", "off"])
def test_experiments_keep_a_persistent_compilation_cache_unless_it_is_off(setting, tmp_path):
    data_dir = small_fashion_mnist(tmp_path / "data")
    cache = tmp_path / "xla"
    result = subprocess.run(
        [
            sys.executable,
            str(SEED_SCRIPT),
            "--dataset",
            "fashion_mnist",
            "--data-dir",
            str(data_dir),
            "--out",
            str(tmp_path / "out"),
            "--epochs",
            "1",
            "--hidden",
            "8",
            "--batch-size",
            "50",
        ],
        env={
            **os.environ,
            "JAXMLP_COMPILE_CACHE": str(cache) if setting == "folder" else "off",
            "XDG_CACHE_HOME": str(tmp_path / "home-cache"),
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    if setting == "folder":
        assert any(name.startswith("jit_guarded_epoch") for name in os.listdir(cache))
    else:
        assert not cache.exists() and not (tmp_path / "home-cache" / "jaxmlp").exists()


def test_benchmark_reports_ratios_to_the_floor(mnist, tmp_path, capsys):
    argv = [
        "--data-dir",
        str(mnist_dir()),
        "--out",
        str(tmp_path),
        "--repeats",
        "1",
        "--hidden",
        "16",
        "--skip",
        "seed,keras,torch,precision",
    ]
    code, out, err = run_in_process(BENCHMARK_SCRIPT, argv, capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "benchmark.json").read_text())
    for key in (
        "floor_epoch_seconds",
        "epoch_seconds",
        "ratio_to_floor",
        "compile_seconds",
        "loop_epoch_seconds",
        "device_kind",
    ):
        assert result[key] is not None
    assert result["ratio_to_floor"] == pytest.approx(result["epoch_seconds"] / result["floor_epoch_seconds"])
    assert "| GEMM floor: one epoch's matmuls |" in out and "| naive loop" in out


def test_sweep_trains_each_family_as_one_population_and_reports_timings(mnist, tmp_path, capsys):
    options = ["--families", "adam", "--seeds", "3", "--lr", "1e-3,3e-3,1e30", "--epochs", "1", "--train-size", "600"]
    argv = ["--data-dir", str(mnist_dir()), "--out", str(tmp_path), *options, "--throughput", "1,2"]
    code, out, err = run_in_process(SWEEP_SCRIPT, argv, capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "sweep.json").read_text())
    assert len(result["runs"]) == 3  # 3 learning rates x 1 seed
    assert {(r["optimizer"], r["seed"]) for r in result["runs"]} == {("adam", 3)}
    fine, _, diverged = result["runs"]
    assert fine["diverged_at_epoch"] is None and 0 < fine["val_accuracy"] <= 1 and 0 < fine["test_accuracy"] <= 1
    assert (diverged["learning_rate"], diverged["diverged_at_epoch"]) == (1e30, 1)
    assert diverged["val_accuracy"] is None and diverged["val_loss"] is None and diverged["test_accuracy"] is None
    assert "| adam | 1e+30 | 3 | diverged in epoch 1 | diverged |" in out
    assert "diverged 1 of 3" in out  # the progress line
    timings = result["timings"]
    assert timings["models"] == 3 and timings["population_seconds"] > 0 and timings["single_seconds"] > 0
    assert [row["models"] for row in result["throughput"]] == [1, 2]
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    assert "populations take" in out


def test_a_sweep_killed_and_run_again_ends_with_the_same_results(mnist, tmp_path, capsys):
    options = ["--data-dir", str(mnist_dir()), "--families", "rmsprop,adam", "--lr", "1e-3,1e30", "--seeds", "0"]
    options += ["--epochs", "2", "--train-size", "300", "--skip-singles"]
    code, _, err = run_in_process(SWEEP_SCRIPT, [*options, "--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err
    command = [sys.executable, str(SWEEP_SCRIPT), *options]

    out = tmp_path / "killed"
    victim = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "rmsprop" / "epoch-00001.npz").exists():  # the first population under way
        assert victim.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (out / "sweep.json").exists()

    resumed = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming after epoch" in resumed.stdout
    results = [json.loads((folder / "sweep.json").read_text()) for folder in (tmp_path / "whole", out)]
    assert results[1]["runs"] == results[0]["runs"]  # every number, bitwise (CPU); the timings aside
    assert not [p for p in out.rglob("*") if files.is_temporary(p)]


def test_tensor_basics_checks_loops_against_jax_numpy_and_writes_timings(mnist, tmp_path, capsys):
    code, out, err = run_in_process(
        EXPERIMENTS / "tensor_basics.py", ["--data-dir", str(mnist_dir()), "--out", str(tmp_path)], capsys
    )
    assert code == 0, err
    assert "rank 3  shape (60000, 28, 28)" in out and "rank 4  shape (60000, 28, 28, 1)" in out
    assert out.count(" equal; loops ") == 3  # relu, add and dot: each checked equal before it is timed
    timings = json.loads((tmp_path / "timings.json").read_text())
    assert {"relu", "add", "dot"} <= set(timings)
    assert all(
        timings[name]["naive_seconds"] > 0 and timings[name]["vectorised_seconds"] > 0
        for name in ("relu", "add", "dot")
    )


def test_training_loop_by_hand_equals_optim_sgd_and_the_loss_falls(mnist, tmp_path, capsys):
    argv = ["--data-dir", str(mnist_dir()), "--out", str(tmp_path), "--steps", "60"]
    code, out, err = run_in_process(EXPERIMENTS / "training_loop.py", argv, capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "loop.json").read_text())
    assert len(result["losses"]) == 60 and result["largest_difference_from_optim_sgd"] <= 1e-6
    assert np.mean(result["losses"][-10:]) < result["losses"][0] / 2
    assert "the same parameters" in out
    assert (tmp_path / "loss.png").read_bytes()[:8] == PNG_MAGIC


def test_optimizer_paths_picks_a_rate_per_optimizer_and_draws_both_landscapes(tmp_path, capsys):
    code, out, err = run_in_process(
        EXPERIMENTS / "optimizer_paths.py", ["--out", str(tmp_path), "--steps", "60"], capsys
    )
    assert code == 0, err
    results = json.loads((tmp_path / "paths.json").read_text())["results"]
    assert set(results) == {"ravine", "Rosenbrock"}
    for runs in results.values():
        assert set(runs) == {"SGD", "momentum", "Nesterov", "Adagrad", "RMSProp", "Adam"}
        for run in runs.values():
            assert 1e-4 <= run["learning_rate"] <= 1
    start = 0.5 * (7.0**2 + 50 * 1.5**2)
    assert all(run["final_value"] < start / 100 for run in results["ravine"].values())
    for figure in ("paths.png", "loss.png"):
        assert (tmp_path / figure).read_bytes()[:8] == PNG_MAGIC


def test_best_mlp_chooses_on_validation_and_tests_once(mnist, tmp_path, capsys):
    argv = [
        "--data-dir",
        str(mnist_dir()),
        "--out",
        str(tmp_path),
        "--train-size",
        "1200",
        "--epochs",
        "1",
        "--learning-rates",
        "1e-3",
        "--dropouts",
        "0.3",
    ]
    code, out, err = run_in_process(EXPERIMENTS / "best_mlp.py", argv, capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "summary.json").read_text())
    search = summary["search"]
    assert [entry["distortion"] for entry in search] == [False, True]
    best = max(search, key=lambda entry: entry["val_accuracy"])
    assert summary["chosen"]["dropout"] == 0.3 and summary["chosen"]["learning_rate"] == 1e-3
    assert (summary["chosen"]["max_rotation"] > 0) == best["distortion"]
    assert summary["validation_images"] == 200 and summary["training_images"] == 1200
    assert 0 < summary["test_accuracy"] <= 1 and out.count("search: ") == 2
    assert (tmp_path / "search.png").read_bytes()[:8] == PNG_MAGIC


def test_plot_history_draws_training_and_validation(tmp_path):
    history = train.History(
        {"loss": [0.3, 0.1], "accuracy": [0.9, 0.97], "val_loss": [0.2, 0.15], "val_accuracy": [0.94, 0.96]},
        seconds=[1.0, 1.0],
        compile_seconds=0.5,
    )
    assert plot.plot_history(history, tmp_path / "h.png").read_bytes()[:8] == PNG_MAGIC
    assert plot.plot_history({"loss": [1.0], "accuracy": [0.5]}, tmp_path / "d.png").read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.png", "h.png"]  # no temporary files left
