"""Files that are never half-written: atomic writes, and pytrees saved as named arrays.

Every write goes to a temporary file in the destination's folder, is flushed to
disk, and is then renamed over the destination (`os.replace`, atomic on POSIX and
Windows), so a crash leaves either the old file or the new one, never a mixture.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import jax
import numpy as np


def atomic_write(path, write, mode: str = "wb") -> Path:
    """Call `write(file)` on a temporary file, then rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes files private; these are ordinary outputs
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def write_json(path, obj) -> Path:
    return atomic_write(path, lambda f: json.dump(obj, f, indent=2), mode="w")


def write_jsonl(path, records) -> Path:
    """One JSON object per line; the whole file is rewritten, so each record appears once."""
    return atomic_write(path, lambda f: f.writelines(json.dumps(r) + "\n" for r in records), mode="w")


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
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _open(path):
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


# --------------------------------------------------------------------------- training checkpoints


def checkpoint_path(folder, epoch: int) -> Path:
    return Path(folder) / f"epoch-{epoch:05d}.npz"


def save_checkpoint(folder, state, epoch: int, records: list[dict], identity: dict, keep: int = 2) -> Path:
    """Everything needed to resume after `epoch`: the state (parameters, optimizer state, PRNG key),
    the per-epoch records so far, and the configuration they belong to. Keeps the newest `keep`."""
    path = save_pytree(
        checkpoint_path(folder, epoch), state, meta={"epoch": epoch, "records": records, "identity": identity}
    )
    for old in sorted(Path(folder).glob("epoch-*.npz"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(folder) -> Path | None:
    paths = sorted(Path(folder).glob("epoch-*.npz"))  # zero-padded epochs sort in order
    return paths[-1] if paths else None


def restore(folder, like, identity: dict):
    """(state, epoch, records) from the newest checkpoint in `folder`, or None if there is none.

    Raises ValueError if the checkpoint belongs to another configuration (`identity`
    differs) or does not fit `like` (tree structure, shapes, dtypes).
    """
    path = latest_checkpoint(folder)
    if path is None:
        return None
    meta = read_meta(path)
    stored = meta.get("identity", {})
    if stored != identity:
        differences = ", ".join(
            f"{key}: {stored.get(key)!r} there, {value!r} now"
            for key, value in identity.items()
            if stored.get(key) != value
        )
        raise ValueError(
            f"{folder} holds checkpoints of another configuration ({differences}); "
            "start over with --fresh, or choose another --out"
        )
    return load_pytree(path, like), meta["epoch"], meta["records"]
