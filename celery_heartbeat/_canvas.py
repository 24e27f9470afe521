"""Canvas completion pings: a pipeline is done when its last link or chord body finishes.

`with_heartbeat` copies a canvas and hooks the library's ping task onto the
places where it really ends: a success ping as a callback (`link`) of the last
task (of a chain, of a chord body, recursively), and one failure ping as an
errback (`link_error`) on every task whose failure ends the canvas. A chord's
header tasks get no errback: a failed header reaches the body as a ChordError,
and the body's errback reports it once. A group is turned into a chord onto the
ping (its completion is only observable through a chord). Callbacks leave the
canvas's own result untouched: `.get()` returns what it returned before. With
`start=True` the canvas is wrapped in a start ping task that replaces itself with
the canvas (Task.replace) once its ping is delivered.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, current_app
from celery.backends.base import DisabledBackend
from celery.canvas import Signature, _chain, chord, group, maybe_signature

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat._state import real_app
from celery_heartbeat._tasks import Target, check_kind, check_target
from celery_heartbeat.config.monitor import MonitorValue, parse_monitor
from celery_heartbeat.config.names import PING_TASK


def _app(app: Celery | None) -> Celery:
    return real_app(app if app is not None else current_app)


def _ping(app: Celery, target: Target, kind: str, *, passthrough: bool = False) -> Signature:
    """The ping task: a callback or errback (immutable), or a link that passes its parent's result on."""
    return app.signature(PING_TASK, kwargs={"target": target, "kind": kind}, immutable=not passthrough)


def heartbeat_signature(url_or_monitor: MonitorValue, kind: str = "success", *, app: Celery | None = None) -> Any:
    """A ping link for any chain or chord body: it passes its parent's result on unchanged.

    `url_or_monitor` is a URL, a monitor dict, or (preferred) a name from
    `heartbeat_urls`: the URL then stays out of broker messages and is resolved
    on the worker. URLs and dicts are validated here (ConfigurationError). The
    run id sent is the canvas's root id. As a chain's first link it has no parent
    result to pass on, so the next task would get None: for a start ping use
    `with_heartbeat(canvas, ..., start=True)`. None or "" gives a ping that sends nothing.
    """
    return _ping(_app(app), check_target(url_or_monitor), check_kind(kind), passthrough=True)


def with_heartbeat(canvas: Any, url_or_monitor: MonitorValue, *, start: bool = False, app: Celery | None = None) -> Any:
    """A copy of `canvas` that pings once when all of it succeeded, and once (failure) if any of it failed.

    `start=True` also pings "started" just before the canvas's first task starts:
    the canvas runs after that ping was delivered (or given up on), so the start
    never lands after the finish, and both carry one run id.
    The input is never mutated. A group (anywhere a completion must be seen) needs
    a result backend, as every chord does: without one, ConfigurationError.
    """
    the_app = _app(app)
    target = check_target(url_or_monitor)
    if not isinstance(start, bool):
        raise ConfigurationError("start", start, "expected True or False")
    if start and target is not None:
        _check_start(target)
    sig = _copy(maybe_signature(canvas, app=the_app), the_app)
    if target is None:
        return sig
    builder = _Builder(the_app, target)
    sig = builder.complete(sig)
    if not start:
        return sig
    # The start ping runs first and then replaces itself with the canvas (Task.replace): it is
    # delivered before any of the canvas runs, the canvas gets exactly the arguments it had, and
    # every part inherits the ping task's root id, the run id of the finish ping too.
    return the_app.signature(PING_TASK, kwargs={"target": target, "kind": "start", "then": sig})


def _check_start(target: Target) -> None:
    """A URL or monitor dict whose provider has no start signal cannot honour start=True: say so now."""
    if isinstance(target, str) and "://" not in target:
        return  # a heartbeat_urls name: resolved (and checked) on the worker
    monitor = parse_monitor("url_or_monitor", target)
    if monitor is not None and not monitor.supports("start"):
        raise ConfigurationError(
            "start", True, f"provider {monitor.provider!r} has no start signal (healthchecks and cronitor have one)"
        )


def _copy(sig: Any, app: Celery) -> Any:
    """Deep-copy the canvas structure (not task arguments): linking must not touch the caller's signatures.

    Celery's own `clone()` shares the members of groups (and, on some versions,
    of chains and chord headers), so each level is rebuilt here.
    """
    sig = maybe_signature(sig, app=app)
    new = sig.clone()
    if isinstance(sig, chord):
        new.kwargs["header"] = _copy(_as_group(sig.tasks, app), app)
        new.kwargs["body"] = _copy(sig.body, app)
    elif isinstance(sig, (_chain, group)):
        new.kwargs["tasks"] = [_copy(task, app) for task in sig.tasks]
    return new


