"""JSON over HTTP for provider management APIs: bounded time, a few retries, secrets never shown.

Errors name the method, the redacted URL, the status and the start of the
body, with every credential scrubbed out, so they can be printed and logged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from celery_heartbeat._exceptions import ProviderError
from celery_heartbeat._redact import redact
from celery_heartbeat.delivery.retry import RetryPolicy, call
from celery_heartbeat.delivery.transport import RequestsTransport, Response


class ApiClient:
    """A keep-alive session against one API root, with its auth, a timeout and an optional deadline.

    Retries go through the library's one retry engine (`delivery.retry`), as pings sent now do.
    """

    def __init__(
        self,
        root: str,
        *,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        timeout: float = 5.0,
        attempts: int = 3,
        secrets: Sequence[str] = (),
        deadline: float | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.deadline = deadline
        self._secrets = [s for s in secrets if s]
        self._policy = RetryPolicy(timeout=timeout, max_attempts=self.attempts, backoff_initial=0.25)
        self._transport = RequestsTransport(headers={"Accept": "application/json", **(headers or {})}, auth=auth)

    def close(self) -> None:
        self._transport.close()

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, secret[:4] + "…")
        return text

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        ok: Sequence[int] = (200, 201, 204),
    ) -> Any:
        """Send, retrying network errors, 5xx and 429; return the parsed JSON (None when empty)."""
        url = self.root + path
        shown = f"{method} {self.scrub(redact(url))}"

        def attempt(timeout: float) -> Response:
            return self._transport.request(method, url, params=params, json=body, timeout=timeout)

        tried = call(attempt, self._policy, deadline=self.deadline)
        response = tried.response
        if response is None:
            error = tried.error
            reason = "out of time" if tried.attempts == 0 or error is None else f"{error.name}: {error.description}"
            raise ProviderError(f"{shown}: {reason}")
        if response.status in ok:
            if not response.content:
                return None
            try:
                return response.json()
            except ValueError:
                raise ProviderError(f"{shown}: HTTP {response.status} answered with non-JSON") from None
        detail = self.scrub(response.text.strip().replace("\n", " "))[:200]
        hint = " (is the API key right, and read-write?)" if response.status in (401, 403) else ""
        raise ProviderError(f"{shown}: HTTP {response.status}{hint}: {detail}")
