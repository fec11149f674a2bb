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


def _results() -> dict[str, dict]:
    from locedit.scorecard import load_results

    return load_results(ROOT / "executed")


def test_scorecard_page_shows_every_claim_with_a_coloured_verdict(site, server, driver):
    """The scorecard page (generated from executed/*.results.json) holds one verdict cell per claim, in the order
    of the results files, each a coloured badge (one colour per verdict), with its criterion under the claim; the
    chapters of the toc without results are pending."""
    from locedit.scorecard import toc_chapters

    results = _results()
    driver.get(server.url + "scorecard.html")
    cells = driver.execute_script(
        "return [...document.querySelectorAll('td.locedit-verdict-cell .locedit-verdict')].map(e => "
        "[e.textContent.trim(), getComputedStyle(e).backgroundColor, e.getBoundingClientRect().width])"
    )
    planned = toc_chapters(ROOT / "book" / "_toc.yml")
    expected = [c["verdict"] for name in planned if name in results for c in results[name]["claims"]]
    expected += [c["verdict"] for name, r in results.items() if name not in planned for c in r["claims"]]
    assert [text for text, _, _ in cells] == expected, "the page's verdicts differ from the results files"
    assert all(width > 0 for _, _, width in cells), "a verdict badge is not visible"
    colours = {text: colour for text, colour, _ in cells}
    assert all(c not in ("rgba(0, 0, 0, 0)", "transparent") for c in colours.values()), colours
    assert len(set(colours.values())) == len(colours), f"two verdicts share a colour: {colours}"
    criteria = driver.execute_script(
        "return [...document.querySelectorAll('td.locedit-claim')].map(td => "
        "(td.querySelector('.locedit-criterion') || {textContent: ''}).textContent.trim())"
    )
    assert len(criteria) == len(expected) and all(criteria), "a claim without its criterion on the page"
    # runs on other models (results/<model>/): one comparison table per chapter that has claims and such a run,
    # each claim's row holding a badge for the book's model and one per other model
    from locedit.scorecard import load_other_models

    others = load_other_models(ROOT / "results")
    compared = [n for n in results if results[n]["claims"] and any(n in runs for runs in others.values())]
    tables = driver.execute_script(
        "return [...document.querySelectorAll('table.locedit-models')].map(t => "
        "[...t.querySelectorAll('tbody tr')].map(r => r.querySelectorAll('.locedit-verdict').length))"
    )
    assert len(tables) == len(compared), "a chapter run on another model has no comparison table, or one too many"
    for name, rows in zip([n for n in planned if n in compared], tables, strict=False):
        models = sum(name in runs for runs in others.values())
        assert len(rows) == len(results[name]["claims"]) and all(1 <= r <= 1 + models for r in rows), (name, rows)
    pending = driver.execute_script(
        "return [...document.querySelectorAll('tr.locedit-pending td:first-child')].map(e => e.textContent)"
    )
    assert len(pending) == len([n for n in planned if n not in results])


def test_chapter_pages_show_their_run_and_one_parameters_cell(site):
    results = _results()
    for page in sorted((site / "chapters").glob("*.html")):
        html = page.read_text()
        header = re.search(r'<div class="locedit-run-info"[^>]*>(.*?)</div>', html, flags=re.S)
        assert header, f"{page.name}: no run header (time, model, size) at the top"
        r = results.get(page.stem, {})
        assert r.get("model", "") in header[1] and ("quick size" if r.get("quick") else "full size") in header[1]
        assert re.search(r"in <strong>\d", header[1]), f"{page.name}: the header has no run time: {header[1]}"
        article = html.index('<article class="bd-article"')  # the print-only copy of the title comes earlier
        assert article < html.index("locedit-run-info") < html.index("<h1", article), (
            f"{page.name}: the run header is not at the top of the article"
        )
        assert len(re.findall(r"tag_parameters\b", html)) == 1, f"{page.name}: not exactly one parameters cell"
        assert "tag_injected-parameters" not in html, f"{page.name}: papermill's injected cell is shown"


def test_figure_index_links_every_figure_to_its_section(site):
    index = (site / "figures.html").read_text()
    links = re.findall(r'<li><a href="(chapters/[^"#]+)#([^"]+)"', index)
    total = 0
    for nb in sorted((site / "_sources" / "chapters").glob("*.ipynb")):
        exp = sitecheck.expectation_from_notebook(nb)
        total += exp.plotly_figures + exp.images
    assert len(links) == total > 0, f"{len(links)} links for {total} figures"
    for page, anchor in links:
        assert f'id="{anchor}"' in (site / page).read_text(), f"figures.html links to a missing #{anchor} in {page}"


def test_chapters_cite_the_bibliography(site):
    refs = (site / "references.html").read_text()
    for page in sorted((site / "chapters").glob("*.html")):
        cited = re.findall(r'href="\.\./references\.html#(id\d+|[\w-]+)"', page.read_text())
        assert cited, f"{page.name} cites nothing from references.bib"
        for anchor in cited:
            assert f'id="{anchor}"' in refs, f"{page.name} cites #{anchor}, which the references page lacks"
