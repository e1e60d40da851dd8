#!/usr/bin/env bash
# demo.sh - the main job: bring the namespace lab up, run ips-inline inline on
# the victim, play scenario.sh (client browses while the attacker attacks),
# print what happened, tear everything down. Exit 0 only if every attack was
# stopped, each by the expected detector, and the client lost nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
export LAB_PREFIX=${LAB_PREFIX:-ipsl}
LAB="$HERE/lab.sh"
IPS="$REPO/.venv/bin/ips-inline"
CONFIG="$HERE/lab.toml"
RUN_DIR=/run/ips-inline-lab
EVE=$(sed -n 's/^eve_path *= *"\(.*\)"/\1/p' "$CONFIG")
# Which detector must ban which attack source (scenario.sh's source numbering).
declare -A EXPECT=([31]=icmp_flood [32]=syn_flood [33]=port_scan [34]=null_scan
                   [35]=fin_scan [36]=xmas_scan [37]=sqli [38]=any [40]=rules)

step() { printf '\n== %s\n' "$*"; }
cleanup() { # shellcheck disable=SC2317  # runs from the EXIT trap
    step "tearing the lab down"
    touch "$RUN_DIR/scenario/stop" 2>/dev/null || true
    "$LAB" down
    rm -rf "$RUN_DIR"
}

[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (network namespaces, iptables)" >&2; exit 1; }
eval "$("$LAB" env)"
trap cleanup EXIT
trap 'exit 130' INT TERM

step "lab up: victim $VICTIM4, client $CLIENT4, attacker $ATTACKER4 (namespaces ${LAB_PREFIX}-*)"
"$LAB" down >/dev/null 2>&1 || true
rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR/scenario" "$(dirname "$EVE")"
: >"$EVE"
"$LAB" up

step "victim: web server and ips-inline inline (rules inside the victim namespace only)"
"$LAB" exec victim "$HERE/victim.sh" http >"$RUN_DIR/http.log" 2>&1 &
"$LAB" exec victim "$HERE/victim.sh" ips >"$RUN_DIR/daemon.log" 2>&1 &
for _ in $(seq 50); do
    "$LAB" exec victim curl -sf -o /dev/null -m 1 "http://127.0.0.1:9100/metrics" &&
        "$LAB" exec client curl -sf -o /dev/null -m 1 "http://$VICTIM4/" && break
    sleep 0.2
done
"$LAB" exec victim iptables -S IPS_INLINE | sed 's/^/  /'

step "the story: the client browses and pings once a second while the attacker attacks"
export VICTIM="$VICTIM4" ATTACK_NET="${VICTIM4%.*}" IFACE="$LAB_IFACE" SCENARIO_DIR="$RUN_DIR/scenario"
"$LAB" exec client "$HERE/scenario.sh" client &
client_pid=$!
attack_ok=0
"$LAB" exec attacker "$HERE/scenario.sh" attacker || attack_ok=1
touch "$SCENARIO_DIR/stop" # in case the attacker role died before it said so
client_ok=0
wait "$client_pid" || client_ok=1

step "ban list on the victim (ips-inline bans)"
"$LAB" exec victim "$IPS" --config "$CONFIG" bans | sed 's/^/  /'
bans_json=$("$LAB" exec victim "$IPS" --config "$CONFIG" bans --json)
bans_ok=0
for n in "${!EXPECT[@]}"; do
    ip="${VICTIM4%.*}.$n"
    got=$(python3 -c 'import json,sys; d={b["ip"]: b["detector"] for b in json.load(sys.stdin)}; print(d.get(sys.argv[1], "-"))' "$ip" <<<"$bans_json")
    if [ "$got" = - ] || { [ "${EXPECT[$n]}" != any ] && [ "$got" != "${EXPECT[$n]}" ]; }; then
        echo "  WRONG: $ip banned by '$got', expected ${EXPECT[$n]}"
        bans_ok=1
    fi
done
if grep -q "$CLIENT4" <<<"$bans_json"; then echo "  WRONG: the client was banned"; bans_ok=1; fi

step "why was ${VICTIM4%.*}.37 banned? (ips-inline explain)"
"$LAB" exec victim "$IPS" --config "$CONFIG" explain "${VICTIM4%.*}.37" | sed 's/^/  /'

step "a few lines of http://$VICTIM4:9100/metrics"
"$LAB" exec victim curl -s "http://127.0.0.1:9100/metrics" |
    grep -E '^ips_inline_(packets_total|alerts_total|bans_total|bans_active|queue_dropped)' |
    grep -v ' 0.0$' | sed 's/^/  /'
"$LAB" exec victim iptables -vnL IPS_INLINE | awk '/match-set/ {print "  kernel ban rule dropped " $1 " packets before they reached the daemon"}'

step "EVE log: $EVE ($(grep -c '"event_type":"alert"' "$EVE") alerts, $(grep -c '"event_type":"ban"' "$EVE") bans)"
if ((attack_ok == 0 && client_ok == 0 && bans_ok == 0)); then
    step "RESULT: every attack stopped by the expected detector; the client lost nothing"
    exit 0
fi
step "RESULT: FAILED (attacks: $attack_ok, client: $client_ok, bans: $bans_ok); daemon log follows"
tail -n 30 "$RUN_DIR/daemon.log"
exit 1
