"""notebooks/*.ipynb, the readers' notebooks (GitHub, Colab, the book's download links), stay in step with
chapters/*.py: regenerated here with Jupytext and compared with the committed files (`make notebooks` rewrites
them)."""

from __future__ import annotations

import importlib.util
import json
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("book_notebooks", ROOT / "scripts" / "notebooks.py")
notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebooks)

CHAPTERS = sorted(p.stem for p in (ROOT / "chapters").glob("*.py"))


def test_committed_notebooks_match_the_chapters():
    assert notebooks.stale() == [], "run `make notebooks` and commit notebooks/"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_notebook_has_no_outputs_and_a_colab_cell_first(chapter):
    nb = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert nb["cells"][0]["metadata"].get("tags") == ["colab"]
    assert "papermill" not in nb["metadata"]


def _run_colab_cell(chapter, on_colab):
    from IPython.core.inputtransformer2 import TransformerManager

    nb = json.loads((ROOT / "notebooks" / f"{chapter}.ipynb").read_text())
    code = TransformerManager().transform_cell("".join(nb["cells"][0]["source"]))
    commands = []
    shell = types.SimpleNamespace(system=commands.append)
    saved = sys.modules.get("google.colab")
    if on_colab:
        sys.modules["google.colab"] = types.ModuleType("google.colab")
    try:
        exec(code, {"get_ipython": lambda: shell})
    finally:
        if on_colab:
            if saved is None:
                del sys.modules["google.colab"]
            else:
                sys.modules["google.colab"] = saved
    return commands


def test_colab_cell_does_nothing_locally_and_installs_on_colab():
    assert _run_colab_cell(CHAPTERS[0], on_colab=False) == []
    repo, branch = notebooks.repository()
    commands = _run_colab_cell(CHAPTERS[0], on_colab=True)
    assert len(commands) == 2 and all(c.startswith("pip install") for c in commands)
    assert f"git+{repo}@{branch}" in commands[0] and "requirements-models.txt" in commands[1]


def test_regeneration_is_stable_and_catches_edits(tmp_path):
    (tmp_path / "chapters").mkdir()
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    chapter = tmp_path / "chapters" / "00_x.py"
    chapter.write_text("# %% [markdown]\n# # Title\n\n# %%\nx = 1\n")
    notebooks.write(tmp_path)
    assert notebooks.stale(tmp_path) == []
    assert notebooks.write(tmp_path) == []  # unchanged chapter: nothing rewritten (stable cell ids)
    chapter.write_text("# %% [markdown]\n# # Title\n\n# %%\nx = 2\n")
    assert notebooks.stale(tmp_path) == ["notebooks/00_x.ipynb"]
    (tmp_path / "notebooks" / "99_gone.ipynb").write_text("{}")
    assert "notebooks/99_gone.ipynb" in notebooks.stale(tmp_path)
