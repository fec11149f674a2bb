"""Each chapter's machine-readable results: ``executed/<chapter>.results.json``.

One contract for the README, the scorecard page and the checks::

    {"chapter": "01_rome", "model": "smollm2-135m", "quick": true, "seconds": 212.4,
     "metrics": {"rome.ES": 99.0},
     "claims": [{"claim": "...", "paper": "...", "ours": "...", "verdict": "reproduced"}]}

A claim's verdict is computed from numbers by :func:`verdict`, never typed in.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from locedit.files import write_atomic

VERDICTS = ("reproduced", "partly", "not reproduced")


def verdict(holds: bool, partly: bool = False) -> str:
    """``"reproduced"`` when the paper's claim holds on our numbers, ``"partly"`` when only ``partly`` does."""
    return VERDICTS[0] if holds else VERDICTS[1] if partly else VERDICTS[2]


@dataclass
class Claim:
    claim: str
    paper: str
    ours: str
    verdict: str

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")


@dataclass
class ChapterResults:
    """Collects a chapter's metrics and claims; :meth:`write` saves them with the elapsed time."""

    chapter: str
    model: str
    quick: bool
    metrics: dict[str, float] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # written as metrics "seconds.<name>"
    started: float = field(default_factory=time.perf_counter)

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Time the block into ``timings[name]`` (seconds, 2 decimals)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = round(time.perf_counter() - start, 2)

    def write(self, folder: str | Path | None = None) -> Path:
        """Write ``<folder>/<chapter>.results.json`` atomically and return its path."""
        folder = Path(folder) if folder is not None else results_dir()
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "chapter": self.chapter,
            "model": self.model,
            "quick": self.quick,
            "seconds": round(time.perf_counter() - self.started, 1),
            "metrics": {**self.metrics, **{f"seconds.{k}": v for k, v in self.timings.items()}},
            "claims": [asdict(c) for c in self.claims],
        }
        path = folder / f"{self.chapter}.results.json"
        # json.dumps first: a metric JSON cannot hold fails before anything is written (the old file stays)
        write_atomic(path, json.dumps(payload, indent=2))
        return path


def results_dir() -> Path:
    """``$LOCEDIT_RESULTS_DIR``, else ``executed/`` at the repository root when run inside the repository, else
    ``./executed``."""
    if "LOCEDIT_RESULTS_DIR" in os.environ:
        return Path(os.environ["LOCEDIT_RESULTS_DIR"])
    for parent in [Path.cwd(), *Path.cwd().parents]:
        if (parent / "chapters").is_dir() and (parent / "lib" / "locedit").is_dir():
            return parent / "executed"
    return Path("executed")
