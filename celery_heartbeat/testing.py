"""Test helpers: a real local HTTP server that records heartbeat pings.

Test your own wiring the way production runs it, over real HTTP, instead of
mocking the sender::

    from celery_heartbeat.testing import PingReceiver

    with PingReceiver() as receiver:
        celery_heartbeat.install(app, urls={"proj.nightly_report": receiver.url("nightly-report")})
        nightly_report.delay()
        (ping,) = receiver.wait_for(1, name="nightly-report")
        assert "GET" == ping.method  # a success ping is a plain GET (a failure may POST a body)

    # Make the monitoring service slow, failing or flaky:
    receiver.respond(429, headers={"Retry-After": "1"})
    receiver.respond(200, delay=2.0, name="slow-monitor")
    receiver.reset_connections()
    receiver.healthy()

With pytest, enable the ``heartbeat_receiver`` fixture (a started receiver,
stopped after the test)::

    pytest_plugins = ["celery_heartbeat.testing"]

    def test_report_pings(heartbeat_receiver):
        ...

Importing this module does not need pytest; the fixture exists only when
pytest is installed.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

try:
    import pytest
except ImportError:  # pragma: no cover - exercised only without pytest
    pytest = None  # type: ignore[assignment]

__all__ = ["Ping", "PingReceiver"]

_NOT_SUCCESS_SEGMENTS = frozenset({"start", "fail"})
_NOT_SUCCESS_STATES = frozenset({"run", "fail"})


@dataclass(frozen=True)
class Ping:
    """One HTTP request as the receiver saw it, whatever it answered."""

    method: str
    #: The raw request path without the query string, e.g. ``"/abc/start"``.
    path: str
    #: The parsed query string; when a key repeats, the last value wins.
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]
    #: ``time.time()`` when the request arrived (before any injected delay).
    time: float
    #: The status answered; ``0`` when the connection was reset instead.
    status: int = 200
    #: The query string exactly as received (without the ``?``).
    raw_query: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        """The monitor name: the first path segment (``"abc"`` for ``"/abc/start"``)."""
        return self.path.lstrip("/").split("/", 1)[0]

    @property
    def target(self) -> str:
        """The request target as received: path plus ``?query`` when there was one."""
        return f"{self.path}?{self.raw_query}" if self.raw_query else self.path

    def header(self, name: str, default: str | None = None) -> str | None:
        """A request header looked up case-insensitively, as HTTP defines them."""
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return default

    @property
    def is_success(self) -> bool:
        """Whether a monitoring service would count this as a "job succeeded" ping.

        Not a start or failure signal (``/<name>/start``, ``/<name>/fail``,
        ``?state=run|fail``, ``?status=down``, Dead Man's Snitch's ``?s=<non-zero>``),
        and answered with a 2xx.
        """
        segments = self.path.lstrip("/").split("/")
        if len(segments) > 1 and segments[1] in _NOT_SUCCESS_SEGMENTS:
            return False
        if self.query.get("state") in _NOT_SUCCESS_STATES:
            return False
        if self.query.get("status") == "down":
            return False
        if self.query.get("s", "0") != "0":  # Dead Man's Snitch: s is an exit status, non-zero failed
            return False
        return 200 <= self.status < 300


@dataclass(frozen=True)
class _Response:
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"OK"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: PingReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: clients hanging up mid-request are what fault tests do."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.receiver._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean: no access log on stderr."""

    def do_GET(self) -> None:
        self.server.receiver._handle(self)

    do_POST = do_GET
    do_HEAD = do_GET
    do_PUT = do_GET

    def read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def reset(self) -> None:
        """Write half a status line, then close with SO_LINGER 0 so the peer gets a RST."""
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 5")
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The rfile holds a reference to the socket: close both so the fd really closes now.
        self.rfile.close()
        self.connection.close()

    def answer(self, response: _Response) -> None:
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, value)
        no_body = response.status in (204, 304) or response.status < 200
        if not no_body:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if not no_body and self.command != "HEAD":
            self.wfile.write(response.body)
        self.wfile.flush()


