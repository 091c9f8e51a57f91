#!/usr/bin/env bash
# Render a `knowundo-bench report` page in headless Chromium (Debian: apt install chromium),
# offline, and print the browser's console errors, if any.
#   benchmarks/report_screenshot.sh report.html [screenshot.png]
# Exits 1 when the page logs a console error or the screenshot is not written.
set -euo pipefail
page=$(realpath "$1")
shot=$(realpath -m "${2:-${1%.html}.png}")
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome) || {
    echo "no Chromium found (Debian: apt install chromium)" >&2; exit 2; }
log=$(mktemp)
profile=$(mktemp -d)
trap 'rm -rf "$log" "$profile"' EXIT
# No network: a proxy that does not exist, so anything the page tried to fetch would fail and log.
"$browser" --headless --no-sandbox --disable-gpu --user-data-dir="$profile" \
    --proxy-server=127.0.0.1:9 --enable-logging=stderr --v=0 \
    --window-size=1280,2400 --screenshot="$shot" "file://$page" 2>"$log" || true
errors=$(grep -E 'CONSOLE|Uncaught|net::ERR' "$log" || true)
if [[ -n "$errors" ]]; then echo "$errors"; exit 1; fi
[[ -s "$shot" ]] || { echo "no screenshot written; browser log:"; tail -20 "$log"; exit 1; }
echo "rendered $page -> $shot; no console errors"
