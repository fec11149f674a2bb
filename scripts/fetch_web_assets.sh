#!/usr/bin/env bash
# Fetch the JavaScript the built book needs so it renders with no network:
# MathJax 3, RequireJS and the ipywidgets HTML manager (npm tarballs, no dependencies).
# Tarballs land in book/_web_assets/npm/ (git-ignored, reused on later runs); the few files
# the pages load are staged in book/_web_assets/static/, which _config.yml adds to
# html_static_path so Sphinx copies them into book/_build/html/_static/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ASSETS="$ROOT/book/_web_assets"
NPM_DIR="$ASSETS/npm"
STATIC="$ASSETS/static"

# name@version -> folder under $NPM_DIR (pinned so the site is reproducible)
PACKAGES=(
  "mathjax@3.2.2"
  "requirejs@2.3.8"
  "@jupyter-widgets/html-manager@1.0.15"
)

mkdir -p "$NPM_DIR" "$STATIC"

for spec in "${PACKAGES[@]}"; do
  name="${spec%@*}"                      # strip the version
  dir="$NPM_DIR/${name//\//__}"          # @scope/pkg -> @scope__pkg
  if [[ "$(cat "$dir/.fetched" 2>/dev/null)" == "$spec" ]]; then
    continue                             # already fetched: reuse
  fi
  command -v npm >/dev/null || { echo "fetch_web_assets: npm is required (apt-get install npm)" >&2; exit 1; }
  echo "fetch_web_assets: fetching $spec"
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
  rm -rf "$dir" && mkdir -p "$dir"
  if [[ "$name" == mathjax ]]; then rm -rf "$STATIC/mathjax"; fi   # re-stage below
  tar -xzf "$tmp"/*.tgz -C "$dir" --strip-components=1
  rm -rf "$tmp"
  echo "$spec" > "$dir/.fetched"
done

# Stage only what the pages load.
if [[ ! -f "$STATIC/mathjax/tex-mml-chtml.js" ]]; then
  # tex-mml-chtml.js (Sphinx's default component) loads fonts, TeX extensions and the menu's
  # accessibility parts relative to itself: keep the es5 tree, minus the other combined
  # components, the SVG output and the speech-rule engine, which these pages never load.
  rm -rf "$STATIC/mathjax"
  cp -r "$NPM_DIR/mathjax/es5" "$STATIC/mathjax"
  find "$STATIC/mathjax" -maxdepth 1 -name '*.js' ! -name tex-mml-chtml.js -delete
  rm -rf "$STATIC/mathjax/sre" "$STATIC/mathjax/output/svg" "$STATIC/mathjax/output/svg.js"
fi
cp "$NPM_DIR/requirejs/require.js" "$STATIC/require.js"
cp "$NPM_DIR/@jupyter-widgets__html-manager/dist/embed-amd.js" "$STATIC/embed-amd.js"
# The widgets' icon fonts, which embed-amd.js loads from _static/widgets/ (book/_assets/locedit-widgets.js).
mkdir -p "$STATIC/widgets"
cp "$NPM_DIR/@jupyter-widgets__html-manager/dist/"*.{woff2,woff,ttf,eot,svg} "$STATIC/widgets/"
echo "fetch_web_assets: assets ready in ${STATIC#"$ROOT"/}"
