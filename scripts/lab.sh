#!/usr/bin/env bash
# lab.sh - network-namespace lab for ips-inline demos and end-to-end tests.
#
# This file is the single definition of the lab topology; tests/lab.py only calls it.
#
#   ${P}-attacker ─┐
#   ${P}-client   ─┼─ veth ── br0 in ${P}-sw (pure L2: IPv6 off, STP off, mcast snooping off)
#   ${P}-victim   ─┘
#   ${P}-victim2  ─  only with LAB_VICTIM2=1: a second protected host (fleet tests)
#
# P = $LAB_PREFIX (default "ipsl"; the pytest fixture uses "ipst"), [a-z][a-z0-9]{0,11}.
# Each host has one interface, eth0, with a deterministic MAC 02:77:XX:00:00:ID:
#   victim   10.77.X.10/24   fd77:X::10/64
#   client   10.77.X.20/24   fd77:X::20/64
#   attacker 10.77.X.30/24   fd77:X::30/64
#   victim2  10.77.X.11/24   fd77:X::11/64   (LAB_VICTIM2=1)
# X = $LAB_OCTET if set (1-254), else (cksum of the prefix mod 250) + 1, so different
# prefixes get different subnets (ipsl -> 11, ipst -> 216). The same number is used
# as decimal digits in the IPv6 prefix (10.77.216.10 <-> fd77:216::10). `up` refuses to
# start if another lab on this machine already uses the subnet.
#
# Nothing is created in the host's (root) namespace: the bridge lives in ${P}-sw, veth
# pairs are created inside ${P}-sw with their peer placed straight into the host
# namespace, and no namespace has a default route (only the on-link lab subnets).
# Host sysctls: rp_filter=0 (spoofed-source traffic reaches INPUT/NFQUEUE), forwarding
# off, IPv6 DAD and router advertisements off, IPv6 addresses added with nodad.
#
# `down` removes victim2 too whether LAB_VICTIM2 is set or not; `up` treats a lab
# with or without victim2, against what LAB_VICTIM2 asks, as partial and rebuilds it.
#
# Subcommands:
#   up            build the lab and wait until all hosts ping each other (v4 + v6).
#                 Idempotent: if the lab is already complete it is left untouched
#                 ("check and skip": daemons and iptables rules inside survive); a
#                 partial lab is torn down and rebuilt. On error/Ctrl-C during `up`
#                 everything created so far is removed.
#   down          kill every process in the lab's namespaces (TERM, then KILL) and
#                 delete the namespaces. Idempotent.
#   status        show the lab; exit 0 if up, 1 if partial, 2 if down.
#   env           print shell-sourceable variables (VICTIM4=..., NS_VICTIM=..., ...).
#                 Needs neither root nor a running lab: eval "$(scripts/lab.sh env)"
#   exec HOST CMD...
#                 run CMD in host victim|client|attacker|victim2|sw (exec's it: same PID).
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
readonly SELF
readonly P="${LAB_PREFIX:-ipsl}"
if [[ "${LAB_VICTIM2:-0}" == 1 ]]; then
    readonly HOSTS=(victim client attacker victim2)
else
    readonly HOSTS=(victim client attacker)
fi
readonly ALL_HOSTS=(victim client attacker victim2) # what `down` removes if present
readonly BRIDGE=br0
readonly IFACE=eth0
declare -rA HOST_ID=([victim]=10 [client]=20 [attacker]=30 [victim2]=11)

