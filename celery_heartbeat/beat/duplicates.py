"""Duplicate beats: decided from who heard whom, never from clocks or from one worker's view.

Every beat announces each beat-liveness dispatch (its instance and a dispatch
number) with the latest dispatch it has heard from every other beat. Two beats
are duplicates when each dispatched *after hearing the other dispatch*:

- a restart (stop, then start) or a RedBeat lock hand-over never does that: the
  old beat stopped dispatching before it could hear the new one;
- a late, lost or re-delivered announcement cannot fake it: an announcement only
  names dispatches its sender had really heard when it dispatched;
- no timestamp crosses hosts: ages are measured on this beat's monotonic clock
  and in its own dispatches.

The verdict travels in the beat's own liveness messages, so every worker (and
every prefork child) that runs one knows the answer without sharing any state.
This module is the logic only; `beat/announcer.py` moves the announcements.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HEADER = "celery_heartbeat_duplicate_beats"
"""Liveness-message header naming every beat dispatching the schedule, when there is more than one."""

MISSED_DISPATCHES = 2
"""A peer that let this many of our dispatches pass without one of its own has stopped."""

RECENT_PERIODS = 3.0
"""A peer's mention of our dispatch is evidence only when that dispatch is at most this many periods old."""

FORGET_PERIODS = 10.0
"""A peer silent this long is forgotten even while we do not dispatch (a RedBeat standby keeps no list)."""


@dataclass(frozen=True)
class BeatInstance:
    """One `celery beat` process. `id` tells restarts apart (a container's pid is often 1 every time)."""

    id: str
    host: str
    pid: int

    @classmethod
    def current(cls) -> BeatInstance:
        return cls(uuid.uuid4().hex, socket.gethostname(), os.getpid())

    @property
    def label(self) -> str:
        return f"{self.host} (pid {self.pid})"


@dataclass(frozen=True)
class Announcement:
    """'I, `beat`, made my dispatch number `seq`, having heard these beats' latest dispatches.'"""

    beat: BeatInstance
    seq: int
    heard: Mapping[str, int] = field(default_factory=dict)

    def to_body(self) -> dict[str, Any]:
        return {
            "v": 1,
            "id": self.beat.id,
            "host": self.beat.host,
            "pid": self.beat.pid,
            "seq": self.seq,
            "heard": dict(self.heard),
        }

    @classmethod
    def from_body(cls, body: object) -> Announcement | None:
        """The announcement in a message body, or None when it is not one (ignored, never trusted)."""
        if not isinstance(body, Mapping) or body.get("v") != 1:
            return None
        beat_id, host, pid, seq, heard = (body.get(k) for k in ("id", "host", "pid", "seq", "heard"))
        if not (isinstance(beat_id, str) and isinstance(host, str) and isinstance(pid, int)):
            return None
        if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(heard, Mapping):
            return None
        refs = {k: v for k, v in heard.items() if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)}
        return cls(BeatInstance(beat_id, host, pid), seq, refs)


@dataclass
class _Peer:
    beat: BeatInstance
    seq: int
    knows_me: bool  # its latest dispatch came after hearing one of our recent dispatches
    my_seq_at_receipt: int
    received: float


@dataclass(frozen=True)
class Verdict:
    """What one dispatch of this beat carries: the announcement to send and who else dispatches."""

    announcement: Announcement
    duplicates: tuple[BeatInstance, ...]
    appeared: tuple[BeatInstance, ...]
    gone: tuple[BeatInstance, ...]

    def header(self) -> list[str] | None:
        """The liveness-message header value: every beat's label, this one first; None when alone."""
        if not self.duplicates:
            return None
        return [self.announcement.beat.label, *(beat.label for beat in self.duplicates)]


class DuplicateDetector:
    """One beat's view of the other beats on its schedule (heard on the listener thread, asked on beat's)."""

    def __init__(self, me: BeatInstance, period: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.me = me
        self.period = period
        self._clock = clock
        self.seq = 0
        self._my_times: deque[tuple[int, float]] = deque(maxlen=MISSED_DISPATCHES + 1)
        self._peers: dict[str, _Peer] = {}
        self._duplicates: dict[str, BeatInstance] = {}
        self._lock = threading.Lock()

    def heard(self, announcement: Announcement) -> bool:
        """Another beat's announcement arrived (the listener thread); True when that beat is new to us."""
        if announcement.beat.id == self.me.id:
            return False
        with self._lock:
            now = self._clock()
            self._forget_stale(now)
            known = self._peers.get(announcement.beat.id)
            if known is not None and announcement.seq <= known.seq:
                return False  # re-delivered or overtaken: the newer one already counts
            self._peers[announcement.beat.id] = _Peer(
                announcement.beat,
                announcement.seq,
                self._is_recent_dispatch(announcement.heard.get(self.me.id), now),
                self.seq,
                now,
            )
            return known is None

    def dispatching(self) -> Verdict:
        """This beat is dispatching its liveness message now: who else does, and what to announce."""
        with self._lock:
            return self._dispatching()

    def _dispatching(self) -> Verdict:
        now = self._clock()
        self.seq += 1
        self._my_times.append((self.seq, now))
        self._forget_stale(now)
        gone: list[BeatInstance] = []
        appeared: list[BeatInstance] = []
        for peer_id, peer in list(self._peers.items()):
            # Our dispatches since we last heard it, not counting this one.
            if self.seq - 1 - peer.my_seq_at_receipt >= MISSED_DISPATCHES:
                del self._peers[peer_id]
        for peer_id in list(self._duplicates):
            if peer_id not in self._peers:
                gone.append(self._duplicates.pop(peer_id))
        for peer_id, peer in self._peers.items():
            if peer_id not in self._duplicates and peer.knows_me:
                self._duplicates[peer_id] = peer.beat
                appeared.append(peer.beat)
        heard = {peer_id: peer.seq for peer_id, peer in self._peers.items()}
        return Verdict(
            Announcement(self.me, self.seq, heard),
            tuple(self._duplicates.values()),
            tuple(appeared),
            tuple(gone),
        )

    def _is_recent_dispatch(self, seq: int | None, now: float) -> bool:
        if seq is None:
            return False
        for mine, at in self._my_times:
            if mine == seq:
                return now - at <= RECENT_PERIODS * self.period
        return False  # older than our last few dispatches, or never ours

    def _forget_stale(self, now: float) -> None:
        limit = FORGET_PERIODS * self.period
        for peer_id, peer in list(self._peers.items()):
            if now - peer.received > limit:
                del self._peers[peer_id]


def duplicate_beats(request: Any) -> Sequence[str]:
    """The beats a liveness task's message names as dispatching one schedule (empty: just one)."""
    value = getattr(request, HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None)
        value = headers.get(HEADER) if isinstance(headers, Mapping) else None
    if isinstance(value, (list, tuple)) and len(value) > 1 and all(isinstance(v, str) for v in value):
        return list(value)
    return []


def describe(beats: Sequence[str]) -> str:
    """The alert text (failure ping body and log line)."""
    return f"{len(beats)} celery beats are dispatching the same schedule: {', '.join(beats)}"
