"""Small clients and servers the live tests run inside the lab's namespaces
(`lab.exec(host, [sys.executable, LAB_PROBE, SUBCOMMAND, ...])`). Not a test
module. Every subcommand is bounded in time and prints one JSON line.

  http HOST PORT          send stdin's bytes on one connection, read the answer
  slow-heads HOST PORT    N connections each sending a long request head slowly
  keepalive HOST PORT     GET, wait for a line on stdin, GET again on the same
                          connection (--split N: its first N bytes before the
                          wait), close it
  dns-server ADDR         answer A queries (192.0.2.1) until killed
  dns-burst SERVER        COUNT queries in SECONDS, each from a new socket
  forge-handshake ...     (scapy) SYN, ACK with a guessed number, GET, from a
                          forged source
  noack HOST PORT         (scapy) a data segment without ACK at the next
                          sequence number, then the real request
  ssh-banners HOST PORT   open COUNT TCP connections, read the SSH banner of each
"""

from __future__ import annotations

import argparse
import json
import random
import select
import socket
import struct
import sys
import threading
import time


def out(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def status_of(answer: bytes) -> int | None:
    """The status code of an HTTP answer, None if there is none."""
    if not answer.startswith(b"HTTP/"):
        return None
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def read_answer(sock: socket.socket, deadline: float) -> tuple[bytes, str | None]:
    """What the server sends until it closes, or until `deadline` (then the
    bytes so far and "timeout"). One answer is read whole when it has a
    Content-Length, so a keep-alive connection need not close."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return data, "timeout"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return data, "timeout"
        except OSError as exc:
            return data, exc.strerror or str(exc)
        if not chunk:
            return data, None
        data += chunk
        if answer_complete(data):
            return data, None


def answer_complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or 0)
    return False


def connect(host: str, port: int, source: str | None, timeout: float,
            sport: int = 0) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if source or sport:
        sock.bind((source or "", sport))
    sock.settimeout(timeout)
    sock.connect((host, port))
    return sock


# -- http -----------------------------------------------------------------------------------
def cmd_http(args: argparse.Namespace) -> None:
    request = sys.stdin.buffer.read()
    deadline = time.monotonic() + args.timeout
    try:
        sock = connect(args.host, args.port, args.source, args.timeout)
    except OSError as exc:
        out({"connected": False, "status": None, "error": exc.strerror or str(exc)})
        return
    with sock:
        sock.sendall(request)
        answer, error = read_answer(sock, deadline)
    out({"connected": True, "status": status_of(answer), "bytes": len(answer), "error": error,
         "head": answer.split(b"\r\n\r\n", 1)[0].decode("latin-1")[:200]})


# -- slow heads ----------------------------------------------------------------------------------
def cmd_slow_heads(args: argparse.Namespace) -> None:
    """Each connection: a request line and one header whose value grows by
    `piece` bytes every `interval` up to `size` bytes, never ending the head;
    then it waits for an answer until the deadline."""
    results: list[dict[str, object]] = []
    lock = threading.Lock()

    def one() -> None:
        deadline = time.monotonic() + args.timeout
        sent, answer, error = 0, b"", None
        try:
            sock = connect(args.host, args.port, args.source, args.timeout)
        except OSError as exc:
            error = exc.strerror or str(exc)
        else:
            with sock:
                try:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: victim\r\nX-Pad: ")
                    while sent < args.size and time.monotonic() < deadline:
                        sock.sendall(b"a" * args.piece)
                        sent += args.piece
                        time.sleep(args.interval)
                    sock.sendall(b"\r\n\r\n")
                    answer, error = read_answer(sock, deadline)
                except OSError as exc:
                    error = exc.strerror or str(exc)
        with lock:
            results.append({"sent": sent, "status": status_of(answer), "error": error})

    threads = [threading.Thread(target=one) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out(results)


# -- keep-alive across a daemon restart ------------------------------------------------------
def cmd_keepalive(args: argparse.Namespace) -> None:
    sock = connect(args.host, args.port, None, args.timeout)
    statuses = []
    second = f"GET {args.second} HTTP/1.1\r\nHost: victim\r\n\r\n".encode()
    first_part, second = second[:args.split], second[args.split:]
    for step, request in enumerate((b"GET / HTTP/1.1\r\nHost: victim\r\n\r\n", second)):
        if step:
            if first_part:  # half the request before the restart, the rest after it
                sock.sendall(first_part)
            out({"waiting": True})
            if not select.select([sys.stdin], [], [], args.timeout)[0]:
                break
            sys.stdin.readline()
        try:
            sock.sendall(request)
        except OSError as exc:  # cut by the IPS: reset, or the send timed out
            out({"statuses": statuses + [None], "closed_cleanly": False, "error": str(exc)})
            return
        answer, error = read_answer(sock, time.monotonic() + args.timeout)
        statuses.append(status_of(answer))
        if not step:
            out({"first": statuses[0], "error": error})
    try:
        sock.shutdown(socket.SHUT_WR)  # our FIN; then the server's
        _rest, error = read_answer(sock, time.monotonic() + args.timeout)
    except OSError as exc:
        error = str(exc)
    sock.close()
    out({"statuses": statuses, "closed_cleanly": error is None})


# -- DNS ---------------------------------------------------------------------------------------
def dns_query(qid: int, name: str) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\0" + b"\0\x01\0\x01"


def dns_answer(query: bytes) -> bytes | None:
    """An answer to an A query: the question echoed, one A record."""
    if len(query) < 17:
        return None
    end = query.find(b"\0", 12)
    if end < 0 or len(query) < end + 5:
        return None
    question = query[12:end + 5]
    head = struct.pack("!HHHHHH", struct.unpack("!H", query[:2])[0], 0x8180, 1, 1, 0, 0)
    record = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton("192.0.2.1")
    return head + question + record


def cmd_dns_server(args: argparse.Namespace) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.addr, args.port))
    out({"listening": f"{args.addr}:{args.port}"})
    deadline = time.monotonic() + args.lifetime
    while time.monotonic() < deadline:
        sock.settimeout(1.0)
        try:
            query, peer = sock.recvfrom(512)
        except TimeoutError:
            continue
        answer = dns_answer(query)
        if answer is not None:
            sock.sendto(answer, peer)


def cmd_dns_burst(args: argparse.Namespace) -> None:
    """COUNT queries spread over SECONDS, each from a new socket, so from a new
    source port (BASE_PORT + i, or one the kernel picks), each waiting for its
    answer up to 1 s."""
    answered, ports = 0, set()
    start = time.monotonic()
    for i in range(args.count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(1.0)
            if args.base_port:
                sock.bind(("", args.base_port + i))
            qid = random.randrange(65536)
            sock.sendto(dns_query(qid, f"host{i}.lab.test"), (args.server, args.port))
            ports.add(sock.getsockname()[1])
            try:
                reply = sock.recv(512)
                answered += reply[:2] == struct.pack("!H", qid) and reply[3] & 0xF == 0
            except TimeoutError:
                pass
        time.sleep(max(0.0, start + (i + 1) * args.seconds / args.count - time.monotonic()))
    out({"sent": args.count, "answered": answered, "ports": len(ports),
         "seconds": round(time.monotonic() - start, 2)})


# -- forged packets (scapy) ---------------------------------------------------------------------
def cmd_forge_handshake(args: argparse.Namespace) -> None:
    """From a forged source: SYN, then (the SYN-ACK went to the real owner of
    the address) an ACK with a guessed acknowledgement number and a GET
    carrying an attack, as a forger must: blind."""
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw
    from scapy.sendrecv import send

    rng = random.Random(args.seed)
    sent = 0
    for i in range(args.rounds):
        sport, isn = args.sport + i, rng.randrange(1 << 32)
        guess = rng.randrange(1 << 32)
        ip = IP(src=args.src, dst=args.dst)
        request = (f"GET {args.path} HTTP/1.1\r\nHost: victim\r\n"
                   "User-Agent: Mozilla/5.0\r\n\r\n").encode()
        send(ip / TCP(sport=sport, dport=args.dport, flags="S", seq=isn), verbose=0)
        time.sleep(0.2)  # the SYN-ACK is out, to the real address
        send(ip / TCP(sport=sport, dport=args.dport, flags="A", seq=isn + 1, ack=guess),
             verbose=0)
        send(ip / TCP(sport=sport, dport=args.dport, flags="PA", seq=isn + 1, ack=guess)
             / Raw(request), verbose=0)
        sent += 3
        time.sleep(0.2)
    out({"sent": sent})


def cmd_noack(args: argparse.Namespace) -> None:
    """A real connection; before its request, a segment with the same
    sequence number and other bytes (an attack) but no ACK flag: the host
    discards it (conntrack: INVALID), so must the IPS, and the real request
    must then go through."""
    from scapy.layers.inet import IP, TCP
    from scapy.packet import Raw
    from scapy.sendrecv import AsyncSniffer, send

    sport = args.sport
    sniffer = AsyncSniffer(iface=args.iface, store=True, lfilter=lambda p: (
        p.haslayer(TCP) and p[TCP].sport == sport and p[TCP].flags & 0x02))
    sniffer.start()
    time.sleep(0.5)  # the sniffer's socket is open
    sock = connect(args.host, args.port, None, args.timeout, sport=sport)
    time.sleep(0.3)
    syns = sniffer.stop()
    if not syns:
        out({"error": "the SYN was not captured"})
        return
    isn = syns[0][TCP].seq
    fake = (f"GET /x?id={args.attack} HTTP/1.1\r\nHost: victim\r\n\r\n").encode()
    send(IP(src=syns[0][IP].src, dst=args.host)
         / TCP(sport=sport, dport=args.port, flags="P", seq=isn + 1) / Raw(fake), verbose=0)
    time.sleep(0.3)
    with sock:
        sock.sendall(b"GET /search?q=the+real+request HTTP/1.1\r\nHost: victim\r\n"
                     b"Connection: close\r\n\r\n")
        answer, error = read_answer(sock, time.monotonic() + args.timeout)
    out({"status": status_of(answer), "error": error, "isn": isn})


# -- SSH banners -----------------------------------------------------------------------------------
def cmd_ssh_banners(args: argparse.Namespace) -> None:
    banners = []
    for _ in range(args.count):
        try:
            with connect(args.host, args.port, args.source, args.timeout) as sock:
                banners.append(sock.recv(256).split(b"\r\n")[0].decode("latin-1"))
        except OSError as exc:
            banners.append(f"error: {exc.strerror or exc}")
    out(banners)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    def target(p: argparse.ArgumentParser) -> None:
        p.add_argument("host")
        p.add_argument("port", type=int)
        p.add_argument("--source")
        p.add_argument("--timeout", type=float, default=5.0)

    target(p := sub.add_parser("http"))
    p.set_defaults(func=cmd_http)
    target(p := sub.add_parser("slow-heads"))
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--size", type=int, default=20480)
    p.add_argument("--piece", type=int, default=1024)
    p.add_argument("--interval", type=float, default=0.1)
    p.set_defaults(func=cmd_slow_heads)
    target(p := sub.add_parser("keepalive"))
    p.add_argument("--second", default="/search?q=after+restart")
    p.add_argument("--split", type=int, default=0, help="bytes of the second request "
                   "sent before the restart")
    p.set_defaults(func=cmd_keepalive)
    p = sub.add_parser("dns-server")
    p.add_argument("addr")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--lifetime", type=float, default=120.0)
    p.set_defaults(func=cmd_dns_server)
    p = sub.add_parser("dns-burst")
    p.add_argument("server")
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--base-port", type=int, default=0)
    p.set_defaults(func=cmd_dns_burst)
    p = sub.add_parser("forge-handshake")
    p.add_argument("--src", required=True)
    p.add_argument("--dst", required=True)
    p.add_argument("--dport", type=int, default=80)
    p.add_argument("--sport", type=int, default=45000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--path", required=True)
    p.add_argument("--seed", type=int, default=12)
    p.set_defaults(func=cmd_forge_handshake)
    target(p := sub.add_parser("noack"))
    p.add_argument("--sport", type=int, default=47000)
    p.add_argument("--iface", default="eth0")
    p.add_argument("--attack", required=True)
    p.set_defaults(func=cmd_noack)
    target(p := sub.add_parser("ssh-banners"))
    p.add_argument("--count", type=int, default=3)
    p.set_defaults(func=cmd_ssh_banners)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
