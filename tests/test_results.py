"""locedit.results: the chapters' results files follow the contract and are written atomically."""

from __future__ import annotations

import json
import math
import os

import pytest

from locedit.results import VERDICTS, ChapterResults, Claim, results_dir, verdict

CONTRACT_KEYS = {"chapter", "model", "quick", "seconds", "finished", "metrics", "claims"}
CLAIM_KEYS = {"claim", "paper", "ours", "verdict", "criterion"}


def test_verdict_mapping():
    assert verdict(True) == "reproduced"
    assert verdict(True, partly=True) == "reproduced"
    assert verdict(False, partly=True) == "partly"
    assert verdict(False) == "not reproduced"
    assert verdict(None) == verdict(None, partly=True) == "not tested"
    assert {verdict(h, p) for h in (True, False, None) for p in (True, False)} == set(VERDICTS)


def test_invalid_verdict_raises():
    with pytest.raises(ValueError, match="verdict must be one of"):
        Claim("ROME edits generalise", "ES 100", "ES 99", "mostly")
    with pytest.raises(ValueError):
        Claim("x", "y", "z", "Reproduced")  # case matters: the scorecard matches exact strings
    with pytest.raises(ValueError, match="criterion is empty"):
        Claim("x", "y", "z", "reproduced", criterion="  ")


def test_write_follows_the_contract(tmp_path):
    results = ChapterResults("01_rome", "smollm2-135m", quick=True)
    results.metrics["rome.ES"] = 99.0
    results.metrics["rome.PS"] = 87.5
    results.claims.append(
        Claim("ROME's efficacy is near 100%", "ES 100", "ES 99.0", verdict(True), criterion="reproduced if ES ≥ 90")
    )
    results.claims.append(Claim("MEMIT scales", "10k edits", "100 edits", verdict(False, partly=True)))
    path = results.write(tmp_path / "out")
    assert path == tmp_path / "out" / "01_rome.results.json"
    data = json.loads(path.read_text())
    assert set(data) == CONTRACT_KEYS
    assert data["chapter"] == "01_rome" and data["model"] == "smollm2-135m" and data["quick"] is True
    assert isinstance(data["seconds"], float) and 0 <= data["seconds"] < 60
    assert data["metrics"] == {"rome.ES": 99.0, "rome.PS": 87.5}
    assert [set(c) for c in data["claims"]] == [CLAIM_KEYS, CLAIM_KEYS]
    assert [c["verdict"] for c in data["claims"]] == ["reproduced", "partly"]
    assert [c["criterion"] for c in data["claims"]] == ["reproduced if ES ≥ 90", None]
    assert data["finished"].endswith("Z") and data["finished"][:2] == "20"
    assert all(c["verdict"] in VERDICTS for c in data["claims"])
    # strict JSON: no NaN / Infinity tokens
    json.loads(path.read_text(), parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))


def test_nan_and_infinity_are_written_as_null(tmp_path):
    """Results files are strict JSON: a NaN (float, NumPy or torch) or an infinity becomes null, nested too."""
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    results = ChapterResults("01_rome", "smollm2-135m", quick=True)
    results.metrics.update(
        {"GE": float("nan"), "RS": np.float64("nan"), "t": torch.tensor(float("inf")), "ok": np.float32(1.5),
         "n": np.int64(3), "nested": [1.0, float("-inf")]}
    )  # fmt: skip
    text = results.write(tmp_path).read_text()
    assert "NaN" not in text and "Infinity" not in text
    data = json.loads(text, parse_constant=lambda token: pytest.fail(f"non-standard JSON token {token}"))
    assert data["metrics"] == {"GE": None, "RS": None, "t": None, "ok": 1.5, "n": 3, "nested": [1.0, None]}


def test_write_replaces_and_leaves_no_temporary_files(tmp_path):
    results = ChapterResults("02_neurons", "gemma3-270m", quick=False)
    results.metrics["n"] = 1.0
    results.write(tmp_path)
    results.metrics["n"] = 2.0
    path = results.write(tmp_path)
    assert json.loads(path.read_text())["metrics"] == {"n": 2.0}
    assert os.listdir(tmp_path) == ["02_neurons.results.json"]


def test_failed_write_keeps_the_old_file(tmp_path):
    """Atomic: a write that fails half-way leaves the previous results intact and no partial file behind."""
    results = ChapterResults("03_concepts", "smollm2-135m", quick=True, metrics={"ok": 1.0})
    path = results.write(tmp_path)
    before = path.read_text()
    results.metrics["bad"] = object()  # not JSON-serialisable: json.dump fails after writing part of the file
    with pytest.raises(TypeError):
        results.write(tmp_path)
    assert path.read_text() == before
    assert os.listdir(tmp_path) == [path.name]


def test_seconds_measure_elapsed_time(tmp_path):
    results = ChapterResults("04_circuits", "smollm2-135m", quick=True)
    results.started -= 12.34
    data = json.loads(results.write(tmp_path).read_text())
    assert math.isclose(data["seconds"], 12.3, abs_tol=0.2)


def test_results_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCEDIT_RESULTS_DIR", str(tmp_path / "custom"))
    assert results_dir() == tmp_path / "custom"
    monkeypatch.delenv("LOCEDIT_RESULTS_DIR")
    repo = tmp_path / "repo"
    (repo / "chapters").mkdir(parents=True)
    (repo / "lib" / "locedit").mkdir(parents=True)
    (repo / "chapters" / "sub").mkdir()
    monkeypatch.chdir(repo / "chapters" / "sub")
    assert results_dir() == repo / "executed"
    monkeypatch.chdir(tmp_path)
    assert results_dir().resolve() == (tmp_path / "executed").resolve()
    # write() with no folder uses results_dir() and creates it
    monkeypatch.setenv("LOCEDIT_RESULTS_DIR", str(tmp_path / "made"))
    path = ChapterResults("00_toolkit", "smollm2-135m", quick=True).write()
    assert path.parent == tmp_path / "made" and path.exists()
