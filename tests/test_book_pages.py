"""scripts/book_pages.py: one parameters cell per chapter page, and the figure index grouped by method."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "book_pages", Path(__file__).resolve().parents[1] / "scripts" / "book_pages.py"
)
book_pages = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(book_pages)


def _cell(kind, source, tags=(), outputs=()):
    cell = {"cell_type": kind, "metadata": {"tags": list(tags)}, "source": source}
    if kind == "code":
        cell["outputs"] = list(outputs)
    return cell


def test_merge_parameters_keeps_one_cell_with_the_injected_values():
    nb = {
        "cells": [
            _cell("markdown", "# 1. A chapter"),
            _cell("code", 'model_name = "smollm2-135m"\ndevice = "auto"\nquick = False  # CI: True', ["parameters"]),
            _cell("code", "# Parameters\nquick = True\nseed = 3\n", ["injected-parameters"]),
            _cell("code", "print(quick)"),
        ]
    }
    assert book_pages.merge_parameters(nb)
    params = [c for c in nb["cells"] if "parameters" in c["metadata"]["tags"]]
    assert len(nb["cells"]) == 3 and len(params) == 1
    assert not any("injected-parameters" in c["metadata"]["tags"] for c in nb["cells"])
    assert params[0]["source"].splitlines() == [
        'model_name = "smollm2-135m"',
        'device = "auto"',
        "quick = True  # set for this build (default: False)",
        "seed = 3  # set for this build",
    ]
    assert not book_pages.merge_parameters(nb)  # nothing left to merge


def test_figure_index_groups_figures_by_method_and_links_their_sections(tmp_path):
    layout = {"title": {"text": "Average <b>indirect</b> effect"}}
    plot = {"output_type": "display_data", "metadata": {},
            "data": {book_pages.PLOTLY_MIME: {"data": [], "layout": layout}, "text/html": "<div></div>"}}  # fmt: skip
    png = {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBOR"}}
    nb = {
        "cells": [
            _cell("markdown", "# 1. Editing facts\n\nintro"),
            _cell("markdown", "## 2. Causal tracing\n### 2.2 Average effects over facts"),
            _cell("code", "fig.show()", outputs=[plot]),
            _cell("markdown", "### 3.3 Which layer should we edit? (Figure 5)"),
            _cell("code", "plt.show()", outputs=[png, {"output_type": "stream", "text": "x"}]),
        ]
    }
    (tmp_path / "01_rome.ipynb").write_text(json.dumps(nb))
    text = book_pages.figure_index(tmp_path)
    assert text.startswith("# Figures by method")
    tracing = text.split("## Causal tracing", 1)[1].split("##", 1)[0]
    assert 'href="chapters/01_rome.html#average-effects-over-facts"' in tracing
    assert "1. Editing facts — 2.2 Average effects over facts</a>: Average indirect effect (interactive)" in tracing
    editing = text.split("## Model editing", 1)[1]
    assert 'href="chapters/01_rome.html#which-layer-should-we-edit-figure-5"' in editing and "(image)" in editing
    assert text.count("<li>") == 2  # the stream output is not a figure


def test_figure_index_of_nothing_says_so(tmp_path):
    assert "No chapter has been executed yet" in book_pages.figure_index(tmp_path)


def test_every_citation_in_the_book_is_in_the_bibliography():
    root = Path(__file__).resolve().parents[1]
    keys = set(re.findall(r"^@\w+\{([^,]+),", (root / "book" / "references.bib").read_text(), flags=re.M))
    sources = sorted((root / "chapters").glob("*.py")) + sorted((root / "book").glob("*.md"))
    role = re.compile(r"\{cite(?::\w+)?\}`([^`]+)`")
    cited = {p.name: {k.strip() for group in role.findall(p.read_text()) for k in group.split(",")} for p in sources}
    missing = {name: sorted(found - keys) for name, found in cited.items() if found - keys}
    assert missing == {}, "cited keys missing from book/references.bib"
    for chapter in sorted((root / "chapters").glob("*.py")):
        assert cited[chapter.name], f"{chapter.name} cites nothing from book/references.bib"