class PingReceiver:
    """A real HTTP server on localhost that records every ping and can misbehave on demand.

    Every request that arrives is recorded in :attr:`pings`, whatever the
    answer (slow, failing or reset), so tests can assert on retries too.
    Fault injection (:meth:`respond`, :meth:`reset_connections`,
    :meth:`healthy`) is thread-safe and applies to requests arriving after
    the call.
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._requested_port = port
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._pings: list[Ping] = []
        self._responses: dict[str | None, _Response] = {None: _Response()}
        self._resets: dict[str | None, bool] = {None: False}
        self._connections: set[socket.socket] = set()
        self._accepted = 0
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> PingReceiver:
        """Bind and serve on a daemon thread; a no-op when already running."""
        with self._lock:
            if self._server is not None:
                return self
            server = _Server((self._host, self._requested_port), _Handler)
            server.receiver = self
            self._stopping.clear()
            self._server = server
            self._started_at = time.time()
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"PingReceiver:{server.server_address[1]}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake delayed handlers and drop kept-alive connections; idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            connections = list(self._connections)
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout=5.0)

    def __enter__(self) -> PingReceiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the free one picked when constructed with ``port=0``)."""
        server = self._server
        if server is None:
            raise RuntimeError("PingReceiver is not started; call start() or use it as a context")
        return int(server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT``, without a trailing slash."""
        return f"http://{self._host}:{self.port}"

    def url(self, name: str) -> str:
        """The ping URL for the monitor ``name``: its pings are found by ``pings_for(name)``."""
        return f"{self.base_url}/{name}"

    @property
    def started_at(self) -> float | None:
        """``time.time()`` of the last :meth:`start`, or ``None`` if never started."""
        return self._started_at

    @property
    def connections_accepted(self) -> int:
        """How many TCP connections were accepted: shows whether clients reuse keep-alive ones."""
        with self._lock:
            return self._accepted

    # -- recorded pings ------------------------------------------------------

    @property
    def pings(self) -> list[Ping]:
        """A snapshot copy of every ping so far, in arrival order."""
        with self._lock:
            return list(self._pings)

    def pings_for(self, name: str) -> list[Ping]:
        """The pings for one monitor (whose :attr:`Ping.name` is ``name``)."""
        return [ping for ping in self.pings if ping.name == name]

    def clear(self) -> None:
        """Forget the pings recorded so far (fault injection settings stay)."""
        with self._lock:
            self._pings.clear()

    def wait_for(
        self,
        count: int = 1,
        *,
        name: str | None = None,
        predicate: Callable[[Ping], bool] | None = None,
        timeout: float = 10.0,
    ) -> list[Ping]:
        """Wait until at least ``count`` matching pings arrived and return all matching so far.

        Pings are delivered on a background thread, so tests wait rather than
        assert immediately. Raises ``AssertionError`` on timeout, listing what
        did arrive, so a failing test says why.
        """

        def matching() -> list[Ping]:
            return [
                ping
                for ping in self._pings
                if (name is None or ping.name == name) and (predicate is None or predicate(ping))
            ]

        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                found = matching()
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    arrived = list(self._pings)
                    break
                self._arrived.wait(remaining)
        wanted = f"{count} ping(s)" + (f" for {name!r}" if name is not None else "")
        if predicate is not None:
            wanted += " matching the predicate"
        summary = ", ".join(f"{p.method} {p.target} -> {p.status}" for p in arrived[:20])
        if len(arrived) > 20:
            summary += f", ... ({len(arrived) - 20} more)"
        raise AssertionError(
            f"expected {wanted} within {timeout}s, {len(found)} matched; {len(arrived)} arrived: [{summary}]"
        )

    # -- fault injection -----------------------------------------------------

    def respond(
        self,
        status: int = 200,
        *,
        delay: float = 0.0,
        headers: dict[str, str] | None = None,
        body: bytes = b"OK",
        name: str | None = None,
    ) -> None:
        """Set the answer: for every monitor (``name=None``) or for one monitor only.

        ``delay`` sleeps before answering, to simulate latency or a hang past
        the client's timeout; :meth:`stop` wakes it early.
        """
        response = _Response(status=status, delay=delay, headers=dict(headers or {}), body=body)
        with self._lock:
            self._responses[name] = response

    def reset_connections(self, enabled: bool = True, *, name: str | None = None) -> None:
        """Reset the connection mid-response instead of answering (after any ``delay``).

        The server reads the whole request, writes part of a status line and
        closes with a TCP RST: what a crashing proxy looks like to the client.
        Such pings are recorded with ``status == 0``.
        """
        with self._lock:
            self._resets[name] = enabled

    def healthy(self) -> None:
        """Back to ``200 OK`` with no delay and no resets, for every monitor."""
        with self._lock:
            self._responses = {None: _Response()}
            self._resets = {None: False}

    # -- late judgement ------------------------------------------------------

    def last_ping_time(self, name: str) -> float | None:
        """When the last ping of any kind (start, fail or success) for ``name`` arrived."""
        pings = self.pings_for(name)
        return pings[-1].time if pings else None

    def last_success_time(self, name: str) -> float | None:
        """When the last success ping (see :attr:`Ping.is_success`) for ``name`` arrived."""
        times = [ping.time for ping in self.pings_for(name) if ping.is_success]
        return times[-1] if times else None

    def is_late(
        self,
        name: str,
        *,
        period: float,
        grace: float,
        now: float | None = None,
        since: float | None = None,
    ) -> bool:
        """Judge the monitor the way a heartbeat monitoring service would.

        Late when the last success ping (:attr:`Ping.is_success`: answered 2xx
        and not a start/fail signal) arrived strictly more than
        ``period + grace`` seconds before ``now`` (default ``time.time()``);
        exactly ``period + grace`` after it is still on time. Pings after
        ``now`` are ignored. With no success ping at all, late when
        ``now - since > period + grace``, ``since`` defaulting to the
        receiver's start time.
        """
        if now is None:
            now = time.time()
        successes = [p.time for p in self.pings_for(name) if p.is_success and p.time <= now]
        if successes:
            return now - max(successes) > period + grace
        if since is None:
            since = self._started_at
        if since is None:
            raise RuntimeError("PingReceiver was never started: pass since= explicitly")
        return now - since > period + grace

    # -- server side ---------------------------------------------------------

    def _track(self, connection: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._accepted += 1
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def _handle(self, handler: _Handler) -> None:
        arrived = time.time()
        body = handler.read_body()
        path, _, raw_query = handler.path.partition("?")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        name = path.lstrip("/").split("/", 1)[0]
        with self._lock:
            response = self._responses.get(name, self._responses[None])
            reset = self._resets.get(name, self._resets[None])
            ping = Ping(
                method=handler.command,
                path=path,
                query=query,
                body=body,
                headers=dict(handler.headers.items()),
                time=arrived,
                status=0 if reset else response.status,
                raw_query=raw_query,
            )
            self._pings.append(ping)
            self._arrived.notify_all()
        if response.delay > 0 and self._stopping.wait(response.delay):
            handler.close_connection = True
            return
        if reset:
            handler.reset()
        else:
            handler.answer(response)


if pytest is not None:

    @pytest.fixture
    def heartbeat_receiver() -> Iterator[PingReceiver]:
        """A started :class:`PingReceiver`, stopped after the test."""
        with PingReceiver() as receiver:
            yield receiver

    __all__ += ["heartbeat_receiver"]
