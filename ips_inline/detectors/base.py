"""The one interface every detector implements, and what a hit carries."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..config import DetectorConfig, EngineConfig
from ..packet.flows import FlowTable  # at run time: a compiled dataclass field's type
from ..packet.tables import BoundedTable

if TYPE_CHECKING:
    from ..packet.decode import Packet
    from ..packet.flows import Flow


@dataclass(frozen=True)
class Signature:
    """What an alert says; one constant per rule, so a hit allocates nothing.
    `action` "alert": log only, whatever the detector's mode (a rule's action);
    `log` False: enforce without a record (a threshold suppressed it)."""

    sid: int
    msg: str
    category: str
    severity: int  # 1 high .. 3 low, as in Suricata
    rev: int = 1
    gid: int = 1
    metadata: tuple[tuple[str, tuple[str, ...]], ...] = ()
    action: str = "drop"
    log: bool = True


class Detector(Protocol):
    name: ClassVar[str]
    payload: ClassVar[bool]  # True: fed complete HTTP requests (flow.request), not packets
    # True: its offences ban only on a connection whose handshake the kernel
    # proved (what it sees could be forged); payload detectors, rules.
    proof_required: ClassVar[bool]
    cfg: DetectorConfig

    @property
    def protocols(self) -> tuple[int, ...]:
        """IP protocols it can fire on (dispatch key); a class attribute."""
        ...

    @staticmethod
    def fires_on(flags: int) -> bool:
        """Whether it can fire on a TCP segment with these flags (FIN..URG,
        the low 6 bits). The engine builds its dispatch table from this, so
        a segment only meets detectors that can fire on it (established
        traffic, all ACKs, meets none of the flood and scan detectors)."""
        ...

    def inspect(self, pkt: Packet, flow: Flow | None,
                now: float) -> Signature | tuple[Signature, ...] | None:
        """Return the signature that fired (rules: those), or None. Must be cheap when it
        cannot fire: it runs on every packet of its protocols."""
        ...

    def evidence(self, pkt: Packet, now: float) -> dict[str, list[str]]:
        """What the EVE alert shows beside the packet (alert.metadata), e.g.
        the ports a scan probed; asked only when an alert record is written."""
        ...


@dataclass
class Context:
    """What detectors may use besides the packet: shared connection state, and
    their per-source tables, which the engine owns so that state and
    eviction counts survive a config reload."""

    engine: EngineConfig
    flows: FlowTable
    tables: dict[str, BoundedTable] = field(default_factory=dict)

    def table(self, name: str) -> BoundedTable:
        """The per-source table `name`, created on first use, resized on reload."""
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = BoundedTable(name, self.engine.max_sources,
                                                     self.engine.source_ttl)
        table.maxlen, table.ttl = self.engine.max_sources, self.engine.source_ttl
        return table


class BaseDetector:
    # Class attributes, never set on instances: ClassVar keeps them so when
    # compiled (mypyc makes other class-body values instance defaults).
    name: ClassVar[str]
    protocols: ClassVar[tuple[int, ...]]
    payload: ClassVar[bool] = False
    proof_required: ClassVar[bool] = False

    @staticmethod
    def fires_on(flags: int) -> bool:
        return True

    def __init__(self, cfg: DetectorConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.threshold = cfg.threshold
        self.window = cfg.window

    def evidence(self, pkt: Packet, now: float) -> dict[str, list[str]]:
        return {}
