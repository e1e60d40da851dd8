"""The one interface every detector implements, and what a hit carries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from ..config import DetectorConfig, EngineConfig

if TYPE_CHECKING:
    from ..decode import Packet
    from ..flows import Flow, FlowTable


@dataclass(frozen=True)
class Signature:
    """What an alert says; one constant per rule, so a hit allocates nothing."""

    sid: int
    msg: str
    category: str
    severity: int  # 1 high .. 3 low, as in Suricata


class Detector(Protocol):
    name: ClassVar[str]
    protocols: ClassVar[tuple[int, ...]]  # IP protocols it can fire on (dispatch key)
    payload: ClassVar[bool]  # True: fed complete HTTP requests (flow.request), not packets
    cfg: DetectorConfig

    def inspect(self, pkt: Packet, flow: Flow | None, now: float) -> Signature | None:
        """Return the signature that fired, or None. Must be cheap when it
        cannot fire: it runs on every packet of its protocols."""
        ...


@dataclass
class Context:
    """What detectors may read besides the packet: shared connection state."""

    engine: EngineConfig
    flows: FlowTable


class BaseDetector:
    payload: ClassVar[bool] = False

    def __init__(self, cfg: DetectorConfig, ctx: Context) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.threshold = cfg.threshold
        self.window = cfg.window

    def tables(self) -> list:
        """Bounded tables this detector owns (for sweeps and metrics)."""
        return []
