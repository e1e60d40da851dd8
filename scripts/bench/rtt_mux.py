"""Interleaved latency probe, run in the client namespace.

usage: rtt_mux.py HOST ROUNDS INTERVAL LABEL:SIZE:PORT [...]   (ROUNDS of each kind)

Rounds alternate between pings and connects. Each round sends, for every
variant in a shuffled order, one ICMP echo with a SIZE-byte payload (or one
TCP connect to PORT); the victim's rules steer each size and port to a
different consumer (or none). So every consumer sees one packet per round,
after an idle gap of about INTERVAL (the case that costs a sleeping process
its wake-up), and all are measured in the same rounds: the VM's drifting
wake-up latency hits them alike and per-round differences cancel it. Prints
JSON {label: {"ping": [us | null], "connect": [us | null]}}, aligned by round.
"""

from __future__ import annotations

import json
import os
import random
import select
import socket
import struct
import sys
import time

from mixes import checksum  # the script's own directory is on sys.path

TIMEOUT = 1.0


def ping_us(sock: socket.socket, host: str, ident: int, seq: int, size: int) -> float | None:
    body = bytes(size)
    csum = checksum(struct.pack("!BBHHH", 8, 0, 0, ident, seq) + body)
    packet = struct.pack("!BBHHH", 8, 0, csum, ident, seq) + body
    start = time.perf_counter()
    sock.sendto(packet, (host, 0))
    deadline = start + TIMEOUT
    while (left := deadline - time.perf_counter()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        data = sock.recv(4096)
        ihl = (data[0] & 0x0F) * 4
        kind, _code, _sum, rid, rseq = struct.unpack_from("!BBHHH", data, ihl)
        if kind == 0 and rid == ident and rseq == seq:
            return (time.perf_counter() - start) * 1e6
    return None


def connect_us(host: str, port: int) -> float | None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT * 2)
        start = time.perf_counter()
        try:
            sock.connect((host, port))
        except OSError:
            return None
        return (time.perf_counter() - start) * 1e6


def main() -> None:
    host, rounds, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    variants = [(label, int(size), int(port)) for label, size, port in
                (arg.split(":") for arg in sys.argv[4:])]
    out: dict[str, dict[str, list[float | None]]] = {
        label: {"ping": [], "connect": []} for label, _s, _p in variants}
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    gap = interval / len(variants)  # spread the probes over the round
    for seq in range(2 * rounds):
        for label, size, port in random.sample(variants, len(variants)):
            if seq % 2:
                out[label]["connect"].append(connect_us(host, port))
            else:
                out[label]["ping"].append(ping_us(sock, host, ident, seq & 0xFFFF, size))
            time.sleep(gap)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
