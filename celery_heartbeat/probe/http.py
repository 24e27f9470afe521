"""`GET /livez` and `GET /readyz` from the worker itself (`heartbeat_probe_port`).

Answers from the writer thread's latest snapshot with the same verdict as the
command, so no broker round trip and no file is needed. 200 or 503 with a
compact JSON body; `?max_age=S` overrides the default maximum age. A frozen
worker does not answer at all, which an HTTP probe counts as a failure.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from celery_heartbeat.probe.verdict import DEFAULT_MAX_AGE, Verdict

Latest = Callable[[], Optional[Any]]
Judge = Callable[[Any, float, float], Verdict]


def answer(path: str, latest: Any, judge: Judge, now: float) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) for one request path; 404 for anything but /livez and /readyz."""
    url = urlsplit(path)
    if url.path not in ("/livez", "/readyz"):
        return 404, {"status": "not_found"}
    try:
        max_age = float(parse_qs(url.query).get("max_age", [DEFAULT_MAX_AGE])[0])
    except ValueError:
        return 400, {"status": "bad_request", "reason": "max_age must be a number of seconds"}
    if latest is None:
        return 503, {"status": "no_state", "reason": "no state yet"}
    verdict = judge(latest, now, max_age)
    ok = verdict.live if url.path == "/livez" else verdict.ready
    status = "ok" if ok else "not_live" if not verdict.live else "not_ready"
    body: dict[str, Any] = {"status": status, "live": verdict.live, "ready": verdict.ready, "reason": verdict.reason}
    node = getattr(latest, "node", None)
    if node is not None:
        body["node"] = node
    return (200 if ok else 503), body


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a probe that gave up (closed its socket) is no error worth a traceback


class ProbeServer:
    """A small threaded HTTP server on all interfaces (Kubernetes probes the pod IP)."""

    def __init__(self, port: int, latest: Latest, judge: Judge, host: str = "") -> None:
        self.port = port
        self.host = host
        self.latest = latest
        self.judge = judge
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        server_self = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code, body = answer(self.path, server_self.latest(), server_self.judge, time.monotonic())
                data = json.dumps(body, separators=(",", ":")).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a probe every few seconds is not worth a log line

        self._server = _Server((self.host, self.port), Handler)
        self.port = self._server.server_address[1]
        thread = threading.Thread(target=self._server.serve_forever, name="celery-heartbeat-probe-http", daemon=True)
        thread.start()

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
