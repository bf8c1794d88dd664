"""MNIST and Fashion-MNIST from local files (or a verified download), exactly as Keras gives them.

    (x_train, y_train), (x_test, y_test) = load_dataset("mnist")
    # uint8 arrays: (60000, 28, 28), (60000,), (10000, 28, 28), (10000,)

Where the files are looked for, in order, in the data folder (`data_dir`, else
$JAXMLP_DATA, else ~/.cache/jaxmlp):

    <name>.npz                  Keras layout: x_train, y_train, x_test, y_test
    <name>/<idx files>          the four IDX files, gzipped or not
    <idx files>                 the same, directly in the folder

If none is there, the four gzipped IDX files are downloaded into <folder>/<name>/
from public mirrors and checked against their published SHA-256 (see download.py).
Local files are checked by structure (magic numbers, counts, shapes, dtypes, label
range), whatever their compression, and a bad file is named in the error.
"""

from __future__ import annotations

import gzip
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from jaxmlp import download

DATASETS = ("mnist", "fashion_mnist")
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
IDX_NAMES = {  # array -> file name stem, as on the MNIST page
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IDX_MAGIC = {3: 2051, 1: 2049}  # dimensions -> magic number: 0x00000803 images, 0x00000801 labels
HOW_TO_SUPPLY = (
    "put {name}.npz (Keras layout) or the four IDX files "
    "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
    "t10k-labels-idx1-ubyte[.gz]) in {folder}, or point --data-dir / $JAXMLP_DATA at a folder that has them"
)


def cache_dir() -> Path:
    """jaxmlp's folder for things it can fetch or rebuild: $XDG_CACHE_HOME/jaxmlp, else ~/.cache/jaxmlp."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "jaxmlp"


def default_data_dir() -> Path:
    """$JAXMLP_DATA if set, else `cache_dir()`."""
    if os.environ.get("JAXMLP_DATA"):
        return Path(os.environ["JAXMLP_DATA"]).expanduser()
    return cache_dir()


def load_mnist(data_dir=None):
    """MNIST as `keras.datasets.mnist.load_data()` returns it: ((x_train, y_train), (x_test, y_test))."""
    return load_dataset("mnist", data_dir)


def load_dataset(name: str = "mnist", data_dir=None, *, allow_download: bool = True):
    """((x_train, y_train), (x_test, y_test)) as uint8 numpy arrays, images (N, 28, 28).

    Args:
      name: "mnist" or "fashion_mnist".
      data_dir: the data folder; None means $JAXMLP_DATA, else ~/.cache/jaxmlp.
        A folder given explicitly must exist; the default one is created.
      allow_download: fetch the files from the public mirrors when none is found.

    Raises:
      FileNotFoundError: no files and no download; the message says how to supply them.
      ValueError: a file is corrupt or not MNIST-shaped; the message names it.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    folder = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    if data_dir is not None or os.environ.get("JAXMLP_DATA"):
        if not folder.is_dir():
            raise FileNotFoundError(f"data folder {folder} does not exist; create it, or {_how_to(name, folder)}")
    found = locate(name, folder)
    if found is None:
        if not allow_download:
            raise FileNotFoundError(f"{name} not found in {folder}: {_how_to(name, folder)}")
        try:
            download.fetch(name, folder / name)
        except download.DownloadError as err:
            raise FileNotFoundError(
                f"{name} not found in {folder} and the download failed ({err}): {_how_to(name, folder)}"
            ) from None
        found = locate(name, folder)
    return read(found)


def _how_to(name: str, folder: Path) -> str:
    return HOW_TO_SUPPLY.format(name=name, folder=folder)


def locate(name: str, folder) -> Path | dict[str, Path] | None:
    """The dataset's files in `folder`: an .npz path, a dict of the four IDX paths, or None."""
    folder = Path(folder)
    for npz_name in dict.fromkeys([f"{name}.npz", f"{name.replace('_', '-')}.npz"]):  # in this order
        if (folder / npz_name).is_file():
            return folder / npz_name
    for where in (folder / name, folder):
        paths = {key: _find_idx(where, stem) for key, stem in IDX_NAMES.items()}
        if all(paths.values()):
            return paths
    return None


def _find_idx(folder: Path, stem: str) -> Path | None:
    dotted = stem.replace("-idx", ".idx")  # train-images.idx3-ubyte, as some mirrors unpack it
    for candidate in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (folder / candidate).is_file():
            return folder / candidate
    return None


def read(found: Path | dict[str, Path]):
    """Read and validate what `locate` found."""
    if isinstance(found, dict):
        arrays = {key: read_idx(path, ndim=3 if key.startswith("x") else 1) for key, path in found.items()}
        sources = {key: str(path) for key, path in found.items()}
    else:
        arrays, sources = read_npz(found), {key: f"{found}[{key}]" for key in IDX_NAMES}
    splits = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        images = check_images(x, sources[f"x_{split}"])
        labels = check_labels(y, sources[f"y_{split}"], count=len(images), count_source=sources[f"x_{split}"])
        splits.append((images, labels))
    return tuple(splits)


def read_npz(path) -> dict[str, np.ndarray]:
    """The four arrays of a Keras-layout .npz; ValueError naming the file if it is not one."""
    try:  # our own handle: np.load leaks its file when the zip directory is unreadable
        with open(path, "rb") as file:
            loaded = np.load(file, allow_pickle=False)
            if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone .npy array: no context manager, no keys
                raise ValueError("it holds a single .npy array, not an archive of named arrays")
            with loaded as archive:
                arrays = {key: archive[key] for key in IDX_NAMES if key in archive.files}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err}); replace it with a good copy") from None
    missing = [key for key in IDX_NAMES if key not in arrays]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}; a Keras-layout npz has {list(IDX_NAMES)}")
    return arrays


