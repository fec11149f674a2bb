#!/usr/bin/env bash
# Turn every chapter (Jupytext py:percent, the single source) into a notebook under executed/.
#   run_chapters.sh prepare   -> inject quick=True with papermill, do not execute (pytest --nbval-lax runs them)
#   run_chapters.sh execute   -> execute with papermill (QUICK=True|False, default False: the published book)
# CHAPTERS="00_toolkit 01_rome" limits the run to some chapters.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: run_chapters.sh prepare|execute}
mkdir -p executed
export PLOTLY_RENDERER=plotly_mimetype+notebook
export LOCEDIT_PROGRESS=${LOCEDIT_PROGRESS:-0}  # no progress bars in executed notebooks (locedit.progress)
names=${CHAPTERS:-$(ls chapters/*.py | xargs -n1 basename | sed 's/\.py$//')}
for name in $names; do
  jupytext --quiet --set-kernel python3 --to ipynb -o "executed/$name.ipynb" "chapters/$name.py"
  if [ "$mode" = prepare ]; then
    papermill --prepare-only -p quick True "executed/$name.ipynb" "executed/$name.ipynb" >/dev/null 2>&1
  else
    start=$(date +%s)
    papermill --cwd executed -p quick "${QUICK:-False}" "executed/$name.ipynb" "executed/$name.ipynb"
    echo "$name executed in $(( $(date +%s) - start )) s"
  fi
done
