"""The /metrics HTTP endpoint (prometheus_client's threaded WSGI server)."""

from __future__ import annotations

import errno
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from ..config import MetricsConfig


class MetricsError(Exception):
    """The exporter cannot start; the message is one line."""


def serve(cfg: MetricsConfig, registry: CollectorRegistry) -> WSGIServer:
    """Serve `registry` on cfg.listen:cfg.port from a daemon thread.

    Stop with server.shutdown(); server.server_close(). Port 0 picks a free
    port (read server.server_port), which tests use."""
    where = f"[{cfg.listen}]:{cfg.port}" if ":" in cfg.listen else f"{cfg.listen}:{cfg.port}"
    try:
        started = start_http_server(cfg.port, cfg.listen, registry=registry)
    except OSError as exc:  # includes socket.gaierror for a bad listen address
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (node_exporter also defaults to 9100; "
            reason += "set [metrics] port)"
        else:
            reason = exc.strerror or str(exc)
        raise MetricsError(f"cannot serve metrics on {where}: {reason}") from None
    # Recent prometheus-client returns (server, thread); older releases returned None.
    if not isinstance(started, tuple):
        raise MetricsError("prometheus-client too old: start_http_server returned no server")
    return started[0]
