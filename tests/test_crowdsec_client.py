"""The LAPI client against a fake LAPI on 127.0.0.1 answering garbage, slowly,
hugely, or not at all: every failure is one LapiError subclass with a one-line
message that never holds a credential."""

from __future__ import annotations

import gzip
import json
import socket
import time

import pytest
from fake_lapi import FakeLapi, Trickle

from ips_inline.crowdsec.client import (
    BadAnswer,
    Credentials,
    Denied,
    LapiClient,
    LapiError,
    Refused,
    ServerError,
    Unreachable,
)

KEY, PASSWORD = "bouncer-key-0123456789", "machine-password-0123456789"
STREAM = "/v1/decisions/stream"


def client(url: str, timeout: float = 2.0, max_bytes: int = 1 << 20) -> LapiClient:
    return LapiClient(url, Credentials(KEY, "host-a", PASSWORD), timeout, max_bytes,
                      scenarios=("ips-inline/sqli",))


@pytest.fixture
def lapi():
    with FakeLapi() as fake:
        yield fake


def no_secret(exc: BaseException) -> None:
    text = str(exc)
    assert KEY not in text and PASSWORD not in text and "\n" not in text


def test_stream_sends_the_key_and_startup(lapi: FakeLapi) -> None:
    lapi.json_route("GET", STREAM, {"new": None, "deleted": None})
    c = client(lapi.url)
    assert c.stream(True) == {"new": None, "deleted": None}
    assert c.stream(False) == {"new": None, "deleted": None}
    first, second = lapi.requests
    assert first.headers["x-api-key"] == KEY and first.query == {"startup": ["true"]}
    assert second.query == {}
    assert first.headers["accept-encoding"] == "identity"


@pytest.mark.parametrize(("answer", "error"), [
    ((200, {}, b"<html>not json</html>"), BadAnswer),
    ((200, {}, b'{"new": ['), BadAnswer),
    ((500, {}, b"oops"), ServerError),
    ((502, {}, b""), ServerError),
    ((403, {}, b'{"message":"access forbidden"}'), Denied),
    ((404, {}, b""), Refused),
    ((302, {"Location": "http://127.0.0.1:1/steal"}, b""), BadAnswer),
    ((200, {"Content-Encoding": "gzip"}, gzip.compress(b'{"new":null}')), BadAnswer),
    ((200, {"Content-Length": str(1 << 40)}, b"{}"), BadAnswer),
    ((200, {"Content-Length": "-5"}, b"{}"), BadAnswer),
])
def test_garbage_answers(lapi: FakeLapi, answer: tuple, error: type[LapiError]) -> None:
    lapi.route("GET", STREAM, lambda _r: answer)
    with pytest.raises(error) as info:
        client(lapi.url).stream(True)
    no_secret(info.value)
    assert len(lapi.requests) == 1  # a redirect is not followed: the key stays here


def test_a_huge_answer_without_length_is_cut(lapi: FakeLapi) -> None:
    big = b'{"new": [' + b'{"id": 1},' * 200_000 + b'{}]}'

    lapi.route("GET", STREAM, lambda _r: (200, {}, big))
    with pytest.raises(BadAnswer, match="larger than"):
        client(lapi.url, max_bytes=100_000).stream(True)


def test_deeply_nested_json_is_garbage_not_a_crash(lapi: FakeLapi) -> None:
    lapi.route("GET", STREAM, lambda _r: (200, {}, b"[" * 200_000 + b"]" * 200_000))
    with pytest.raises(BadAnswer, match="not JSON"):
        client(lapi.url).stream(True)


def test_an_answer_cut_short_is_unreachable(lapi: FakeLapi) -> None:
    lapi.route("GET", STREAM, lambda _r: (200, {"Content-Length": "500"}, b'{"new": nu'))
    with pytest.raises(Unreachable):
        client(lapi.url).stream(True)


def test_a_trickling_answer_meets_the_deadline(lapi: FakeLapi) -> None:
    lapi.route("GET", STREAM, lambda _r: Trickle(b'{"new": null, "deleted": null}', 0.1))
    start = time.monotonic()
    with pytest.raises(BadAnswer, match="slower than"):
        client(lapi.url, timeout=0.5).stream(True)
    assert time.monotonic() - start < 1.5


