#!/usr/bin/env python3
"""Victim web server for the ips-inline lab (stdlib only).

Endpoints:
  /                  small HTML page
  /search?q=TEXT     harmless echo (HTML-escaped)
  /download?size=N   streams N bytes (capped at 256 MiB) for throughput tests
  /item?id=ID        DELIBERATELY SQL-INJECTABLE lookup in an in-memory sqlite3 table:
                     the id is concatenated into the query, sqlite errors are returned as
                     500 with the error text. It exists only so that sqlmap has something
                     to find when no IPS is in the way. Lab use only, never expose it.
  POST (any path)    reads the body (Content-Length, at most 64 MiB) and answers JSON:
                     its byte count and SHA-256, and for multipart/form-data each part's
                     name, filename, size and SHA-256, so a test can tell that an upload
                     arrived whole.

Empty lines before a request line are skipped, as RFC 9112 2.2 asks of servers
(nginx and Apache do so): the lab's server parses what the ones we protect parse.

One log line per request on stderr. Dual-stack by default: binds "::" with
IPV6_V6ONLY off, so it answers on IPv4 and IPv6; --bind 10.x.y.z for IPv4 only.

  scripts/lab.sh exec victim .venv/bin/python scripts/victim_http.py --port 80
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import socket
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_DOWNLOAD = 256 * 1024 * 1024
MAX_UPLOAD = 64 * 1024 * 1024
MAX_EMPTY_LINES = 8  # skipped before a request line
CHUNK = 64 * 1024
ITEMS = [
    (1, "widget", 9.99, "a small widget"),
    (2, "gadget", 24.5, "a useful gadget"),
    (3, "gizmo", 3.75, "a cheap gizmo"),
]
USERS = [(1, "admin", "s3cr3t-admin"), (2, "alice", "hunter2")]

INDEX_HTML = """<!doctype html>
<html><head><title>victim shop</title></head>
<body><h1>victim shop</h1>
<ul>
<li><a href="/item?id=1">item 1</a></li>
<li><a href="/search?q=widget">search</a></li>
<li><a href="/download?size=1048576">1 MiB download</a></li>
</ul></body></html>
"""


class Store:
    """In-memory sqlite3 database shared by all handler threads."""

    def __init__(self) -> None:
        self._db = sqlite3.connect(":memory:", check_same_thread=False)
        self._lock = threading.Lock()
        self._db.executescript(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT, price REAL, descr TEXT);"
            "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, password TEXT);"
        )
        self._db.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", ITEMS)
        self._db.executemany("INSERT INTO users VALUES (?, ?, ?)", USERS)
        self._db.commit()
        # Injection can read everything but change nothing.
        self._db.execute("PRAGMA query_only = ON")

    def item_unsafe(self, raw_id: str) -> list[tuple[object, ...]]:
        # Deliberately vulnerable: string concatenation, no parameter binding.
        query = "SELECT id, name, price, descr FROM items WHERE id = " + raw_id
        with self._lock:
            return self._db.execute(query).fetchall()


class Handler(BaseHTTPRequestHandler):
    server_version = "victim-http/1.0"
    protocol_version = "HTTP/1.1"  # keep-alive for wrk/ab; every reply has Content-Length
    timeout = 30  # idle connections (slowloris) do not hold a thread forever
    store: Store  # set in main()

    def log_message(self, format: str, *args: object) -> None:
        client = self.client_address[0].removeprefix("::ffff:")  # v4-mapped -> plain v4
        sys.stderr.write(f"{self.log_date_time_string()} {client} {format % args}\n")

    def _send(self, code: int, body: str, ctype: str = "text/html; charset=utf-8") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def parse_request(self) -> bool:
        # RFC 9112 2.2: a server SHOULD ignore at least one empty line received
        # before the request line (the base class closes the connection).
        for _ in range(MAX_EMPTY_LINES):
            if self.raw_requestline not in (b"\r\n", b"\n"):
                break
            self.raw_requestline = self.rfile.readline(65537)
        return super().parse_request()

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            self._send(411, "Content-Length required\n", "text/plain")
            return
        if not 0 <= length <= MAX_UPLOAD:
            self._send(413, "body too large\n", "text/plain")
            return
        body = self.rfile.read(length)
        answer = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest(),
                  "content_type": self.headers.get("Content-Type", "")}
        boundary = multipart_boundary(answer["content_type"])
        if boundary:
            answer["parts"] = multipart_parts(body, boundary)
        self._send(200, json.dumps(answer) + "\n", "application/json")

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = parse_qs(url.query, keep_blank_values=True)

        def arg(name: str) -> str | None:
            values = params.get(name)
            return values[0] if values else None

        if url.path == "/":
            self._send(200, INDEX_HTML)
        elif url.path == "/search":
            q = html.escape(arg("q") or "")
            self._send(200, f"<html><body><p>No results for &quot;{q}&quot;.</p></body></html>\n")
        elif url.path == "/download":
            self._download(arg("size"))
        elif url.path == "/item":
            self._item(arg("id"))
        else:
            self._send(404, "<html><body>not found</body></html>\n")

    def _download(self, size_arg: str | None) -> None:
        try:
            size = int(size_arg or "0")
        except ValueError:
            self._send(400, "size must be an integer\n", "text/plain")
            return
        size = max(0, min(size, MAX_DOWNLOAD))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if self.command == "HEAD":
            return
        chunk = b"\0" * CHUNK
        left = size
        try:
            while left > 0:
                n = min(left, CHUNK)
                self.wfile.write(chunk[:n] if n < CHUNK else chunk)
                left -= n
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _item(self, raw_id: str | None) -> None:
        if raw_id is None:
            self._send(400, "missing id\n", "text/plain")
            return
        try:
            rows = self.store.item_unsafe(raw_id)
        except sqlite3.Error as exc:
            # Error text on purpose: error-based SQLi detection (sqlmap) keys on it.
            text = f"{type(exc).__module__}.{type(exc).__name__}: {exc}"
            self._send(500, f"<html><body><pre>{html.escape(text)}</pre></body></html>\n")
            return
        if not rows:
            self._send(404, "<html><body><p>no such item</p></body></html>\n")
            return
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
            for row in rows
        )
        self._send(200, f"<html><body><table>{cells}</table></body></html>\n")


def multipart_boundary(ctype: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type (b"" if none)."""
    kind, _, params = ctype.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        return b""
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            return value.strip('"').encode("latin-1")
    return b""