def read_idx(path, ndim: int | None = None) -> np.ndarray:
    """An IDX file (gzipped or not, whatever its name says) as a uint8 array.

    Layout: magic (big-endian uint32: 0x0000 0x08=uint8 ndim), ndim big-endian uint32
    sizes, then the body, row-major. `ndim` (3 for images, 1 for labels) demands
    that kind of file.
    """
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip's magic bytes
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as err:
            raise ValueError(f"{path}: corrupt gzip data ({err}); replace it with a good copy") from None
    if len(raw) < 8:
        raise ValueError(f"{path}: too short to be an IDX file ({len(raw)} bytes)")
    magic = int.from_bytes(raw[:4], "big")
    expected = [IDX_MAGIC[ndim]] if ndim else list(IDX_MAGIC.values())
    if magic not in expected:
        kinds = {2051: "0x00000803 for images", 2049: "0x00000801 for labels"}
        raise ValueError(
            f"{path}: not an MNIST IDX file of the right kind (magic number {magic:#010x}; expected "
            f"{' or '.join(kinds[m] for m in expected)})"
        )
    dims = raw[3]  # the magic's last byte
    header = 4 + 4 * dims
    sizes = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    expected = header + int(np.prod(sizes))
    if len(raw) != expected:
        raise ValueError(
            f"{path}: header says {sizes} ({expected} bytes with the header) but the file has {len(raw)} bytes; "
            "it is truncated or corrupt"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(sizes)


def check_images(images, source: str) -> np.ndarray:
    """(N, 28, 28) uint8 pixels 0..255, or ValueError naming `source`."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or len(images) == 0:
        raise ValueError(f"{source}: images have shape {images.shape}; expected (N, 28, 28) with N > 0")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.number) or np.issubdtype(images.dtype, np.complexfloating):
        raise ValueError(f"{source}: pixels have dtype {images.dtype}; expected uint8 0..255")
    if not np.all(np.isfinite(images)):
        raise ValueError(f"{source}: pixels include NaN or inf; expected whole numbers 0..255")
    if images.min() < 0 or images.max() > 255 or np.any(images != np.round(images)):
        hint = " (they look normalised to 0..1; store the raw 0..255 values)" if images.max() <= 1 else ""
        raise ValueError(f"{source}: pixels must be whole numbers 0..255{hint}")
    return images.astype(np.uint8)


def check_labels(labels, source: str, count: int, count_source: str) -> np.ndarray:
    """(count,) uint8 labels 0..9, or ValueError naming `source`."""
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{source}: labels have shape {labels.shape}; expected ({count},)")
    if len(labels) != count:
        raise ValueError(f"{source}: {len(labels)} labels for {count} images in {count_source}; they must match")
    if not np.issubdtype(labels.dtype, np.number) or (
        not np.issubdtype(labels.dtype, np.integer) and np.any(labels != np.round(labels))
    ):
        raise ValueError(f"{source}: labels must be integers 0..9; got dtype {labels.dtype}")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise ValueError(f"{source}: labels range {labels.min()}..{labels.max()}; expected 0..9")
    return labels.astype(np.uint8)


def to_categorical(labels, num_classes: int | None = None) -> np.ndarray:
    """One-hot rows from integer labels, as `keras.utils.to_categorical`.

    Shape (...,) -> (..., num_classes); a trailing axis of size 1 is dropped first,
    so (N, 1) -> (N, num_classes). num_classes defaults to max(labels) + 1.
    Differences from Keras 3, on purpose: the result is float32 (Keras 3 returns
    float64 for NumPy input), and labels outside 0..num_classes-1 raise ValueError
    (Keras wraps negative labels silently and raises IndexError for large ones).
    """
    labels = np.asarray(labels)
    if labels.size and not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)):
            raise ValueError(f"labels must be finite integers; got dtype {labels.dtype}")
        if np.any(labels != np.round(labels)):
            raise ValueError(f"labels must be integers; got values such as {labels[labels != np.round(labels)][0]}")
    labels = labels.astype(np.int64)
    shape = labels.shape[:-1] if labels.ndim > 1 and labels.shape[-1] == 1 else labels.shape
    flat = labels.reshape(-1)
    if num_classes is None:
        num_classes = int(flat.max()) + 1 if flat.size else 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int; got {num_classes!r}")
    if flat.size and (flat.min() < 0 or flat.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}; got {flat.min()}..{flat.max()}")
    one_hot = np.zeros((flat.size, num_classes), np.float32)
    one_hot[np.arange(flat.size), flat] = 1
    return one_hot.reshape(shape + (num_classes,))
