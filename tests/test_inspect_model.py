"""experiments/inspect_model.py and the figures it draws: every file written, every number checked against
the network's own predictions, and bad params files refused in one line with exit status 2."""

import csv
import json

import numpy as np
import pytest
from helpers import REPO, mnist_dir, run_captured, run_in_process
from PIL import Image

import jaxmlp
from jaxmlp import checkpoint, metrics, plot

SCRIPT = REPO / "experiments" / "inspect_model.py"
FIGURES = ["weights.png", "weights_all.png", "confusion.png", "mistakes.png", "calibration.png"]


@pytest.fixture(scope="module")
def inspected(seed_params_file, tmp_path_factory):
    """(the out folder, stdout) of one run of the script on the seed's network."""
    out = tmp_path_factory.mktemp("inspect")
    argv = ["--params", str(seed_params_file), "--data-dir", str(mnist_dir()), "--out", str(out)]
    code, stdout, stderr = run_captured(SCRIPT, argv)
    assert code == 0 and stderr == "", stderr
    return out, stdout


def test_every_file_is_written_with_a_line_about_it(inspected):
    out, stdout = inspected
    assert sorted(p.name for p in out.iterdir()) == sorted([*FIGURES, "confusion.csv", "metrics.json"])
    for name in FIGURES:
        with Image.open(out / name) as image:
            assert image.format == "PNG" and min(image.size) > 300
    for name in ["weights.png", "confusion.png", "mistakes.png", "calibration.png", "metrics.json"]:
        assert any(line.startswith(name) for line in stdout.splitlines()), name
    assert "a 784-512-10 network; on 10000 test images" in stdout


def test_the_numbers_are_the_networks_own(inspected, seed_network, mnist):
    out, _ = inspected
    _, (images, labels) = mnist
    probabilities = jaxmlp.predict(seed_network, images)
    predicted = probabilities.argmax(axis=1)
    saved = json.loads((out / "metrics.json").read_text())
    confusion = np.array(saved["confusion"])
    assert confusion.sum() == 10000 and np.trace(confusion) == np.sum(predicted == labels)
    np.testing.assert_array_equal(confusion, metrics.confusion_matrix(labels, predicted))
    assert saved["test_accuracy"] == pytest.approx(np.mean(predicted == labels), abs=1e-6)
    assert saved["per_class"] == metrics.per_class(confusion)
    assert saved["per_class"]["support"] == np.bincount(labels, minlength=10).tolist()
    assert saved["calibration"]["ece"] == pytest.approx(metrics.calibration(probabilities, labels)["ece"], rel=1e-6)
    assert sum(saved["calibration"]["count"]) == 10000 and len(saved["calibration"]["bins"]) == 16
    mistakes = saved["mistakes"]
    assert len(mistakes["index"]) == 25
    assert all(
        predicted[i] == p != labels[i] == t for i, p, t in zip(*(mistakes[k] for k in ("index", "predicted", "label")))
    )
    assert mistakes["probability"] == sorted(mistakes["probability"], reverse=True)
    wrong_confidence = probabilities.max(axis=1)[predicted != labels]
    assert mistakes["probability"][0] == pytest.approx(wrong_confidence.max(), rel=1e-6)
    top = saved["most_confused"][0]
    assert top["count"] == max(confusion[i, j] for i in range(10) for j in range(10) if i != j)
    norms = np.linalg.norm(np.asarray(seed_network[0]["w"]), axis=0)
    assert saved["weights"]["largest_norm_units"] == np.argsort(-norms, kind="stable")[:64].tolist()


def test_confusion_csv_has_every_cell_with_its_count_and_share(inspected):
    out, _ = inspected
    saved = np.array(json.loads((out / "metrics.json").read_text())["confusion"])
    with open(out / "confusion.csv") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 100 and list(rows[0]) == ["true", "predicted", "count", "fraction_of_true"]
    for row in rows:
        i, j = int(row["true"]), int(row["predicted"])
        assert int(row["count"]) == saved[i, j]
        assert float(row["fraction_of_true"]) == pytest.approx(saved[i, j] / saved[i].sum())


def _write_params(path, sizes):
    rng = np.random.default_rng(0)
    params = [
        {"w": rng.normal(size=(a, b)).astype(np.float32), "b": np.zeros(b, np.float32)}
        for a, b in zip(sizes, sizes[1:])
    ]
    return checkpoint.save_pytree(path, params)


BAD_PARAMS = {
    "missing": (lambda folder: folder / "nothing.npz", "nothing.npz: no such params file"),
    "not-an-npz": (lambda folder: _text(folder / "params.npz"), "params.npz: not a readable .npz file"),
    "other-arrays": (lambda folder: _npz(folder / "params.npz", weights=np.zeros(3)), "not an MLP's parameters"),
    "100-inputs": (lambda folder: _write_params(folder / "params.npz", [100, 32, 10]), "has 100 inputs; expected 784"),
    "3-classes": (lambda folder: _write_params(folder / "params.npz", [784, 32, 3]), "has 3 outputs; expected 10"),
    "layers-that-do-not-fit": (
        lambda folder: _npz(
            folder / "params.npz",
            **{"0/w": np.zeros((784, 5)), "0/b": np.zeros(5), "1/w": np.zeros((6, 10)), "1/b": np.zeros(10)},
        ),
        "layer 1 has w [6, 10]",
    ),
}


def _text(path):
    path.write_text("weights, not really")
    return path


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("make, message", BAD_PARAMS.values(), ids=BAD_PARAMS.keys())
def test_a_bad_params_file_is_one_line_exit_2_and_nothing_written(make, message, tmp_path, capsys):
    path = make(tmp_path)
    out = tmp_path / "out"
    code, stdout, err = run_in_process(
        SCRIPT, ["--params", str(path), "--data-dir", str(mnist_dir()), "--out", str(out)], capsys
    )
    assert code == 2 and err.startswith(f"error: {path}: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and stdout == ""


def test_plots_draw_any_number_of_units_and_mistakes(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(784, 7))
    plot.plot_weights(weights, tmp_path / "w.png", units=[6, 0, 3])
    plot.plot_weights(weights, tmp_path / "all.png")
    probabilities = np.eye(10)[[1, 2, 3, 3]]
    mistakes = metrics.confident_mistakes(probabilities, np.array([1, 2, 0, 3]), k=25)
    plot.plot_mistakes(rng.integers(0, 256, (4, 784)), mistakes, tmp_path / "one.png")
    plot.plot_mistakes(
        rng.integers(0, 256, (4, 784)),
        metrics.confident_mistakes(np.eye(10)[[1]], np.array([1])),
        tmp_path / "none.png",
    )
    plot.plot_calibration(metrics.calibration(probabilities, np.array([1, 2, 0, 3]), bins=4), tmp_path / "c.png")
    plot.plot_confusion(
        metrics.confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), num_classes=3), tmp_path / "m.png"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.png", "c.png", "m.png", "none.png", "one.png", "w.png"]


@pytest.mark.parametrize("count, columns", [(64, 8), (512, 32), (100, 10), (30, 6), (61, 8), (1, 1), (3, 3)])
def test_weight_grids_fill_their_rows_where_they_can(count, columns):
    assert plot._grid_columns(count) == columns
