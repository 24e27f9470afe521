"""JSON over HTTP for provider management APIs: bounded time, a few retries, secrets never shown.

Errors name the method, the redacted URL, the status and the start of the
body (URLs in it redacted, every credential scrubbed out), or for network
errors the ping path's safe wording, so they can be printed and logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from celery_heartbeat._exceptions import ProviderError
from celery_heartbeat._redact import redact
from celery_heartbeat.delivery.retry import RetryPolicy, call
from celery_heartbeat.delivery.transport import RequestsTransport, Response

_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
#: A UUID is a Healthchecks check's ping credential, wherever it appears (error bodies echo paths).
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")


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
        """Cut every configured secret (API keys, ping keys) out of ``text``."""
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
        detail = self.scrub(redact_urls(response.text.strip().replace("\n", " ")))[:200]
        hint = " (is the API key right, and read-write?)" if response.status in (401, 403) else ""
        raise ProviderError(f"{shown}: HTTP {response.status}{hint}: {detail}")


def redact_urls(text: str) -> str:
    """Redact every URL in free text (a response body), then cut any remaining UUID to 4 characters."""
    text = _URL.sub(lambda match: redact(match.group(0)), text)
    return _UUID.sub(lambda match: match.group(0)[:4] + "…", text)
