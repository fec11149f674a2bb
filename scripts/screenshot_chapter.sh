#!/usr/bin/env bash
# Screenshot one page of the built book in headless Chromium with no network access, so anything the
# page still fetches from the internet shows up as missing.
#   scripts/screenshot_chapter.sh 00_toolkit /tmp/ch0.png      # chapters/00_toolkit.html
#   scripts/screenshot_chapter.sh intro /tmp/intro.png          # any page under book/_build/html
# Env: HEIGHT (default 2400), WIDTH (1280), WAIT_MS (virtual-time budget, 15000).
# Needs chromium (Debian: apt-get install -y chromium). The page is served from 127.0.0.1; when run as
# root, Chromium also runs in an empty network namespace (unshare -n), otherwise every host name other
# than 127.0.0.1 is made unresolvable.
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 CHAPTER|PAGE OUT.png" >&2; exit 2; }
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
HTML="$ROOT/book/_build/html"
page="${1%.html}"
if [[ -f "$HTML/chapters/$page.html" ]]; then page="chapters/$page"; fi
[[ -f "$HTML/$page.html" ]] || { echo "screenshot: no $HTML/$page.html (run scripts/build_book.sh)" >&2; exit 1; }
out="$(realpath -m "$2")"
command -v chromium >/dev/null || { echo "screenshot: chromium not found (apt-get install -y chromium)" >&2; exit 1; }

run() {
  local port=8765 profile
  profile="$(mktemp -d)"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$HTML" >/dev/null 2>&1 &
  local server=$!
  trap 'kill "$server" 2>/dev/null; rm -rf "$profile"' RETURN
  for _ in $(seq 50); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null && break
    sleep 0.1
  done
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --host-resolver-rules="MAP * ~NOTFOUND, EXCLUDE 127.0.0.1" \
    --user-data-dir="$profile" --virtual-time-budget="${WAIT_MS:-15000}" \
    --window-size="${WIDTH:-1280},${HEIGHT:-2400}" --screenshot="$out" \
    "http://127.0.0.1:$port/$page.html" 2>&1 | grep -v -E 'dbus|Fontconfig|GPU|gpu|sandbox|unexpected operator' || true
}

if [[ "${_SCREENSHOT_IN_NETNS:-}" != 1 && $(id -u) -eq 0 ]] && unshare -n true 2>/dev/null; then
  exec unshare -n env _SCREENSHOT_IN_NETNS=1 bash -c 'ip link set lo up && exec "$0" "$@"' "$0" "$@"
fi
run
[[ -s "$out" ]] || { echo "screenshot: no image written" >&2; exit 1; }
echo "screenshot: $out"
