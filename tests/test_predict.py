"""experiments/predict.py: the user's own image files classified after MNIST's preprocessing, as text or JSON;
unusable images named in one line each, with exit status 2 when nothing could be classified and 1 when some was."""

import json

import numpy as np
import pytest
from helpers import REPO, run_in_process
from PIL import Image

import jaxmlp
from jaxmlp import digits

SCRIPT = REPO / "experiments" / "predict.py"


@pytest.fixture(scope="module")
def pictures(mnist, tmp_path_factory):
    """Five MNIST test digits saved as a user's files: dark on a light page, enlarged, in several formats and modes.

    Returns [(path, label)]."""
    _, (images, labels) = mnist
    folder = tmp_path_factory.mktemp("pictures")
    saved = []
    for n, (suffix, mode) in enumerate([("png", "L"), ("jpg", "RGB"), ("bmp", "RGB"), ("png", "RGBA"), ("jpeg", "L")]):
        page = np.full((150, 120), 245, np.uint8)
        page[20 + 5 * n : 104 + 5 * n, 10 + 3 * n : 94 + 3 * n] = 255 - np.kron(images[n], np.ones((3, 3), np.uint8))
        path = folder / f"digit{n}.{suffix}"
        Image.fromarray(page).convert(mode).save(path)
        saved.append((path, int(labels[n])))
    return saved


def test_each_image_gets_its_class_and_three_most_probable(pictures, seed_params_file, seed_network, capsys):
    code, out, err = run_in_process(SCRIPT, ["--params", str(seed_params_file), *(str(p) for p, _ in pictures)], capsys)
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert len(lines) == len(pictures)
    styled = np.stack([digits.mnist_style(digits.load_image(path)) for path, _ in pictures])
    probabilities = jaxmlp.predict(seed_network, styled)
    for line, (path, label), p in zip(lines, pictures, probabilities):
        top = np.argsort(-p, kind="stable")[:3]
        assert (
            line == f"{path}: {top[0]} ({top[0]} {p[top[0]]:.3f}, {top[1]} {p[top[1]]:.3f}, {top[2]} {p[top[2]]:.3f})"
        )
        assert top[0] == label  # the first five test digits, 7 2 1 0 4, are read right


def test_json_lists_file_class_and_ten_probabilities(pictures, seed_params_file, capsys):
    paths = [str(path) for path, _ in pictures[:3]]
    code, out, err = run_in_process(SCRIPT, ["--params", str(seed_params_file), "--json", *paths], capsys)
    assert code == 0 and err == ""
    rows = json.loads(out)
    assert [row["file"] for row in rows] == paths
    for row, (_, label) in zip(rows, pictures):
        assert sorted(row) == ["class", "file", "probabilities"] and len(row["probabilities"]) == 10
        assert row["class"] == label == int(np.argmax(row["probabilities"]))
        assert sum(row["probabilities"]) == pytest.approx(1, abs=1e-5)


def _one_colour(path):
    Image.new("RGB", (40, 30), (200, 200, 200)).save(path)
    return path


def _nearly_one_colour(path):
    noise = np.random.default_rng(0).integers(250, 256, (40, 30), dtype=np.uint8)  # a blank page, as JPEG leaves it
    Image.fromarray(noise).save(path)
    return path


def _text(path):
    path.write_text("a seven, honestly")
    return path


def _empty(path):
    path.write_bytes(b"")
    return path


def _truncated(path):
    Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    return path


def _folder(path):
    path.mkdir()
    return path


BAD_IMAGES = {
    "one-colour": (_one_colour, "image is one colour (every pixel 200/255): there is no digit in it"),
    "nearly-one-colour": (_nearly_one_colour, "image is one colour (grey levels 250 to 255 of 255, less than 8 apart)"),
    "not-an-image": (_text, "not an image (in none of the formats Pillow reads"),
    "empty": (_empty, "the file is empty"),
    "truncated": (_truncated, "not an image ("),
    "missing": (lambda path: path, "no such file"),
    "a-folder": (_folder, "cannot be read"),
}


@pytest.mark.parametrize("make, message", BAD_IMAGES.values(), ids=BAD_IMAGES.keys())
def test_an_unusable_image_is_one_line_naming_it_and_exit_2(make, message, seed_params_file, tmp_path, capsys):
    path = make(tmp_path / "digit.png")
    code, out, err = run_in_process(SCRIPT, ["--params", str(seed_params_file), str(path)], capsys)
    assert code == 2 and out == ""
    assert err.startswith(f"error: {path}: {message}"), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_with_several_images_the_good_ones_are_classified_and_the_bad_named_exit_1(
    pictures, seed_params_file, tmp_path, capsys
):
    bad = [_text(tmp_path / "notes.png"), _one_colour(tmp_path / "blank.png")]
    good = [pictures[0][0], pictures[1][0]]
    argv = ["--params", str(seed_params_file), str(good[0]), str(bad[0]), str(good[1]), str(bad[1]), "--json"]
    code, out, err = run_in_process(SCRIPT, argv, capsys)
    assert code == 1
    assert [row["file"] for row in json.loads(out)] == [str(path) for path in good]
    assert [line.split(": ")[1] for line in err.strip().splitlines()] == [str(path) for path in bad]


def test_a_bad_params_file_is_exit_2_before_any_image_is_read(pictures, tmp_path, capsys):
    code, out, err = run_in_process(SCRIPT, ["--params", str(tmp_path / "none.npz"), str(pictures[0][0])], capsys)
    assert code == 2 and out == "" and err.startswith(f"error: {tmp_path / 'none.npz'}: no such params file")


def test_no_image_is_a_usage_error(seed_params_file, capsys):
    code, _, err = run_in_process(SCRIPT, ["--params", str(seed_params_file)], capsys)
    assert code == 2 and err.startswith("error: the following arguments are required: IMAGE")
