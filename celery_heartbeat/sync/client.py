"""JSON over HTTP for provider management APIs: bounded time, a few retries, secrets never shown.

Errors name the method, the redacted URL, the status and the start of the
body (URLs in it redacted, every credential scrubbed out), or for network
errors the ping path's safe wording, so they can be printed and logged.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import requests

from celery_heartbeat._delivery import describe_error, retry_after_seconds
from celery_heartbeat._exceptions import ProviderError
from celery_heartbeat._redact import redact
from celery_heartbeat._transport import USER_AGENT

_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+")
#: A UUID is a Healthchecks check's ping credential, wherever it appears (error bodies echo paths).
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")

RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_PAUSE = 5.0


class ApiClient:
    """A `requests.Session` against one API root, with its auth, a timeout and an optional deadline."""

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
        self._session = requests.Session()
        self._session.headers["User-Agent"] = USER_AGENT
        self._session.headers["Accept"] = "application/json"
        if headers:
            self._session.headers.update(headers)
        if auth is not None:
            self._session.auth = auth

    def close(self) -> None:
        self._session.close()

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
        for attempt in range(1, self.attempts + 1):
            timeout = self.timeout
            if self.deadline is not None:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise ProviderError(f"{shown}: out of time")
                timeout = min(timeout, left)
            try:
                response = self._session.request(method, url, params=params, json=body, timeout=timeout)
            except requests.RequestException as exc:
                if attempt == self.attempts:
                    # Never str(exc): requests puts the full URL in it, and /api/v3/checks/<uuid> is a credential.
                    raise ProviderError(f"{shown}: {type(exc).__name__}: {describe_error(exc)}") from None
                self._pause(attempt, None)
                continue
            if response.status_code in ok:
                if not response.content:
                    return None
                try:
                    return response.json()
                except ValueError:
                    raise ProviderError(f"{shown}: HTTP {response.status_code} answered with non-JSON") from None
            if response.status_code in RETRYABLE and attempt < self.attempts:
                self._pause(attempt, retry_after_seconds(response))
                continue
            detail = self.scrub(redact_urls(response.text.strip().replace("\n", " ")))[:200]
            hint = " (is the API key right, and read-write?)" if response.status_code in (401, 403) else ""
            raise ProviderError(f"{shown}: HTTP {response.status_code}{hint}: {detail}")
        raise ProviderError(f"{shown}: no attempt made")  # pragma: no cover - attempts >= 1

    def _pause(self, attempt: int, hinted: float | None) -> None:
        pause = min(MAX_PAUSE, hinted if hinted is not None else 0.25 * 2**attempt)
        if self.deadline is not None:
            pause = min(pause, max(0.0, self.deadline - time.monotonic()))
        time.sleep(pause)


def redact_urls(text: str) -> str:
    """Redact every URL in free text (a response body), then cut any remaining UUID to 4 characters."""
    text = _URL.sub(lambda match: redact(match.group(0)), text)
    return _UUID.sub(lambda match: match.group(0)[:4] + "…", text)
