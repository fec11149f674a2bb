"""Each chapter's machine-readable results: ``executed/<chapter>.results.json``.

One contract for the README, the scorecard page (:mod:`locedit.scorecard`) and the checks::

    {"chapter": "01_rome", "model": "smollm2-135m", "quick": true, "seconds": 212.4,
     "finished": "2026-12-04T21:30:00Z",
     "metrics": {"rome.ES": 99.0, "rome.GE": null},
     "claims": [{"claim": "...", "criterion": "reproduced if ...; partly if ...", "paper": "...", "ours": "...",
                 "verdict": "reproduced"}]}

A claim's verdict is computed from numbers by :func:`verdict`, never typed in, and its ``criterion`` says in words
what the verdict tests, so a reader can check that the bar could have been missed. The files are strict JSON: a
NaN or infinite metric is written as ``null``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from locedit.files import write_atomic

#: The four verdicts; "not tested" is for a claim this run could not test (say why in ``ours``).
VERDICTS = ("reproduced", "partly", "not reproduced", "not tested")
NOT_TESTED = VERDICTS[3]


def verdict(holds: bool | None, partly: bool = False) -> str:
    """``"reproduced"`` when the paper's claim holds on our numbers, ``"partly"`` when only ``partly`` does,
    ``"not reproduced"`` otherwise; ``holds=None`` means the run could not test the claim: ``"not tested"``."""
    if holds is None:
        return NOT_TESTED
    return VERDICTS[0] if holds else VERDICTS[1] if partly else VERDICTS[2]


@dataclass
class Claim:
    """One claim of a paper beside our number.

    ``criterion`` is the verdict's rule in words ("reproduced if …; partly if …") and must be stated for every new
    claim (``tests/test_scorecard.py`` checks the chapters' sources); the scorecard flags a claim without one.
    """

    claim: str
    paper: str
    ours: str
    verdict: str
    criterion: str | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")
        if self.criterion is not None and not self.criterion.strip():
            raise ValueError("criterion is empty: say when the claim counts as reproduced (and partly), in words")


def strict_json(value):
    """``value`` with every NaN or infinite float (also NumPy / torch scalars) replaced by ``None``, recursively
    through dicts, lists and tuples, so ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    if isinstance(value, bool | int | str) or value is None:
        return value
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        return strict_json(value.item())  # a NumPy / torch scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value  # anything else: json.dumps names it if it cannot be written


@dataclass
class ChapterResults:
    """Collects a chapter's metrics and claims; :meth:`write` saves them with the elapsed time."""

    chapter: str
    model: str
    quick: bool
    metrics: dict[str, float | None] = field(default_factory=dict)
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
        """Write ``<folder>/<chapter>.results.json`` atomically (strict JSON) and return its path."""
        folder = Path(folder) if folder is not None else results_dir()
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "chapter": self.chapter,
            "model": self.model,
            "quick": self.quick,
            "seconds": round(time.perf_counter() - self.started, 1),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "metrics": {**self.metrics, **{f"seconds.{k}": v for k, v in self.timings.items()}},
            "claims": [asdict(c) for c in self.claims],
        }
        path = folder / f"{self.chapter}.results.json"
        # json.dumps first: a metric JSON cannot hold fails before anything is written (the old file stays)
        write_atomic(path, json.dumps(strict_json(payload), indent=2, allow_nan=False))
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
