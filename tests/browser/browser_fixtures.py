"""Fixtures of the browser tests: the built site, a local server, headless Chromium (imported by the test
modules: a conftest.py here would shadow tests/conftest.py, which the library's tests import by name).

`make test-book` sets LOCEDIT_BOOK_TEST=1: a missing site or missing tools are then failures. In a plain
`pytest tests` they skip, with the reason (`make test` leaves this folder out).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sitecheck
from sitecheck import REQUIRED, SITE, site_missing


def stop(reason: str):
    """Fail under `make test-book`, skip otherwise."""
    if REQUIRED:
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def site() -> Path:
    reason = site_missing() or sitecheck.missing_tools()
    if reason:
        stop(reason)
    return SITE


@pytest.fixture(scope="session")
def server(site):
    with sitecheck.serve(site) as srv:
        yield srv


@pytest.fixture(scope="session")
def driver(site):
    with sitecheck.browser() as drv:
        yield drv


@pytest.fixture(scope="session")
def quick_build(site) -> bool:
    """Whether any chapter of this site was executed with quick=True (papermill's record in the notebook)."""
    for nb in sorted((site / "_sources" / "chapters").glob("*.ipynb")):
        params = json.loads(nb.read_text()).get("metadata", {}).get("papermill", {}).get("parameters", {})
        if str(params.get("quick", False)).lower() == "true":
            return True
    return False
