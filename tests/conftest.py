from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from ips_inline.bans import BanManager, RecordingEnforcer, Whitelist
from ips_inline.config import Config
from ips_inline.engine import BLOCK, DROP, Engine
from ips_inline.eve import Collect, detector_of


class Harness:
    """An engine wired to a recording enforcer and an in-memory EVE sink."""

    def __init__(self, cfg: Config | None = None) -> None:
        self.cfg = cfg or Config()
        self.enforcer = RecordingEnforcer()
        self.sink = Collect()
        bans = BanManager(self.cfg.bans, Whitelist(self.cfg.engine.whitelist), self.enforcer)
        self.engine = Engine(self.cfg, bans, self.sink)
        self.now = 1_700_000_000.0

    def feed(self, *packets: bytes, step: float = 0.001) -> list[bool]:
        out = []
        for pkt in packets:
            self.now += step
            out.append(self.engine.process(pkt, self.now) not in (DROP, BLOCK))
        return out

    def alerts(self, detector: str | None = None) -> list[dict]:
        return [r for r in self.sink.records if r["event_type"] == "alert"
                and (detector is None or detector_of(r) == detector)]

    def alert_detectors(self) -> list[str | None]:
        return [detector_of(r) for r in self.alerts()]

    def banned(self) -> dict[str, str]:
        return {ip: det for ip, _dur, det in self.enforcer.bans}


class DetectorProxy:
    """A detector with another `inspect`, everything else the real one's.
    Tests swap it into the engine's dispatch (Engine._payload, _dispatch)
    instead of monkeypatching: the methods of compiled detectors cannot be
    replaced."""

    def __init__(self, real: object, inspect: Callable) -> None:
        self._real = real
        self.inspect = inspect

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)


def swap_payload(engine: Engine, wrap: Callable[[object], Callable]) -> None:
    """Every payload detector of `engine` behind a DetectorProxy whose
    inspect is `wrap(real_detector)`."""
    engine._payload = tuple(DetectorProxy(d, wrap(d)) for d in engine._payload)


@pytest.fixture
def harness() -> Harness:
    return Harness()


@pytest.fixture
def make_harness():
    return Harness


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (CI=true) nothing may be skipped: setup installs every tool, so a
    skip there means a missing install step, and it must fail loudly."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI: {report.longrepr}"
