"""Strict IP address parsing for everything that reaches the kernel.

Addresses come from packets, the CLI and the state file; they end up in netlink
messages and in argv lists. Only a bare address is accepted: no networks, no
IPv6 scope ids, no surrounding whitespace, no other types.
"""

from __future__ import annotations

import ipaddress


def parse_ip(text: str) -> str:
    """The canonical compressed form of `text`, or ValueError.

    An IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes the IPv4 address: the
    kernel sees such a peer as IPv4, so only a v4 ban can match it.
    """
    if not isinstance(text, str) or "%" in text:
        # ipaddress accepts ints and bytes, and "fe80::1%<anything>" as a scope id.
        raise ValueError(f"invalid IP address: {_show(text)}")
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"invalid IP address: {_show(text)}") from None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return str(addr)


def parse_network(text: str) -> str:
    """The canonical CIDR of `text` (host bits cleared), or ValueError. As in
    parse_ip, no scope id: ipaddress keeps "fe80::%eth0;x/64" verbatim."""
    if not isinstance(text, str) or "%" in text:
        raise ValueError(f"invalid network: {_show(text)}")
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise ValueError(f"invalid network: {_show(text)}") from None


def family(ip: str) -> int:
    """4 or 6 for a valid address; ValueError like parse_ip otherwise."""
    return ipaddress.ip_address(parse_ip(ip)).version


def _show(value: object) -> str:
    # repr() escapes newlines and control characters, keeping the message one line.
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."
