"""jaxmlp.files: atomic writes, JSON(L) files, temporaries marked as ours, and their cleanup after a kill."""

import json
import os
import stat

import pytest

from jaxmlp import files


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- atomic_write


@pytest.mark.parametrize("mode, content", [("wb", b"\x00\x01binary\xff"), ("w", "text, with ünïcode\n")])
def test_atomic_write_writes_the_content_and_leaves_no_temporary(tmp_path, mode, content):
    path = tmp_path / "sub" / "out.bin"  # parent created
    got = files.atomic_write(path, lambda f: f.write(content), mode=mode)
    assert got == path
    assert (path.read_bytes() if mode == "wb" else path.read_text()) == content
    assert files_in(path.parent) == ["out.bin"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # not mkstemp's private 0o600


def test_atomic_write_that_fails_keeps_the_old_file(tmp_path):
    path = tmp_path / "history.json"
    path.write_text("old content")

    def broken(f):
        f.write("new, half-")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        files.atomic_write(path, broken, mode="w")
    assert path.read_text() == "old content"
    assert files_in(tmp_path) == ["history.json"]  # temporary removed


def test_atomic_write_that_fails_creates_nothing(tmp_path):
    def broken(f):
        raise ValueError("nothing to write")

    with pytest.raises(ValueError, match="nothing to write"):
        files.atomic_write(tmp_path / "new.bin", broken)
    assert files_in(tmp_path) == []


# --------------------------------------------------------------------------- JSON, JSON lines


def test_write_json_round_trip_and_rewrite(tmp_path):
    path = tmp_path / "result.json"
    first = {"accuracy": 0.9842, "epochs": [1, 2, 3], "name": "mlp", "nested": {"ok": True, "none": None}}
    files.write_json(path, first)
    assert json.loads(path.read_text()) == first
    files.write_json(path, {"accuracy": 0.5})
    assert json.loads(path.read_text()) == {"accuracy": 0.5}
    assert files_in(tmp_path) == ["result.json"]


def test_write_jsonl_one_record_per_line_and_rewrite_replaces(tmp_path):
    path = tmp_path / "history.jsonl"
    records = [{"epoch": 1, "loss": 0.25}, {"epoch": 2, "loss": 0.125}, {"epoch": 3, "loss": 0.0625}]
    files.write_jsonl(path, records)
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    assert path.read_text().endswith("\n")

    files.write_jsonl(path, records[:2])  # rewritten, not appended
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:2]

    files.write_jsonl(path, iter([]))
    assert path.read_text() == ""
    assert files_in(tmp_path) == ["history.jsonl"]


# --------------------------------------------------------------------------- temporaries and durability


def test_the_temporary_is_named_as_ours_beside_the_destination(tmp_path):
    seen = []
    files.atomic_write(tmp_path / "metrics.jsonl", lambda f: seen.extend(files_in(tmp_path)), mode="w")
    assert len(seen) == 1 and seen[0].startswith("metrics.jsonl.") and seen[0].endswith(".jaxmlp-tmp")
    assert files.is_temporary(tmp_path / seen[0]) and not files.is_temporary(tmp_path / "metrics.jsonl")


def test_stale_temporaries_are_removed_and_nothing_else(tmp_path):
    (tmp_path / "sub").mkdir()
    ours = ["metrics.jsonl.k2j3h4.jaxmlp-tmp", "epoch-00003.npz.x8y9z0.jaxmlp-tmp"]
    others = ["metrics.jsonl", "notes.tmp", "metrics.jsonl.part", "jaxmlp-tmp", "sub"]
    for name in ours + others[:-1]:
        (tmp_path / name).write_text("half-written" if name in ours else "keep me")
    (tmp_path / "sub" / "deeper.jaxmlp-tmp").write_text("not this run's folder")
    removed = files.remove_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert files_in(tmp_path) == sorted(others)
    assert (tmp_path / "sub" / "deeper.jaxmlp-tmp").exists()  # only the folder itself, not its subfolders
    assert files.remove_stale_temporaries(tmp_path / "missing") == []


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def fsync(handle):
        mode = os.fstat(handle).st_mode
        synced.append(("folder" if stat.S_ISDIR(mode) else "file", (tmp_path / "out.json").exists()))
        real_fsync(handle)

    monkeypatch.setattr(os, "fsync", fsync)
    files.write_json(tmp_path / "out.json", {"a": 1})
    if os.name == "posix":
        assert synced == [("file", False), ("folder", True)]  # the data first, then the rename
    else:
        assert synced == [("file", False)]
