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

from jaxmlp import files, plot, population, train

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
        "--precision",
        "bf16",
    ]
    code, out, err = run_in_process(SEED_SCRIPT, argv, capsys)
    assert code == 0, err
    assert "fashion_mnist: train (200, 28, 28)" in out
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["optimizer"] == "optax.adamw" and summary["precision"] == "bf16"


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
        "sgd,lion",
        "--grid",
        "1e-3,0.1",
        "--family-grid",
        "lion=1e-4,1e-3,0.1",
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
    assert [r["optimizer"] for r in results] == ["sgd", "lion"]
    assert [r["grid"] for r in results] == [[1e-3, 0.1], [1e-4, 1e-3, 0.1]]  # --family-grid wins over --grid
    for r in results:
        scores, losses = r["tuning_val_accuracy"], r["tuning_val_loss"]
        assert set(scores) == set(losses) == {str(rate) for rate in r["grid"]}
        best = max((s, -losses[rate]) for rate, s in scores.items() if s is not None)
        assert (scores[str(r["learning_rate"])], -losses[str(r["learning_rate"])]) == best  # best on validation
        assert r["at_grid_edge"] == (r["learning_rate"] in (min(r["grid"]), max(r["grid"])))
        assert len(r["history"]["val_accuracy"]) == 2 and 0 < r["test_accuracy"] <= 1 and r["test_loss"] > 0
        assert r["fit_seconds"] > 0 and r["tuning_seconds"] > 0
    assert results[0]["learning_rate"] == 0.1  # plain SGD at 1e-3 barely moves in one epoch
    assert "| optimizer | learning rate | val accuracy | test accuracy |" in out
    assert "| lion | " in out
    assert (tmp_path / "compare.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--optimizers", "sgd,lamb"], "argument --optimizers: unknown lamb; choose from sgd,momentum"),
        (["--optimizers", "sgd,sgd"], "argument --optimizers: sgd given twice"),
        (["--grid", "1e-3,-1"], "argument --grid: must be a finite number > 0"),
        (["--family-grid", "lion"], "argument --family-grid: expected FAMILY=RATES"),
        (["--family-grid", "lamb=1e-3"], "argument --family-grid: unknown lamb; choose from sgd,momentum"),
        (["--optimizers", "sgd", "--family-grid", "lion=1e-4"], "argument --family-grid: lion is not among"),
    ],
)
def test_compare_optimizers_rejects_bad_flags_in_one_line(argv, message, tmp_path, capsys):
    code, _, err = run_in_process(COMPARE_SCRIPT, [*argv, "--out", str(tmp_path)], capsys)
    assert code == 2 and err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1


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
        "seed,keras,torch",
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


def test_benchmark_accelerator_suite_writes_every_measurement_and_a_table(mnist, tmp_path, capsys):
    argv = ["--data-dir", str(mnist_dir()), "--out", str(tmp_path), "--suite", "accelerator", "--train-size", "1024"]
    code, out, err = run_in_process(
        BENCHMARK_SCRIPT, [*argv, "--population-sizes", "1,2", "--seed-trainings", "2"], capsys
    )
    assert code == 0, err
    result = json.loads((tmp_path / "accelerator.json").read_text())
    assert result["suite"] == "accelerator" and result["device_kind"] and result["jax_version"]
    assert result["targets_judged"] is False and result["total_seconds"] > 0  # 1,024 images: no verdicts
    assert list(result["seed"]) == ["float32", "tf32", "bf16"]
    for run in result["seed"].values():
        assert run["fit_seconds_after_compile"] > 0 and run["epoch_seconds"] > 0 and run["compile_seconds"] > 0
        assert 0 < run["test_accuracy"] <= 1 and run["target"] == "<= 0.15 s" and run["target_met"] is None
    throughput = result["throughput"]  # the rows of population.throughput
    assert [row["models"] for row in throughput["rows"]] == [1, 2] and throughput["target_met"] is None
    for row in throughput["rows"]:
        assert row["epoch_seconds"] > 0 and row["compile_seconds"] > 0
        assert row["model_epochs_per_second"] == pytest.approx(row["models"] / row["epoch_seconds"])
    first, second = throughput["rows"]
    assert first["speedup_over_k1"] == 1 and throughput["largest_over_first"] == second["speedup_over_k1"]
    assert second["speedup_over_k1"] == pytest.approx(
        second["model_epochs_per_second"] / first["model_epochs_per_second"]
    )
    trainings = result["seed_trainings"]
    assert (trainings["models"], trainings["populations"], trainings["diverged"]) == (2, 1, 0)
    assert trainings["wall_seconds"] > trainings["compile_seconds"] > 0 and 0 < trainings["median_val_accuracy"] <= 1
    assert trainings["peak_rss_mb"] > 0 and trainings["target_met"] is None
    assert "| what | value | target | met? |" in out and "| seed 5 epochs after compilation, bf16 |" in out
    assert "| population K = 2, float32 |" in out and "| 2 seed trainings, compilation included, float32 |" in out
    with pytest.raises(ValueError, match="epochs must be >= 2"):
        population.throughput(None, None, [1], epochs=1)


