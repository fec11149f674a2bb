import io

import pytest

from locedit import progress


@pytest.fixture(autouse=True)
def _reset():
    yield
    progress.set_enabled(None)


def test_environment_variable_silences_bars(monkeypatch):
    monkeypatch.setenv("LOCEDIT_PROGRESS", "0")
    assert not progress.enabled()
    monkeypatch.setenv("LOCEDIT_PROGRESS", "1")
    assert progress.enabled()
    progress.set_enabled(False)  # code overrides the environment
    assert not progress.enabled()


def test_bars_yield_every_item_and_print_only_when_enabled(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    progress.set_enabled(False)
    assert list(progress.progress(range(5), "quiet", delay=0)) == list(range(5))
    with progress.bar("quiet", total=3, delay=0) as b:
        b.update(3)
    assert out.getvalue() == ""
    progress.set_enabled(True)
    assert list(progress.progress(range(5), "loud", delay=0)) == list(range(5))
    assert "loud" in out.getvalue()


def test_delay_defaults_to_the_module_setting(monkeypatch):
    """A bar without ``delay`` waits ``progress.DELAY`` seconds (2 by default): tests set it to 0 to see bars."""
    out = io.StringIO()
    monkeypatch.setattr("sys.stderr", out)
    progress.set_enabled(True)
    assert progress.DELAY == 2.0
    list(progress.progress(range(3), "waits"))
    assert out.getvalue() == ""  # finished before the delay
    monkeypatch.setattr(progress, "DELAY", 0.0)
    list(progress.progress(range(3), "at once"))
    with progress.bar("by hand", total=2) as b:
        b.update(2)
    assert "at once" in out.getvalue() and "by hand" in out.getvalue()
