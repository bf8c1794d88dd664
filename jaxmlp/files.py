"""Files that are never half-written: atomic writes, JSON and JSON lines, and the cleanup after a kill.

Every write goes to a temporary file in the destination's folder, named
`<name>.<random>.jaxmlp-tmp` so that it is recognisably ours, is flushed and
fsynced, and is then renamed over the destination (`os.replace`, atomic on POSIX
and Windows); finally the folder itself is fsynced, so that the rename survives a
power cut and not only a crash. A crash leaves either the old file or the new one,
never a mixture. A kill between creating the temporary and renaming it leaves the
temporary behind: `remove_stale_temporaries(folder)` deletes exactly those (and
nothing else), and every run that writes into a folder calls it when it starts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

TEMPORARY_SUFFIX = ".jaxmlp-tmp"


def atomic_write(path, write, mode: str = "wb") -> Path:
    """Call `write(file)` on a temporary file beside `path`, then rename it to `path`.

    If `write` raises, the temporary is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TEMPORARY_SUFFIX)
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
    _fsync_folder(path.parent)
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable. POSIX only: Windows cannot open a folder, and its renames are journaled."""
    if os.name != "posix":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def is_temporary(path) -> bool:
    """True for the temporary files `atomic_write` creates (and a kill may leave behind)."""
    return Path(path).name.endswith(TEMPORARY_SUFFIX)


def remove_stale_temporaries(folder) -> list[Path]:
    """Delete the temporaries a killed run left directly in `folder` (not in its subfolders); return them.

    Only names ending in `.jaxmlp-tmp` are touched. Call it when a run starts, before
    anything else writes into the folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(path for path in folder.iterdir() if is_temporary(path) and path.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_json(path, obj) -> Path:
    return atomic_write(path, lambda f: json.dump(obj, f, indent=2), mode="w")


def write_csv(path, rows: list[dict]) -> Path:
    """Rows (dicts with the same keys) as CSV with a header; None becomes an empty cell."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return atomic_write(path, lambda f: f.write(text.getvalue()), mode="w")


def write_jsonl(path, records) -> Path:
    """One JSON object per line; the whole file is rewritten, so each record appears once."""
    return atomic_write(path, lambda f: f.writelines(json.dumps(r) + "\n" for r in records), mode="w")
