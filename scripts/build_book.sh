#!/usr/bin/env bash
# Build the Jupyter Book site (book/_build/html) from the executed notebooks in executed/.
# Run after the chapters have been executed (papermill, PLOTLY_RENDERER=plotly_mimetype+notebook).
#   scripts/build_book.sh            # what `make book` calls
#   BOOK_STRICT=1 scripts/build_book.sh   # turn Sphinx warnings into errors
#   CHAPTERS="00_toolkit" scripts/build_book.sh   # only these chapters (the others are left out of the toc)
# Works offline: web assets come from npm once (scripts/fetch_web_assets.sh) and are reused.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -x "$ROOT/.venv/bin/jupyter-book" ]] && ! command -v jupyter-book >/dev/null; then
  export PATH="$ROOT/.venv/bin:$PATH"
fi
command -v jupyter-book >/dev/null || { echo "build_book: jupyter-book not found (pip install jupyter-book==1.0.4.post1)" >&2; exit 1; }
PY="$(dirname "$(command -v jupyter-book)")/python"

scripts/fetch_web_assets.sh

# Copy the executed notebooks into the book source and write the toc the build uses: book/_toc.yml
# minus the chapters that do not exist yet (no chapters/<name>.py and no executed notebook).
# Plotly's HTML renderer always adds <script src="https://cdnjs…/mathjax/…"> to each figure; the copies
# drop it (offline it fails, online it would load a second MathJax over the page's own).
rm -rf book/chapters && mkdir -p book/chapters book/_build
"$PY" - <<'PY'
import json, os, pathlib, re, sys, yaml
sys.path.insert(0, "scripts")
from book_pages import figure_index, merge_parameters
CDN_MATHJAX = re.compile(r'<script[^>]*src="https?://[^"]*/mathjax[^"]*"[^>]*>\s*</script>')
LIVE_KERNEL_NOTE = {"output_type": "display_data", "metadata": {}, "data": {"text/html": (
    '<div class="locedit-live-kernel" role="note"><strong>Needs a live kernel.</strong> This explorer shows its '
    "first state here; its controls do nothing in the static book. Download the notebook or open it in Colab "
    "(links at the top of the page) to use it.</div>")}}
def copy_notebook(src, dst):
    nb = json.loads(src.read_text())
    merge_parameters(nb)  # one parameters cell: the chapter's, with papermill's values written in
    for cell in nb.get("cells", []):
        outputs = []
        for out in cell.get("outputs", []):
            html = out.get("data", {}).get("text/html")
            if html is not None:
                text = "".join(html) if isinstance(html, list) else html
                out["data"]["text/html"] = CDN_MATHJAX.sub("", text)
            outputs.append(out)
            # an interactive widget: say under it that it needs a kernel (the static page shows its first state)
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                outputs.append(LIVE_KERNEL_NOTE)
        if "outputs" in cell:
            cell["outputs"] = outputs
    dst.write_text(json.dumps(nb))
toc = yaml.safe_load(open("book/_toc.yml"))
missing = []
only = os.environ.get("CHAPTERS", "").split()  # CHAPTERS="00_toolkit": build those chapters alone (a draft)
def keep(entry):
    f = entry.get("file", "")
    if not f.startswith("chapters/"):
        return True
    name = f.split("/", 1)[1]
    if only and name not in only:
        return False
    nb = pathlib.Path("executed", name + ".ipynb")
    if nb.exists():
        copy_notebook(nb, pathlib.Path("book/chapters", name + ".ipynb"))
        return True
    if pathlib.Path("chapters", name + ".py").exists():
        missing.append(str(nb))
    return False
for part in toc.get("parts", []):
    part["chapters"] = [c for c in part.get("chapters", []) if keep(c)]
toc["parts"] = [p for p in toc.get("parts", []) if p["chapters"]]
if not toc["parts"]:
    del toc["parts"]
if missing:
    sys.exit("build_book: chapters not executed yet: " + ", ".join(missing))
yaml.safe_dump(toc, open("book/_build/_toc.yml", "w"), sort_keys=False)
pathlib.Path("book/figures.md").write_text(figure_index("book/chapters"))  # the figures of the chapters built
print("build_book: chapters:", ", ".join(sorted(p.stem for p in pathlib.Path("book/chapters").glob("*.ipynb"))) or "none")
PY

# The reproduction scorecard page (git-ignored), from every executed/*.results.json, other models' runs (committed
# under results/<model>/) beside them; chapters of the toc without results are listed as pending
# (locedit.scorecard; `make scorecard` also updates the README's table).
PYTHONPATH="$ROOT/lib${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m locedit.scorecard --results executed --toc book/_toc.yml \
  --chapters chapters --others results --page book/scorecard.md

strict=()
if [[ "${BOOK_STRICT:-0}" == 1 ]]; then strict=(-W --keep-going); fi
jupyter-book build "$ROOT/book" --config "$ROOT/_config.yml" --toc "$ROOT/book/_build/_toc.yml" \
  --path-output "$ROOT/book" ${strict[@]+"${strict[@]}"}

# Offline check: no page may load a script or stylesheet from the network.
html=book/_build/html
if grep -rlE '<script[^>]+src="(https?:)?//|<link[^>]+rel="stylesheet"[^>]+href="(https?:)?//|cdn\.plot\.ly/plotly' "$html" --include='*.html'; then
  echo "build_book: the pages above load JavaScript/CSS from the network (see grep hits)" >&2
  exit 1
fi
echo "build_book: site ready: $html/index.html"
