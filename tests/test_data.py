"""jaxmlp.data: the real MNIST as Keras gives it, every local layout, and every way a file can be wrong.

Small files are generated here (a handful of 28x28 images); only the first tests read the
real data set, and none of them may download anything.
"""

import gzip
import hashlib
import io
import re
import struct
from pathlib import Path

import numpy as np
import pytest
from helpers import mnist_dir

from jaxmlp import data, download

# --------------------------------------------------------------------------- helpers

IDX_STEMS = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """These tests read local files only: any attempt to download is a failure."""

    def refuse(name, folder, **kwargs):
        raise AssertionError(f"test tried to download {name} into {folder}")

    monkeypatch.setattr(download, "fetch", refuse)


def make_arrays(seed=0, n_train=5, n_test=3):
    """A tiny MNIST-shaped data set: uint8 images (N, 28, 28), labels 0..9."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def idx_bytes(array, magic=None):
    """An IDX file, written out by hand: big-endian magic, big-endian sizes, uint8 body."""
    array = np.asarray(array, np.uint8)
    if magic is None:
        magic = {3: 2051, 1: 2049}[array.ndim]
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def write_idx_set(folder, arrays, *, gzip_content=False, suffix="", dotted=False):
    """The four IDX files of `arrays` in `folder`; returns {key: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, stem in IDX_STEMS.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        raw = idx_bytes(arrays[key])
        paths[key] = folder / (name + suffix)
        paths[key].write_bytes(gzip.compress(raw) if gzip_content else raw)
    return paths


def assert_loaded_equal(loaded, arrays):
    (x_train, y_train), (x_test, y_test) = loaded
    for got, key in ((x_train, "x_train"), (y_train, "y_train"), (x_test, "x_test"), (y_test, "y_test")):
        assert got.dtype == np.uint8, key
        assert got.shape == arrays[key].shape, key
        np.testing.assert_array_equal(got, arrays[key], err_msg=key)


# --------------------------------------------------------------------------- the real MNIST

README_SHA256 = {  # /work/shared/data/README.md: sha256 of each array's raw bytes (= keras mnist.load_data())
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


@pytest.fixture(scope="module")
def real_mnist():
    folder = mnist_dir()
    if not (folder / "mnist.npz").is_file():
        pytest.skip(f"real MNIST not found: no mnist.npz in {folder} (set JAXMLP_DATA to the folder holding it)")
    return data.load_mnist(folder)


def test_real_mnist_is_identical_to_keras_load_data(real_mnist):
    (x_train, y_train), (x_test, y_test) = real_mnist
    got = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    shapes = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}
    for key, array in got.items():
        assert array.dtype == np.uint8, key
        assert array.shape == shapes[key], key
        assert hashlib.sha256(array.tobytes()).hexdigest() == README_SHA256[key], key


def test_real_mnist_order_and_class_counts(real_mnist):
    (_, y_train), (_, y_test) = real_mnist
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert y_test[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --------------------------------------------------------------------------- npz layout


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed], ids=["savez", "savez_compressed"])
def test_npz_round_trip(tmp_path, save):
    arrays = make_arrays()
    save(tmp_path / "mnist.npz", **arrays)
    assert data.locate("mnist", tmp_path) == tmp_path / "mnist.npz"
    assert_loaded_equal(data.load_dataset("mnist", tmp_path, allow_download=False), arrays)


@pytest.mark.parametrize("file_name", ["fashion_mnist.npz", "fashion-mnist.npz"])
def test_each_dataset_finds_its_own_npz(tmp_path, file_name):
    mnist, fashion = make_arrays(seed=1), make_arrays(seed=2)
    np.savez(tmp_path / "mnist.npz", **mnist)
    np.savez_compressed(tmp_path / file_name, **fashion)
    assert_loaded_equal(data.load_dataset("mnist", tmp_path, allow_download=False), mnist)
    assert_loaded_equal(data.load_dataset("fashion_mnist", tmp_path, allow_download=False), fashion)


def test_load_mnist_reads_the_same_as_load_dataset(tmp_path):
    arrays = make_arrays(seed=3)
    np.savez(tmp_path / "mnist.npz", **arrays)
    assert_loaded_equal(data.load_mnist(tmp_path), arrays)


def test_npz_with_whole_number_floats_and_wide_ints_is_converted_to_uint8(tmp_path):
    arrays = make_arrays(seed=4)
    wide = {
        "x_train": arrays["x_train"].astype(np.float64),
        "y_train": arrays["y_train"].astype(np.int64),
        "x_test": arrays["x_test"].astype(np.int32),
        "y_test": arrays["y_test"].astype(np.float32),  # whole numbers: accepted
    }
    np.savez(tmp_path / "mnist.npz", **wide)
    assert_loaded_equal(data.load_dataset("mnist", tmp_path, allow_download=False), arrays)


