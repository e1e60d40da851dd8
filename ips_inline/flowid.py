"""Flow identifiers for EVE records.

- `community_id`: Community ID v1 (seed 0), the flow hash Zeek, Suricata,
  Elastic and others compute the same way, so one flow can be followed
  across tools. The `communityid` package is the reference (the tests compare
  against it on random tuples), but it costs about 75 µs a call here (it
  re-validates and re-renders its input, and formats an INFO log line on every
  call, which the daemon's INFO logging would print), against about 3 µs for
  this: alerts are built on the packet path. Its ICMP type/code mapping
  (Zeek's, the spec's) is used as is.
- `flow_id`: Suricata's `flow_id`, an integer grouping every record of one
  connection. Suricata packs its flow hash and start time into 51 bits (so
  JavaScript and JSON readers keep it exact); here it is a keyed hash of the
  ordered 5-tuple and the connection's start time, masked the same way. It is
  deterministic, so a replay's output stays byte-for-byte reproducible.
"""

from __future__ import annotations

import base64
from hashlib import blake2b, sha1
from struct import Struct

from communityid import icmp, icmp6

from .packet.decode import PROTO_ICMP, PROTO_ICMP6, PROTO_TCP, PROTO_UDP

_PORTS = Struct("!HH")
_START = Struct("!d")  # the start time's exact bits: never raises, whatever a capture says
_PORT_PROTOS = frozenset((PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_ICMP6, 132))  # 132: SCTP
_FLOW_ID_MASK = (1 << 51) - 1  # as Suricata's FlowGetId


def ordered(proto: int, src: bytes, dst: bytes, sport: int,
            dport: int) -> tuple[bytes, bytes, int, int]:
    """The tuple in Community ID order: ICMP type/code mapped to ports, the
    smaller endpoint first unless the ICMP message is one-way."""
    one_way = False
    if proto == PROTO_ICMP:
        sport, dport, one_way = icmp.get_port_equivalents(sport, dport)
    elif proto == PROTO_ICMP6:
        sport, dport, one_way = icmp6.get_port_equivalents(sport, dport)
    if one_way or src < dst or (src == dst and sport < dport):
        return src, dst, sport, dport
    return dst, src, dport, sport


def _tuple_bytes(proto: int, src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    src, dst, sport, dport = ordered(proto, src, dst, sport, dport)
    ports = _PORTS.pack(sport, dport) if proto in _PORT_PROTOS else b""
    return src + dst + bytes((proto, 0)) + ports


def community_id(proto: int, src: bytes, dst: bytes, sport: int, dport: int,
                 seed: int = 0) -> str:
    """Community ID v1 of a flow; for ICMP, sport/dport are type and code."""
    digest = sha1(seed.to_bytes(2, "big") + _tuple_bytes(proto, src, dst, sport, dport),
                  usedforsecurity=False).digest()
    return "1:" + base64.b64encode(digest).decode("ascii")


def flow_id(proto: int, src: bytes, dst: bytes, sport: int, dport: int,
            start: float | None = None) -> int:
    """A 51-bit id, the same for both directions. `start` (the connection's
    first packet) separates reuses of one 5-tuple; without it (UDP, ICMP, TCP
    not tracked) the id is the 5-tuple's alone."""
    data = _tuple_bytes(proto, src, dst, sport, dport)
    if start is not None:
        data += _START.pack(start)
    return int.from_bytes(blake2b(data, digest_size=8, person=b"ips-flow").digest(),
                          "big") & _FLOW_ID_MASK