def test_benchmark_halving_suite_times_the_full_grid_and_halving_and_compares_their_best(mnist, tmp_path, capsys):
    argv = ["--data-dir", str(mnist_dir()), "--out", str(tmp_path), "--suite", "halving", "--train-size", "600"]
    code, out, err = run_in_process(
        BENCHMARK_SCRIPT, [*argv, "--optimizer", "adam", "--learning-rates", "1", "--epochs", "2"], capsys
    )
    assert code == 0, err
    result = json.loads((tmp_path / "halving.json").read_text())
    full, halved = result["full"], result["halving"]
    assert result["members"] == 2 and full["rungs"] == [2] and halved["rungs"] == [1, 2]  # lr 1e-4, seeds 0 and 1
    assert (full["model_epochs"], halved["model_epochs"]) == (4, 2 + 1)  # 2 members, then the better one
    assert (full["programs"], halved["programs"]) == (1, 2)
    assert result["time_ratio"] == pytest.approx(halved["wall_seconds"] / full["wall_seconds"])
    assert result["best_val_accuracy_gap"] == pytest.approx(full["best_val_accuracy"] - halved["best_val_accuracy"])
    assert full["best"]["optimizer"] == "adam" and 0 < halved["best_test_accuracy"] <= 1
    assert "| full | [2] | 4 | 1 |" in out and "halving takes " in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--suite", "gpu"], "error: argument --suite: invalid choice: 'gpu'"),
        (["--population-sizes", "1,0"], "error: argument --population-sizes: must be > 0"),
        (["--population-sizes", "4"], "error: --population-sizes not used by --suite classic"),
        (["--suite", "accelerator", "--repeats", "2"], "error: --repeats not used by --suite accelerator"),
        (["--suite", "halving", "--seed-trainings", "2"], "error: --seed-trainings not used by --suite halving"),
        (["--train-size", "100"], "error: --train-size not used by --suite classic"),
    ],
)
def test_benchmark_bad_flags_give_one_line_and_exit_2(argv, message, tmp_path, capsys):
    code, _, err = run_in_process(BENCHMARK_SCRIPT, [*argv, "--out", str(tmp_path)], capsys)
    assert code == 2 and err.startswith(message) and len(err.strip().splitlines()) == 1