# --------------------------------------------------------------------------- IDX layout


def test_read_idx_hand_made_bytes(tmp_path):
    labels = tmp_path / "labels"
    labels.write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x00\x09")
    got = data.read_idx(labels)
    assert got.dtype == np.uint8 and got.tolist() == [7, 0, 9]

    images = tmp_path / "images"  # 2 images of 1x3 pixels
    images.write_bytes(
        b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x03" + bytes([1, 2, 3, 253, 254, 255])
    )
    got = data.read_idx(images)
    assert got.dtype == np.uint8 and got.tolist() == [[[1, 2, 3]], [[253, 254, 255]]]


IDX_VARIANTS = {  # id -> write_idx_set keyword arguments
    "plain": dict(),
    "gzipped": dict(gzip_content=True, suffix=".gz"),
    "gzip-content-plain-name": dict(gzip_content=True),
    "plain-content-gz-name": dict(suffix=".gz"),
    "dotted": dict(dotted=True),
    "dotted-gzipped": dict(dotted=True, gzip_content=True, suffix=".gz"),
}


@pytest.mark.parametrize("subfolder", [False, True], ids=["in-folder", "in-name-subfolder"])
@pytest.mark.parametrize("variant", list(IDX_VARIANTS))
def test_idx_round_trip(tmp_path, variant, subfolder):
    arrays = make_arrays(seed=5)
    where = tmp_path / "mnist" if subfolder else tmp_path
    paths = write_idx_set(where, arrays, **IDX_VARIANTS[variant])
    assert data.locate("mnist", tmp_path) == paths
    assert_loaded_equal(data.load_dataset("mnist", tmp_path, allow_download=False), arrays)


def test_fashion_mnist_idx_in_its_subfolder_is_not_mixed_with_mnist(tmp_path):
    mnist, fashion = make_arrays(seed=6), make_arrays(seed=7)
    write_idx_set(tmp_path / "mnist", mnist, gzip_content=True, suffix=".gz")
    write_idx_set(tmp_path / "fashion_mnist", fashion, gzip_content=True, suffix=".gz")
    assert_loaded_equal(data.load_dataset("fashion_mnist", tmp_path, allow_download=False), fashion)
    assert_loaded_equal(data.load_dataset("mnist", tmp_path, allow_download=False), mnist)


# --------------------------------------------------------------------------- precedence


def test_npz_wins_over_idx_files(tmp_path):
    in_npz, in_idx = make_arrays(seed=8), make_arrays(seed=9)
    np.savez(tmp_path / "mnist.npz", **in_npz)
    write_idx_set(tmp_path, in_idx)
    write_idx_set(tmp_path / "mnist", in_idx, gzip_content=True, suffix=".gz")
    assert data.locate("mnist", tmp_path) == tmp_path / "mnist.npz"
    assert_loaded_equal(data.load_dataset("mnist", tmp_path, allow_download=False), in_npz)


def test_name_subfolder_wins_over_idx_files_in_the_folder(tmp_path):
    in_sub, in_root = make_arrays(seed=10), make_arrays(seed=11)
    write_idx_set(tmp_path, in_root)
    write_idx_set(tmp_path / "mnist", in_sub)
    assert_loaded_equal(data.load_dataset("mnist", tmp_path, allow_download=False), in_sub)


def test_incomplete_idx_set_is_not_found(tmp_path):
    paths = write_idx_set(tmp_path, make_arrays())
    paths["y_test"].unlink()
    assert data.locate("mnist", tmp_path) is None
    with pytest.raises(FileNotFoundError, match="mnist not found in"):
        data.load_dataset("mnist", tmp_path, allow_download=False)


# --------------------------------------------------------------------------- bad IDX files


def _truncated_body(a):
    return idx_bytes(a["x_train"])[:-10]


def _trailing_bytes(a):
    return idx_bytes(a["y_test"]) + b"\x00"


def _wrong_magic(a):
    return idx_bytes(a["x_test"], magic=0x0804)


def _one_label_short(a):
    return idx_bytes(a["y_train"][:-1])


def _images_27x28(a):
    return idx_bytes(np.zeros((5, 27, 28), np.uint8))


def _label_ten(a):
    return idx_bytes(np.array([3, 10, 0], np.uint8))


def _corrupt_gzip(a):
    return b"\x1f\x8b" + b"this is not deflate data" * 4


