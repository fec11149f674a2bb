"""scripts/chapter_stamps.py: `make book` re-executes a chapter only when its source, the library, the pinned
stack or its parameters changed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "chapter_stamps", Path(__file__).resolve().parents[1] / "scripts" / "chapter_stamps.py"
)
stamps = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(stamps)


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "chapters" / "00_a.py").write_text("# %%\nprint('a')\n")
    (tmp_path / "chapters" / "01_b.py").write_text("# %%\nprint('b')\n")
    (tmp_path / "lib" / "locedit" / "sub").mkdir(parents=True)
    (tmp_path / "lib" / "locedit" / "__init__.py").write_text("")
    (tmp_path / "lib" / "locedit" / "sub" / "m.py").write_text("X = 1\n")
    (tmp_path / "requirements.txt").write_text("torch==2.13.0\n")
    (tmp_path / "executed").mkdir()
    for name in ("00_a", "01_b"):
        (tmp_path / "executed" / f"{name}.ipynb").write_text("{}")
        stamps.write(tmp_path, name, "True")
    return tmp_path


def test_unchanged_chapters_are_fresh(repo):
    assert stamps.fresh(repo, "00_a", "True") and stamps.fresh(repo, "01_b", "True")
    assert stamps.fresh(repo, "00_a", True)  # "True", True and "true" are one setting


def test_editing_one_chapter_reruns_that_chapter_alone(repo):
    (repo / "chapters" / "01_b.py").write_text("# %%\nprint('b, edited')\n")
    assert stamps.fresh(repo, "00_a", "True")
    assert not stamps.fresh(repo, "01_b", "True")
    stamps.write(repo, "01_b", "True")
    assert stamps.fresh(repo, "01_b", "True")


@pytest.mark.parametrize(
    "change",
    [
        lambda r: (r / "lib" / "locedit" / "sub" / "m.py").write_text("X = 2\n"),
        lambda r: (r / "lib" / "locedit" / "new.py").write_text(""),
        lambda r: (r / "requirements.txt").write_text("torch==2.14.0\n"),
    ],
    ids=["library edit", "library file added", "stack"],
)
def test_library_or_stack_changes_rerun_every_chapter(repo, change):
    change(repo)
    assert not stamps.fresh(repo, "00_a", "True") and not stamps.fresh(repo, "01_b", "True")


def test_bytecode_and_caches_do_not_count(repo):
    cache = repo / "lib" / "locedit" / "__pycache__"
    cache.mkdir()
    (cache / "m.cpython-311.pyc").write_bytes(b"\0")
    assert stamps.fresh(repo, "00_a", "True")


def test_parameters_are_part_of_the_key(repo):
    assert not stamps.fresh(repo, "00_a", "False")
    assert not stamps.fresh(repo, "00_a", "True", model="gemma3-270m")


def test_missing_notebook_or_stamp_or_broken_stamp_is_stale(repo):
    (repo / "executed" / "00_a.ipynb").unlink()
    assert not stamps.fresh(repo, "00_a", "True")
    stamps.remove(repo, "01_b")
    assert not stamps.fresh(repo, "01_b", "True")
    (repo / "executed" / "01_b.stamp").write_text("not json")
    assert not stamps.fresh(repo, "01_b", "True")


def test_command_line(repo):
    assert stamps.main(["fresh", "00_a", "--quick", "True", "--root", str(repo)]) == 0
    assert stamps.main(["remove", "00_a", "--root", str(repo)]) == 0
    assert stamps.main(["fresh", "00_a", "--quick", "True", "--root", str(repo)]) == 1
