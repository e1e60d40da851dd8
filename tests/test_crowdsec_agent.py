"""The agent thread against a fake LAPI: first a full pull then deltas, a
garbage answer forces a full pull again, an outage backs off and catches up,
pushes wait in the queue, and the metrics say what happened."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fake_lapi import FakeLapi, Request
from prometheus_client import CollectorRegistry, generate_latest
from test_crowdsec_bouncer import FakeSet

from ips_inline.config import Config, from_dict
from ips_inline.crowdsec import Link, queue_manual_ban, state
from ips_inline.crowdsec.agent import Agent
from ips_inline.crowdsec.client import Credentials
from ips_inline.enforce.store import BanStore
from ips_inline.metrics import DaemonMetrics, IpsCollector

STREAM = "/v1/decisions/stream"


def config(url: str, tmp: Path, **over: object) -> Config:
    cs = {"lapi_url": url, "api_key": "k", "machine_id": "host-a", "password": "p",
          "poll_interval": 0.2, "retry_max": 1.0, "timeout": 1.0, **over}
    return from_dict({"crowdsec": cs, "live": {"state_path": str(tmp / "state.json")}})


def wait_for(what: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


class Stream:
    """The stream route: answers queued by the test, then empty deltas."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, bytes]] = []
        self.down = False

    def __call__(self, _req: Request) -> tuple[int, dict, bytes]:
        if self.down:
            return 503, {}, b"down"
        if self.answers:
            status, body = self.answers.pop(0)
            return status, {}, body
        return 200, {}, b'{"new":null,"deleted":null}'

    def give(self, payload: object, status: int = 200) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.answers.append((status, body))


@pytest.fixture
def lapi() -> Iterator[FakeLapi]:
    with FakeLapi() as fake:
        fake.stream = Stream()
        fake.route("GET", STREAM, fake.stream)
        fake.json_route("POST", "/v1/watchers/login", {"code": 200, "token": "tok"})
        fake.json_route("POST", "/v1/alerts", ["7"], status=201)
        fake.json_route("GET", "/v1/alerts/*", {"id": 7, "decisions": [{"id": 70}]})
        yield fake


@pytest.fixture
def agent(lapi: FakeLapi, tmp_path: Path) -> Iterator[Agent]:
    sets = (FakeSet(), FakeSet(nets=True))
    a = Agent(config(lapi.url, tmp_path), BanStore(str(tmp_path / "state.json")),
              Credentials("k", "host-a", "p"), make_sets=lambda: sets)
    a.sets = sets
    yield a
    a.stop()


def decision(ident: int, value: str, scope: str = "Ip") -> dict:
    return {"id": ident, "origin": "cscli", "scenario": "manual", "scope": scope,
            "type": "ban", "value": value, "duration": "1h"}


def test_full_pull_first_then_deltas(lapi: FakeLapi, agent: Agent) -> None:
    lapi.stream.give({"new": [decision(1, "203.0.113.7")], "deleted": None})
    agent.start()
    wait_for(lambda: len(lapi.hits("GET", STREAM)) >= 3)
    pulls = lapi.hits("GET", STREAM)
    assert pulls[0].query == {"startup": ["true"]}
    assert all(p.query == {} for p in pulls[1:])
    assert "203.0.113.7" in agent.sets[0].entries_
    assert agent.up == 1 and agent.pulls["ok"] >= 3


def test_garbage_answer_is_counted_and_forces_a_full_pull(lapi: FakeLapi, agent: Agent) -> None:
    lapi.stream.give(b'{"new": [{"id": 1}], ')  # cut short
    agent.start()
    wait_for(lambda: len(lapi.hits("GET", STREAM)) >= 2)
    first, second = lapi.hits("GET", STREAM)[:2]
    assert first.query == second.query == {"startup": ["true"]}
    assert agent.pulls["invalid"] == 1


