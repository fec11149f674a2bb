"""Every page of the built book, opened in headless Chromium from a local server (``make test-book``).

A page fails on any JavaScript console error or failed request (404, or any request that leaves 127.0.0.1), a
plotly figure missing or without data, a widget neither rendered nor marked "needs a live kernel", maths not
typeset or raw ``$...$`` in the text, anything wider than the text column, a cut code line, a toolbar over a
figure title, or a draft banner that is missing on a quick build (or present on a full one). Each page is
screenshotted into book/_build/screenshots/ (what a reader sees first, 1280 px wide).
"""

from __future__ import annotations

import json
import re

import pytest
import sitecheck
from sitecheck import REQUIRED, ROOT, SCREENSHOTS, SITE, chapter_notebook, site_missing

pytest_plugins = ["browser_fixtures"]  # fixtures: site, server, driver, quick_build

if site_missing() and not REQUIRED:
    pytest.skip(site_missing(), allow_module_level=True)

PAGES = sitecheck.pages(SITE) if not site_missing() else ["index.html"]


@pytest.mark.parametrize("page", PAGES)
def test_page(page, site, server, driver, quick_build):
    nb = chapter_notebook(site, page)
    expect = sitecheck.expectation_from_notebook(nb) if nb else None
    shot = SCREENSHOTS / (page[: -len(".html")].replace("/", "__") + ".png")
    problems = sitecheck.check_page(driver, server.url + page, expect=expect, quick=quick_build, screenshot=shot)
    assert problems == [], f"{page}:\n  " + "\n  ".join(problems)
    if nb is not None:
        assert expect.plotly_figures + expect.images > 0, f"{page}: a chapter without a single figure"


def test_every_chapter_is_in_the_site(site):
    built = {p.stem for p in (site / "chapters").glob("*.html")}
    sources = {p.stem for p in (ROOT / "chapters").glob("*.py")}
    assert sources <= built, f"chapters without a page: {sorted(sources - built)}"


def test_intro_marks_unwritten_chapters_as_coming(site):
    """The intro lists every planned chapter; those not written yet say "coming", the others link to their page."""
    html = (site / "intro.html").read_text()
    items = re.findall(r"<li>(.*?)</li>", html, flags=re.S)
    chapters = sorted(p.stem for p in (ROOT / "chapters").glob("*.py"))
    numbered = [i for i in items if re.match(r"\s*<p><strong>", i)]
    assert len(numbered) >= len(chapters), "the intro's chapter list is missing"
    for i, item in enumerate(numbered):
        written = any(name.startswith(f"{i:02d}_") for name in chapters)
        if written:
            assert "(coming)" not in item and 'href="chapters/' in item, f"chapter {i} is written: {item[:120]}"
        else:
            assert "(coming)" in item, f"chapter {i} is not written yet but not marked (coming): {item[:120]}"


def test_chapter_pages_link_their_notebook_and_colab(site):
    for page in sorted((site / "chapters").glob("*.html")):
        html = page.read_text()
        download = re.search(r'class="locedit-download" href="([^"]+)"', html)
        colab = re.search(r'class="locedit-colab" href="([^"]+)"', html)
        assert download and colab, f"{page.name}: no download / Colab link"
        nb = (page.parent / download[1]).resolve()
        assert nb.is_file(), f"{page.name}: the download link points to a missing {nb}"
        assert all(c.get("outputs", []) == [] for c in json.loads(nb.read_text())["cells"])
        assert colab[1].startswith("https://colab.research.google.com/github/")
        assert colab[1].endswith(f"/notebooks/{page.stem}.ipynb")
