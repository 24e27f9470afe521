"""The pending-ping book: what waits to be sent, per monitor, in event order. Pure data, no threads, no HTTP.

Each monitor (URL) has a short queue. Only its head may be sent, and only one
ping per monitor is in flight, so a monitor sees its events in the order they
happened, also when a delivery fails: a failed ping goes back to the head of
its own queue (behind no newer ping of its monitor), never to the end.

Memory is bounded by monitors, not by the task rate: a queue holds at most one
ping per slot, (kind, "") for most, and a newer ping replaces the older one in
its slot at the newer one's place (counted "coalesced"), so the monitor still
sees its last event last. A failure is only ever replaced by a newer failure.
Runs stay whole: once a run's start was sent (or while it is in flight), that
run's finish gets a slot of its own, (kind, run id), so no later run can
coalesce it away; a finish that gives way takes its run's unsent start along.
Only runs whose start reached the endpoint get own slots (`owed_capacity` of
them remembered), so a dead endpoint cannot grow them.

Success and start pings older than `max_age` are dropped when their turn comes
(a very late success would make a monitor look healthy at the wrong time);
failures never age out. Monitors are offered round-robin across hosts and, within
a host, in the order they became ready.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

from celery_heartbeat.delivery.backoff import host_of
from celery_heartbeat.delivery.ping import OutgoingPing

SlotKey = tuple[str, str]
"""(kind, run id) for the finish of a run whose start was sent; (kind, "") otherwise."""

Gate = Callable[[str], "float | None"]
"""Whether a host or URL may be sent to now: 0 yes, > 0 not for that many seconds, None not now (busy)."""


@dataclass
class Entry:
    ping: OutgoingPing
    key: SlotKey
    #: Attempts already made (a retry is an attempt after the first).
    tries: int = 0


@dataclass
class _Monitor:
    queue: list[Entry] = field(default_factory=list)
    flying: Entry | None = None


class PendingBook:
    """Pending pings per monitor; the caller (the sender) holds a lock around every call."""

    def __init__(
        self, *, max_age: float = 600.0, owed_capacity: int = 1000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age = max_age
        self.owed_capacity = owed_capacity
        self._clock = clock
        self._monitors: dict[str, _Monitor] = {}
        self._ready: OrderedDict[str, OrderedDict[str, None]] = OrderedDict()  # host -> URLs with a head to send
        self._started: OrderedDict[tuple[str, str], None] = OrderedDict()  # (URL, run id) owed a finish
        self.queued = 0
        self.flying = 0
        self.coalesced = 0
        self.dropped = 0

    # -- reading --------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Queued and in flight."""
        return self.queued + self.flying

    def __len__(self) -> int:
        return self.pending

    def queue_of(self, url: str) -> list[OutgoingPing]:
        """A monitor's queued pings, head first (in flight not included)."""
        monitor = self._monitors.get(url)
        return [] if monitor is None else [entry.ping for entry in monitor.queue]

    def ready_urls(self) -> list[str]:
        """Monitors whose head waits to be sent (none of their pings in flight)."""
        return [url for urls in self._ready.values() for url in urls]

    def owed(self) -> int:
        """Runs remembered as owed a finish."""
        return len(self._started)

    # -- producer side --------------------------------------------------------------------

    def put(self, ping: OutgoingPing) -> bool:
        """Queue a ping in its slot, replacing an older one there; True when the slot was empty."""
        monitor = self._monitors.get(ping.url)
        if monitor is None:
            monitor = self._monitors[ping.url] = _Monitor()
        key = self._slot(ping, self._is_owed(ping, monitor))
        replaced = self._remove_key(monitor, key)
        monitor.queue.append(Entry(ping, key))
        self.queued += 1
        if replaced is not None:
            self._gave_way(monitor, replaced)
        if monitor.flying is None:
            self._mark_ready(ping.url)
        return replaced is None

    # -- consumer side --------------------------------------------------------------------

    def take(self, host_gate: Gate, url_gate: Gate) -> tuple[Entry | None, float | None]:
        """The next head to send (now in flight), and the soonest time (seconds) a blocked one may go.

        Hosts are tried round-robin; a host or URL the gates hold back is skipped.
        """
        soonest: float | None = None

        def note(wait: float) -> None:
            nonlocal soonest
            soonest = wait if soonest is None else min(soonest, wait)

        for host in list(self._ready):
            urls = self._ready.get(host)
            if urls is None:
                continue
            wait = host_gate(host)
            if wait is None:
                continue
            if wait > 0:
                note(wait)
                continue
            for url in list(urls):
                wait = url_gate(url)
                if wait is None:
                    continue
                if wait > 0:
                    note(wait)
                    continue
                entry = self._pop_head(url)
                if entry is None:
                    continue
                if host in self._ready:  # its other monitors wait behind other hosts'
                    self._ready.move_to_end(host)
                return entry, soonest
        return None, soonest

    def _pop_head(self, url: str) -> Entry | None:
        """Take the monitor's head into flight, dropping heads too old to send; None if nothing is left."""
        monitor = self._monitors[url]
        now = self._clock()
        while monitor.queue:
            entry = monitor.queue.pop(0)
            self.queued -= 1
            ping = entry.ping
            if ping.kind != "failure" and now - ping.created > self.max_age:
                self.dropped += 1
                self._settle(monitor, ping, delivered=False)
                continue
            monitor.flying = entry
            self.flying += 1
            self._unready(url)
            return entry
        self._unready(url)
        self._forget_if_empty(url)
        return None

    def done(self, entry: Entry, *, delivered: bool) -> None:
        """The ping in flight is settled: delivered, or dropped for good (rejected)."""
        monitor = self._land(entry)
        self._settle(monitor, entry.ping, delivered=delivered)
        self._after(entry.ping.url, monitor)

    def discard(self, entry: Entry) -> None:
        """The ping in flight is given up (the sender closed): counted dropped."""
        self.dropped += 1
        self.done(entry, delivered=False)

    def retry(self, entry: Entry) -> None:
        """The attempt failed: the ping goes back to the head of its monitor's queue, unless a newer
        ping took its slot meanwhile (then it gave way: coalesced)."""
        monitor = self._land(entry)
        ping = entry.ping
        entry.tries += 1
        if ping.kind == "start":
            self._rekey(monitor, ping.run_id, owed=False)  # its finish was held for it: release that again
        entry.key = self._slot(ping, self._is_owed(ping, monitor))
        if any(queued.key == entry.key for queued in monitor.queue):
            self._gave_way(monitor, entry)
        else:
            monitor.queue.insert(0, entry)
            self.queued += 1
        self._after(ping.url, monitor)

    def clear(self) -> int:
        """Drop everything queued (not what is in flight); returns how many, counted dropped."""
        count = self.queued
        for url, monitor in list(self._monitors.items()):
            monitor.queue.clear()
            self._forget_if_empty(url)
        self._ready.clear()
        self.queued = 0
        self.dropped += count
        return count

    # -- slots and runs -------------------------------------------------------------------

    @staticmethod
    def _slot(ping: OutgoingPing, owed: bool) -> SlotKey:
        return (ping.kind, ping.run_id or "" if owed else "")

    def _is_owed(self, ping: OutgoingPing, monitor: _Monitor) -> bool:
        """Whether this is the finish of a run whose start went out (or is going out right now)."""
        if ping.kind == "start" or not ping.run_id:
            return False
        if (ping.url, ping.run_id) in self._started:
            return True
        flying = monitor.flying
        return flying is not None and flying.ping.kind == "start" and flying.ping.run_id == ping.run_id

    def _remove_key(self, monitor: _Monitor, key: SlotKey) -> OutgoingPing | None:
        for i, entry in enumerate(monitor.queue):
            if entry.key == key:
                del monitor.queue[i]
                self.queued -= 1
                return entry.ping
        return None

    def _gave_way(self, monitor: _Monitor, loser: Entry | OutgoingPing) -> None:
        """A ping gave way to a newer one of its slot. A finish takes its run's unsent start along:
        a start must never go out once its own finish cannot."""
        ping = loser.ping if isinstance(loser, Entry) else loser
        self.coalesced += 1
        if ping.kind == "start" or not ping.run_id:
            return
        self._started.pop((ping.url, ping.run_id), None)
        start = self._remove_key_if(monitor, ("start", ""), ping.run_id)
        if start is not None:
            self.coalesced += 1

    def _remove_key_if(self, monitor: _Monitor, key: SlotKey, run_id: str) -> OutgoingPing | None:
        for i, entry in enumerate(monitor.queue):
            if entry.key == key and entry.ping.run_id == run_id:
                del monitor.queue[i]
                self.queued -= 1
                return entry.ping
        return None

    def _settle(self, monitor: _Monitor, ping: OutgoingPing, *, delivered: bool) -> None:
        """Track which runs are owed a finish: the start went out, the finish did not yet."""
        if not ping.run_id:
            return
        run = (ping.url, ping.run_id)
        if ping.kind != "start":
            self._started.pop(run, None)
            return
        if not delivered:
            self._rekey(monitor, ping.run_id, owed=False)
            return
        self._started[run] = None
        if len(self._started) > self.owed_capacity:
            (old_url, old_run), _ = self._started.popitem(last=False)
            old = self._monitors.get(old_url)
            if old is not None:
                self._rekey(old, old_run, owed=False)
        self._rekey(monitor, ping.run_id, owed=True)

    def _rekey(self, monitor: _Monitor, run_id: str | None, *, owed: bool) -> None:
        """Move a run's queued finish between its own slot and the shared one, keeping the order.

        When two pings meet in one slot the newer wins, at the later position.
        """
        if not run_id or not any(e.ping.kind != "start" and e.ping.run_id == run_id for e in monitor.queue):
            return
        out: list[Entry] = []
        losers: list[Entry] = []
        for entry in monitor.queue:
            if entry.ping.kind != "start" and entry.ping.run_id == run_id:
                entry.key = self._slot(entry.ping, owed)
            clash = next((i for i, kept in enumerate(out) if kept.key == entry.key), None)
            if clash is not None:
                existing = out.pop(clash)
                newer, older = (existing, entry) if existing.ping.created > entry.ping.created else (entry, existing)
                losers.append(older)
                entry = newer
            out.append(entry)
        self.queued -= len(monitor.queue) - len(out)
        monitor.queue = out
        for loser in losers:
            self._gave_way(monitor, loser)

    # -- bookkeeping ----------------------------------------------------------------------

    def _land(self, entry: Entry) -> _Monitor:
        monitor = self._monitors[entry.ping.url]
        if monitor.flying is entry:
            monitor.flying = None
            self.flying -= 1
        return monitor

    def _after(self, url: str, monitor: _Monitor) -> None:
        if monitor.queue and monitor.flying is None:
            self._mark_ready(url)
        else:
            self._forget_if_empty(url)

    def _mark_ready(self, url: str) -> None:
        host = host_of(url)
        urls = self._ready.get(host)
        if urls is None:
            urls = self._ready[host] = OrderedDict()
        urls[url] = None

    def _unready(self, url: str) -> None:
        host = host_of(url)
        urls = self._ready.get(host)
        if urls is not None:
            urls.pop(url, None)
            if not urls:
                del self._ready[host]

    def _forget_if_empty(self, url: str) -> None:
        monitor = self._monitors.get(url)
        if monitor is not None and not monitor.queue and monitor.flying is None:
            del self._monitors[url]
