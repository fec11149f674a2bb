#!/usr/bin/env bash
# Turn every chapter (Jupytext py:percent, the single source) into a notebook under executed/.
#   run_chapters.sh prepare   -> inject quick=True with papermill, do not execute (pytest --nbval-lax runs them)
#   run_chapters.sh execute   -> execute with papermill (QUICK=True|False, default False: the published book)
#   run_chapters.sh other     -> execute on another model (MODEL=gemma3-270m required; QUICK default True): notebooks
#                                under executed/$MODEL/, results into results/$MODEL/ (committed: the scorecard sets
#                                them beside the book's own); the book's executed notebooks and stamps are untouched
# CHAPTERS="00_toolkit 01_rome" limits the run to some chapters; MODEL=gemma3-270m sets the model_name parameter.
# `execute` skips a chapter whose executed notebook is up to date: executed/<chapter>.stamp holds the hash of its
# source, the library (lib/locedit/**), the pinned stack and the parameters (scripts/chapter_stamps.py);
# FORCE=1 executes every chapter anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:?usage: run_chapters.sh prepare|execute|other}
out=executed  # where the notebooks go; `other` keeps its own folder and writes no stamps
export PLOTLY_RENDERER=plotly_mimetype+notebook
export LOCEDIT_PROGRESS=${LOCEDIT_PROGRESS:-0}  # no progress bars in executed notebooks (locedit.progress)
quick=${QUICK:-False}
if [ "$mode" = other ]; then
  : "${MODEL:?run_chapters.sh other needs MODEL=<model name>, e.g. MODEL=gemma3-270m}"
  out="executed/$MODEL"; quick=${QUICK:-True}
  mkdir -p "results/$MODEL"; export LOCEDIT_RESULTS_DIR="$PWD/results/$MODEL"
fi
mkdir -p "$out"
stamp_args=(--quick "$quick")
params=(-p quick "$quick")
if [ -n "${MODEL:-}" ]; then stamp_args+=(--model "$MODEL"); params+=(-p model_name "$MODEL"); fi
names=${CHAPTERS:-$(ls chapters/*.py | xargs -n1 basename | sed 's/\.py$//')}
for name in $names; do
  if [ "$mode" = execute ] && [ "${FORCE:-0}" != 1 ] && python scripts/chapter_stamps.py fresh "$name" "${stamp_args[@]}"; then
    echo "$name: up to date (executed/$name.stamp), not executed again"
    continue
  fi
  if [ "$mode" != other ]; then python scripts/chapter_stamps.py remove "$name"; fi
  jupytext --quiet --set-kernel python3 --to ipynb -o "$out/$name.ipynb" "chapters/$name.py"
  if [ "$mode" = prepare ]; then
    papermill --prepare-only -p quick True "$out/$name.ipynb" "$out/$name.ipynb" >/dev/null 2>&1
  else
    start=$(date +%s)
    papermill --cwd "$out" "${params[@]}" "$out/$name.ipynb" "$out/$name.ipynb"
    if [ "$mode" = execute ]; then python scripts/chapter_stamps.py write "$name" "${stamp_args[@]}"; fi
    echo "$name${MODEL:+ on $MODEL} executed in $(( $(date +%s) - start )) s"
  fi
done
