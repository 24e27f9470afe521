"""The HTTP transport: one method, so tests and users can swap it (shape borrowed from httpx)."""

from __future__ import annotations

from typing import Protocol

import requests

from celery_heartbeat.config.providers import WireRequest

USER_AGENT = "celery-heartbeat"


class Transport(Protocol):
    """Sends one request; raises on network errors; returns the response for any HTTP status."""

    def send(self, request: WireRequest, timeout: float) -> requests.Response: ...

    def close(self) -> None: ...


class RequestsTransport:
    """A keep-alive `requests.Session`, created on first use in the thread that sends.

    Not shared between threads: the background sender gives each of its
    threads its own transport, so a session never crosses a fork either.
    """

    def __init__(self) -> None:
        self._session: requests.Session | None = None

    def send(self, request: WireRequest, timeout: float) -> requests.Response:
        if self._session is None:
            self._session = requests.Session()
            self._session.headers["User-Agent"] = USER_AGENT
        response = self._session.request(
            request.method, request.url, data=request.body, timeout=timeout, allow_redirects=True
        )
        # The body is already read (no streaming): this hands the connection back to the pool.
        response.close()
        return response

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
