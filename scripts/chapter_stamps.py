"""Content-hash stamps that let `make book` skip chapters whose inputs have not changed.

A chapter's executed notebook ``executed/<chapter>.ipynb`` gets a stamp beside it, ``executed/<chapter>.stamp``
(JSON), holding the hash of everything its outputs depend on:

* the chapter's source, ``chapters/<chapter>.py``;
* the library, every file under ``lib/locedit/`` (caches and bytecode excepted);
* the pinned stack, ``requirements.txt`` and ``requirements-models.txt``;
* the run's parameters: ``quick`` and the model (``MODEL``, default: the chapter's own default).

``scripts/run_chapters.sh execute`` asks ``fresh`` before running a chapter (skips it when the stamp matches),
and calls ``write`` after a successful run; ``prepare`` (make test) and a failed run remove the stamp.

    python scripts/chapter_stamps.py fresh 00_toolkit --quick True [--model NAME]   # exit 0: up to date
    python scripts/chapter_stamps.py write 00_toolkit --quick True [--model NAME]
    python scripts/chapter_stamps.py remove 00_toolkit
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STACK_FILES = ("requirements.txt", "requirements-models.txt")
SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints"}


def _normal_quick(quick: str | bool) -> bool:
    return str(quick).strip().lower() in ("true", "1", "yes")


def inputs(root: Path, chapter: str) -> list[Path]:
    """The files a chapter's outputs depend on, in a fixed order."""
    files = [root / "chapters" / f"{chapter}.py"]
    lib = root / "lib" / "locedit"
    if lib.is_dir():
        files += sorted(
            p
            for p in lib.rglob("*")
            if p.is_file() and not SKIP_PARTS.intersection(p.relative_to(lib).parts) and p.suffix != ".pyc"
        )
    files += [root / name for name in STACK_FILES if (root / name).is_file()]
    return files


def key(root: Path, chapter: str, quick: str | bool, model: str | None = None) -> str:
    """The hash of a chapter's inputs and parameters (hex)."""
    h = hashlib.sha256()
    params = {"chapter": chapter, "quick": _normal_quick(quick), "model": model or None}
    h.update(json.dumps(params, sort_keys=True).encode())
    for path in inputs(root, chapter):
        h.update(b"\0" + str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def stamp_path(root: Path, chapter: str) -> Path:
    return root / "executed" / f"{chapter}.stamp"


def fresh(root: Path, chapter: str, quick: str | bool, model: str | None = None) -> bool:
    """True when the executed notebook exists and its stamp matches the current inputs and parameters."""
    notebook = root / "executed" / f"{chapter}.ipynb"
    stamp = stamp_path(root, chapter)
    if not (notebook.is_file() and stamp.is_file()):
        return False
    try:
        recorded = json.loads(stamp.read_text())
    except ValueError:
        return False
    return recorded.get("key") == key(root, chapter, quick, model)


def write(root: Path, chapter: str, quick: str | bool, model: str | None = None) -> Path:
    stamp = stamp_path(root, chapter)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    record = {"chapter": chapter, "quick": _normal_quick(quick), "model": model or None}
    record["key"] = key(root, chapter, quick, model)
    tmp = stamp.with_suffix(".stamp.tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(stamp)
    return stamp


def remove(root: Path, chapter: str) -> None:
    stamp_path(root, chapter).unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["fresh", "write", "remove"])
    parser.add_argument("chapter")
    parser.add_argument("--quick", default="False")
    parser.add_argument("--model", default=None)
    parser.add_argument("--root", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    if args.action == "fresh":
        return 0 if fresh(args.root, args.chapter, args.quick, args.model) else 1
    if args.action == "write":
        write(args.root, args.chapter, args.quick, args.model)
    else:
        remove(args.root, args.chapter)
    return 0


if __name__ == "__main__":
    sys.exit(main())
