#!/usr/bin/env bash
# scenario.sh - the demo story, shared by the namespace lab (scripts/demo.sh runs
# each role inside its namespace) and the compose lab (docker/compose.yaml runs
# each role in its container). One script, so the two labs cannot drift apart.
#
#   scenario.sh client     browse and ping the victim once a second until
#                          $SCENARIO_DIR/stop appears (or CLIENT_MAX_SECONDS);
#                          print a summary; exit 1 if any request was lost.
#   scenario.sh attacker   run every attack, each from its own source address,
#                          bounded in count and time; after each, check that
#                          the source is now cut off; exit 1 if one got through.
#   scenario.sh attack NAME  one attack alone (the end-to-end tests use this):
#                          icmp_flood syn_flood scan_syn scan_null scan_fin
#                          scan_xmas sqli sqlmap scanner
#
# Environment: VICTIM (IPv4 of the victim), ATTACK_NET (the /24 prefix, e.g.
# 10.77.11), IFACE (default eth0), SCENARIO_DIR (shared between roles; default
# /tmp/ips-scenario). Attack sources are ATTACK_NET.31 ... .38; the attacker
# role adds them to IFACE itself.
set -uo pipefail

VICTIM=${VICTIM:?set VICTIM}
IFACE=${IFACE:-eth0}
SCENARIO_DIR=${SCENARIO_DIR:-/tmp/ips-scenario}
CLIENT_MAX_SECONDS=${CLIENT_MAX_SECONDS:-300}
URL="http://${VICTIM}"
mkdir -p "$SCENARIO_DIR"

say() { printf '%s %s\n' "[$ROLE]" "$*"; }

# The victim may still be starting (compose starts containers in parallel).
wait_victim() {
    local i
    for i in $(seq 120); do
        curl -sf -o /dev/null -m 1 "$URL/" && return 0
        sleep 0.5
    done
    say "the victim at $URL never answered"
    exit 2
}

# -- client --------------------------------------------------------------------
client() {
    local ok=0 lost=0 pings=0 ping_lost=0 start=$SECONDS
    rm -f "$SCENARIO_DIR/stop" "$SCENARIO_DIR/client.result"
    wait_victim
    while [ ! -e "$SCENARIO_DIR/stop" ] && ((SECONDS - start < CLIENT_MAX_SECONDS)); do
        if curl -sf -o /dev/null -m 5 "$URL/"; then ok=$((ok + 1)); else lost=$((lost + 1)); fi
        pings=$((pings + 1))
        ping -c 1 -W 2 "$VICTIM" >/dev/null 2>&1 || ping_lost=$((ping_lost + 1))
        sleep 1
    done
    say "browsed ${URL}/ $((ok + lost)) times: $ok answered, $lost lost; pinged $pings times: $ping_lost lost"
    printf '%s %s %s %s\n' "$ok" "$lost" "$pings" "$ping_lost" >"$SCENARIO_DIR/client.result"
    ((lost == 0 && ping_lost == 0))
}

# -- attacker ------------------------------------------------------------------
FAILED=0

src() { printf '%s.%s' "$ATTACK_NET" "$1"; }

# before SRC: note whether the victim answers SRC before the attack starts.
before() {
    BEFORE_FAILED=
    reaches "$1" || BEFORE_FAILED=1
}

add_sources() {
    local n s
    for n in 31 32 33 34 35 36 37 38 40; do
        s=$(src "$n")
        # A here-string, not `ip | grep -q`: grep quitting early makes ip die of
        # SIGPIPE, and pipefail turns a found address into "absent".
        grep -qF " $s/" <<<"$(ip -o addr show dev "$IFACE")" && continue
        ip addr add "$s/32" dev "$IFACE" || { say "cannot add source address $s"; exit 2; }
    done
}

# reaches SRC: the victim answers SRC before the attack (so "cut off" means something).
reaches() {
    ping -c 1 -W 2 -I "$1" "$VICTIM" >/dev/null 2>&1 &&
        curl -sf -o /dev/null -m 3 --interface "$1" "$URL/"
}

# cut_off SRC: true if the victim no longer answers SRC (ping and HTTP).
cut_off() {
    ! ping -c 2 -W 1 -I "$1" "$VICTIM" >/dev/null 2>&1 &&
        ! curl -sf -o /dev/null -m 3 --interface "$1" "$URL/"
}

verdict() { # verdict NAME SRC DETAIL
    if [ -n "${BEFORE_FAILED:-}" ]; then
        say "SETUP    $1 from $2: the victim did not answer this source before the attack"
        FAILED=1
    elif cut_off "$2"; then
        say "STOPPED  $1 from $2: $3; the source is now cut off"
    else
        say "MISSED   $1 from $2: $3; the source still reaches the victim"
        FAILED=1
    fi
}

hping_stats() { # the "N packets transmitted, M packets received" summary
    grep -Eo '[0-9]+ packets transmitted, [0-9]+ packets received' | head -1
}

