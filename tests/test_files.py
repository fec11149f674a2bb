"""locedit.files: atomic writes, tolerant torch loads, and folder manifests."""

from __future__ import annotations

import hashlib
import os
import time

import pytest
import torch

from locedit.files import (
    STALE_TEMP_SECONDS,
    file_digest,
    load_torch,
    manifest,
    manifest_problem,
    remove_stale_temps,
    save_atomic,
    write_atomic,
)


def test_write_atomic_writes_text_and_bytes_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "sub" / "a.json"
    write_atomic(path, "héllo")
    assert path.read_text() == "héllo"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert os.listdir(path.parent) == ["a.json"]
    with pytest.raises(TypeError, match="bytes or str"):
        write_atomic(path, 3)
    assert path.read_bytes() == b"\x00\x01" and os.listdir(path.parent) == ["a.json"]


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    write_atomic(path, "old")

    def broken_fsync(_fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(path, "new")
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["a.txt"]


def test_save_atomic_and_load_torch(tmp_path, capsys):
    path = tmp_path / "x.pt"
    assert load_torch(path) is None  # missing
    save_atomic({"mom2": torch.eye(3)}, path)
    assert torch.equal(load_torch(path)["mom2"], torch.eye(3))
    path.write_bytes(path.read_bytes()[:50])  # truncated (a killed writer without write_atomic, a full disk)
    assert load_torch(path) is None
    assert "unreadable cache file" in capsys.readouterr().err
    path.write_bytes(b"")
    assert load_torch(path) is None


def _age(paths, seconds):
    then = time.time() - seconds
    for p in paths:
        os.utime(p, (then, then))


def test_stale_temporary_files_are_removed(tmp_path, monkeypatch):
    """Temporary files a killed write left (``write_atomic``'s ``.<name>.<random>.tmp``, its earlier
    ``.<name>.<random>``, and ``<name>.<pid>.tmp``) are removed once an hour old; a recent one may be a write in
    progress and is kept, and so is every other file or folder."""
    import tempfile

    made = []
    real_mkstemp = tempfile.mkstemp

    def killed_mkstemp(*args, **kwargs):  # the write is "killed" after making its temporary file
        fd, name = real_mkstemp(*args, **kwargs)
        os.close(fd)
        made.append(name)
        raise KeyboardInterrupt

    monkeypatch.setattr(tempfile, "mkstemp", killed_mkstemp)
    with pytest.raises(KeyboardInterrupt):
        save_atomic(torch.ones(2), tmp_path / "x.pt")
    monkeypatch.undo()
    left = tmp_path / os.path.basename(made[0])
    assert left.exists() and left.name.startswith(".x.pt.") and left.name.endswith(".tmp")
    old = [left, tmp_path / ".llama-up-0123.pt.a1b2c3d4", tmp_path / "llama-up-0123456789abcdef01234567.4242.tmp"]
    recent = tmp_path / ".llama-up-4567.pt.d4e5f6g7.tmp"
    kept = [tmp_path / "llama-up-0123.pt", tmp_path / ".smollm2.lock", tmp_path / "notes.txt"]
    for p in [*old[1:], recent, *kept]:
        p.write_bytes(b"half a file")
    (tmp_path / ".build-1@host-abcdefgh").mkdir()
    kept.append(tmp_path / ".build-1@host-abcdefgh")
    _age([*old, *kept], STALE_TEMP_SECONDS + 60)
    assert sorted(remove_stale_temps(tmp_path)) == sorted(old)
    assert not any(p.exists() for p in old) and recent.exists() and all(p.exists() for p in kept)
    _age([recent], 120)
    assert remove_stale_temps(tmp_path, max_age_s=3600) == [] and remove_stale_temps(tmp_path, max_age_s=60)
    assert remove_stale_temps(tmp_path / "missing") == []


def test_stale_temps_of_one_file_only(tmp_path):
    """``of``: in a folder shared with other caches, only the temporaries of that one file are touched."""
    mine, theirs = tmp_path / ".hashes.json.abcd1234.tmp", tmp_path / ".stats.pt.abcd1234.tmp"
    for p in (mine, theirs):
        p.write_text("{")
    _age([mine, theirs], STALE_TEMP_SECONDS + 60)
    assert remove_stale_temps(tmp_path, of="hashes.json") == [mine]
    assert theirs.exists()


def test_file_digest_is_sha256(tmp_path):
    (tmp_path / "f").write_bytes(b"abc" * 1000)
    assert file_digest(tmp_path / "f") == hashlib.sha256(b"abc" * 1000).hexdigest()


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "w.bin").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "t.json").write_text("[1]")
    (tmp_path / "MARK").write_text("x")
    return tmp_path


def test_manifest_lists_every_file_but_the_excluded(folder):
    listed = manifest(folder, exclude=("MARK",))
    assert sorted(listed) == ["config.json", "sub/t.json", "w.bin"]
    assert listed["w.bin"] == {"size": 256 * 64, "sha256": file_digest(folder / "w.bin")}
    assert manifest_problem(folder, listed, exclude=("MARK",)) is None


def test_manifest_problems(folder):
    listed = manifest(folder, exclude=("MARK",))
    assert "MARK" in manifest_problem(folder, listed)  # not excluded: an unexpected file
    data = bytearray((folder / "w.bin").read_bytes())
    data[5000] ^= 1  # one bit, same size
    (folder / "w.bin").write_bytes(bytes(data))
    assert "w.bin has changed bytes" in manifest_problem(folder, listed, exclude=("MARK",))
    (folder / "w.bin").write_bytes(b"short")
    assert "w.bin has 5 bytes instead of 16,384" in manifest_problem(folder, listed, exclude=("MARK",))
    (folder / "sub" / "t.json").unlink()
    assert "sub/t.json missing" in manifest_problem(folder, listed, exclude=("MARK",))
    (folder / "extra.json").write_text("{}")
    for bad in (None, {}, [], {"w.bin": {"size": "1"}}, {"w.bin": 3}):
        assert "malformed" in manifest_problem(folder, bad)