def test_sweep_runs_a_grid_with_halving_and_writes_results_a_figure_and_the_best(mnist, tmp_path, capsys):
    options = ["--optimizer", "rmsprop,adam", "--lr", "1e-3,1e30", "--seed", "0-1", "--hidden", "32"]
    options += ["--epochs", "2", "--halving", "2", "--train-size", "600", "--throughput", "1"]
    code, out, err = run_in_process(
        SWEEP_SCRIPT, ["--data-dir", str(mnist_dir()), "--out", str(tmp_path), *options], capsys
    )
    assert code == 0, err
    result = json.loads((tmp_path / "results.json").read_text())
    rows = result["results"]
    assert len(rows) == 8 and result["rungs"] == [1, 2] and result["halving"] == 2
    assert [(r["optimizer"], r["learning_rate"], r["seed"]) for r in rows[:4]] == [
        ("rmsprop", 1e-3, 0),
        ("rmsprop", 1e-3, 1),
        ("rmsprop", 1e30, 0),
        ("rmsprop", 1e30, 1),
    ]
    diverged = [r for r in rows if r["learning_rate"] == 1e30]
    assert all(r["diverged_at_epoch"] == 1 and r["test_accuracy"] is None for r in diverged)
    finished = [r for r in rows if r["epochs_trained"] == 2]
    assert len(finished) == 4 and all(r["learning_rate"] == 1e-3 for r in finished)  # 8 // 2 go on
    assert all(0 < r["test_accuracy"] <= 1 and len(r["history"]["val_accuracy"]) == 2 for r in finished)
    assert [row["models"] for row in result["throughput"]] == [1]
    assert result["config"]["optimizer"] == ["rmsprop", "adam"] and result["jax_version"]
    assert (tmp_path / "results.csv").read_text().count("\n") == 9  # a header and 8 rows
    assert (tmp_path / "sweep.png").read_bytes()[:8] == PNG_MAGIC
    best = json.loads((tmp_path / "best" / "summary.json").read_text())
    assert best["val_accuracy"] == max(r["val_accuracy"] for r in finished)
    assert (tmp_path / "best" / "params.npz").exists() and (tmp_path / "best" / "config.json").exists()
    assert "rmsprop-h32-b128/rung1: epoch 1/1 - 2 of 4 training - best val_accuracy so far" in out
    assert "rung 1 at epoch 1: 4 members go on to epoch 2" in out
    assert "| optimizer | learning_rate | seed | epochs_trained |" in out and "8 members (4 diverged)" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "fast"], "error: argument --lr: expected a number, got 'fast'"),
        (["--lr", "1e-3:1e-2:0"], "error: argument --lr: a log range needs at least 2 values; got 0"),
        (["--seed", "3-1"], "error: argument --seed: a range a-b needs a <= b; got '3-1'"),
        (["--optimizer", "adam", "--hp", "momentum=0.9"], "error: adam has no hyperparameter momentum; its"),
        (["--optimizer", "rmsprop", "--hp", "decay=1.5"], "error: decay must be in [0, 1); got 1.5"),
        (["--dropout", "0.2,1"], "error: regularization dropout must be in [0, 1); got 1.0"),
        (["--halving", "1"], "error: argument --halving: must be >= 2"),
        (["--halving", "3", "--min-epochs", "6", "--epochs", "5"], "error: argument --min-epochs: must be at most"),
        (["--optimizer", ""], "error: argument --optimizer: unknown"),
    ],
)
def test_sweep_bad_input_is_one_line_exit_2_and_nothing_written(argv, message, tmp_path, capsys):
    code, _, err = run_in_process(SWEEP_SCRIPT, [*argv, "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_a_sweep_killed_and_run_again_ends_with_the_same_results(mnist, tmp_path, capsys):
    options = ["--data-dir", str(mnist_dir()), "--optimizer", "rmsprop", "--lr", "1e-3,1e30", "--seed", "0-1"]
    options += ["--epochs", "2", "--halving", "2", "--train-size", "300", "--hidden", "32"]
    code, _, err = run_in_process(SWEEP_SCRIPT, [*options, "--out", str(tmp_path / "whole")], capsys)
    assert code == 0, err
    command = [sys.executable, str(SWEEP_SCRIPT), *options]

    out = tmp_path / "killed"
    victim = subprocess.Popen([*command, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (out / "checkpoints" / "rmsprop-h32-b128" / "rung1" / "epoch-00001.npz").exists():
        assert victim.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be killed"
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (out / "results.json").exists()

    resumed = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming rmsprop-h32-b128/rung1 after epoch 1" in resumed.stdout
    results = [json.loads((folder / "results.json").read_text()) for folder in (tmp_path / "whole", out)]
    assert results[1]["results"] == results[0]["results"]  # every number, bitwise (CPU); the timings aside
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
        assert set(runs) == {"SGD", "momentum", "Nesterov", "Adagrad", "RMSProp", "Adam", "AdamW", "Lion"}
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