def test_outage_backs_off_then_catches_up(lapi: FakeLapi, agent: Agent, tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="ips_inline")
    lapi.stream.down = True
    agent.start()
    time.sleep(2.0)
    # Retries at 1 s (retry_max), not every poll_interval (0.2 s).
    assert 2 <= len(lapi.hits("GET", STREAM)) <= 4
    assert agent.up == 0 and agent.pulls["server_error"] >= 2
    assert caplog.text.count("inspection and local bans go on") == 1  # once, not per retry
    queue_manual_ban(config(lapi.url, tmp_path), agent.store, "203.0.113.9", 600, 1)
    lapi.route("POST", "/v1/alerts", lambda _r: (503, {}, b""))
    time.sleep(0.7)
    assert agent.watcher is not None and agent.watcher.queued == 1  # kept while LAPI is down
    lapi.stream.down = False
    lapi.json_route("POST", "/v1/alerts", ["7"], status=201)
    wait_for(lambda: agent.up == 1 and agent.watcher.queued == 0)
    assert "answers again" in caplog.text
    pushed = lapi.hits("POST", "/v1/alerts")[-1].json()[0]
    assert pushed["scenario"] == "ips-inline/manual"
    assert pushed["decisions"][0]["value"] == "203.0.113.9"


def test_own_pushed_decisions_are_not_enforced_twice(lapi: FakeLapi, agent: Agent,
                                                     tmp_path: Path) -> None:
    queue_manual_ban(config(lapi.url, tmp_path), agent.store, "203.0.113.9", 600, 1)
    agent.start()
    wait_for(lambda: agent.watcher is not None and agent.watcher.own == {70})
    lapi.stream.give({"new": [{**decision(70, "203.0.113.9"), "origin": "ips-inline"}]})
    wait_for(lambda: not lapi.stream.answers)
    time.sleep(0.3)
    assert "203.0.113.9" not in agent.sets[0].entries_
    assert len(lapi.hits("POST", "/v1/alerts")) == 1  # and nothing echoed back


def test_metrics(lapi: FakeLapi, agent: Agent, tmp_path: Path) -> None:
    lapi.stream.give({"new": [decision(1, "203.0.113.7"), decision(2, "198.51.100.0/24", "Range"),
                              {**decision(3, "203.0.113.8"), "type": "captcha"}]})
    agent.start()
    wait_for(lambda: agent.pulls["ok"] >= 2)
    link = Link(Config(), BanStore(str(tmp_path / "x.json")), agent=False, tap=False)
    link.agent = agent
    registry = CollectorRegistry()
    registry.register(IpsCollector(lambda: [], DaemonMetrics(extra=link.families)))
    text = generate_latest(registry).decode()
    assert 'ips_inline_crowdsec_decisions{origin="cscli",scope="Ip"} 1.0' in text
    assert 'ips_inline_crowdsec_decisions{origin="cscli",scope="Range"} 1.0' in text
    assert 'ips_inline_crowdsec_decisions_rejected_total{reason="not_ban"} 1.0' in text
    assert "ips_inline_crowdsec_lapi_up 1.0" in text
    assert 'ips_inline_crowdsec_pushes_total{result="dropped"} 0.0' in text
    assert 'ips_inline_crowdsec_pulls_total{result="ok"}' in text
    assert "ips_inline_crowdsec_push_queue 0.0" in text


def test_stop_is_prompt_even_when_lapi_hangs(tmp_path: Path) -> None:
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        a = Agent(config(url, tmp_path, timeout=0.5), BanStore(str(tmp_path / "s.json")),
                  Credentials("k", "host-a", "p"), make_sets=lambda: (FakeSet(), FakeSet(True)))
        a.start()
        time.sleep(0.2)
        start = time.monotonic()
        a.stop()
        assert time.monotonic() - start < 2.5
        assert not a._thread.is_alive()


def test_a_damaged_state_file_does_not_stop_the_agent(lapi: FakeLapi, agent: Agent) -> None:
    Path(agent.store.path).write_text('{"version": 1, "crowdsec": {"pending": "garbage", '
                                      '"pushed": [1], "ranges": 5}, "bans": []}')
    lapi.stream.give({"new": [decision(1, "203.0.113.7")]})
    agent.start()
    wait_for(lambda: "203.0.113.7" in agent.sets[0].entries_)
    assert state.pending(agent.store.load_section(state.SECTION)) == []
