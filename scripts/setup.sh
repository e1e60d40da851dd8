#!/usr/bin/env bash
# Installs what ips-inline needs on Debian 12, as root: kernel tools and attack
# tools from Debian, Python packages into the project venv (.venv). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(iptables ipset libnetfilter-queue-dev iproute2 hping3 nmap curl sqlmap
      prometheus docker-compose gcc python3-dev python3-venv util-linux libcap2-bin
      procps conntrack iputils-ping iperf3 systemd)

missing=()
for pkg in "${DEBS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing Python packages into .venv"
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    touch "$stamp"
fi
