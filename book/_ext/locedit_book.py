"""Sphinx extension for the Locate & Edit book (loaded from _config.yml, ``sphinx: local_extensions``).

* **Draft banner.** When any chapter notebook in the build was executed with ``quick=True`` (papermill's
  parameters in the notebook's metadata), every page opens with a banner (the theme's announcement bar) saying
  the numbers are a quick draft.
* **Notebook links.** Each chapter page opens with a link to download its notebook (the committed, output-free
  ``notebooks/<chapter>.ipynb``, copied into the site) and an "Open in Colab" link to the same file in the
  repository (``locedit_repository`` / ``locedit_branch`` in ``_config.yml``).
* **Run header.** Under those links, each chapter page says when it was run, how long it took, on which model and
  at which size (quick or full), and its verdicts: read at build time from the chapter's results file
  (``executed/<chapter>.results.json``) and papermill's record in the notebook.
* **One copy of each script.** sphinx-thebe adds its inline ``const THEBE_JS_URL = …`` script twice to every page
  ("Identifier 'THEBE_JS_URL' has already been declared"); identical scripts are kept once.
* The book's stylesheet (``_assets/locedit.css``): wrapped code lines, figures within the column, the banner.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

DRAFT_BANNER_ID = "locedit-draft-banner"


def _quick_chapters(srcdir: Path) -> list[str]:
    """Chapters of this build executed with quick=True (read from papermill's record in each notebook)."""
    quick = []
    for nb_path in sorted((srcdir / "chapters").glob("*.ipynb")):
        try:
            meta = json.loads(nb_path.read_text()).get("metadata", {})
        except (OSError, ValueError):
            continue
        params = meta.get("papermill", {}).get("parameters", {})
        if str(params.get("quick", False)).lower() == "true":
            quick.append(nb_path.stem)
    return quick


def _builder_inited(app):
    quick = _quick_chapters(Path(app.srcdir))
    if quick:  # the theme's announcement bar: at the top of every page, search and index pages included
        app.config.html_theme_options["announcement"] = (
            f'<div id="{DRAFT_BANNER_ID}" role="note"><strong>Draft build.</strong> These pages were executed in '
            "quick mode (<code>quick=True</code>: small samples, minutes on a laptop; chapters "
            f"{', '.join(quick)}), so their numbers are rough and differ from the published book "
            "(<code>make book</code>).</div>"
        )


def _run_header(srcdir: Path, name: str, root: str) -> str:
    """The chapter's run header (HTML): run time, model, size and verdicts, from its results file and notebook."""
    try:
        results = json.loads((srcdir.parent / "executed" / f"{name}.results.json").read_text())
    except (OSError, ValueError):
        results = {}
    try:
        meta = json.loads((srcdir / "chapters" / f"{name}.ipynb").read_text()).get("metadata", {}).get("papermill", {})
    except (OSError, ValueError):
        meta = {}
    params = meta.get("parameters", {})
    seconds = meta.get("duration") or results.get("seconds")
    model = results.get("model") or params.get("model_name")
    if seconds is None and model is None:
        return ""
    quick = results.get("quick", str(params.get("quick", False)).lower() == "true")
    finished = results.get("finished") or (meta.get("end_time") or "")[:19]
    when = f"{finished[:10]} {finished[11:16]} UTC" if finished else "at an unrecorded time"
    took = "?" if seconds is None else f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
    size = "<strong>quick size</strong> (draft numbers)" if quick else "<strong>full size</strong>"
    verdicts = [c.get("verdict", "") for c in results.get("claims", [])]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in dict.fromkeys(verdicts))
    score = f' · verdicts: {html.escape(counts)} (<a href="{root}scorecard.html">scorecard</a>)' if verdicts else ""
    return (
        f'<div class="locedit-run-info" role="note">Executed {html.escape(when)} in <strong>{took}</strong> on '
        f"<code>{html.escape(str(model or '?'))}</code>, {size}{score}</div>"
    )


def _dedupe_scripts(context):
    seen, kept = set(), []
    for script in context.get("script_files", []):
        attributes = getattr(script, "attributes", {})
        key = (
            getattr(script, "filename", str(script)) or "",
            tuple(sorted((k, str(v)) for k, v in attributes.items())),
        )
        if key in seen:
            continue
        seen.add(key)
        kept.append(script)
    if "script_files" in context:
        context["script_files"][:] = kept


def _page_context(app, pagename, templatename, context, doctree):
    _dedupe_scripts(context)
    if "body" not in context:
        return
    root = context.get("pathto", lambda *a, **k: "")("index").rsplit("index", 1)[0]
    parts = []
    if pagename.startswith("chapters/"):
        name = pagename.split("/", 1)[1]
        repo = app.config.locedit_repository.rstrip("/")
        branch = app.config.locedit_branch
        github_path = repo.split("github.com/", 1)[-1]
        colab = f"https://colab.research.google.com/github/{github_path}/blob/{branch}/notebooks/{name}.ipynb"
        parts.append(
            '<div class="locedit-nb-links">'
            f'<a class="locedit-download" href="{root}notebooks/{name}.ipynb" download="{name}.ipynb">'
            "⬇ Download this chapter as a notebook</a>"
            f'<a class="locedit-colab" href="{html.escape(colab)}" target="_blank" rel="noopener">Open in Colab</a>'
            "</div>"
        )
        parts.append(_run_header(Path(app.srcdir), name, root))
    context["body"] = "".join(parts) + context["body"]


def _copy_notebooks(app, exception):
    """Put the repository's output-free notebooks (notebooks/*.ipynb) into the site, for the download links."""
    if exception is not None or app.builder.format != "html":
        return
    source = Path(app.srcdir).parent / "notebooks"
    target = Path(app.outdir) / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for nb in sorted(source.glob("*.ipynb")):
        if (Path(app.srcdir) / "chapters" / nb.name).exists():
            shutil.copyfile(nb, target / nb.name)


def setup(app):
    app.add_config_value("locedit_repository", "https://github.com/OWNER/locate-and-edit", "html")
    app.add_config_value("locedit_branch", "main", "html")
    app.add_css_file("locedit.css")
    app.connect("builder-inited", _builder_inited)
    app.connect("html-page-context", _page_context, priority=900)
    app.connect("build-finished", _copy_notebooks)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
