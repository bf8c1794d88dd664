"""Files that are never half-written: atomic writes, and pytrees saved as named arrays.

Every write goes to a temporary file in the destination's folder, is flushed to
disk, and is then renamed over the destination (`os.replace`, atomic on POSIX and
Windows), so a crash leaves either the old file or the new one, never a mixture.
"""

from __future__ import annotations

import json
import os
import tempfile
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


def save_pytree(path, tree) -> Path:
    """An .npz with one array per leaf, named by its pytree path ("0/w", "0/b", ...)."""
    names = leaf_names(tree)
    if len(set(names)) != len(names):
        raise ValueError(f"two leaves share a name in {names}; rename the keys that contain '/'")
    arrays = dict(zip(names, (np.asarray(leaf) for leaf in jax.tree.leaves(tree))))
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def load_pytree(path, like):
    """The pytree saved at `path`, in the structure of `like`; names, shapes and dtypes are checked."""
    leaves = jax.tree.leaves(like)
    with np.load(path, allow_pickle=False) as archive:
        names = leaf_names(like)
        if sorted(archive.files) != sorted(names):
            raise ValueError(f"{path}: holds arrays {sorted(archive.files)}, expected {sorted(names)}")
        loaded = []
        for name, leaf in zip(names, leaves):
            array = archive[name]
            if array.shape != np.shape(leaf) or array.dtype != np.asarray(leaf).dtype:
                raise ValueError(
                    f"{path}: {name} is {array.dtype}{list(array.shape)}, "
                    f"expected {np.asarray(leaf).dtype}{list(np.shape(leaf))}"
                )
            loaded.append(array)
    return jax.tree.unflatten(jax.tree.structure(like), loaded)