def _as_group(tasks: Any, app: Celery) -> Any:
    return tasks if isinstance(tasks, group) else group(list(tasks), app=app)


class _Builder:
    def __init__(self, app: Celery, target: Target) -> None:
        self.app = app
        self.target = target
        self.failure = _ping(app, target, "failure")

    def _require_backend(self) -> None:
        if isinstance(self.app.backend, DisabledBackend):
            raise ConfigurationError(
                "result_backend",
                self.app.conf.result_backend,
                "with_heartbeat() on a group or chord needs a result backend: its completion "
                "is only observable through a chord",
            )

    def _errback(self, sig: Any) -> None:
        sig.link_error(self.failure.clone())

    def complete(self, sig: Any) -> Any:
        """`sig` with the success ping after its very end and the failure ping wherever it can end."""
        if isinstance(sig, chord):
            self._require_backend()
            unrolled = self._unroll(sig)
            if unrolled is not None:
                return self.complete(unrolled)
            sig.kwargs["body"] = self.complete(self._sig(sig.body))
            self._chord_parts(sig)
            return sig
        if isinstance(sig, group):
            self._require_backend()
            body = _ping(self.app, self.target, "success", passthrough=True)
            self._errback(body)
            return chord(sig, body, app=self.app)
        if isinstance(sig, _chain):
            tasks = self._members(sig)
            if not tasks:
                return _ping(self.app, self.target, "success")
            for index in range(len(tasks) - 1):
                tasks[index] = self.may_fail(tasks[index])
            tasks[-1] = self.complete(tasks[-1])
            sig.kwargs["tasks"] = tasks
            return sig
        sig.link(_ping(self.app, self.target, "success"))
        self._errback(sig)
        return sig

    def may_fail(self, sig: Any) -> Any:
        """Errbacks for a chain member that is not last: its failure stops the chain there."""
        if isinstance(sig, chord):
            self._require_backend()
            unrolled = self._unroll(sig)
            if unrolled is not None:
                return self.may_fail(unrolled)
            sig.kwargs["body"] = self.may_fail(self._sig(sig.body))
            self._chord_parts(sig)
            return sig
        if isinstance(sig, group):
            # Celery runs `group | next` as chord(group, next): next's errback reports it once.
            self._require_backend()
            return sig
        if isinstance(sig, _chain):
            sig.kwargs["tasks"] = [self.may_fail(task) for task in self._members(sig)]
            return sig
        self._errback(sig)
        return sig

    def _chord_parts(self, sig: Any) -> None:
        """Errbacks a chord needs besides its body's own: never on the chord or its header tasks.

        The chord's own options are left alone: some Celery versions pass them on
        to every header task, which would ping once per failed task.
        """
        body = self._sig(sig.body)
        if isinstance(body, _chain):
            # A body chain not led by a task: a failed header fails the chain as a whole.
            self._errback(body)
        header = sig.kwargs["header"]
        for member in header.tasks if isinstance(header, group) else header:
            self._nested(self._sig(member))

    def _nested(self, sig: Any) -> None:
        """Errbacks on the bodies of chords nested in a chord's header.

        Celery never completes the outer chord when such a nested chord fails (it
        hangs), so the nested body's ChordError is the only failure there is to report.
        """
        if isinstance(sig, chord):
            sig.kwargs["body"] = self.may_fail(self._sig(sig.body))
            self._chord_parts(sig)
        elif isinstance(sig, (group, _chain)):
            for member in sig.tasks:
                self._nested(self._sig(member))

    def _unroll(self, sig: Any) -> Any:
        """chord(h, chain(a, b)) -> chain(chord(h, a), b), or None when the body is not a task-led chain.

        The same rewrite Celery 5.7 does itself, done here for every version: the
        chord body is then one task, whose own errback a failed header reaches.
        """
        body = self._sig(sig.body)
        if not isinstance(body, _chain):
            return None
        tasks = self._members(body)
        if not tasks or isinstance(tasks[0], (chord, group)):
            return None
        sig.kwargs["body"] = tasks[0]
        return _chain([sig, *tasks[1:]], app=self.app, **body.options)

    def _members(self, sig: Any) -> list[Any]:
        """A chain's tasks with nested chains spliced in, as Celery runs them (their links kept)."""
        out: list[Any] = []
        for task in (self._sig(t) for t in sig.tasks):
            if isinstance(task, _chain):
                inner = self._members(task)
                for callback in task.options.get("link") or []:
                    if inner:
                        inner[-1].link(callback)
                for errback in task.options.get("link_error") or []:
                    for member in inner:
                        member.link_error(errback)
                out.extend(inner)
            else:
                out.append(task)
        return out

    def _sig(self, sig: Any) -> Any:
        return maybe_signature(sig, app=self.app)
