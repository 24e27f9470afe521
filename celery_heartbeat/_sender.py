"""Background delivery: enqueue is O(1) and never blocks; one daemon thread sends.

Modelled on sentry-python's BackgroundWorker: a thread started lazily (and
again after fork, with fresh locks: a prefork child never inherits a held lock
or its parent's pending pings), a timed flush for shutdown, an idle thread that
exits on its own. Under gevent or eventlet the monkey-patched `threading` makes
the thread a greenlet and the locks cooperative.

Memory is bounded by monitors, not by the task rate: pending pings live in
slots keyed by (URL, kind), and a newer ping replaces an older one in its slot
(counted "coalesced"); a monitor still sees its last event last. Runs stay
whole: once a run's start ping went out (or while it is going out), that run's
finish gets a slot of its own, so no later run can coalesce it away; and a
finish that gives way takes its run's unsent start along. Only runs whose start
reached the endpoint get own slots, so a dead endpoint cannot grow them (they
are capped anyway): per monitor, at most one ping per kind is queued, plus the
finish of a start in flight, plus the ping in flight.

Pings older than `max_age` are dropped (counted): a very late success ping would
make a monitor look healthy at the wrong time. Failure pings never age out.

One thread sends everything, so a sick endpoint must not hold up the others:
network errors back off the whole host (many monitors on it cost one round of
attempts), HTTP errors back off the URL, a long Retry-After backs off its URL
instead of being slept through, and a failed ping goes back behind other
monitors' pings. A flush (or a shutdown that began: `expedite`) cuts backoffs
short and tries each URL once more within its deadline.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Protocol
from urllib.parse import urlsplit

from celery_heartbeat._delivery import DeliveryPolicy, Outcome, Result, deliver
from celery_heartbeat._ping import Ping
from celery_heartbeat._redact import redact
from celery_heartbeat._transport import RequestsTransport, Transport

logger = logging.getLogger("celery_heartbeat")

THREAD_NAME = "celery-heartbeat-sender"

SlotKey = tuple[str, str, str]
"""(URL, kind, run id) for the finish of a run whose start was sent; (URL, kind, "") otherwise."""


class Sender(Protocol):
    """Where hooks hand pings. No method ever blocks the caller for long or raises."""

    def submit(self, ping: Ping) -> bool: ...

    def flush(self, timeout: float) -> bool: ...

    def expedite(self, timeout: float) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def close(self, timeout: float = 0.0) -> None: ...


@dataclass(frozen=True)
class SenderConfig:
    policy: DeliveryPolicy
    #: Pings (other than failures) older than this are dropped instead of sent.
    max_age: float = 600.0
    #: The longest a failing URL is left alone between delivery rounds.
    backoff_max: float = 30.0
    #: What the atexit flush of a plain script waits at most.
    shutdown_timeout: float = 5.0
    #: An idle thread exits after this many seconds (the next ping starts a new one).
    idle_exit: float = 60.0
    #: How many started runs per process are remembered as owed a finish.
    owed_capacity: int = 1000


COUNTERS = ("sent", "failed", "rejected", "retried", "coalesced", "dropped")
"""sent: delivered. failed: a delivery round that ended without success (the ping is kept).
rejected: a 4xx answer (the ping is dropped). retried: extra attempts. coalesced: a
pending ping replaced by a newer one of the same slot. dropped: too old, or closed."""


@dataclass
class _Backoff:
    """When a URL (HTTP errors) or a host (network errors) may be tried again."""

    failing: bool = False
    failures: int = 0
    next_try: float = 0.0
    #: When the last failed delivery *began*: one begun before a flush does not count as its try.
    tried_at: float = 0.0

    def blocked_for(self, now: float, urgent_since: float | None) -> float:
        if self.next_try <= now or (urgent_since is not None and self.tried_at < urgent_since):
            return 0.0
        return self.next_try - now

    def fail(self, began: float, now: float, pause: float) -> None:
        self.failing = True
        self.failures += 1
        self.tried_at = began
        self.next_try = now + pause

    def clear(self) -> None:
        self.failing, self.failures, self.next_try = False, 0, 0.0


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.lower()}"


def _reset_after_fork(ref: weakref.ref[BackgroundSender]) -> Callable[[], None]:
    def reset() -> None:
        sender = ref()
        if sender is not None:
            sender._init_state()

    return reset


class BackgroundSender:
    """The per-process sender. Thread-safe; fork-safe; greenlet-safe under monkey-patching."""

    def __init__(self, config: SenderConfig, transport_factory: Callable[[], Transport] = RequestsTransport) -> None:
        self._config = config
        self._transport_factory = transport_factory
        self._closed = False
        self._atexit_registered = False
        self._init_state()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_after_fork(weakref.ref(self)))

    def _init_state(self) -> None:
        """Fresh state for this process: new locks, nothing pending, no thread yet (closed stays)."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._pending: OrderedDict[SlotKey, Ping] = OrderedDict()
        self._started: OrderedDict[tuple[str, str], None] = OrderedDict()
        # Network errors (refused, timeouts, DNS, TLS) back off the whole host, so many monitors
        # on one sick host cost one round of attempts, not one each; HTTP errors back off the URL.
        self._urls: dict[str, _Backoff] = {}
        self._hosts: dict[str, _Backoff] = {}
        self._in_flight: Ping | None = None
        # A delivery's outcome is recorded but its state-change log line not yet written:
        # flush() waits for it too, so a caller that flushed sees the log that delivery caused.
        self._logging = False
        # Urgency (a flush, or a shutdown that began): backoffs are cut short, attempts end by
        # the latest deadline, and each URL is tried once more even if it is backing off.
        self._flush_ends: list[float] = []
        self._expedite_until = 0.0
        self._urgent_since = 0.0
        self._urgency = 0  # bumped whenever urgency begins: wakes backoff pauses
        self._thread: threading.Thread | None = None
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._submitted = 0
        self._settled = 0
        self._bug_logged = False

    def _check_pid(self) -> None:
        if self._pid != os.getpid():  # forked without register_at_fork having run
            self._init_state()

    # -- producer side (task threads) -------------------------------------------------

    def submit(self, ping: Ping) -> bool:
        """Queue a ping for delivery; False when it was not accepted (closed). Never raises."""
        try:
            self._check_pid()
            with self._lock:
                if self._closed:
                    self._counts["dropped"] += 1
                    return False
                new_slot = self._put(ping)
                self._submitted += 1
                if self._thread is None:
                    self._start()
                elif new_slot:  # a replaced slot is one the thread already knows about
                    self._cond.notify()
            return True
        except RuntimeError:  # no new thread at interpreter shutdown: it stays pending, unsent
            return False
        except Exception:
            self._log_bug()
            return False

    def _owed(self, ping: Ping) -> bool:
        """Whether this is the finish of a run whose start went out (or is going out right now)."""
        if ping.kind == "start" or not ping.run_id:
            return False
        run = (ping.monitor.url, ping.run_id)
        if run in self._started:
            return True
        flying = self._in_flight
        return flying is not None and flying.kind == "start" and (flying.monitor.url, flying.run_id) == run

    @staticmethod
    def _slot(ping: Ping, owed: bool) -> SlotKey:
        return (ping.monitor.url, ping.kind, ping.run_id or "" if owed else "")

    def _put(self, ping: Ping) -> bool:
        """Queue in its slot, replacing an older ping there; True when the slot was empty."""
        key = self._slot(ping, self._owed(ping))
        replaced = self._pending.pop(key, None)
        self._pending[key] = ping
        if replaced is not None:
            self._coalesced(replaced)
        return replaced is None

    def _coalesced(self, loser: Ping) -> None:
        """A ping gave way to a newer one of its slot. A finish takes its run's unsent start along:
        a start must never go out once its own finish cannot."""
        self._counts["coalesced"] += 1
        if loser.kind == "start" or not loser.run_id:
            return
        self._started.pop((loser.monitor.url, loser.run_id), None)
        key: SlotKey = (loser.monitor.url, "start", "")
        start = self._pending.get(key)
        if start is not None and start.run_id == loser.run_id:
            del self._pending[key]
            self._counts["coalesced"] += 1

    def _start(self) -> None:
        thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
        self._thread = thread
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: nothing can be sent any more
            self._thread = None
            raise
        if not self._atexit_registered:
            self._atexit_registered = True
            atexit.register(_at_exit, weakref.ref(self))

    # -- consumer side (the sender thread) --------------------------------------------

    def _run(self) -> None:
        transport: Transport | None = None
        try:
            while True:
                ping = self._take()
                if ping is None:
                    return
                try:
                    if transport is None:
                        transport = self._transport_factory()
                    self._process(transport, ping)
                except Exception:  # never let the thread die: later pings still matter
                    self._log_bug()
                    with self._cond:
                        self._in_flight = None
                        self._cond.notify_all()
        finally:
            if transport is not None:
                try:
                    transport.close()
                except Exception:
                    self._log_bug()

    def _take(self) -> Ping | None:
        """The oldest pending ping whose URL is not backing off; waits for one. None: exit the thread."""
        with self._cond:
            idle_since = time.monotonic()
            while True:
                if self._closed and not self._pending:
                    self._thread = None
                    return None
                now = time.monotonic()
                wait: float | None = None
                for key, ping in self._pending.items():
                    delay = self._blocked_for(ping.monitor.url, now)
                    if delay <= 0:
                        del self._pending[key]
                        self._in_flight = ping
                        return ping
                    wait = delay if wait is None else min(wait, delay)
                if not self._pending:
                    idle = now - idle_since
                    if idle >= self._config.idle_exit:
                        self._thread = None
                        return None
                    wait = self._config.idle_exit - idle
                else:
                    idle_since = now
                self._cond.wait(wait)

    def _deadline(self) -> float | None:
        """When urgent: the monotonic time by which delivery must end; None otherwise."""
        end = max([*self._flush_ends, self._expedite_until])
        return end if end > time.monotonic() else None

    def _become_urgent(self) -> None:
        if self._deadline() is None:
            self._urgent_since = time.monotonic()
        self._urgency += 1

    def _blocked_for(self, url: str, now: float) -> float:
        """Seconds until this URL may be tried again; when urgent, each URL and host once more."""
        urgent_since = self._urgent_since if self._deadline() is not None else None
        delay = 0.0
        for state in (self._urls.get(url), self._hosts.get(_host(url))):
            if state is not None:
                delay = max(delay, state.blocked_for(now, urgent_since))
        return delay

    def _pause(self, seconds: float) -> None:
        """A backoff between attempts, cut short when urgency begins or the sender closes."""
        with self._cond:
            urgency = self._urgency
            self._cond.wait_for(lambda: self._urgency != urgency or self._closed, timeout=seconds)

    def _process(self, transport: Transport, ping: Ping) -> None:
        request = ping.request()
        too_old = ping.kind != "failure" and time.monotonic() - ping.created > self._config.max_age
        if request is None or too_old:
            with self._cond:
                self._in_flight = None
                self._counts["dropped"] += 1
                self._settle_run(ping, delivered=False)
                self._cond.notify_all()
            return
        began = time.monotonic()
        outcome = deliver(
            transport,
            request,
            self._config.policy,
            deadline=self._deadline,
            sleep=self._pause,
        )
        self._record(ping, outcome, began)

    def _record(self, ping: Ping, outcome: Outcome, began: float) -> None:
        url = ping.monitor.url
        message: str | None = None
        with self._cond:
            self._in_flight = None
            self._counts["retried"] += max(0, outcome.attempts - 1)
            state = self._urls.setdefault(url, _Backoff())
            host = self._hosts.setdefault(_host(url), _Backoff())
            if outcome.result is Result.SENT:
                self._counts["sent"] += 1
                if state.failing:
                    message = "celery-heartbeat: %s is answering again (%s)"
                state.clear()
                host.clear()
                self._settle_run(ping, delivered=True)
            elif outcome.result is Result.REJECTED:
                self._counts["rejected"] += 1
                if not state.failing:
                    message = "celery-heartbeat: %s rejected a ping (%s); check the URL, such pings are dropped"
                state.failing = True
                host.clear()  # the host answered
                self._settle_run(ping, delivered=False)
            else:
                self._counts["failed"] += 1
                if not state.failing:
                    message = (
                        "celery-heartbeat: cannot deliver pings to %s (%s); "
                        "tasks are unaffected, pings are kept and retried"
                    )
                # No HTTP status: the host itself is unreachable, whichever URL on it we try.
                backoff = host if outcome.status is None else state
                exponent = min(backoff.failures + 1, 16)
                pause = min(self._config.backoff_max, self._config.policy.backoff_initial * 2.0**exponent)
                pause *= random.uniform(0.75, 1.0)
                if outcome.retry_after is not None:
                    pause = max(pause, min(outcome.retry_after, self._config.max_age))
                backoff.fail(began, time.monotonic(), pause)
                state.failing = True
                self._requeue(ping)
            if message is None:
                self._cond.notify_all()
                return
            self._logging = True
        try:
            status = outcome.error if outcome.error is not None else f"HTTP {outcome.status}"
            logger.warning(message, redact(url), status)  # outside the lock: submit() never waits on logging
        finally:
            with self._cond:
                self._logging = False
                self._cond.notify_all()

    def _requeue(self, ping: Ping) -> None:
        """Keep a ping whose delivery failed, unless a newer one replaced it.

        It goes back ahead of its own URL's newer pings (a monitor sees its events in
        order) but behind other URLs' pings, so monitors sharing a host take turns.
        """
        if ping.kind == "start":
            self._rekey_run(ping, owed=False)  # its finish was held for it: release that again
        if self._closed:
            self._counts["dropped"] += 1
            return
        key = self._slot(ping, self._owed(ping))
        if key in self._pending:
            self._coalesced(ping)
            return
        items = list(self._pending.items())
        url = ping.monitor.url
        at = next((i for i, (_, queued) in enumerate(items) if queued.monitor.url == url), len(items))
        items.insert(at, (key, ping))
        self._pending = OrderedDict(items)

    def _settle_run(self, ping: Ping, *, delivered: bool) -> None:
        """Track which runs are owed a finish: the start went out, the finish did not yet."""
        if not ping.run_id:
            return
        run = (ping.monitor.url, ping.run_id)
        if ping.kind != "start":
            self._started.pop(run, None)
            return
        if not delivered:
            self._rekey_run(ping, owed=False)
            return
        self._started[run] = None
        if len(self._started) > self._config.owed_capacity:
            (old_url, old_run), _ = self._started.popitem(last=False)
            self._rekey(old_url, old_run, owed=False)
        self._rekey_run(ping, owed=True)

    def _rekey_run(self, ping: Ping, *, owed: bool) -> None:
        if ping.run_id:
            self._rekey(ping.monitor.url, ping.run_id, owed=owed)

    def _rekey(self, url: str, run_id: str, *, owed: bool) -> None:
        """Move a run's pending finish between its own slot and the shared one, keeping the order.

        When two pings meet in one slot the newer wins, at the later position.
        """

        def matches(ping: Ping) -> bool:
            return ping.kind != "start" and ping.run_id == run_id and ping.monitor.url == url

        if not any(matches(ping) for ping in self._pending.values()):
            return
        out: OrderedDict[SlotKey, Ping] = OrderedDict()
        losers: list[Ping] = []
        for key, ping in self._pending.items():
            if matches(ping):
                key = self._slot(ping, owed)
            existing = out.pop(key, None)
            if existing is not None:
                newer, older = (existing, ping) if existing.created > ping.created else (ping, existing)
                losers.append(older)
                ping = newer
            out[key] = ping
        self._pending = out
        for loser in losers:
            self._coalesced(loser)

    # -- lifecycle ----------------------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until nothing is pending, at most `timeout` seconds; True when all was delivered.

        Gives up early once every URL still pending failed again during this flush,
        so a dead endpoint costs one round of attempts, not the whole timeout.
        """
        try:
            if self._pid != os.getpid():
                self._init_state()
                return True
            end = time.monotonic() + max(0.0, timeout)
            with self._cond:
                try:
                    return self._flush_locked(end)
                finally:
                    self._settled = self._submitted
        except Exception:
            self._log_bug()
            return False

    def _flush_locked(self, end: float) -> bool:
        if not self._pending and self._in_flight is None and not self._logging:
            return True
        if self._thread is None and not self._closed:
            try:
                self._start()
            except RuntimeError:  # interpreter shutdown: no thread can deliver them now
                return False
        self._become_urgent()
        self._flush_ends.append(end)
        self._cond.notify_all()
        try:
            while self._pending or self._in_flight is not None or self._logging:
                now = time.monotonic()
                if now >= end:
                    return False
                if self._in_flight is None and all(
                    self._blocked_for(ping.monitor.url, now) > 0 for ping in self._pending.values()
                ):
                    return False
                self._cond.wait(end - now)
            return True
        finally:
            self._flush_ends.remove(end)

    def expedite(self, timeout: float) -> None:
        """Deliver everything now, within `timeout`, without waiting: a shutdown has begun.

        Safe inside a signal handler (Celery sends worker_shutting_down from one):
        it never waits for a lock the interrupted code might hold.
        """
        try:
            if self._pid != os.getpid():
                return
            self._become_urgent()
            self._expedite_until = max(self._expedite_until, time.monotonic() + max(0.0, timeout))
            if self._lock.acquire(blocking=False):
                try:
                    self._cond.notify_all()
                finally:
                    self._lock.release()
        except Exception:
            self._log_bug()

    def close(self, timeout: float = 0.0) -> None:
        """Flush for at most `timeout`, then stop the thread; what is still pending is counted dropped."""
        try:
            self.flush(timeout)
            with self._cond:
                self._closed = True
                self._counts["dropped"] += len(self._pending)
                self._pending.clear()
                self._cond.notify_all()
        except Exception:
            self._log_bug()

    def stats(self) -> dict[str, int]:
        """This process's counters, plus `pending` (queued and in flight)."""
        self._check_pid()
        with self._lock:
            out = dict(self._counts)
            out["pending"] = len(self._pending) + (self._in_flight is not None)
        return out

    def _at_exit(self) -> None:
        """Plain scripts: deliver what is left, unless a shutdown flush already had its turn."""
        if self._pid != os.getpid() or self._submitted == self._settled:
            return
        self.flush(self._config.shutdown_timeout)

    def _log_bug(self) -> None:
        if not self._bug_logged:
            self._bug_logged = True
            logger.error("celery-heartbeat: internal error in the sender (tasks are unaffected)", exc_info=True)


def _at_exit(ref: weakref.ref[BackgroundSender]) -> None:
    sender = ref()
    if sender is not None:
        sender._at_exit()
