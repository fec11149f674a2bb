"""Sphinx extension for the Locate & Edit book (loaded from _config.yml, ``sphinx: local_extensions``).

* **Draft banner.** When any chapter notebook in the build was executed with ``quick=True`` (papermill's
  parameters in the notebook's metadata), every page opens with a banner (the theme's announcement bar) saying
  the numbers are a quick draft.
* **Notebook links.** Each chapter page opens with a link to download its notebook (the committed, output-free
  ``notebooks/<chapter>.ipynb``, copied into the site) and an "Open in Colab" link to the same file in the
  repository (``locedit_repository`` / ``locedit_branch`` in ``_config.yml``).
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
