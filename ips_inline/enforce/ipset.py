"""Ban sets in the kernel, driven over netlink with pyroute2's IPSet.

Two `hash:ip` sets with per-entry timeouts, one per address family (and, for
CrowdSec's Range decisions, two `hash:net` sets: stype=NET_TYPE). The kernel
expires entries itself, so a ban outlives the daemon and needs no cleanup pass.

Threading: pyroute2 keeps its socket and event loop in thread-local storage, so
one IPSet object used from two threads silently opens a second socket and leaks
it. The enforcer therefore opens its socket lazily, in the first thread that
uses it, and refuses calls from any other thread (close() excepted).
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

from pyroute2.ipset import AlreadyExists, IPSet, NoSuchObject
from pyroute2.netlink.exceptions import IPSetError, NetlinkError
from pyroute2.netlink.nfnetlink.ipset import (
    IPSET_ERR_EXIST,
    IPSET_ERR_TYPE_SPECIFIC,
    IPSET_FLAG_LIST_HEADER,
)

from ips_inline.config import IPSET_MAX_TIMEOUT
from ips_inline.enforce.addr import family, parse_ip, parse_network

# hash:* types report "Hash is full" as their first type-specific error code.
IPSET_ERR_HASH_FULL = IPSET_ERR_TYPE_SPECIFIC
SET_TYPE = "hash:ip"
NET_TYPE = "hash:net"  # entries are CIDRs
_SET_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,30}$")  # IPSET_MAXNAMELEN 32 incl. NUL
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}


class EnforceError(Exception):
    """An enforcement operation failed; the message is one line."""


class SetFull(EnforceError):
    """The ban set reached maxelem; the address was not banned."""


class SetMissing(EnforceError):
    """A ban set does not exist (not installed, or destroyed behind our back)."""


class InvalidAddress(EnforceError, ValueError):
    """The address given is not a bare IPv4/IPv6 address."""


def clamp_timeout(seconds: float) -> int:
    """Whole seconds within 1..IPSET_MAX_TIMEOUT: 0 would mean "forever" to ipset.

    Clamping before int() also maps inf and nan to the maximum instead of raising.
    """
    return int(max(1, min(IPSET_MAX_TIMEOUT, seconds)))


def check_set_name(name: str) -> str:
    if not isinstance(name, str) or not _SET_NAME.match(name):
        raise EnforceError(f"invalid ipset name: {name!r}")
    return name


class IpsetEnforcer:
    """Add, delete and list bans in the v4 and v6 ban sets."""

    def __init__(self, set_v4: str, set_v6: str, maxelem: int = 65536,
                 stype: str = SET_TYPE) -> None:
        if stype not in (SET_TYPE, NET_TYPE):
            raise EnforceError(f"unsupported ipset type: {stype!r}")
        self.stype = stype
        self._etype = "net" if stype == NET_TYPE else "ip"
        if set_v4 == set_v6:
            raise EnforceError(f"set_v4 and set_v6 must differ, both are {set_v4!r}")
        if not isinstance(maxelem, int) or maxelem < 1:
            raise EnforceError(f"invalid ipset maxelem: {maxelem!r}")
        self.sets = {4: check_set_name(set_v4), 6: check_set_name(set_v6)}
        self.maxelem = maxelem
        self._nl: IPSet | None = None
        self._owner: int | None = None
        self._lock = threading.Lock()

    # -- sets ------------------------------------------------------------------

    def ensure_sets(self) -> None:
        """Create both sets if absent; an existing set must have the right shape."""
        for fam, name in self.sets.items():
            if not self._call("create", name, partial(self._create, name=name, fam=fam)):
                self._check_existing(name, fam)

    def _create(self, nl: IPSet, name: str, fam: int) -> bool:
        try:
            # timeout=0 enables per-entry timeouts; every add passes its own.
            nl.create(name, stype=self.stype, family=_AF[fam], timeout=0, maxelem=self.maxelem)
        except AlreadyExists:
            return False
        return True

    def sets_exist(self) -> bool:
        try:
            for name in self.sets.values():
                self._header(name)
        except SetMissing:
            return False
        return True

    def destroy_sets(self) -> None:
        """Destroy both sets and their bans; absent sets are fine."""
        for name in self.sets.values():
            try:
                self._call("destroy", name, lambda nl, n=name: nl.destroy(n))
            except SetMissing:
                continue

    # -- entries ---------------------------------------------------------------

    def add(self, ip: str, timeout: int) -> None:
        """Ban `ip` (a CIDR in a NET_TYPE set) for `timeout` seconds; re-adding
        replaces the timeout."""
        addr, fam = self._target(ip)
        seconds = clamp_timeout(timeout)
        self._call("add", self.sets[fam], partial(self._add, addr=addr, fam=fam, seconds=seconds))

    def _add(self, nl: IPSet, addr: str, fam: int, seconds: int) -> None:
        # exclusive=False leaves out NLM_F_EXCL: the kernel's "-exist" mode,
        # which overwrites the timeout of an entry that is already there.
        nl.add(self.sets[fam], addr, family=_AF[fam], timeout=seconds, exclusive=False,
               etype=self._etype)

    def delete(self, ip: str) -> bool:
        """Unban `ip`; False if it was not banned."""
        addr, fam = self._target(ip)
        return self._call("del", self.sets[fam], partial(self._delete, addr=addr, fam=fam))

    def _delete(self, nl: IPSet, addr: str, fam: int) -> bool:
        try:
            nl.delete(self.sets[fam], addr, family=_AF[fam], etype=self._etype)
        except IPSetError as exc:
            if exc.code == IPSET_ERR_EXIST:  # "it's not added"
                return False
            raise
        return True

    def entries(self) -> dict[str, int]:
        """Every ban in both sets: ip (or CIDR) -> remaining seconds."""
        out: dict[str, int] = {}
        for name in self.sets.values():
            msgs = self._call("list", name, lambda nl, n=name: tuple(nl.list(n)))
            out.update(_members(msgs, self.stype == NET_TYPE))
        return out

    def count(self) -> int:
        """Entries in both sets, from the set headers (cheap: no member dump).

        Like `ipset list`, this may include entries that expired but were not
        yet garbage-collected by the kernel.
        """
        return sum(_data(self._header(n)).get("IPSET_ATTR_ELEMENTS", 0) for n in self.sets.values())

    def close(self) -> None:
        """Close the socket; call from the owning thread, or pyroute2 leaks its loop."""
        with self._lock:
            if self._nl is not None:
                self._nl.close()
            self._nl, self._owner = None, None

    def __enter__(self) -> IpsetEnforcer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------

    def _target(self, ip: str) -> tuple[str, int]:
        try:
            if self.stype == NET_TYPE:
                net = parse_network(ip)
                return net, family(net.partition("/")[0])
            addr = parse_ip(ip)
        except ValueError as exc:
            raise InvalidAddress(str(exc)) from None
        return addr, family(addr)

    def _socket(self) -> IPSet:
        me = threading.get_ident()
        with self._lock:
            if self._nl is None:
                try:
                    self._nl = IPSet()
                except (OSError, NetlinkError) as exc:
                    raise EnforceError(f"cannot open ipset netlink socket: {exc}") from exc
                self._owner = me
            elif self._owner != me:
                raise EnforceError("IpsetEnforcer used from a second thread; make one per thread")
            return self._nl

    def _call(self, op: str, name: str, fn: Any) -> Any:
        """Run fn(ipset_socket), turning netlink errors into EnforceError subclasses."""
        nl = self._socket()
        try:
            return fn(nl)
        except NoSuchObject as exc:
            raise SetMissing(f"ipset {op} {name}: set does not exist") from exc
        except NetlinkError as exc:
            if exc.code == IPSET_ERR_HASH_FULL:
                raise SetFull(f"ipset {op} {name}: set is full (maxelem reached)") from exc
            raise EnforceError(f"ipset {op} {name}: {_one_line(exc)}") from exc
        except OSError as exc:
            raise EnforceError(f"ipset {op} {name}: {exc}") from exc

    def _header(self, name: str) -> Any:
        msgs = self._call(
            "header", name, lambda nl: tuple(nl.list(name, flags=IPSET_FLAG_LIST_HEADER))
        )
        if not msgs:
            raise SetMissing(f"ipset header {name}: set does not exist")
        return msgs[0]

    def _check_existing(self, name: str, fam: int) -> None:
        head = self._header(name)
        kind = head.get_attr("IPSET_ATTR_TYPENAME")
        af = head.get_attr("IPSET_ATTR_FAMILY")
        if kind != self.stype or af != _AF[fam] or "IPSET_ATTR_TIMEOUT" not in _data(head):
            raise EnforceError(
                f"existing ipset {name} is not {self.stype} family "
                f"{'inet' if fam == 4 else 'inet6'} with timeout support; destroy or rename it"
            )


def _data(msg: Any) -> dict[str, Any]:
    data = msg.get_attr("IPSET_ATTR_DATA")
    return {} if data is None else {attr[0]: attr[1] for attr in data["attrs"]}


def _members(msgs: tuple[Any, ...], nets: bool = False) -> Iterator[tuple[str, int]]:
    """(ip, timeout) pairs from a list dump, which may span several messages;
    with `nets`, (CIDR, timeout)."""
    for msg in msgs:
        adt = msg.get_attr("IPSET_ATTR_ADT")
        if adt is None:
            continue
        for entry in adt.get_attrs("IPSET_ATTR_DATA"):
            ip_attr = entry.get_attr("IPSET_ATTR_IP_FROM")
            if ip_attr is None:
                continue
            ip = ip_attr.get_attr("IPSET_ATTR_IPADDR_IPV4") or ip_attr.get_attr(
                "IPSET_ATTR_IPADDR_IPV6"
            )
            if nets:
                ip = parse_network(f"{ip}/{entry.get_attr('IPSET_ATTR_CIDR')}")
            else:
                ip = parse_ip(ip)
            yield ip, int(entry.get_attr("IPSET_ATTR_TIMEOUT") or 0)


def _one_line(exc: NetlinkError) -> str:
    text = str(exc.args[1]) if len(exc.args) > 1 and exc.args[1] else f"error {exc.code}"
    return text.splitlines()[0] if text else f"error {exc.code}"
