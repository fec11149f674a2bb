"""The checker catches what it is meant to catch: tiny synthetic pages, each broken in one way, and a copy of a
built chapter page with one figure removed, emptied or left undrawn."""

from __future__ import annotations

import re
import shutil

import pytest
import sitecheck
from sitecheck import REQUIRED, Expectation, site_missing

pytest_plugins = ["browser_fixtures"]  # fixtures: site, server, driver, quick_build

if site_missing() and not REQUIRED:
    pytest.skip(site_missing(), allow_module_level=True)

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<style>body {{ margin: 0 }} article {{ width: 600px; margin-left: 100px }}</style></head>
<body>{banner}<article class="bd-article"><p>A fine paragraph.</p>{body}</article></body></html>"""

BROKEN = {
    "console_error": ("<script>throw new Error('boom')</script>", "console error"),
    "missing_file": ('<img src="missing.png" alt="">', "HTTP 404"),
    "other_host": ('<script src="https://cdn.example.com/lib.js"></script>', "request to another host"),
    "raw_maths": ("<p>the neuron's activation $u_i$ times its gate</p>", "raw maths"),
    "untypeset_maths": ('<p><span class="math">\\(x^2\\)</span></p>', "maths not typeset"),
    "too_wide": ('<div style="width: 900px; height: 20px"></div>', "wider than the text column"),
    "cut_code": (
        '<div class="cell_input"><pre style="overflow-x: auto; white-space: pre">'
        + "x = 1  # "
        + "a" * 300
        + "</pre></div>",
        "code line cut",
    ),
    "dead_widget": (
        '<div class="cell"><div class="cell_output"><script type="application/vnd.jupyter.widget-view+json">'
        '{"model_id": "abc"}</script></div></div>',
        "widget neither rendered",
    ),
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory, site):
    root = tmp_path_factory.mktemp("synthetic_site")
    (root / "fine.html").write_text(PAGE.format(banner="", body=""))
    (root / "banner.html").write_text(
        PAGE.format(banner=f'<div id="{sitecheck.DRAFT_BANNER_ID}">Draft build.</div>', body="")
    )
    for name, (body, _) in BROKEN.items():
        (root / f"{name}.html").write_text(PAGE.format(banner="", body=body))
    with sitecheck.serve(root) as srv:
        yield srv


def test_a_fine_page_passes(synthetic, driver):
    assert sitecheck.check_page(driver, synthetic.url + "fine.html", quick=False) == []


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_each_breakage_is_reported(name, synthetic, driver):
    problems = sitecheck.check_page(driver, synthetic.url + f"{name}.html")
    assert any(BROKEN[name][1] in p for p in problems), problems


def test_draft_banner_present_iff_quick(synthetic, driver):
    assert sitecheck.check_page(driver, synthetic.url + "banner.html", quick=True) == []
    assert "draft banner on a full build" in sitecheck.check_page(driver, synthetic.url + "banner.html", quick=False)
    assert "quick build without a visible draft banner" in sitecheck.check_page(
        driver, synthetic.url + "fine.html", quick=True
    )


FIGURE = re.compile(
    r'<div id="(?P<id>[0-9a-f-]{36})" class="plotly-graph-div"[^>]*></div>\s*<script[^>]*>'
    r"(?P<js>.*?)</script>",
    re.S,
)


@pytest.fixture(scope="module")
def chapter_copy(tmp_path_factory, site):
    """A copy of the built site and one of its chapter pages that has plotly figures."""
    for page in sitecheck.pages(site):
        nb = sitecheck.chapter_notebook(site, page)
        if nb and sitecheck.expectation_from_notebook(nb).plotly_figures and FIGURE.search((site / page).read_text()):
            break
    else:
        pytest.fail("no chapter page with a plotly figure in the built site")
    root = tmp_path_factory.mktemp("site_copy") / "html"
    shutil.copytree(site, root, ignore=shutil.ignore_patterns("*.png", "*.ipynb"))
    shutil.copy2(nb, root / "_sources" / nb.relative_to(site / "_sources"))
    with sitecheck.serve(root) as srv:
        yield srv, root, page, sitecheck.expectation_from_notebook(nb)


def _variant(chapter_copy, name, edit):
    srv, root, page, expect = chapter_copy
    html = (root / page).read_text()
    changed = edit(html)
    assert changed != html
    out = root / page.replace(".html", f"_{name}.html")
    out.write_text(changed)
    return srv.url + str(out.relative_to(root)), expect


def test_the_chapter_page_itself_passes_the_figure_checks(chapter_copy, driver):
    srv, _, page, expect = chapter_copy
    problems = sitecheck.check_page(driver, srv.url + page, expect=expect)
    assert not [p for p in problems if "plotly" in p], problems


def test_a_removed_figure_fails(chapter_copy, driver):
    url, expect = _variant(chapter_copy, "removed", lambda h: FIGURE.sub("", h, count=1))
    problems = sitecheck.check_page(driver, url, expect=expect)
    assert any("plotly figures in the notebook" in p for p in problems), problems


def test_an_undrawn_figure_fails(chapter_copy, driver):
    url, expect = _variant(chapter_copy, "undrawn", lambda h: h.replace("Plotly.newPlot(", "void(", 1))
    problems = sitecheck.check_page(driver, url, expect=expect)
    assert any("plotly output not drawn" in p for p in problems), problems


def test_an_emptied_figure_fails(chapter_copy, driver):
    def empty_first(html):
        m = FIGURE.search(html)
        script = f"<script>window.addEventListener('load', () => setTimeout(() => Plotly.react('{m['id']}', "
        script += "[{type: 'heatmap', z: []}], {}), 0));</script>"
        return html.replace("</body>", script + "</body>")

    url, expect = _variant(chapter_copy, "emptied", empty_first)
    problems = sitecheck.check_page(driver, url, expect=expect)
    assert any("holds no data" in p for p in problems), problems


def test_a_fixed_width_figure_too_wide_for_the_column_fails(chapter_copy, driver):
    """The old heat maps: 1100 px fixed width in a ~700 px column (the last positions and colour bar hidden)."""

    def widen(html):
        m = FIGURE.search(html)
        script = f"<script>window.addEventListener('load', () => setTimeout(() => Plotly.relayout('{m['id']}', "
        script += "{width: 1100, autosize: false}), 0));</script>"
        return html.replace("</body>", script + "</body>")

    url, expect = _variant(chapter_copy, "wide", widen)
    problems = sitecheck.check_page(driver, url, expect=expect)
    assert any("part of it is hidden" in p or "wider than the text column" in p for p in problems), problems


def test_expectation_counts_outputs(tmp_path):
    nb = tmp_path / "x.ipynb"
    nb.write_text(
        '{"cells": [{"cell_type": "code", "outputs": [{"data": {"application/vnd.plotly.v1+json": {}, '
        '"text/html": "<div></div>"}}, {"data": {"image/png": ""}}, '
        '{"data": {"application/vnd.jupyter.widget-view+json": {}}}]}], "metadata": {}}'
    )
    assert sitecheck.expectation_from_notebook(nb) == Expectation(plotly_figures=1, images=1, widgets=1)


def test_a_title_under_the_toolbar_fails(chapter_copy, driver):
    """plotly's default: a title at the top of the figure, where the toolbar (modebar) appears."""

    def raise_title(html):
        m = FIGURE.search(html)
        script = f"<script>window.addEventListener('load', () => setTimeout(() => Plotly.relayout('{m['id']}', "
        script += "{'title.text': 'A centred title of about sixty characters, at the very top', "
        script += "'title.yref': 'container', 'title.y': 0.99, 'title.yanchor': 'top', 'title.x': 0.5, "
        script += "'title.xanchor': 'center'}), 0));</script>"
        return html.replace("</body>", script + "</body>")

    url, expect = _variant(chapter_copy, "title", raise_title)
    problems = sitecheck.check_page(driver, url, expect=expect)
    assert any("the toolbar covers its title" in p for p in problems), problems