def multipart_parts(body: bytes, boundary: bytes) -> list[dict[str, object]]:
    """name, filename, size and SHA-256 of each part (RFC 7578 framing)."""
    parts = []
    for chunk in body.split(b"--" + boundary)[1:]:
        if chunk.startswith(b"--"):
            break  # the closing delimiter
        head, sep, content = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            continue
        content = content.removesuffix(b"\r\n")
        disposition = next((line for line in head.decode("latin-1").split("\r\n")
                            if line.lower().startswith("content-disposition:")), "")
        fields = dict(p.strip().partition("=")[::2] for p in disposition.split(";")[1:])
        parts.append({"name": fields.get("name", "").strip('"'),
                      "filename": fields.get("filename", "").strip('"'),
                      "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()})
    return parts


class DualStackServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def make_server(bind: str, port: int) -> DualStackServer:
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    server_cls = type("Server", (DualStackServer,), {"address_family": family})
    handler = type("BoundHandler", (Handler,), {"store": Store()})
    return server_cls((bind, port), handler)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bind", default="::", help='address ("::" = dual-stack, default)')
    ap.add_argument("--port", type=int, default=80)
    args = ap.parse_args(argv)
    server = make_server(args.bind, args.port)
    sys.stderr.write(f"victim_http listening on [{args.bind}]:{args.port}\n")
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
