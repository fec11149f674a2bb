#!/usr/bin/env bash
# What `make test-book` needs beyond `make setup`, installed once: Debian's Chromium and its driver (apt-get, as
# root or with sudo) and selenium (requirements-browser.txt, into the venv; a stamp keyed by the files' hash skips
# the work next time). The browser tests themselves download nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  if [ "$(id -u)" -eq 0 ]; then sudo=(); elif command -v sudo >/dev/null; then sudo=(sudo); else
    echo "setup_browser: install Chromium and its driver first: apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
  echo "setup_browser: installing chromium and chromium-driver (apt)"
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq chromium chromium-driver >/dev/null
fi
key=$(cat requirements-browser.txt requirements.txt | sha256sum | cut -c1-16)
stamp="$VENV/.browser-$key"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/python" -m pip install -q -r requirements-browser.txt -c requirements.txt
  rm -f "$VENV"/.browser-*
  touch "$stamp"
fi