icmp_flood() {
    local s out
    s=$(src 31)
    before "$s"
    out=$(timeout 20 hping3 --icmp -c 300 -i u2000 -a "$s" "$VICTIM" 2>&1)
    verdict "ICMP flood (hping3 --icmp, 300 echo requests)" "$s" "$(hping_stats <<<"$out")"
}

syn_flood() {
    local s out
    s=$(src 32)
    before "$s"
    out=$(timeout 20 hping3 -S -p 80 -c 400 -i u2000 -a "$s" "$VICTIM" 2>&1)
    verdict "SYN flood (hping3 -S -p 80, 400 SYNs)" "$s" "$(hping_stats <<<"$out")"
}

scan() { # scan FLAG NAME HOST_ID
    local s out filtered
    s=$(src "$3")
    before "$s"
    out=$(timeout 90 nmap "$1" -Pn -n -p 1-1000 -T4 --min-rate 2000 --max-retries 0 --host-timeout 60s \
        -e "$IFACE" -S "$s" "$VICTIM" 2>&1)
    # "Not shown: 980 filtered tcp ports" (-sN/-sF/-sX say "open|filtered")
    filtered=$(grep -Eo '[0-9]+ (open\|)?filtered' <<<"$out" | grep -Eo '^[0-9]+' | head -1)
    verdict "$2 (nmap $1, 1000 ports)" "$s" "nmap reports ${filtered:-0} of 1000 ports filtered"
}

sqli() {
    local s answered=0 i
    s=$(src 37)
    before "$s"
    for i in 1 2 3 4; do
        curl -s -o /dev/null -m 3 --interface "$s" \
            "$URL/item?id=1%27%20OR%20%27${i}%27%3D%27${i}" && answered=$((answered + 1))
    done
    verdict "SQL injection (curl, 4 requests)" "$s" "$answered of 4 answered"
}

sqlmap_attack() {
    local s out
    s=$(src 38)
    before "$s"
    if ! command -v sqlmap >/dev/null; then
        say "SKIPPED  sqlmap: not installed"
        return
    fi
    # sqlmap cannot choose a source address: route the victim through this one.
    # A browser's User-Agent (--random-agent): sqlmap's own is stopped at its first
    # request by the shipped scanner rule (the scanner attack below), before any SQL.
    ip route replace "$VICTIM/32" dev "$IFACE" src "$s"
    out=$(timeout 120 sqlmap -u "$URL/item?id=1" --batch --flush-session --timeout 3 \
        --retries 0 --technique=BEU --random-agent --disable-coloring \
        --output-dir "$SCENARIO_DIR/sqlmap" 2>&1)
    ip route del "$VICTIM/32" dev "$IFACE" src "$s" 2>/dev/null || true
    if grep -q "identified the following injection point" <<<"$out"; then
        say "MISSED   sqlmap found the injection on /item"
        FAILED=1
    else
        verdict "SQL injection (sqlmap --batch)" "$s" "sqlmap found no injection point"
    fi
}

scanner() {
    local s answered=0 i
    s=$(src 40)
    before "$s"
    for i in 1 2 3 4; do  # a scanner's requests, told by its User-Agent (shipped rules)
        curl -s -o /dev/null -m 3 --interface "$s" -A "sqlmap/1.7.2#stable (https://sqlmap.org)" \
            "$URL/page$i" && answered=$((answered + 1))
    done
    verdict "scanner by User-Agent (curl -A sqlmap/1.7, 4 requests)" "$s" "$answered of 4 answered"
}

attacker() {
    wait_victim
    add_sources
    icmp_flood
    syn_flood
    scan -sS "SYN scan" 33
    scan -sN "NULL scan" 34
    scan -sF "FIN scan" 35
    scan -sX "Xmas scan" 36
    sqli
    sqlmap_attack
    scanner
    sleep 2
    touch "$SCENARIO_DIR/stop" # the story is over: the client stops and reports
    return "$FAILED"
}

# One attack alone, for the end-to-end tests: scenario.sh attack NAME
one_attack() {
    add_sources
    case "$1" in
        icmp_flood) icmp_flood ;;
        syn_flood) syn_flood ;;
        scan_syn) scan -sS "SYN scan" 33 ;;
        scan_null) scan -sN "NULL scan" 34 ;;
        scan_fin) scan -sF "FIN scan" 35 ;;
        scan_xmas) scan -sX "Xmas scan" 36 ;;
        sqli) sqli ;;
        sqlmap) sqlmap_attack ;;
        scanner) scanner ;;
        *)
            echo "unknown attack: $1" >&2
            exit 2
            ;;
    esac
    return "$FAILED"
}

ROLE=${1:-}
case "$ROLE" in
    client) client ;;
    attacker) attacker ;;
    attack) one_attack "${2:-}" ;;
    *)
        echo "usage: $0 client|attacker|attack NAME" >&2
        exit 2
        ;;
esac
