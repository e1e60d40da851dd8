"""Plain objects with the shape of the engine's views, for the rules tests."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from ips_inline.rules import Hit, RuleSet, Variables, load

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


def ip(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


@dataclass
class Pkt:
    src: bytes = field(default_factory=lambda: ip("203.0.113.7"))
    dst: bytes = field(default_factory=lambda: ip("192.168.1.10"))
    proto: int = 6
    sport: int = 40000
    dport: int = 80
    flags: int = 0x18
    icmp_type: int = 0
    payload: bytes = b""


@dataclass
class Flow:
    established: bool = True
    to_server: bool = True


@dataclass
class Req:
    method: str = "GET"
    target: str = "/"
    version: str = "HTTP/1.1"
    headers: list[tuple[str, str]] = field(default_factory=lambda: [
        ("Host", "www.example.com"), ("User-Agent", BROWSER_UA), ("Accept", "*/*")])
    body: bytes = b""
    body_cut: bool = False

    @property
    def request_line(self) -> str:
        return f"{self.method} {self.target} {self.version}".rstrip()


def req(target: str = "/", method: str = "GET", headers: list[tuple[str, str]] | None = None,
        body: bytes = b"", ua: str = BROWSER_UA, **extra: str) -> Req:
    hs = [("Host", "www.example.com"), ("User-Agent", ua), ("Accept", "*/*")]
    hs += [(k.replace("_", "-"), v) for k, v in extra.items()]
    if headers is not None:
        hs = headers
    if body:
        hs.append(("Content-Length", str(len(body))))
    return Req(method=method, target=target, headers=hs, body=body)


def ruleset(text: str, tmp: Path, default: bool = False, **vars_: list[str]) -> RuleSet:
    path = tmp / "test.rules"
    path.write_text(text)
    return load([str(path)], default, Variables.build(**vars_))


def http_hits(rs: RuleSet, r: Req, pkt: Pkt | None = None, flow: Flow | None = None,
              now: float = 0.0) -> list[Hit]:
    """Both HTTP calls, as the engine makes them for one request."""
    pkt = pkt or Pkt()
    flow = flow or Flow()
    return rs.match_http_head(r, pkt, flow, now) + rs.match_http_body(r, pkt, flow, now)


def sids(hits: list[Hit]) -> list[int]:
    return [h.sid for h in hits]
