"""What the rules engine reads from the engine: structural types only, so the
package depends on no engine internals (the engine's objects satisfy them)."""

from __future__ import annotations

from typing import Protocol


class PacketView(Protocol):
    @property
    def src(self) -> bytes: ...  # raw address, 4 or 16 bytes
    @property
    def dst(self) -> bytes: ...
    @property
    def proto(self) -> int: ...  # 6, 17, 1 or 58
    @property
    def sport(self) -> int: ...
    @property
    def dport(self) -> int: ...
    @property
    def flags(self) -> int: ...  # TCP flags byte (0 for other protocols)
    @property
    def icmp_type(self) -> int: ...
    @property
    def payload(self) -> bytes: ...  # this packet's L4 payload


class FlowView(Protocol):
    @property
    def established(self) -> bool: ...  # the kernel saw the handshake
    @property
    def to_server(self) -> bool: ...  # initiator -> responder


class RequestView(Protocol):
    """One HTTP request as the server reads it (strings are latin-1 decoded bytes)."""

    @property
    def method(self) -> str: ...
    @property
    def target(self) -> str: ...  # raw request target as sent
    @property
    def version(self) -> str: ...  # "HTTP/1.1"; "" for HTTP/0.9
    @property
    def request_line(self) -> str: ...
    @property
    def headers(self) -> list[tuple[str, str]]: ...  # as sent, in order, values unfolded+stripped
    @property
    def body(self) -> bytes: ...  # de-chunked, possibly cut at a limit
    @property
    def body_cut(self) -> bool: ...
