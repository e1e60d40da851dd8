#!/usr/bin/env bash
# victim.sh - what runs on the lab's victim host (namespace lab and compose lab):
#   victim.sh http     the small web server, in the foreground
#   victim.sh ips      install the rules (idempotent), then the daemon, in the foreground
#   victim.sh all      the web server in the background and the daemon in the foreground
# IPS (default: the repo's .venv/bin/ips-inline, else ips-inline on PATH) and
# IPS_CONFIG (default scripts/lab.toml) may be overridden.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
if [ -z "${IPS:-}" ]; then
    if [ -x "$REPO/.venv/bin/ips-inline" ]; then IPS="$REPO/.venv/bin/ips-inline"; else IPS=ips-inline; fi
fi
PYTHON=${PYTHON:-$(dirname "$(command -v "$IPS")")/python}
[ -x "$PYTHON" ] || PYTHON=python3
CONFIG=${IPS_CONFIG:-$HERE/lab.toml}

http() { exec "$PYTHON" "$HERE/victim_http.py" --port 80; }

ips() {
    "$IPS" --config "$CONFIG" install-rules
    exec "$IPS" --config "$CONFIG" run
}

case "${1:-}" in
    http) http ;;
    ips) ips ;;
    all)
        "$PYTHON" "$HERE/victim_http.py" --port 80 &
        ips
        ;;
    *)
        echo "usage: $0 http|ips|all" >&2
        exit 2
        ;;
esac
