"""HTTP: the one place that touches `requests`, returning the library's own small response type.

A transport has one job (shape borrowed from httpx): send a request, return a
`Response` for any HTTP status, raise `TransportError` (with words safe to log:
never the URL, a secret) when no answer came. Everything above it (retries,
backoff, the background sender) never sees a `requests` object.
"""

from __future__ import annotations

import email.utils
import json
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import requests

from celery_heartbeat._exceptions import TransportError
from celery_heartbeat.config.providers import WireRequest

USER_AGENT = "celery-heartbeat"


@dataclass(frozen=True)
class Response:
    """What an endpoint answered: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)

    @property
    def retry_after(self) -> float | None:
        """Seconds from a Retry-After header (delta or HTTP date), if any."""
        value = self.headers.get("retry-after")
        if not value:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        return max(0.0, when.timestamp() - time.time())


class Transport(Protocol):
    """Sends one request; raises TransportError when no answer came; returns any HTTP status."""

    def send(self, request: WireRequest, timeout: float) -> Response: ...

    def close(self) -> None: ...


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes, contexts and wrapped reasons (urllib3 nests them deeply)."""
    seen: set[int] = set()
    todo = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(nested, BaseException):
                todo.append(nested)
        todo.extend(arg for arg in current.args if isinstance(arg, BaseException))


def describe_error(exc: BaseException) -> str:
    """What went wrong, in words safe to log (exception messages carry the URL, a secret)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    for cause in _causes(exc):
        if isinstance(cause, (ssl.SSLError, requests.exceptions.SSLError)):
            return "TLS error"
        if isinstance(cause, socket.gaierror) or type(cause).__name__ == "NameResolutionError":
            return "host name not resolved"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, (ConnectionResetError, BrokenPipeError)):
            return "connection reset"
        if type(cause).__name__ in ("RemoteDisconnected", "ProtocolError", "BadStatusLine"):
            return "connection closed mid-response"
        if isinstance(cause, (socket.timeout, TimeoutError)):
            return "timed out"
    return type(exc).__name__


class RequestsTransport:
    """A keep-alive `requests.Session`, created on first use in the thread that sends.

    Not shared between threads: each of the background sender's worker threads
    owns one, so connections are reused per thread and never cross a fork.
    """

    def __init__(self, *, headers: Mapping[str, str] | None = None, auth: tuple[str, str] | None = None) -> None:
        self._headers = dict(headers or {})
        self._auth = auth
        self._session: requests.Session | None = None

    def send(self, request: WireRequest, timeout: float) -> Response:
        return self.request(request.method, request.url, timeout=timeout, data=request.body)

    def request(
        self,
        method: str,
        url: str,
        *,
        timeout: float,
        data: bytes | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Response:
        """One HTTP exchange; raises TransportError (safe to log) when no answer came."""
        if self._session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            session.headers.update(self._headers)
            if self._auth is not None:
                session.auth = self._auth
            self._session = session
        try:
            answer = self._session.request(
                method, url, data=data, json=json, params=params, timeout=timeout, allow_redirects=True
            )
            content = answer.content
        except requests.RequestException as exc:
            raise TransportError(type(exc).__name__, describe_error(exc)) from None
        # The body is read (no streaming): closing hands the connection back to the pool.
        answer.close()
        headers = {key.lower(): value for key, value in answer.headers.items()}
        return Response(answer.status_code, headers, content)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
