"""A programmable stand-in for CrowdSec's LAPI on 127.0.0.1, for unit tests of
the client and the agent: garbage, slow, huge and failing answers on demand.
(The end-to-end tests run the real LAPI.) Not a test module.

    with FakeLapi() as lapi:
        lapi.route("GET", "/v1/decisions/stream", lambda req: (200, {}, b'{"new":null}'))
        ... lapi.url ... lapi.requests
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Trickle:
    """Send `body` a few bytes at a time, `pause` seconds apart."""

    body: bytes
    pause: float
    step: int = 1


@dataclass
class FakeLapi:
    routes: dict[tuple[str, str], Callable[[Request], Answer | Trickle]] = field(
        default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def __post_init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length", "0"))
                req = Request(self.command, url.path, parse_qs(url.query),
                              {k.lower(): v for k, v in self.headers.items()},
                              self.rfile.read(length))
                owner.requests.append(req)
                handler = owner.routes.get((req.method, req.path))
                if handler is None and req.method == "GET" and req.path.startswith("/v1/alerts/"):
                    handler = owner.routes.get(("GET", "/v1/alerts/*"))
                if handler is None and req.method == "DELETE":
                    handler = owner.routes.get(("DELETE", "/v1/decisions/*"))
                answer = handler(req) if handler else (404, {}, b'{"message":"no route"}')
                with contextlib.suppress(OSError):  # the client gave up, as some tests want
                    owner._send(self, answer)

            do_GET = do_POST = do_DELETE = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,),
                                        daemon=True)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, answer: Answer | Trickle) -> None:
        if isinstance(answer, Trickle):
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(answer.body)))
            handler.end_headers()
            for i in range(0, len(answer.body), answer.step):
                handler.wfile.write(answer.body[i:i + answer.step])
                handler.wfile.flush()
                time.sleep(answer.pause)
            return
        status, headers, body = answer
        handler.send_response(status)
        for key, value in headers.items():
            handler.send_header(key, value)
        if "Content-Length" not in headers:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def route(self, method: str, path: str, fn: Callable[[Request], Answer | Trickle]) -> None:
        self.routes[(method, path)] = fn

    def json_route(self, method: str, path: str, payload: Any, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.route(method, path, lambda _req: (status, {"Content-Type": "application/json"}, body))

    def hits(self, method: str, prefix: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path.startswith(prefix)]

    def __enter__(self) -> FakeLapi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
