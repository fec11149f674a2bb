"""locedit.files: atomic writes, tolerant torch loads, and folder manifests."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch

from locedit.files import file_digest, load_torch, manifest, manifest_problem, save_atomic, write_atomic


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