log() { printf '[lab %s] %s\n' "$P" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

if [[ ! "$P" =~ ^[a-z][a-z0-9]{0,11}$ ]]; then
    die "LAB_PREFIX '$P' must match [a-z][a-z0-9]{0,11}"
fi

derive_octet() {
    local sum
    if [[ -n "${LAB_OCTET:-}" ]]; then
        if [[ ! "$LAB_OCTET" =~ ^[0-9]{1,3}$ ]] || ((LAB_OCTET < 1 || LAB_OCTET > 254)); then
            die "LAB_OCTET '$LAB_OCTET' must be 1-254"
        fi
        printf '%d' "$((10#$LAB_OCTET))"
        return
    fi
    sum="$(printf '%s' "$P" | cksum)"
    printf '%d' "$(( ${sum%% *} % 250 + 1 ))"
}
OCTET="$(derive_octet)"
readonly OCTET
readonly NET4="10.77.${OCTET}"
readonly NET6="fd77:${OCTET}:"

ns_of() { printf '%s-%s' "$P" "$1"; }
addr4() { printf '%s.%s' "$NET4" "${HOST_ID[$1]}"; }
addr6() { printf '%s:%s' "$NET6" "${HOST_ID[$1]}"; }
mac_of() { printf '02:77:%02x:00:00:%s' "$OCTET" "${HOST_ID[$1]}"; }
all_ns() {
    local h
    for h in "${ALL_HOSTS[@]}" sw; do ns_of "$h"; printf '\n'; done
}
active_ns() {
    local h
    for h in "${HOSTS[@]}" sw; do ns_of "$h"; printf '\n'; done
}
victim2_on() { [[ " ${HOSTS[*]} " == *" victim2 "* ]]; }

ns_list() { ip netns list 2>/dev/null | awk '{print $1}'; }
# Membership tests use here-strings, not `producer | grep -q` (SIGPIPE + pipefail).
in_list() {
    local needle="$1" list="$2"
    grep -qxF -- "$needle" <<<"$list"
}
ns_exists() { in_list "$1" "$(ns_list)"; }
any_ns_exists() {
    local ns all
    all="$(ns_list)"
    while IFS= read -r ns; do in_list "$ns" "$all" && return 0; done < <(all_ns)
    return 1
}

require_root() {
    ((EUID == 0)) || die "must run as root"
    local tool
    for tool in ip ping awk cksum flock; do
        command -v "$tool" >/dev/null || die "'$tool' not found"
    done
    # Refuse to run from inside one of our own namespaces (down would kill itself).
    local cur
    cur="$(ip netns identify "$$" 2>/dev/null || true)"
    if [[ -n "$cur" ]] && in_list "$cur" "$(all_ns)"; then
        die "run lab.sh from the host namespace, not from '$cur'"
    fi
}

# Serialise up/down of all labs on this machine (lock on this file: creates nothing).
take_lock() {
    exec {LOCK_FD}<"$SELF"
    flock -w 120 "$LOCK_FD" || die "timed out waiting for another lab.sh up/down"
}

kill_ns_procs() {
    local ns="$1" i
    local -a pids
    mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
    ((${#pids[@]} > 0)) || return 0
    log "killing ${#pids[@]} process(es) in $ns: ${pids[*]}"
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for i in {1..30}; do
        mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null)
        ((${#pids[@]} > 0)) || return 0
        if ((i == 20)); then
            kill -KILL "${pids[@]}" 2>/dev/null || true
        fi
        sleep 0.1
    done
    log "warning: processes still in $ns after SIGKILL: ${pids[*]}"
}

teardown() {
    local ns
    while IFS= read -r ns; do
        if ns_exists "$ns"; then
            kill_ns_procs "$ns"
            ip netns del "$ns" 2>/dev/null || log "warning: could not delete $ns"
        fi
    done < <(all_ns)
}

# Structural check: every namespace, the bridge, every port and address present.
lab_is_complete() {
    local h ns sw ports addrs all
    all="$(ns_list)"
    while IFS= read -r ns; do in_list "$ns" "$all" || return 1; done < <(active_ns)
    victim2_on || ! in_list "$(ns_of victim2)" "$all" || return 1
    sw="$(ns_of sw)"
    ports="$(ip -n "$sw" -br link show master "$BRIDGE" up 2>/dev/null |
        awk '{sub(/@.*/, "", $1); print $1}')"
    in_list "$BRIDGE" "$(ip -n "$sw" -br link show up 2>/dev/null | awk '{print $1}')" ||
        return 1
    for h in "${HOSTS[@]}"; do
        in_list "$h" "$ports" || return 1
        addrs="$(ip -n "$(ns_of "$h")" -o addr show dev "$IFACE" up 2>/dev/null |
            awk '{print $4}')" || return 1
        in_list "$(addr4 "$h")/24" "$addrs" || return 1
        in_list "$(addr6 "$h")/64" "$addrs" || return 1
    done
}

check_subnet_free() {
    local ns
    while IFS= read -r ns; do
        [[ "$ns" == *-victim && "$ns" != "$(ns_of victim)" ]] || continue
        if [[ -n "$(ip -n "$ns" -4 addr show to "${NET4}.0/24" 2>/dev/null)" ]]; then
            die "subnet ${NET4}.0/24 is already used by namespace $ns; set LAB_OCTET"
        fi
    done < <(ns_list)
}

ns_sysctl() {
    local ns="$1"
    shift
    ip netns exec "$ns" sysctl -q -w "$@" >/dev/null
}

build() {
    local sw h ns
    sw="$(ns_of sw)"
    ip netns add "$sw"
    ip -n "$sw" link set lo up
    # The switch is pure L2: no IPv6 on bridge/ports, so it sends no RS/MLD/NDP itself.
    ns_sysctl "$sw" net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    ip -n "$sw" link add "$BRIDGE" type bridge stp_state 0 forward_delay 0 mcast_snooping 0
    ip -n "$sw" link set "$BRIDGE" up
    for h in "${HOSTS[@]}"; do
        ns="$(ns_of "$h")"
        ip netns add "$ns"
        ns_sysctl "$ns" \
            net.ipv4.ip_forward=0 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
            net.ipv6.conf.all.forwarding=0 \
            net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 \
            net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 \
            net.ipv6.conf.default.router_solicitations=0
        ip -n "$ns" link set lo up
        ip -n "$sw" link add "$h" type veth peer name "$IFACE" address "$(mac_of "$h")" \
            netns "$ns"
        ip -n "$sw" link set "$h" master "$BRIDGE"
        ip -n "$sw" link set "$h" up
        ip -n "$ns" addr add "$(addr4 "$h")/24" dev "$IFACE"
        ip -n "$ns" addr add "$(addr6 "$h")/64" dev "$IFACE" nodad
        ip -n "$ns" link set "$IFACE" up
    done
}

ping_ok() {
    local from="$1" to="$2"
    ip netns exec "$(ns_of "$from")" ping -q -n -c 1 -W 1 "$to" >/dev/null 2>&1
}

wait_ready() {
    local try h pair failed
    local -a pairs=(client:victim attacker:victim client:attacker)
    victim2_on && pairs+=(client:victim2 attacker:victim2 victim2:victim)
    for try in {1..20}; do
        failed=""
        for h in "${HOSTS[@]}"; do
            if [[ -n "$(ip -n "$(ns_of "$h")" -6 addr show dev "$IFACE" tentative)" ]]; then
                failed="$h: IPv6 address still tentative"
            fi
        done
        if [[ -z "$failed" ]]; then
            for pair in "${pairs[@]}"; do
                ping_ok "${pair%%:*}" "$(addr4 "${pair##*:}")" || failed="$pair ping v4"
                ping_ok "${pair%%:*}" "$(addr6 "${pair##*:}")" || failed="$pair ping v6"
            done
        fi
        [[ -z "$failed" ]] && return 0
        sleep 0.25
    done
    die "lab not ready after $try tries: $failed"
}

print_summary() {
    local h
    printf 'lab %s up: bridge %s in %s, subnets %s.0/24 and %s:/64, no route out\n' \
        "$P" "$BRIDGE" "$(ns_of sw)" "$NET4" "$NET6"
    for h in "${HOSTS[@]}"; do
        printf '  %-9s %-16s %-15s %s\n' "$h" "$(ns_of "$h")" "$(addr4 "$h")" "$(addr6 "$h")"
    done
    # shellcheck disable=SC2016  # a literal $(...) for the user to copy
    printf 'use: LAB_PREFIX=%s %s exec HOST CMD...   eval "$(%s env)"\n' "$P" "$0" "$0"
}

on_up_exit() {
    local rc=$?
    trap - EXIT INT TERM HUP
    if ((rc != 0)); then
        log "up failed (rc=$rc): removing everything created"
        teardown
    fi
    exit "$rc"
}

cmd_up() {
    require_root
    take_lock
    if lab_is_complete; then
        log "already up: leaving it as it is"
        print_summary
        return 0
    fi
    if any_ns_exists; then
        log "partial lab found: tearing down and rebuilding"
        teardown
    fi
    check_subnet_free
    trap on_up_exit EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    trap 'exit 129' HUP
    build
    wait_ready
    trap - EXIT INT TERM HUP
    print_summary
}

cmd_down() {
    require_root
    take_lock
    teardown
    log "down"
}

# What status lists: the lab asked for, plus a victim2 left from a LAB_VICTIM2=1 run.
status_ns() {
    active_ns
    if ! victim2_on && ns_exists "$(ns_of victim2)"; then
        ns_of victim2
        printf '\n'
    fi
}

cmd_status() {
    local h ns n present=0 total=0
    while IFS= read -r ns; do
        total=$((total + 1))
        if ns_exists "$ns"; then
            present=$((present + 1))
            n="$(ip netns pids "$ns" 2>/dev/null | wc -l)"
            printf '%-16s present  %s process(es)\n' "$ns" "$n"
        else
            printf '%-16s missing\n' "$ns"
        fi
    done < <(status_ns)
    for h in "${HOSTS[@]}"; do
        ns="$(ns_of "$h")"
        ns_exists "$ns" && ip -n "$ns" -br addr show dev "$IFACE" 2>/dev/null |
            sed "s/^/  $h: /"
    done
    if ((present == 0)); then
        printf 'lab %s: down\n' "$P"
        return 2
    elif lab_is_complete; then
        printf 'lab %s: up\n' "$P"
        return 0
    fi
    printf 'lab %s: partial (run up to rebuild or down to remove)\n' "$P"
    return 1
}

cmd_env() {
    local h H
    printf 'LAB_PREFIX=%q\nLAB_OCTET=%q\n' "$P" "$OCTET"
    printf 'LAB_NET4=%q\nLAB_NET6=%q\n' "${NET4}.0/24" "${NET6}:/64"
    printf 'LAB_IFACE=%q\nLAB_BRIDGE=%q\nNS_SW=%q\n' "$IFACE" "$BRIDGE" "$(ns_of sw)"
    for h in "${HOSTS[@]}"; do
        H="${h^^}"
        printf '%s4=%q\n%s6=%q\n' "$H" "$(addr4 "$h")" "$H" "$(addr6 "$h")"
        printf 'NS_%s=%q\n%s_MAC=%q\n' "$H" "$(ns_of "$h")" "$H" "$(mac_of "$h")"
    done
}

cmd_exec() {
    (($# >= 2)) || die "usage: lab.sh exec HOST CMD..."
    local host="$1"
    shift
    case "$host" in
        victim | client | attacker | victim2 | sw) ;;
        *) die "unknown host '$host' (victim|client|attacker|victim2|sw)" ;;
    esac
    ns_exists "$(ns_of "$host")" || die "namespace $(ns_of "$host") does not exist (lab up?)"
    exec ip netns exec "$(ns_of "$host")" "$@"
}

usage() {
    printf 'usage: [LAB_PREFIX=ipsl] [LAB_OCTET=N] [LAB_VICTIM2=1] %s up|down|status|env|exec HOST CMD...\n' \
        "$0" >&2
    exit 2
}

main() {
    (($# >= 1)) || usage
    local sub="$1"
    shift
    case "$sub" in
        up) cmd_up ;;
        down) cmd_down ;;
        status) cmd_status ;;
        env) cmd_env ;;
        exec) cmd_exec "$@" ;;
        *) usage ;;
    esac
}

main "$@"
