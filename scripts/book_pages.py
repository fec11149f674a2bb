"""Build-time edits of the book's chapter copies, and the generated figure index (called by scripts/build_book.sh).

* :func:`merge_parameters` — papermill adds an "injected-parameters" cell under the chapter's own "parameters"
  cell, so the page showed the parameters twice. The book's copy keeps one cell: the chapter's, with each injected
  value written in place (``quick = True  # set for this build (default: False)``).
* :func:`figure_index` — the "Figures by method" page: every figure of every chapter (plotly or image), grouped by
  method (causal tracing, editing, neuron decoding, ...), each linked to the section that holds it.

    python scripts/book_pages.py figures book/chapters book/figures.md
"""

from __future__ import annotations

import html
import json
import re
import sys
from pathlib import Path

PLOTLY_MIME = "application/vnd.plotly.v1+json"

#: (method, pattern) tried in order on "figure title + section heading"; the first match files the figure.
METHODS = (
    ("Circuits", r"circuit|path patching|colou?red objects"),
    ("Causal tracing", r"trac|restor|sever|indirect effect"),
    ("Model editing (ROME, MEMIT, fine-tuning)", r"\brome\b|memit|edit|ft-l|fine-tun|counterfact"),
    ("Logit lens", r"\blens\b"),
    ("Activation patching", r"patch|\bhead\b"),
    ("Neuron decoding and clamping", r"neuron|decod|clamp|speciali[sz]"),
)
OTHER = "Other figures"


def _tags(cell: dict) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def merge_parameters(nb: dict) -> bool:
    """Fold papermill's injected-parameters cell into the chapter's parameters cell (in place); True if merged."""
    cells = nb.get("cells", [])
    own = next((c for c in cells if "parameters" in _tags(c)), None)
    injected = next((c for c in cells if "injected-parameters" in _tags(c)), None)
    if own is None or injected is None:
        return False
    values = dict(re.findall(r"^(\w+)\s*=\s*(.+?)\s*$", _source(injected), flags=re.M))
    lines = []
    for line in _source(own).splitlines():
        m = re.match(r"^(\w+)\s*=\s*(.*?)(\s*#.*)?$", line)
        if m and m[1] in values:
            default = m[2].strip()
            value = values.pop(m[1])
            line = f"{m[1]} = {value}" + (f"  # set for this build (default: {default})" if value != default else "")
        lines.append(line)
    lines += [f"{k} = {v}  # set for this build" for k, v in values.items()]
    own["source"] = "\n".join(lines)
    cells.remove(injected)
    return True


def section_id(heading: str) -> str:
    """The HTML id Sphinx gives a section titled ``heading`` (docutils' make_id)."""
    from docutils.nodes import make_id

    return make_id(heading)


def _figure_title(out: dict) -> str:
    data = out.get("data", {})
    if PLOTLY_MIME in data:
        title = data[PLOTLY_MIME].get("layout", {}).get("title", {})
        text = title.get("text", "") if isinstance(title, dict) else str(title)
        return " ".join(re.sub(r"<[^>]+>", " ", text).split())
    return ""


def _is_figure(out: dict) -> str | None:
    """'interactive' for a plotly figure, 'image' for a PNG/SVG, None otherwise."""
    data = out.get("data", {})
    if PLOTLY_MIME in data or 'class="plotly-graph-div"' in "".join(data.get("text/html", "")):
        return "interactive"
    if "image/png" in data or "image/svg+xml" in data:
        return "image"
    return None


def method_of(text: str) -> str:
    for method, pattern in METHODS:
        if re.search(pattern, text, flags=re.I):
            return method
    return OTHER


def figures(nb_path: Path) -> tuple[str, list[dict]]:
    """(chapter title, figures) of one notebook: each figure's section heading, title, kind and method."""
    nb = json.loads(Path(nb_path).read_text())
    title, heading, found = nb_path.stem, "", []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            for level, text in re.findall(r"^(#{1,4})\s+(.+?)\s*$", _source(cell), flags=re.M):
                if len(level) == 1 and title == nb_path.stem:
                    title = text
                elif len(level) > 1:
                    heading = text
            continue
        for out in cell.get("outputs", []):
            kind = _is_figure(out)
            if kind is None:
                continue
            fig_title = _figure_title(out)
            found.append(
                {
                    "section": heading or title,
                    "title": fig_title,
                    "kind": kind,
                    "method": method_of(f"{fig_title} {heading}"),
                }
            )
    return title, found


def figure_index(chapters_dir: str | Path) -> str:
    """The "Figures by method" page (MyST Markdown with HTML lists) for the notebooks in ``chapters_dir``."""
    by_method: dict[str, list[str]] = {}
    for nb_path in sorted(Path(chapters_dir).glob("*.ipynb")):
        chapter, found = figures(nb_path)
        for number, fig in enumerate(found, 1):
            href = f"chapters/{nb_path.stem}.html#{section_id(fig['section'])}"
            label = f"{fig['title']} ({fig['kind']})" if fig["title"] else f"figure {number} ({fig['kind']})"
            by_method.setdefault(fig["method"], []).append(
                f'<li><a href="{html.escape(href)}">{html.escape(chapter)} — {html.escape(fig["section"])}</a>: '
                f"{html.escape(label)}</li>"
            )
    out = [
        "# Figures by method",
        "",
        "Every figure of the book, grouped by the method that made it; each links to its section. Generated from the "
        "executed chapters when the book was built (`scripts/book_pages.py`).",
    ]
    order = [m for m, _ in METHODS] + [OTHER]
    for method in sorted(by_method, key=order.index):
        out += ["", f"## {method}", "", '<ul class="locedit-figure-index">', *by_method[method], "</ul>"]
    if not by_method:
        out += ["", "*No chapter has been executed yet.*"]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] != "figures":
        sys.exit("usage: python scripts/book_pages.py figures <chapters folder> <output .md>")
    Path(argv[2]).write_text(figure_index(argv[1]))
    print(f"book_pages: wrote {argv[2]}")


if __name__ == "__main__":
    main(sys.argv[1:])