def test_unreachable_and_silent_servers() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(Unreachable) as info:
        client(f"http://127.0.0.1:{port}").stream(True)
    no_secret(info.value)
    assert str(info.value) == "LAPI GET /v1/decisions/stream: Connection refused"
    with socket.socket() as silent:  # accepts, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        start = time.monotonic()
        with pytest.raises(Unreachable):
            client(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.3).stream(True)
        assert time.monotonic() - start < 1.5


def test_proxy_variables_are_ignored(lapi: FakeLapi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:1")
    lapi.json_route("GET", STREAM, {"new": None})
    assert client(lapi.url).stream(False) == {"new": None}


def login_route(lapi: FakeLapi, tokens: list[str]) -> None:
    def login(req):
        body = req.json()
        if body["machine_id"] != "host-a" or body["password"] != PASSWORD:
            return 401, {}, b'{"code":401,"message":"incorrect Username or Password"}'
        return 200, {}, json.dumps({"code": 200, "expire": "2026-12-01T21:27:06Z",
                                    "token": tokens.pop(0)}).encode()
    lapi.route("POST", "/v1/watchers/login", login)


def test_watcher_logs_in_then_pushes_with_the_token(lapi: FakeLapi) -> None:
    login_route(lapi, ["tok1"])
    lapi.json_route("POST", "/v1/alerts", ["17"], status=201)
    lapi.json_route("GET", "/v1/alerts/*", {"id": 17, "decisions": [{"id": 23}, {"id": True}]})
    c = client(lapi.url)
    assert c.post_alerts([{"scenario": "x"}]) == ["17"]
    assert c.alert_decisions("17") == [23]
    login, push, get = lapi.requests
    assert login.json()["scenarios"] == ["ips-inline/sqli"]
    assert push.headers["authorization"] == "Bearer tok1" and push.json() == [{"scenario": "x"}]
    assert get.path == "/v1/alerts/17"


def test_a_401_logs_in_again_once(lapi: FakeLapi) -> None:
    login_route(lapi, ["old", "new"])

    def alerts(req):
        if req.headers["authorization"] == "Bearer old":
            return 401, {}, b'{"code":401,"message":"Token is expired"}'
        return 201, {}, b'["5"]'
    lapi.route("POST", "/v1/alerts", alerts)
    assert client(lapi.url).post_alerts([{}]) == ["5"]
    assert [r.path for r in lapi.requests] == ["/v1/watchers/login", "/v1/alerts",
                                               "/v1/watchers/login", "/v1/alerts"]


def test_wrong_password_is_denied_without_saying_it(lapi: FakeLapi) -> None:
    login_route(lapi, [])
    c = LapiClient(lapi.url, Credentials(KEY, "host-a", "wrong-password"), 2, 1 << 20)
    with pytest.raises(Denied) as info:
        c.post_alerts([{}])
    assert "wrong-password" not in str(info.value)


@pytest.mark.parametrize("answer", [b'{"ids": 1}', b'["1", "2"]', b'[5]', b'["x"]', b"null"])
def test_push_answers_must_be_one_id_per_alert(lapi: FakeLapi, answer: bytes) -> None:
    login_route(lapi, ["t"])
    lapi.route("POST", "/v1/alerts", lambda _r: (201, {}, answer))
    with pytest.raises(BadAnswer):
        client(lapi.url).post_alerts([{}])


@pytest.mark.parametrize("answer", [b'{"token": 5}', b'{"token": ""}', b'[]', b'{}'])
def test_a_login_answer_without_token_is_bad(lapi: FakeLapi, answer: bytes) -> None:
    lapi.route("POST", "/v1/watchers/login", lambda _r: (200, {}, answer))
    with pytest.raises(BadAnswer):
        client(lapi.url).login()


def test_deleting_a_decision_already_gone_is_fine(lapi: FakeLapi) -> None:
    login_route(lapi, ["t"])
    lapi.route("DELETE", "/v1/decisions/*", lambda r: (
        (404, {}, b"{}") if r.path.endswith("/1") else (500, {}, b"{}")))
    c = client(lapi.url)
    c.delete_decision(1)
    with pytest.raises(ServerError):
        c.delete_decision(2)
