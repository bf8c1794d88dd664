"""Pytrees saved as named arrays, and the training checkpoints `fit` and `fit_population` resume from.

A pytree is saved as an .npz with one array per leaf, named by its path ("params/0/w"),
through `files.atomic_write`. A training checkpoint is such a file per finished epoch,
`epoch-00003.npz`, holding the training state (parameters, optimizer state, PRNG keys),
and beside the arrays a JSON document: the epoch, the per-epoch records so far, and
the identity of the configuration that wrote it. A folder of checkpoints holds
nothing else; `restore` refuses a folder with other files in it, a checkpoint it
cannot read, and one of another configuration, naming the file and the difference,
and never deletes or overwrites anything while refusing.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxmlp import files, model


def leaf_names(tree) -> list[str]:
    """A name per leaf from its pytree path: params[1]["w"] -> "1/w"."""
    paths, _ = jax.tree_util.tree_flatten_with_path(tree)
    return ["/".join(_key_name(key) for key in path) for path, _ in paths]


def _key_name(key) -> str:
    for attribute in ("key", "idx", "name"):  # DictKey, SequenceKey, GetAttrKey
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def _is_key(leaf) -> bool:
    return jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key)


def _host(leaf) -> np.ndarray:
    """A leaf as a numpy array; a PRNG key as its raw data (uint32)."""
    return np.asarray(jax.random.key_data(leaf) if _is_key(leaf) else leaf)


META = "__meta__"  # the entry holding a JSON document, when save_pytree is given one


def save_pytree(path, tree, meta: dict | None = None) -> Path:
    """An .npz with one array per leaf, named by its pytree path ("0/w", "0/b", ...).

    PRNG keys are stored as their raw data. `meta`, if given, is stored as JSON
    beside the arrays (read it back with `read_meta`).
    """
    names = leaf_names(tree)
    if len(set(names)) != len(names) or META in names:
        raise ValueError(f"two leaves share a name in {names}; rename the keys that contain '/'")
    arrays = dict(zip(names, (_host(leaf) for leaf in jax.tree.leaves(tree))))
    if meta is not None:
        arrays[META] = np.array(json.dumps(meta))
    return files.atomic_write(path, lambda f: np.savez(f, **arrays))


def _open(path):
    if Path(path).is_file() and not zipfile.is_zipfile(path):  # np.load would try to unpickle it
        raise ValueError(f"{path}: not a readable .npz file (not a zip archive of arrays, as numpy.savez writes)")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: not a readable .npz file ({err})") from None


def read_meta(path) -> dict:
    """The JSON document that `save_pytree(..., meta=...)` stored."""
    with _open(path) as archive:
        if META not in archive.files:
            raise ValueError(f"{path}: holds no metadata; it was not written as a checkpoint")
        return json.loads(str(archive[META]))


def load_pytree(path, like):
    """The pytree saved at `path`, in the structure of `like`; names, shapes and dtypes are checked.

    Where `like` has a PRNG key, the saved raw data becomes a key of the same kind.
    """
    leaves = jax.tree.leaves(like)
    names = leaf_names(like)
    with _open(path) as archive:
        stored = sorted(name for name in archive.files if name != META)
        if stored != sorted(names):
            raise ValueError(f"{path}: holds arrays {stored}, expected {sorted(names)}")
        loaded = []
        for name, leaf in zip(names, leaves):
            array, expected = archive[name], _host(leaf)
            if array.shape != expected.shape or array.dtype != expected.dtype:
                raise ValueError(
                    f"{path}: {name} is {array.dtype}{list(array.shape)}, "
                    f"expected {expected.dtype}{list(expected.shape)}"
                )
            loaded.append(jax.random.wrap_key_data(array, impl=jax.random.key_impl(leaf)) if _is_key(leaf) else array)
    return jax.tree.unflatten(jax.tree.structure(like), loaded)


def load_params(path, *, inputs: int | None = None, outputs: int | None = None) -> list[dict[str, jax.Array]]:
    """The MLP parameters in a params.npz (`mnist_seed.py`, `best_mlp.py`, a sweep's best/), sizes read off it.

    The file holds "0/w", "0/b", "1/w", ... as `save_pytree(path, params)` writes
    them; each layer's input must be the previous one's output, and the network's
    first and last widths must be `inputs` and `outputs` where given (784 and 10 for
    an MNIST classifier). ValueError otherwise.
    """
    with _open(path) as archive:
        names = sorted(name for name in archive.files if name != META)
        layers = len(names) // 2
        expected = sorted(f"{i}/{leaf}" for i in range(layers) for leaf in ("w", "b"))
        if not layers or names != expected:
            raise ValueError(f"{path}: holds arrays {names}, not an MLP's parameters (0/w, 0/b, 1/w, ...)")
        params = [{"w": archive[f"{i}/w"], "b": archive[f"{i}/b"]} for i in range(layers)]
    width = params[0]["w"].shape[0] if params[0]["w"].ndim == 2 else None
    for i, layer in enumerate(params):
        w, b = layer["w"], layer["b"]
        if w.ndim != 2 or b.shape != (w.shape[1],) or w.shape[0] != width or not np.issubdtype(w.dtype, np.floating):
            raise ValueError(
                f"{path}: layer {i} has w {list(w.shape)} and b {list(b.shape)} ({w.dtype}); "
                f"expected w [{width}, n] and b [n] of floats"
            )
        width = w.shape[1]
    sizes = model.layer_sizes(params)
    for name, expected, actual in (("inputs", inputs, sizes[0]), ("outputs", outputs, sizes[-1])):
        if expected is not None and actual != expected:
            raise ValueError(f"{path}: a network of sizes {sizes} has {actual} {name}; expected {expected}")
    return jax.tree.map(jnp.asarray, params)


# --------------------------------------------------------------------------- training checkpoints

CHECKPOINT_PATTERN = "epoch-*.npz"  # zero-padded epochs, so names sort in order


class ConfigurationMismatch(ValueError):
    """A checkpoint folder belongs to another configuration; the message names the differences."""


def checkpoint_path(folder, epoch: int) -> Path:
    return Path(folder) / f"epoch-{epoch:05d}.npz"


def save_checkpoint(folder, state, epoch: int, records: list[dict], identity: dict, keep: int = 2) -> Path:
    """Everything needed to resume after `epoch`: the state (parameters, optimizer state, PRNG keys),
    the per-epoch records so far, and the configuration they belong to. Keeps the newest `keep`."""
    path = save_pytree(
        checkpoint_path(folder, epoch), state, meta={"epoch": epoch, "records": records, "identity": identity}
    )
    for old in sorted(Path(folder).glob(CHECKPOINT_PATTERN))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(folder) -> Path | None:
    """The newest checkpoint in `folder`, or None; refuses a folder that holds anything but checkpoints."""
    folder = Path(folder)
    if not folder.exists():
        return None
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder of checkpoints; give a folder (it is created if missing)")
    foreign = sorted(p.name for p in folder.iterdir() if not (p.match(CHECKPOINT_PATTERN) or files.is_temporary(p)))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ValueError(
            f"{folder} holds files that are not jaxmlp checkpoints ({shown}); "
            "give an empty folder, or one that only checkpoints were written to"
        )
    paths = sorted(folder.glob(CHECKPOINT_PATTERN))
    return paths[-1] if paths else None


def saved_records(folder) -> list[dict]:
    """The per-epoch records of the newest checkpoint in `folder`; [] when there is none."""
    path = latest_checkpoint(folder)
    return read_meta(path).get("records", []) if path else []


def restore(folder, like, identity: dict):
    """(state, epoch, records) from the newest checkpoint in `folder`, or None if there is none.

    Raises ConfigurationMismatch (a ValueError) if the checkpoint belongs to another
    configuration (`identity` differs), and ValueError if the folder holds other files,
    or the checkpoint cannot be read or does not fit `like` (tree structure, shapes, dtypes).
    """
    path = latest_checkpoint(folder)
    if path is None:
        return None
    meta = read_meta(path)
    if "identity" not in meta or "epoch" not in meta:
        raise ValueError(f"{path}: holds no training identity; it was not written as a jaxmlp training checkpoint")
    differences = describe_differences(meta["identity"], identity)
    if differences:
        raise ConfigurationMismatch(f"{path} belongs to another configuration ({differences})")
    return load_pytree(path, like), meta["epoch"], meta["records"]


def describe_differences(stored: dict, current: dict) -> str:
    """Every entry where two identities disagree, as "name: A there, B now; ..." ("" when they agree)."""
    names = list(current) + [name for name in stored if name not in current]
    differing = [name for name in names if stored.get(name) != current.get(name)]
    return "; ".join(_difference(name, stored.get(name), current.get(name)) for name in differing)


def _difference(name: str, there, now) -> str:
    """Digests (`fingerprint`) are not worth printing: those entries just say "name differs"."""
    if all(isinstance(value, str) and value.startswith(DIGEST) for value in (there, now)):
        return f"{name} differs"
    return f"{name}: {_short(there)} there, {_short(now)} now"


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


DIGEST = "blake2b:"


def fingerprint(tree) -> str:
    """A short digest of a pytree's leaves: their shapes, dtypes and bytes ("blake2b:1f3a...")."""
    digest = hashlib.blake2b(digest_size=8)
    for leaf in jax.tree.leaves(tree):
        array = np.ascontiguousarray(_host(leaf))
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return DIGEST + digest.hexdigest()