def _truncated_gzip(a):
    packed = gzip.compress(idx_bytes(a["x_train"]))
    return packed[: len(packed) // 2]


def _too_short(a):
    return b"\x00\x00\x08"


BAD_IDX = {  # id -> (file that is replaced, its new content, what the message must say)
    "truncated-body": ("x_train", _truncated_body, r"header says \(5, 28, 28\) .* it is truncated or corrupt"),
    "trailing-bytes": (
        "y_test",
        _trailing_bytes,
        r"header says \(3,\) \(11 bytes with the header\) but the file has 12 bytes",
    ),
    "wrong-magic": (
        "x_test",
        _wrong_magic,
        r"not an MNIST IDX file of the right kind \(magic number 0x00000804; expected 0x00000803 for images\)",
    ),
    "label-count": (
        "y_train",
        _one_label_short,
        r"4 labels for 5 images in .*train-images-idx3-ubyte; they must match",
    ),
    "27x28-images": ("x_train", _images_27x28, r"images have shape \(5, 27, 28\); expected \(N, 28, 28\)"),
    "label-above-9": ("y_test", _label_ten, r"labels range 0\.\.10; expected 0\.\.9"),
    "corrupt-gzip": ("y_test", _corrupt_gzip, r"corrupt gzip data"),
    "truncated-gzip": ("x_train", _truncated_gzip, r"corrupt gzip data"),
    "too-short": ("y_train", _too_short, r"too short to be an IDX file \(3 bytes\)"),
}


@pytest.mark.parametrize("case", list(BAD_IDX))
def test_bad_idx_file_is_named_in_a_value_error(tmp_path, case):
    key, content, message = BAD_IDX[case]
    paths = write_idx_set(tmp_path, make_arrays())
    paths[key].write_bytes(content(make_arrays()))
    with pytest.raises(ValueError, match=re.escape(str(paths[key])) + ": " + message):
        data.load_dataset("mnist", tmp_path, allow_download=False)


# --------------------------------------------------------------------------- bad npz files


def _npz_bytes(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _garbage(a):
    return b"definitely not a zip archive\n" * 8


def _truncated_npz(a):
    packed = _npz_bytes(**a)
    return packed[: len(packed) // 2]


def _empty(a):
    return b""


def _lone_npy(a):
    buffer = io.BytesIO()
    np.save(buffer, a["x_train"])
    return buffer.getvalue()


def _missing_key(a):
    return _npz_bytes(**{k: v for k, v in a.items() if k != "y_test"})


def _normalised(a):
    return _npz_bytes(**{**a, "x_train": a["x_train"].astype(np.float32) / 255})


def _nan_pixels(a):
    x = a["x_test"].astype(np.float32)
    x[1, 2, 3] = np.nan
    return _npz_bytes(**{**a, "x_test": x})


def _fractional_labels(a):
    return _npz_bytes(**{**a, "y_train": a["y_train"] + np.float32(0.5)})


def _flat_images(a):
    return _npz_bytes(**{**a, "x_train": a["x_train"].reshape(5, 784)})


def _negative_label(a):
    return _npz_bytes(**{**a, "y_test": np.array([0, -1, 2], np.int64)})


BAD_NPZ = {  # id -> (new content, what the message must say after "<file>")
    "garbage": (_garbage, r": not a readable \.npz file"),
    "truncated": (_truncated_npz, r": not a readable \.npz file"),
    "empty": (_empty, r": not a readable \.npz file"),
    "lone-npy": (_lone_npy, r": not a readable \.npz file \(it holds a single \.npy array"),
    "missing-key": (_missing_key, r": missing arrays \['y_test'\]"),
    "normalised-floats": (_normalised, r"\[x_train\]: pixels must be whole numbers 0\.\.255 \(they look normalised"),
    "nan-pixels": (_nan_pixels, r"\[x_test\]: pixels include NaN"),
    "fractional-labels": (_fractional_labels, r"\[y_train\]: labels must be integers 0\.\.9"),
    "flat-images": (_flat_images, r"\[x_train\]: images have shape \(5, 784\)"),
    "negative-label": (_negative_label, r"\[y_test\]: labels range -1\.\.2; expected 0\.\.9"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_bad_npz_is_named_in_a_value_error(tmp_path, case):
    content, message = BAD_NPZ[case]
    path = tmp_path / "mnist.npz"
    path.write_bytes(content(make_arrays()))
    with pytest.raises(ValueError, match=re.escape(str(path)) + message):
        data.load_dataset("mnist", tmp_path, allow_download=False)


# --------------------------------------------------------------------------- load_dataset errors


def test_unknown_dataset_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'cifar10'; choose one of mnist, fashion_mnist"):
        data.load_dataset("cifar10", tmp_path)


def test_explicit_data_dir_must_exist(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=re.escape(f"data folder {missing} does not exist")):
        data.load_dataset("mnist", missing)
    assert not missing.exists()  # not created behind the user's back


def test_jaxmlp_data_folder_must_exist(tmp_path, monkeypatch):
    missing = tmp_path / "from-env"
    monkeypatch.setenv("JAXMLP_DATA", str(missing))
    with pytest.raises(FileNotFoundError, match=re.escape(f"data folder {missing} does not exist")):
        data.load_dataset("mnist")


def test_empty_folder_without_download_says_how_to_supply_the_files(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        data.load_dataset("mnist", tmp_path, allow_download=False)
    message = str(info.value)
    assert f"mnist not found in {tmp_path}" in message
    for name in (
        "mnist.npz",
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
        "$JAXMLP_DATA",
    ):
        assert name in message, name
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_data_dir_none_reads_jaxmlp_data(tmp_path, monkeypatch):
    arrays = make_arrays(seed=12)
    np.savez(tmp_path / "mnist.npz", **arrays)
    monkeypatch.setenv("JAXMLP_DATA", str(tmp_path))
    assert_loaded_equal(data.load_dataset("mnist", allow_download=False), arrays)


# --------------------------------------------------------------------------- default_data_dir


def test_default_data_dir_is_jaxmlp_data(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXMLP_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # JAXMLP_DATA wins
    assert data.default_data_dir() == tmp_path / "data"


def test_default_data_dir_expands_user(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("JAXMLP_DATA", "~/mnist-files")
    assert data.default_data_dir() == tmp_path / "mnist-files"


def test_default_data_dir_under_xdg_cache_home(tmp_path, monkeypatch):
    monkeypatch.delenv("JAXMLP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.default_data_dir() == tmp_path / "xdg" / "jaxmlp"


@pytest.mark.parametrize("empty", [None, ""], ids=["unset", "empty"])
def test_default_data_dir_falls_back_to_home_cache(tmp_path, monkeypatch, empty):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("JAXMLP_DATA", "XDG_CACHE_HOME"):
        if empty is None:
            monkeypatch.delenv(variable, raising=False)
        else:
            monkeypatch.setenv(variable, empty)
    assert data.default_data_dir() == tmp_path / ".cache" / "jaxmlp"


# --------------------------------------------------------------------------- to_categorical


def test_to_categorical_identity():
    got = data.to_categorical([0, 1, 2, 3], num_classes=4)
    assert got.dtype == np.float32  # Keras 3 gives float64 for NumPy input; float32 on purpose
    assert got.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


def test_to_categorical_infers_num_classes_as_max_plus_one():
    assert data.to_categorical([1, 3]).tolist() == [[0, 1, 0, 0], [0, 0, 0, 1]]


def test_to_categorical_inferred_width_does_not_overflow_uint8():
    got = data.to_categorical(np.array([255, 0], np.uint8))
    assert got.shape == (2, 256)
    assert got[0, 255] == 1 and got[0].sum() == 1 and got[1, 0] == 1 and got[1].sum() == 1


def test_to_categorical_drops_a_trailing_axis_of_one():
    got = data.to_categorical(np.array([[2], [0], [1]]), num_classes=3)
    assert got.shape == (3, 3)
    assert got.tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0]]


def test_to_categorical_keeps_other_axes():
    got = data.to_categorical([[0, 1, 2], [2, 1, 0]], num_classes=3)
    assert got.shape == (2, 3, 3)
    assert got[0].tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert got[1].tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]


def test_to_categorical_pads_a_larger_num_classes_with_zeros():
    assert data.to_categorical([0, 1], num_classes=5).tolist() == [[1, 0, 0, 0, 0], [0, 1, 0, 0, 0]]


def test_to_categorical_accepts_whole_number_floats():
    got = data.to_categorical(np.array([2.0, 0.0]), num_classes=3)
    assert got.dtype == np.float32
    assert got.tolist() == [[0, 0, 1], [1, 0, 0]]


@pytest.mark.parametrize(
    "labels, num_classes, message",
    [
        ([-1, 0], 3, r"labels must be in 0\.\.2; got -1\.\.0"),  # Keras would wrap -1 to the last class
        ([0, 3], 3, r"labels must be in 0\.\.2; got 0\.\.3"),  # Keras: IndexError
        ([0.5, 1.0], 3, r"labels must be integers"),
        ([np.nan], 3, r"labels must be finite integers"),
        ([np.inf, 1.0], 3, r"labels must be finite integers"),
        ([0, 1], 0, r"num_classes must be a positive int"),
    ],
    ids=["negative", "too-large", "fractional", "nan", "inf", "zero-classes"],
)
def test_to_categorical_rejects_bad_labels(labels, num_classes, message):
    with pytest.raises(ValueError, match=message):
        data.to_categorical(np.array(labels), num_classes=num_classes)
