"""When a URL or a host may be tried again: the background sender's retry policy, as plain data.

No answer at all (refused, timed out, DNS, TLS) backs off the whole host, so
many monitors on one sick host cost one attempt per round, not one each, and
the host drops back to one delivery at a time until it answers again. An HTTP
error (5xx, 429...) backs off only its URL; a Retry-After stretches that pause
(up to `retry_after_max`). A flush or shutdown ("urgency") lets every URL and
host be tried once more at once. The clock and the jitter are injectable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable
from urllib.parse import urlsplit


@lru_cache(maxsize=4096)
def host_of(url: str) -> str:
    """The delivery host: scheme, host and port (deliveries to different ones never wait on each other)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.lower()}"


@dataclass
class Backoff:
    """One URL's or host's state."""

    failing: bool = False
    failures: int = 0
    next_try: float = 0.0
    #: When the last failed attempt *began*: one begun before a flush does not count as its try.
    tried_at: float = 0.0
    #: When the last failure was recorded: attempts begun before it were in flight with it (one round).
    failed_at: float = 0.0

    def blocked_for(self, now: float, urgent_since: float | None) -> float:
        if self.next_try <= now or (urgent_since is not None and self.tried_at < urgent_since):
            return 0.0
        return self.next_try - now

    def fail(self, began: float, now: float, pause: float) -> None:
        self.failing = True
        self.failures += 1
        self.tried_at = began
        self.failed_at = now
        self.next_try = now + pause

    def same_round(self, began: float) -> bool:
        """Whether an attempt that began then was in flight alongside the last recorded failure."""
        return self.failures > 0 and began < self.failed_at

    def clear(self) -> None:
        self.failing, self.failures, self.next_try = False, 0, 0.0


@dataclass(frozen=True)
class BackoffPolicy:
    #: The first pause is about twice this (0.75 to 1 times, jittered); each failure doubles it.
    initial: float = 0.5
    maximum: float = 30.0
    #: The longest Retry-After obeyed (longer ones are cut to it).
    retry_after_max: float = 600.0

    def pause(self, failures: int, retry_after: float | None, jitter: float) -> float:
        """Seconds to leave a URL or host alone after its `failures`-th failure in a row."""
        seconds = min(self.maximum, self.initial * 2.0 ** min(failures, 16)) * (0.75 + 0.25 * jitter)
        if retry_after is not None:
            seconds = max(seconds, min(retry_after, self.retry_after_max))
        return seconds


class Backoffs:
    """Backoff per URL (HTTP errors) and per host (no answer), and which hosts answer at all."""

    def __init__(self, policy: BackoffPolicy, jitter: Callable[[], float] = random.random) -> None:
        self.policy = policy
        self._jitter = jitter
        self.urls: dict[str, Backoff] = {}
        self.hosts: dict[str, Backoff] = {}
        #: Hosts that answered since their last network failure: they may take several deliveries at once.
        self._answering: set[str] = set()

    def url_state(self, url: str) -> Backoff:
        return self.urls.setdefault(url, Backoff())

    def wait(self, url: str, now: float, urgent_since: float | None = None) -> float:
        """Seconds until `url` may be tried again (0: now)."""
        delay = 0.0
        for state in (self.urls.get(url), self.hosts.get(host_of(url))):
            if state is not None:
                delay = max(delay, state.blocked_for(now, urgent_since))
        return delay

    def host_wait(self, host: str, now: float, urgent_since: float | None = None) -> float:
        state = self.hosts.get(host)
        return 0.0 if state is None else state.blocked_for(now, urgent_since)

    def answering(self, host: str) -> bool:
        return host in self._answering

    def answered(self, url: str, *, ok: bool) -> None:
        """An HTTP answer came: the host is fine; a 2xx also clears the URL."""
        host = host_of(url)
        self._answering.add(host)
        state = self.hosts.get(host)
        if state is not None:
            state.clear()
        if ok:
            self.url_state(url).clear()

    def failed(self, url: str, *, answered: bool, began: float, now: float, retry_after: float | None = None) -> float:
        """An attempt failed: back off the URL (HTTP error) or its host (no answer); returns the pause."""
        host = host_of(url)
        if answered:
            self.answered(url, ok=False)
            target = self.url_state(url)
        else:
            self._answering.discard(host)
            target = self.hosts.setdefault(host, Backoff())
        if target.same_round(began) and retry_after is None:  # several attempts at once failed: one round
            target.tried_at = max(target.tried_at, began)
            pause = target.next_try - now
        else:
            pause = self.policy.pause(target.failures + 1, retry_after, self._jitter())
            target.fail(began, now, pause)
        self.url_state(url).failing = True
        return pause
