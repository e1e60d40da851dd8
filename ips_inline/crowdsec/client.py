"""A small client for CrowdSec's Local API, on requests.

Bouncer side: `GET /v1/decisions/stream` with the `X-Api-Key` header. Watcher
side: `POST /v1/watchers/login` for a JWT, then `POST /v1/alerts`,
`GET /v1/alerts/{id}` and `DELETE /v1/decisions/{id}` with it; a 401 logs in
again once. Every request is bounded in time and size: a slow, huge or
compressed answer is refused, redirects are not followed (they would carry
the key elsewhere), proxy variables are ignored. Credentials never appear in
an error message. Only the agent's thread uses a client.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
import urllib3

from .. import __version__

_CHUNK = 65536
TOKEN_MARGIN = 60.0  # seconds before the JWT's end at which it is renewed
TOKEN_LIFE = 3600.0  # LAPI's default, when its answer does not say


class LapiError(Exception):
    """A failed exchange; `result` is its metric label, `status` the HTTP code."""

    result = "unreachable"

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(LapiError):
    """No answer: refused, timed out, TLS or DNS failure. Retried."""


class Denied(LapiError):
    """401/403: wrong key or password. Retried (it may be fixed in LAPI)."""

    result = "denied"


class Refused(LapiError):
    """Another 4xx: LAPI will never take this request as it is."""

    result = "refused"


class ServerError(LapiError):
    """5xx: LAPI is there but failing. Retried."""

    result = "server_error"


class BadAnswer(LapiError):
    """An answer that is not the JSON expected, too large or too slow."""

    result = "invalid"


@dataclass
class Credentials:
    api_key: str = ""
    machine_id: str = ""
    password: str = ""


class LapiClient:
    def __init__(self, url: str, creds: Credentials, timeout: float, max_bytes: int,
                 ca_file: str = "", scenarios: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.monotonic,
                 session: requests.Session | None = None) -> None:
        self.base = url.rstrip("/")
        self.creds = creds
        self.scenarios = list(scenarios)  # announced at login, as agents do
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.clock = clock
        self.session = session or requests.Session()
        self.session.trust_env = False  # no proxy variables, no .netrc
        self.session.headers.update({"User-Agent": f"ips-inline/{__version__}",
                                     "Accept-Encoding": "identity"})
        self.verify: bool | str = ca_file or True
        self._token = ""
        self._token_until = 0.0

    # -- bouncer ---------------------------------------------------------------
    def stream(self, startup: bool) -> Any:
        params = {"startup": "true"} if startup else None
        return self._call("GET", "/v1/decisions/stream", params=params,
                          headers={"X-Api-Key": self.creds.api_key})

    # -- watcher ---------------------------------------------------------------
    def login(self) -> None:
        answer = self._call("POST", "/v1/watchers/login", body={
            "machine_id": self.creds.machine_id, "password": self.creds.password,
            "scenarios": self.scenarios})
        token = answer.get("token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token or len(token) > 8192:
            raise BadAnswer("LAPI login answer has no token")
        self._token = token
        self._token_until = self.clock() + TOKEN_LIFE - TOKEN_MARGIN

    def post_alerts(self, alerts: list[dict]) -> list[str]:
        ids = self._jwt("POST", "/v1/alerts", body=alerts)
        if not isinstance(ids, list) or len(ids) != len(alerts) or not all(
                isinstance(i, str) and i.isdigit() and len(i) < 20 for i in ids):
            raise BadAnswer("LAPI answered an alert push without one id per alert")
        return ids

    def alert_decisions(self, alert_id: str) -> list[int]:
        """The decision ids LAPI made of one of our alerts."""
        alert = self._jwt("GET", f"/v1/alerts/{int(alert_id)}")
        decisions = alert.get("decisions") if isinstance(alert, dict) else None
        if not isinstance(decisions, list):
            raise BadAnswer("LAPI alert has no decision list")
        return [d["id"] for d in decisions if isinstance(d, dict) and isinstance(d.get("id"), int)
                and not isinstance(d.get("id"), bool)]

    def heartbeat(self) -> None:
        """What a watcher that has nothing to push does, so LAPI (and
        lapi_up) knows it is alive."""
        self._jwt("GET", "/v1/heartbeat")

    def delete_decision(self, decision_id: int) -> None:
        """Delete one decision; one already gone is fine."""
        try:
            self._jwt("DELETE", f"/v1/decisions/{int(decision_id)}")
        except Refused as exc:
            if exc.status != 404:
                raise

    def close(self) -> None:
        self.session.close()

    # -- internals -------------------------------------------------------------
    def _jwt(self, method: str, path: str, body: Any = None) -> Any:
        if not self._token or self.clock() >= self._token_until:
            self.login()
        try:
            return self._call(method, path, body=body, headers=self._bearer())
        except Denied as exc:
            if exc.status != 401:
                raise
        self.login()  # expired or revoked: once more
        return self._call(method, path, body=body, headers=self._bearer())

    def _bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _call(self, method: str, path: str, *, params: dict | None = None,
              headers: dict | None = None, body: Any = None) -> Any:
        start = self.clock()
        try:
            resp = self.session.request(method, self.base + path, params=params,
                                        headers=headers, json=body, stream=True,
                                        timeout=(self.timeout, self.timeout),
                                        allow_redirects=False, verify=self.verify)
        except (requests.RequestException, OSError) as exc:  # OSError: e.g. a CA file gone
            raise Unreachable(f"LAPI {method} {path}: {_reason(exc)}") from None
        try:
            raw = self._read(resp, start, f"{method} {path}")
        finally:
            resp.close()
        _check_status(resp.status_code, f"{method} {path}")
        try:
            return json.loads(raw) if raw else None
        except (ValueError, RecursionError):  # RecursionError: [[[[... nested deep
            raise BadAnswer(f"LAPI {method} {path}: answer is not JSON") from None

    def _read(self, resp: requests.Response, start: float, what: str) -> bytes:
        if resp.headers.get("Content-Encoding", "identity").lower() != "identity":
            raise BadAnswer(f"LAPI {what}: compressed answer refused")
        length = resp.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > self.max_bytes:
            raise BadAnswer(f"LAPI {what}: answer larger than {self.max_bytes} bytes")
        chunks, size = [], 0
        try:
            # read1: one socket read per call, so a server trickling bytes
            # meets the deadline check instead of holding one read() open.
            while chunk := resp.raw.read1(_CHUNK, decode_content=False):
                size += len(chunk)
                if size > self.max_bytes:
                    raise BadAnswer(f"LAPI {what}: answer larger than {self.max_bytes} bytes")
                if self.clock() - start > self.timeout:
                    raise BadAnswer(f"LAPI {what}: answer slower than {self.timeout:g}s")
                chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError,
                http.client.HTTPException, OSError) as exc:  # cut short, reset, timed out
            raise Unreachable(f"LAPI {what}: {_reason(exc)}") from None
        return b"".join(chunks)


def _check_status(code: int, what: str) -> None:
    if 200 <= code < 300:
        return
    if code in (401, 403):
        raise Denied(f"LAPI {what}: HTTP {code} (check the key or machine password)", code)
    if 400 <= code < 500:
        raise Refused(f"LAPI {what}: HTTP {code}", code)
    if code >= 500:
        raise ServerError(f"LAPI {what}: HTTP {code}", code)
    raise BadAnswer(f"LAPI {what}: HTTP {code}", code)  # 1xx, or a redirect not followed


def _reason(exc: BaseException) -> str:
    """The root cause in a few words ("Connection refused", "timed out"):
    requests wraps it in layers whose messages repeat the URL at length."""
    root = exc
    for _ in range(8):
        inner = (getattr(root, "reason", None) or root.__cause__ or root.__context__
                 or next((a for a in root.args if isinstance(a, BaseException)), None))
        if not isinstance(inner, BaseException):
            break
        root = inner
    if isinstance(root, OSError) and root.strerror:
        return root.strerror
    text = str(root).splitlines()[0] if str(root) else ""
    return f"{type(root).__name__}: {text[:120]}" if text else type(root).__name__
