"""The per-process background sender: submit is O(1) and never blocks; a few threads deliver.

Modelled on sentry-python's BackgroundWorker: threads started lazily (and again
after fork, with fresh locks: a prefork child never inherits a held lock or its
parent's pending pings), a timed flush for shutdown, idle threads that exit on
their own. Under gevent or eventlet the monkey-patched `threading` makes the
threads greenlets and the locks cooperative.

One dispatcher thread decides what goes next (`PendingBook`: per-monitor order,
coalescing; `Backoffs`: when a URL or host may be tried again) and hands one
attempt at a time to worker threads, each with its own keep-alive transport:
- at most one ping per monitor in flight, so a monitor sees its events in order;
- at most `concurrency` (8) fresh attempts at once, to one host or many, and at
  most that many per host; an attempt running longer than `slow_after` (1 s)
  stops counting, so a hanging host holds up other hosts' pings by at most that
  long. `max_threads` (24) bounds the total: two hosts that stop answering in
  the middle of a burst hold 8 threads each until their attempts time out;
- a host that has not answered yet (or stopped answering) gets one attempt at a
  time until it answers, so a dead host costs one attempt (and holds one thread)
  per backoff round;
- one attempt per turn: a failed ping waits out its backoff at the head of its
  monitor's queue while other monitors go on, never slept through inline.
A flush (or a shutdown that began: `expedite`) cuts backoffs short and tries each
URL and host once more within its deadline.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

from celery_heartbeat._exceptions import TransportError
from celery_heartbeat._redact import redact
from celery_heartbeat.delivery.backoff import BackoffPolicy, Backoffs, host_of
from celery_heartbeat.delivery.book import Entry, PendingBook
from celery_heartbeat.delivery.outcome import Result, classify
from celery_heartbeat.delivery.ping import Ping
from celery_heartbeat.delivery.transport import RequestsTransport, Response, Transport

logger = logging.getLogger("celery_heartbeat")

THREAD_NAME = "celery-heartbeat-sender"


class Sender(Protocol):
    """Where hooks hand pings. No method ever blocks the caller for long or raises."""

    def submit(self, ping: Ping) -> bool: ...

    def flush(self, timeout: float) -> bool: ...

    def expedite(self, timeout: float) -> None: ...

    def stats(self) -> dict[str, int]: ...

    def close(self, timeout: float = 0.0) -> None: ...


@dataclass(frozen=True)
class SenderConfig:
    #: Seconds for one HTTP attempt (connect and each read).
    timeout: float = 5.0
    #: The first retry of a failing URL or host comes after about twice this; each failure doubles it.
    backoff_initial: float = 0.5
    #: The longest a failing URL or host is left alone between attempts.
    backoff_max: float = 30.0
    #: Pings (other than failures) older than this are dropped instead of sent.
    max_age: float = 600.0
    #: What the atexit flush of a plain script waits at most.
    shutdown_timeout: float = 5.0
    #: An idle thread exits after this many seconds (the next ping starts a new one).
    idle_exit: float = 60.0
    #: How many started runs per process are remembered as owed a finish.
    owed_capacity: int = 1000
    #: Attempts in flight at once (younger than `slow_after`), to one host or several.
    concurrency: int = 8
    #: Worker threads at most, counting those stuck on slow attempts.
    max_threads: int = 24
    #: An attempt older than this no longer holds a place among the `concurrency`.
    slow_after: float = 1.0


COUNTERS = ("sent", "failed", "rejected", "retried", "coalesced", "dropped")
"""sent: delivered. failed: an attempt without success (the ping is kept). rejected: a 4xx
answer (the ping is dropped). retried: attempts after a ping's first. coalesced: a pending
ping replaced by a newer one of the same slot. dropped: too old, or closed."""


@dataclass(eq=False)
class _Job:
    entry: Entry
    host: str
    started: float


@dataclass(frozen=True)
class _Answer:
    response: Response | None
    error: str | None
    began: float
    sendable: bool = True


def _reset_after_fork(ref: weakref.ref[BackgroundSender]) -> Callable[[], None]:
    def reset() -> None:
        sender = ref()
        if sender is not None:
            sender._init_state()

    return reset


class BackgroundSender:
    """The per-process sender. Thread-safe; fork-safe; greenlet-safe under monkey-patching."""

    def __init__(
        self,
        config: SenderConfig,
        transport_factory: Callable[[], Transport] = RequestsTransport,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._transport_factory = transport_factory
        self._clock = clock
        self._closed = False
        self._atexit_registered = False
        self._init_state()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_reset_after_fork(weakref.ref(self)))

    def _init_state(self) -> None:
        """Fresh state for this process: new locks, nothing pending, no threads yet (closed stays)."""
        config = self._config
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the dispatcher waits here
        self._work = threading.Condition(self._lock)  # idle workers wait here
        self._changed = threading.Condition(self._lock)  # flush waits here
        self._book = PendingBook(max_age=config.max_age, owed_capacity=config.owed_capacity, clock=self._clock)
        policy = BackoffPolicy(config.backoff_initial, config.backoff_max, retry_after_max=config.max_age)
        self._backoffs = Backoffs(policy)
        self._jobs: deque[_Job] = deque()  # dispatched, not yet picked up by a worker
        self._flights: set[_Job] = set()  # dispatched and not yet recorded
        self._host_busy: dict[str, int] = {}
        self._dispatcher: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        # Workers that will look at `_jobs` before they wait or exit: idle ones, new ones, and
        # those just done with an attempt. A job is handed to one of them, else a thread is started.
        self._claimants = 0
        self._spawned = 0
        # Deliveries whose state-change log line is not yet written: flush() waits for them too,
        # so a caller that flushed sees the log that delivery caused.
        self._logging = 0
        # Urgency (a flush, or a shutdown that began): backoffs are cut short, attempts end by
        # the latest deadline, and each URL and host is tried once more even if backing off.
        self._flush_ends: list[float] = []
        self._expedite_until = 0.0
        self._urgent_since = 0.0
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._submitted = 0
        self._settled = 0
        self._bug_logged = False

    @property
    def _thread(self) -> threading.Thread | None:
        """The dispatcher thread, if running."""
        return self._dispatcher

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
                new_slot = self._book.put(ping)
                self._submitted += 1
                if self._dispatcher is None:
                    self._start_dispatcher()
                elif new_slot:  # a replaced slot is one the dispatcher already knows about
                    self._wake.notify()
            return True
        except RuntimeError:  # no new thread at interpreter shutdown: it stays pending, unsent
            return False
        except Exception:
            self._log_bug()
            return False

    def _start_dispatcher(self) -> None:
        thread = threading.Thread(target=self._dispatch_loop, name=THREAD_NAME, daemon=True)
        self._dispatcher = thread
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: nothing can be sent any more
            self._dispatcher = None
            raise
        if not self._atexit_registered:
            self._atexit_registered = True
            atexit.register(_at_exit, weakref.ref(self))

    # -- the dispatcher ------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        with self._lock:
            try:
                idle_since = self._clock()
                while not (self._closed and not self._book.pending):
                    now = self._clock()
                    try:
                        wait = self._dispatch(now)
                    except Exception:  # never let the thread die: later pings still matter
                        self._log_bug()
                        wait = 1.0
                    if self._book.pending:
                        idle_since = now
                    else:
                        idle = now - idle_since
                        if idle >= self._config.idle_exit:
                            return
                        limit = self._config.idle_exit - idle
                        wait = limit if wait is None else min(wait, limit)
                    self._wake.wait(wait)
            finally:
                self._dispatcher = None
                self._work.notify_all()
                self._changed.notify_all()

    def _dispatch(self, now: float) -> float | None:
        """Hand out every attempt that may start now; the seconds until the next may (None: on an event)."""
        config = self._config
        urgent_since = self._urgent_since if self._deadline(now) is not None else None
        fresh = [job.started for job in self._flights if now - job.started < config.slow_after]
        dropped = self._book.dropped

        def host_gate(host: str) -> float | None:
            cap = config.concurrency if self._backoffs.answering(host) else 1
            if self._host_busy.get(host, 0) >= cap:
                return None
            return self._backoffs.host_wait(host, now, urgent_since)

        def url_gate(url: str) -> float | None:
            state = self._backoffs.urls.get(url)
            return 0.0 if state is None else state.blocked_for(now, urgent_since)

        soonest: float | None = None
        while len(fresh) < config.concurrency and len(self._flights) < config.max_threads:
            entry, wait = self._book.take(host_gate, url_gate)
            if wait is not None:
                soonest = wait if soonest is None else min(soonest, wait)
            if entry is None:
                break
            if not self._hand_out(entry, now):
                break
            fresh.append(now)
        full = len(fresh) >= config.concurrency or len(self._flights) >= config.max_threads
        if self._book.queued and full and fresh:  # an attempt turning slow frees a place
            turn = min(fresh) + config.slow_after - now
            soonest = turn if soonest is None else min(soonest, turn)
        if self._book.dropped != dropped:
            self._changed.notify_all()
        return None if soonest is None else max(0.0, soonest)

    def _hand_out(self, entry: Entry, now: float) -> bool:
        """Give an attempt to an idle worker, or a new one; False (and the ping back) if none can start."""
        job = _Job(entry, host_of(entry.ping.url), now)
        self._jobs.append(job)
        if self._claimants >= len(self._jobs):
            self._work.notify()
        else:
            self._spawned += 1
            thread = threading.Thread(target=self._work_loop, name=f"{THREAD_NAME}-{self._spawned}", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down
                self._jobs.remove(job)
                self._book.retry(entry)
                return False
            self._workers.add(thread)
            self._claimants += 1
        self._flights.add(job)
        self._host_busy[job.host] = self._host_busy.get(job.host, 0) + 1
        return True

    def _deadline(self, now: float) -> float | None:
        """When urgent: the monotonic time by which delivery must end; None otherwise."""
        end = max([*self._flush_ends, self._expedite_until])
        return end if end > now else None

    def _become_urgent(self) -> None:
        now = self._clock()
        if self._deadline(now) is None:
            self._urgent_since = now

    # -- workers ---------------------------------------------------------------------------

    def _work_loop(self) -> None:
        transport: Transport | None = None
        try:
            while True:
                job = self._next_job()
                if job is None:
                    return
                try:
                    if transport is None:
                        transport = self._transport_factory()
                    answer = self._attempt(transport, job)
                except Exception:
                    self._log_bug()
                    answer = _Answer(None, "error", job.started)
                try:
                    self._record(job, answer)
                except Exception:  # never let the thread die: later pings still matter
                    self._log_bug()
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())
            if transport is not None:
                try:
                    transport.close()
                except Exception:
                    self._log_bug()

    def _next_job(self) -> _Job | None:
        """The next attempt to make; waits for one. None: exit the thread (idle, or closed)."""
        with self._lock:
            idle_since = self._clock()
            while not self._jobs:
                idle = self._clock() - idle_since
                if self._closed or idle >= self._config.idle_exit:
                    self._claimants -= 1
                    return None
                self._work.wait(self._config.idle_exit - idle)
            self._claimants -= 1
            return self._jobs.popleft()

    def _attempt(self, transport: Transport, job: _Job) -> _Answer:
        """One HTTP attempt, outside the lock."""
        request = job.entry.ping.request()
        began = self._clock()
        if request is None:
            return _Answer(None, None, began, sendable=False)
        timeout = self._config.timeout
        end = self._deadline(began)
        if end is not None:
            timeout = max(0.05, min(timeout, end - began))
        try:
            return _Answer(transport.send(request, timeout), None, began)
        except TransportError as exc:
            return _Answer(None, exc.description, began)
        except Exception as exc:  # a transport bug: the ping is kept, the task never sees it
            return _Answer(None, type(exc).__name__, began)

    def _record(self, job: _Job, answer: _Answer) -> None:
        entry = job.entry
        url = entry.ping.url
        message: str | None = None
        with self._lock:
            self._flights.discard(job)
            self._claimants += 1  # this worker looks for its next job right after
            busy = self._host_busy.get(job.host, 0) - 1
            if busy > 0:
                self._host_busy[job.host] = busy
            else:
                self._host_busy.pop(job.host, None)
            if entry.tries:
                self._counts["retried"] += 1
            state = self._backoffs.url_state(url)
            response = answer.response
            result = Result.FAILED if response is None else classify(response)
            if not answer.sendable:
                self._book.discard(entry)
            elif result is Result.SENT:
                self._counts["sent"] += 1
                if state.failing:
                    message = "celery-heartbeat: %s is answering again (%s)"
                self._backoffs.answered(url, ok=True)
                self._book.done(entry, delivered=True)
            elif result is Result.REJECTED:
                self._counts["rejected"] += 1
                if not state.failing:
                    message = "celery-heartbeat: %s rejected a ping (%s); check the URL, such pings are dropped"
                self._backoffs.answered(url, ok=False)
                state.failing = True
                self._book.done(entry, delivered=False)
            else:
                self._counts["failed"] += 1
                if not state.failing:
                    message = (
                        "celery-heartbeat: cannot deliver pings to %s (%s); "
                        "tasks are unaffected, pings are kept and retried"
                    )
                retry_after = response.retry_after if response is not None else None
                self._backoffs.failed(
                    url, answered=response is not None, began=answer.began, now=self._clock(), retry_after=retry_after
                )
                if self._closed:
                    self._book.discard(entry)
                else:
                    self._book.retry(entry)
            self._wake.notify()
            if message is None:
                self._changed.notify_all()
                return
            self._logging += 1
        try:
            status = answer.error if answer.error is not None else f"HTTP {response.status if response else '?'}"
            logger.warning(message, redact(url), status)  # outside the lock: submit() never waits on logging
        finally:
            with self._lock:
                self._logging -= 1
                self._changed.notify_all()

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
            end = self._clock() + max(0.0, timeout)
            with self._lock:
                try:
                    return self._flush_locked(end)
                finally:
                    self._settled = self._submitted
        except Exception:
            self._log_bug()
            return False

    def _flush_locked(self, end: float) -> bool:
        if not self._book.pending and not self._logging:
            return True
        if self._dispatcher is None and not self._closed:
            try:
                self._start_dispatcher()
            except RuntimeError:  # interpreter shutdown: no thread can deliver them now
                return False
        self._become_urgent()
        self._flush_ends.append(end)
        self._wake.notify()
        try:
            while self._book.pending or self._logging:
                now = self._clock()
                if now >= end:
                    return False
                if not self._book.flying and not self._logging and self._all_blocked(now):
                    return False
                self._changed.wait(end - now)
            return True
        finally:
            self._flush_ends.remove(end)

    def _all_blocked(self, now: float) -> bool:
        """Whether every pending ping waits out a backoff it earned during this urgency."""
        urgent_since = self._urgent_since
        return all(self._backoffs.wait(url, now, urgent_since) > 0 for url in self._book.ready_urls())

    def expedite(self, timeout: float) -> None:
        """Deliver everything now, within `timeout`, without waiting: a shutdown has begun.

        Safe inside a signal handler (Celery sends worker_shutting_down from one):
        it never waits for a lock the interrupted code might hold.
        """
        try:
            if self._pid != os.getpid():
                return
            self._become_urgent()
            self._expedite_until = max(self._expedite_until, self._clock() + max(0.0, timeout))
            if self._lock.acquire(blocking=False):
                try:
                    self._wake.notify()
                finally:
                    self._lock.release()
        except Exception:
            self._log_bug()

    def close(self, timeout: float = 0.0) -> None:
        """Flush for at most `timeout`, then stop the threads; what is still pending is counted dropped."""
        try:
            self.flush(timeout)
            with self._lock:
                self._closed = True
                self._book.clear()
                self._wake.notify_all()
                self._work.notify_all()
                self._changed.notify_all()
        except Exception:
            self._log_bug()

    def stats(self) -> dict[str, int]:
        """This process's counters, plus `pending` (queued and in flight)."""
        self._check_pid()
        with self._lock:
            out = dict(self._counts)
            out["coalesced"] += self._book.coalesced
            out["dropped"] += self._book.dropped
            out["pending"] = self._book.pending
        return out

    def threads(self) -> int:
        """Worker threads alive now (the dispatcher not counted)."""
        with self._lock:
            return len(self._workers)

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
