"""What the daemon, the worker supervisor and the CLI use of this package.

Who does what, so that there is one puller and no push twice:
  - one process runs the Agent (pulls and pushes): the daemon with
    live.workers = 1, else the supervisor;
  - every process running an engine taps its EVE records (EvidenceTap) and
    queues its bans in the state file; `ips-inline ban/unban` queue there too.
With [crowdsec] off, every method here does nothing.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric

from ..config import Config, CrowdsecConfig
from ..enforce.store import BanStore
from ..errors import UserError
from ..eve import EventSink
from . import metrics, state
from .client import Credentials
from .evidence import EvidenceTap

log = logging.getLogger(__name__)
_SECRET_MAX = 4096
_YAML_PASSWORD = re.compile(r"^password:[ \t]*(\S+)[ \t]*$", re.MULTILINE)


class CrowdsecError(UserError):
    """A [crowdsec] setting that cannot be used (one line, no secret in it)."""


class Link:
    def __init__(self, cfg: Config, store: BanStore, *, agent: bool, tap: bool) -> None:
        self.cfg = cfg.crowdsec
        self.store = store
        self.agent = None
        self.tap: EvidenceTap | None = None
        self._tap_wanted = tap and self.cfg.watcher
        if agent and (self.cfg.bouncer or self.cfg.watcher):
            from .agent import Agent  # requests is imported only when needed

            self.agent = Agent(cfg, store, load_credentials(self.cfg))

    def sink(self, inner: EventSink) -> EventSink:
        """The engine's event sink: `inner`, tapped if our bans are pushed."""
        if not self._tap_wanted:
            return inner
        self.tap = EvidenceTap(inner)
        return self.tap

    def tick(self, call: Callable[[Callable[[Any], None]], None]) -> None:
        """Once a second from the daemon loop: queue new bans in the state file,
        through `call` (LiveEnforcer.call: its worker thread, off the packet path)."""
        if self.tap is not None and self.tap.waiting():
            tap, limit = self.tap, self.cfg.push_queue_max
            call(lambda _ipset: tap.flush(self.store, limit))

    def start(self) -> None:
        if self.agent is not None:
            self.agent.start()

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()

    def families(self) -> Iterator[Metric]:
        if self.agent is not None:
            yield from metrics.families(self.agent)


def net_sets(cfg: Config) -> tuple[str, str] | None:
    """The hash:net sets the rules must drop, when decisions are pulled."""
    cs = cfg.crowdsec
    return (cs.net_set_v4, cs.net_set_v6) if cs.bouncer else None


def load_credentials(cfg: CrowdsecConfig) -> Credentials:
    """The secrets, read once at start; CrowdsecError names the key, never
    the secret."""
    if cfg.ca_file and not os.access(cfg.ca_file, os.R_OK):
        raise CrowdsecError(f"crowdsec.ca_file {cfg.ca_file}: not readable")
    return Credentials(api_key=_secret(cfg.api_key, cfg.api_key_file, "api_key"),
                       machine_id=cfg.machine_id,
                       password=_secret(cfg.password, cfg.password_file, "password"))


def _secret(value: str, path: str, key: str) -> str:
    if not path:
        return value
    try:
        with open(path, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            raw = fh.read(_SECRET_MAX + 1)
    except OSError as exc:
        raise CrowdsecError(f"crowdsec.{key}_file {path}: {exc.strerror}") from None
    text = raw.decode("ascii", "replace").strip()
    if key == "password":  # also the YAML `cscli machines add --auto -f FILE` writes
        text = next((m.group(1) for m in _YAML_PASSWORD.finditer(text)), text)
    if len(raw) > _SECRET_MAX or not text or not all("!" <= c <= "~" for c in text):
        raise CrowdsecError(f"crowdsec.{key}_file {path} must hold one line of printable "
                            "ASCII without spaces")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("crowdsec.%s_file %s is readable by others: chmod 600 it", key, path)
    return text


# -- `ips-inline ban` / `unban` -------------------------------------------------------
def queue_manual_ban(cfg: Config, store: BanStore, ip: str, seconds: int, count: int,
                     now: float | None = None) -> bool:
    """Queue a manual ban for LAPI (scenario ips-inline/manual); the daemon pushes it."""
    if not cfg.crowdsec.watcher:
        return False
    at = time.time() if now is None else now
    item = {"op": "ban", "ip": ip, "detector": "manual", "signature": "manual ban",
            "alerts": 1, "count": count, "duration": seconds, "at": round(at, 3),
            "until": round(at + seconds, 3)}
    store.update(lambda _b, s: state.enqueue(s, [item], cfg.crowdsec.push_queue_max),
                 section=state.SECTION)
    return True


def queue_unban(cfg: Config, store: BanStore, ip: str) -> bool:
    """Cancel pushes of `ip` not sent yet, and queue deleting those sent."""
    if not cfg.crowdsec.watcher:
        return False

    def change(_bans: dict, section: dict) -> bool:
        # A cancelled push may be in flight right now: queue the delete anyway.
        if state.cancel_bans(section, ip) or ip in state.pushed(section):
            state.enqueue(section, [{"op": "unban", "ip": ip}], cfg.crowdsec.push_queue_max)
            return True
        return False

    return bool(store.update(change, section=state.SECTION))
