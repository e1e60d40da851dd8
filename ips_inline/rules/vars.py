"""Rule header addresses and ports: lists, ranges, negation and variables.

Suricata's semantics: a list is the union of its positive elements (all
addresses if it has none) minus the union of its negated ones; `!X` is the
complement of X; elements nest. Every spec compiles to sorted, disjoint
integer intervals (per IP version for addresses), matched with bisect.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from dataclasses import dataclass, field

_MAX = {4: (1 << 32) - 1, 6: (1 << 128) - 1}
_PORT_MAX = 65535
_MAX_DEPTH = 16  # variable nesting ($A -> $B -> ...): deeper is a cycle or abuse

# Suricata 7's default suricata.yaml groups beyond the ones the config sets.
DEFAULT_ADDRESS_VARS = {
    "HTTP_SERVERS": "$HOME_NET",
    "SMTP_SERVERS": "$HOME_NET",
    "SQL_SERVERS": "$HOME_NET",
    "DNS_SERVERS": "$HOME_NET",
    "TELNET_SERVERS": "$HOME_NET",
    "AIM_SERVERS": "$EXTERNAL_NET",
    "DC_SERVERS": "$HOME_NET",
    "DNP3_SERVER": "$HOME_NET",
    "DNP3_CLIENT": "$HOME_NET",
    "MODBUS_CLIENT": "$HOME_NET",
    "MODBUS_SERVER": "$HOME_NET",
    "ENIP_CLIENT": "$HOME_NET",
    "ENIP_SERVER": "$HOME_NET",
}
DEFAULT_PORT_VARS = {
    "SHELLCODE_PORTS": "!80",
    "ORACLE_PORTS": "1521",
    "DNP3_PORTS": "20000",
    "MODBUS_PORTS": "502",
    "FILE_DATA_PORTS": "[$HTTP_PORTS,110,143]",
    "FTP_PORTS": "21",
    "GENEVE_PORTS": "6081",
    "VXLAN_PORTS": "4789",
    "TEREDO_PORTS": "3544",
}
DEFAULT_HOME_NET = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
DEFAULT_EXTERNAL_NET = ["!$HOME_NET"]
DEFAULT_HTTP_PORTS = ["80", "8000", "8008", "8080", "8888"]
DEFAULT_SSH_PORTS = ["22"]


class VarError(ValueError):
    """A bad address, port or variable; the message says which."""


Intervals = list[tuple[int, int]]


def _normalize(iv: Intervals) -> Intervals:
    out: Intervals = []
    for lo, hi in sorted(iv):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _complement(iv: Intervals, top: int) -> Intervals:
    out: Intervals = []
    nxt = 0
    for lo, hi in iv:
        if lo > nxt:
            out.append((nxt, lo - 1))
        nxt = hi + 1
    if nxt <= top:
        out.append((nxt, top))
    return out


def _subtract(a: Intervals, b: Intervals, top: int) -> Intervals:
    keep = _complement(b, top)
    out: Intervals = []
    i = j = 0
    while i < len(a) and j < len(keep):
        lo, hi = max(a[i][0], keep[j][0]), min(a[i][1], keep[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < keep[j][1]:
            i += 1
        else:
            j += 1
    return out


@dataclass(frozen=True)
class _IntervalSet:
    lows: tuple[int, ...]
    highs: tuple[int, ...]

    @classmethod
    def of(cls, iv: Intervals) -> _IntervalSet:
        return cls(tuple(lo for lo, _ in iv), tuple(hi for _, hi in iv))

    def __contains__(self, value: int) -> bool:
        i = bisect_right(self.lows, value) - 1
        return i >= 0 and value <= self.highs[i]

    def intervals(self) -> Intervals:
        return list(zip(self.lows, self.highs, strict=True))


@dataclass(frozen=True)
class AddressSet:
    """Compiled address spec; `anything` short-cuts the common `any`."""

    v4: _IntervalSet
    v6: _IntervalSet
    anything: bool = False

    def match(self, raw: bytes) -> bool:
        if self.anything:
            return True
        if len(raw) == 4:
            return int.from_bytes(raw, "big") in self.v4
        return int.from_bytes(raw, "big") in self.v6


@dataclass(frozen=True)
class PortSet:
    ports: _IntervalSet
    anything: bool = False

    def match(self, port: int) -> bool:
        return self.anything or port in self.ports

    def finite(self, limit: int) -> frozenset[int] | None:
        """The ports as a set when there are at most `limit` (for indexing)."""
        if self.anything:
            return None
        total = sum(hi - lo + 1 for lo, hi in self.ports.intervals())
        if total > limit:
            return None
        return frozenset(p for lo, hi in self.ports.intervals() for p in range(lo, hi + 1))


def split_list(text: str) -> list[str]:
    """Top-level comma-separated elements of `[a,[b,c],!d]` (brackets stripped)."""
    inner = text[1:-1]
    parts, depth, cur = [], 0, []
    for ch in inner:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise VarError(f"unbalanced brackets in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise VarError(f"unbalanced brackets in {text!r}")
    parts.append("".join(cur).strip())
    if any(not p for p in parts):
        raise VarError(f"empty element in {text!r}")
    return parts


@dataclass
class Variables:
    """Address and port groups by name (without the `$`)."""

    addresses: dict[str, str] = field(default_factory=dict)
    ports: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, home_net: list[str] | None = None, external_net: list[str] | None = None,
              http_ports: list[str] | None = None, ssh_ports: list[str] | None = None,
              extra: list[str] | None = None) -> Variables:
        """The config's variables over Suricata's defaults. `extra` holds
        "NAME=VALUE" strings: a NAME ending in _PORT or _PORTS is a port group.
        Every group is compiled once here, so a bad value fails at load."""
        out = cls(dict(DEFAULT_ADDRESS_VARS), dict(DEFAULT_PORT_VARS))
        out.addresses["HOME_NET"] = _as_list(home_net if home_net is not None
                                             else DEFAULT_HOME_NET)
        out.addresses["EXTERNAL_NET"] = _as_list(external_net if external_net is not None
                                                 else DEFAULT_EXTERNAL_NET)
        out.ports["HTTP_PORTS"] = _as_list(http_ports if http_ports is not None
                                           else DEFAULT_HTTP_PORTS)
        out.ports["SSH_PORTS"] = _as_list(ssh_ports if ssh_ports is not None
                                          else DEFAULT_SSH_PORTS)
        for item in extra or []:
            name, sep, value = item.partition("=")
            name, value = name.strip().lstrip("$"), value.strip()
            if not sep or not name.isidentifier() or not value:
                raise VarError(f"variable {item!r} is not NAME=VALUE")
            group = out.ports if name.endswith(("_PORT", "_PORTS")) else out.addresses
            group[name] = value
        first = ("HOME_NET", "EXTERNAL_NET", "HTTP_PORTS", "SSH_PORTS")  # errors name them
        for name in sorted(out.addresses.keys() | out.ports.keys(),
                           key=lambda n: (n not in first, first.index(n) if n in first else 0)):
            try:
                if name in out.addresses:
                    out.address(out.addresses[name])
                else:
                    out.port(out.ports[name])
            except VarError as exc:
                raise VarError(f"${name}: {exc}") from None
        return out

    def address(self, spec: str) -> AddressSet:
        v4, v6 = self._addr(spec.strip(), 0)
        if v4 == [(0, _MAX[4])] and v6 == [(0, _MAX[6])]:
            return AddressSet(_IntervalSet.of(v4), _IntervalSet.of(v6), anything=True)
        return AddressSet(_IntervalSet.of(v4), _IntervalSet.of(v6))

    def port(self, spec: str) -> PortSet:
        iv = self._port(spec.strip(), 0)
        return PortSet(_IntervalSet.of(iv), anything=iv == [(0, _PORT_MAX)])

    # -- addresses -------------------------------------------------------
    def _addr(self, spec: str, depth: int) -> tuple[Intervals, Intervals]:
        if depth > _MAX_DEPTH:
            raise VarError(f"variables nest too deep at {spec!r}")
        if not spec:
            raise VarError("empty address")
        if spec.startswith("!"):
            v4, v6 = self._addr(spec[1:].strip(), depth + 1)
            return _complement(v4, _MAX[4]), _complement(v6, _MAX[6])
        if spec.startswith("["):
            if not spec.endswith("]"):
                raise VarError(f"unbalanced brackets in {spec!r}")
            return self._addr_list(split_list(spec), depth)
        if spec.startswith("$"):
            name = spec[1:]
            if name not in self.addresses:
                raise VarError(f"unknown address variable ${name}")
            return self._addr(self.addresses[name], depth + 1)
        if spec.lower() == "any":
            return [(0, _MAX[4])], [(0, _MAX[6])]
        return _one_address(spec)

    def _addr_list(self, parts: list[str], depth: int) -> tuple[Intervals, Intervals]:
        pos4: Intervals = []
        pos6: Intervals = []
        neg4: Intervals = []
        neg6: Intervals = []
        for part in parts:
            if part.startswith("!"):
                v4, v6 = self._addr(part[1:].strip(), depth + 1)
                neg4 += v4
                neg6 += v6
            else:
                v4, v6 = self._addr(part, depth + 1)
                pos4 += v4
                pos6 += v6
        if not pos4 and not pos6:
            pos4, pos6 = [(0, _MAX[4])], [(0, _MAX[6])]
        return (_subtract(_normalize(pos4), _normalize(neg4), _MAX[4]),
                _subtract(_normalize(pos6), _normalize(neg6), _MAX[6]))

    # -- ports -----------------------------------------------------------
    def _port(self, spec: str, depth: int) -> Intervals:
        if depth > _MAX_DEPTH:
            raise VarError(f"variables nest too deep at {spec!r}")
        if not spec:
            raise VarError("empty port")
        if spec.startswith("!"):
            return _complement(self._port(spec[1:].strip(), depth + 1), _PORT_MAX)
        if spec.startswith("["):
            if not spec.endswith("]"):
                raise VarError(f"unbalanced brackets in {spec!r}")
            pos: Intervals = []
            neg: Intervals = []
            for part in split_list(spec):
                if part.startswith("!"):
                    neg += self._port(part[1:].strip(), depth + 1)
                else:
                    pos += self._port(part, depth + 1)
            return _subtract(_normalize(pos or [(0, _PORT_MAX)]), _normalize(neg), _PORT_MAX)
        if spec.startswith("$"):
            name = spec[1:]
            if name not in self.ports:
                raise VarError(f"unknown port variable ${name}")
            return self._port(self.ports[name], depth + 1)
        if spec.lower() == "any":
            return [(0, _PORT_MAX)]
        return [_one_port_range(spec)]


def _as_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else "[" + ",".join(items) + "]"


def _one_address(spec: str) -> tuple[Intervals, Intervals]:
    try:
        if "-" in spec and "/" not in spec:
            lo_s, hi_s = spec.split("-", 1)
            lo, hi = ipaddress.ip_address(lo_s.strip()), ipaddress.ip_address(hi_s.strip())
            if lo.version != hi.version or int(lo) > int(hi):
                raise VarError(f"bad address range {spec!r}")
            iv = [(int(lo), int(hi))]
            return (iv, []) if lo.version == 4 else ([], iv)
        if "%" in spec:
            raise ValueError(spec)
        net = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        raise VarError(f"bad address {spec!r}") from None
    iv = [(int(net.network_address), int(net.broadcast_address))]
    return (iv, []) if net.version == 4 else ([], iv)


def _port_number(text: str, spec: str) -> int:
    if not text.isdigit() or int(text) > _PORT_MAX:
        raise VarError(f"bad port {spec!r}")
    return int(text)


def _one_port_range(spec: str) -> tuple[int, int]:
    if ":" in spec:
        lo_s, hi_s = (s.strip() for s in spec.split(":", 1))
        lo = _port_number(lo_s, spec) if lo_s else 0
        hi = _port_number(hi_s, spec) if hi_s else _PORT_MAX
        if lo > hi:
            raise VarError(f"bad port range {spec!r}")
        return lo, hi
    port = _port_number(spec, spec)
    return port, port
