#!/usr/bin/env bash
# Installs what ips-inline needs on Debian 12, as root: kernel tools and attack
# tools from Debian, Python packages into the project venv (.venv), and the
# compiled build of the packet path. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(iptables ipset libnetfilter-queue-dev iproute2 hping3 nmap curl sqlmap
      prometheus docker-compose gcc python3-dev python3-venv util-linux libcap2-bin
      procps conntrack iputils-ping iperf3 systemd tcpdump hydra openssh-server
      openssh-client crowdsec wrk)
# Suricata 7, the peer `make bench` measures against, is in bookworm-backports.
BACKPORTS_DEBS=(suricata)
BACKPORTS=/etc/apt/sources.list.d/bookworm-backports.sources

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
missing=()
for pkg in "${DEBS[@]}"; do installed "$pkg" || missing+=("$pkg"); done
missing_bpo=()
for pkg in "${BACKPORTS_DEBS[@]}"; do installed "$pkg" || missing_bpo+=("$pkg"); done
if ((${#missing[@]} + ${#missing_bpo[@]})); then
    echo "setup: installing Debian packages: ${missing[*]} ${missing_bpo[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The backports suite beside the existing Debian entry (same mirror and key).
    if ((${#missing_bpo[@]})) && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' >"$BACKPORTS"
    fi
    # crowdsec's install script registers with CrowdSec's online API unless this
    # file exists and is non-empty: our tests run its Local API offline.
    if [[ " ${missing[*]} " == *" crowdsec "* ]]; then
        mkdir -p /etc/crowdsec
        [ -s /etc/crowdsec/online_api_credentials.yaml ] ||
            echo "# ips-inline: LAPI only, no online API" >/etc/crowdsec/online_api_credentials.yaml
    fi
    apt=(apt-get -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends)
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    if ((${#missing[@]})); then "${apt[@]}" install "${missing[@]}" >/dev/null; fi
    if ((${#missing_bpo[@]})); then
        "${apt[@]}" -t bookworm-backports install "${missing_bpo[@]}" >/dev/null
    fi
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

# The packet path compiled with mypyc (README: The compiled build). Returns at
# once when the build is current; a failed compile prints one line and the
# interpreted modules run.
.venv/bin/python scripts/build_compiled.py ||
    echo "setup: scripts/build_compiled.py failed; running interpreted"
