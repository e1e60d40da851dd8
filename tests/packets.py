"""Crafted packets for unit tests, as raw L3 bytes (what NFQUEUE hands over)."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.packet import Raw

VICTIM, CLIENT, ATTACKER = "10.77.0.10", "10.77.0.20", "10.77.0.30"
VICTIM6, ATTACKER6 = "fd77::10", "fd77::30"


def raw(pkt) -> bytes:
    return bytes(pkt)


def ping(src: str = ATTACKER, dst: str = VICTIM, seq: int = 0) -> bytes:
    if ":" in src:
        return raw(IPv6(src=src, dst=dst) / ICMPv6EchoRequest(seq=seq))
    return raw(IP(src=src, dst=dst) / ICMP(type=8, seq=seq))


def tcp(src: str = ATTACKER, dst: str = VICTIM, sport: int = 40000, dport: int = 80,
        flags: str = "S", seq: int = 1000, ack: int = 0, payload: bytes = b"") -> bytes:
    ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
    pkt = ip / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    return raw(pkt / Raw(payload) if payload else pkt)


def udp(src: str = ATTACKER, dst: str = VICTIM, sport: int = 40000, dport: int = 53) -> bytes:
    return raw(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(b"x"))


class Conn:
    """One client TCP connection: handshake, then data segments with the
    right sequence numbers. The server's SYN-ACK is in the handshake, as in a
    capture of both directions: replay infers the kernel's conntrack state
    from it (a final ACK that answers it proves the handshake)."""

    SERVER_ISN = 9000

    def __init__(self, src: str = ATTACKER, sport: int = 40000, dport: int = 80,
                 dst: str = VICTIM) -> None:
        self.src, self.sport, self.dport, self.dst = src, sport, dport, dst
        self.seq = 5000
        self.ack = self.SERVER_ISN + 1

    def handshake(self) -> list[bytes]:
        return [self.syn(), self.synack(), self.final_ack()]

    def syn(self) -> bytes:
        syn = tcp(self.src, self.dst, self.sport, self.dport, "S", self.seq)
        self.seq += 1
        return syn

    def synack(self) -> bytes:
        return tcp(self.dst, self.src, self.dport, self.sport, "SA", self.SERVER_ISN, self.seq)

    def final_ack(self) -> bytes:
        return tcp(self.src, self.dst, self.sport, self.dport, "A", self.seq, self.ack)

    def send(self, data: bytes, flags: str = "PA") -> bytes:
        pkt = tcp(self.src, self.dst, self.sport, self.dport, flags, self.seq, self.ack, data)
        self.seq += len(data)
        return pkt


def http_get(target: str, headers: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: victim\r\n{headers}\r\n".encode()


def http_post(target: str, body: str) -> bytes:
    return (f"POST {target} HTTP/1.1\r\nHost: victim\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}").encode()
