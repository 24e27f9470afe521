"""See what celery-heartbeat catches, in one command, with no Redis or RabbitMQ.

    python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python examples/quickstart.py

It runs a real prefork ``celery worker`` and a real ``celery beat`` as
subprocesses on kombu's ``filesystem://`` transport (queues are files in a
temporary directory), with a local PingReceiver standing in for the monitoring
service, and shows:

1. periodic-task pings and beat-liveness pings flowing;
2. a chord's completion ping (after its body ran);
3. a task that retries once and then succeeds: one success ping, no failure;
4. a failing task's failure ping, alerting at once;
5. ``celery beat`` stopped: its liveness monitor goes late within period + grace.

It takes about 20 seconds and leaves no process behind, also on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from celery import chord

import celery_heartbeat
from celery_heartbeat.testing import Ping, PingReceiver

EXAMPLES = Path(__file__).resolve().parent
PERIOD = 2.0  # quickstart_app.tasks.PERIOD: beat liveness and the periodic task
GRACE = 2.0  # what you would set as the monitor's grace period on the service
STEP_TIMEOUT = 25.0  # no single step of a healthy run comes near this
REFRESH = 0.25


@dataclass(frozen=True)
class Watch:
    """One monitor as the monitoring service sees it; ``period`` None: not expected on a schedule."""

    name: str
    watches: str
    period: float | None = None


WATCHES = (
    Watch("nightly-report", f"periodic task, every {PERIOD:g} s", PERIOD),
    Watch("beat-liveness", f"celery beat itself, every {PERIOD:g} s", PERIOD),
    Watch("weekly-crawl", "chord: 3 pages -> aggregate"),
    Watch("import-feed", "task that retries once"),
    Watch("invoice-sync", "task that always fails"),
)


class Screen:
    """Event lines that scroll, plus a live table redrawn under them (plain lines when not a TTY)."""

    def __init__(self, receiver: PingReceiver, out: IO[str]) -> None:
        self.receiver = receiver
        self.out = out
        self.live = out.isatty() and os.environ.get("TERM", "") != "dumb"
        self.t0 = time.time()
        self._table_height = 0
        self._seen = 0
        self._named: set[str] = set()
        self._alerted: set[str] = set()
        self.alerts: list[str] = []

    # -- output -------------------------------------------------------------------------

    def _paint(self, text: str, colour: str) -> str:
        codes = {"red": "31;1", "green": "32", "yellow": "33", "dim": "2", "bold": "1"}
        return f"\x1b[{codes[colour]}m{text}\x1b[0m" if self.live else text

    def _clear_table(self) -> None:
        if self.live and self._table_height:
            self.out.write(f"\x1b[{self._table_height}F\x1b[J")
            self._table_height = 0

    def say(self, text: str, colour: str | None = None) -> None:
        """An event line, stamped with the seconds since the start."""
        self._clear_table()
        stamp = f"[{time.time() - self.t0:5.1f}s]"
        self.out.write(f"{self._paint(stamp, 'dim')} {self._paint(text, colour) if colour else text}\n")
        self._draw_table()

    def table(self) -> None:
        """Print the table once (for the summary, and for non-TTY output)."""
        self._clear_table()
        for line in self._table_lines():
            self.out.write(line + "\n")
        self.out.flush()

    def _draw_table(self) -> None:
        if self.live:
            lines = self._table_lines()
            self.out.write("\n".join(lines) + "\n")
            self._table_height = len(lines)
        self.out.flush()

    def _table_lines(self) -> list[str]:
        now = time.time()
        header = f"  {'monitor':<15} {'watches':<31} {'ok':>3} {'fail':>4}  {'last ping':<11} state"
        lines = [self._paint(header, "bold")]
        for watch in WATCHES:
            pings = self.receiver.pings_for(watch.name)
            ok = sum(1 for p in pings if p.is_success)
            fail = sum(1 for p in pings if _is_failure(p))
            last = f"{now - pings[-1].time:.1f} s ago" if pings else "-"
            state, colour = self._state(watch, pings, now)
            row = f"  {watch.name:<15} {watch.watches:<31} {ok:>3} {fail:>4}  {last:<11} "
            lines.append(row + self._paint(state, colour))
        return lines

    def _state(self, watch: Watch, pings: list[Ping], now: float) -> tuple[str, str]:
        if not pings:
            return "waiting", "dim"
        if watch.period is not None and self.receiver.is_late(watch.name, period=watch.period, grace=GRACE, now=now):
            return "LATE", "red"
        if _is_failure(pings[-1]):
            return "FAILED", "red"
        return ("on time" if watch.period is not None else "ok"), "green"

    # -- the monitoring service ---------------------------------------------------------

    def tick(self) -> None:
        """Report new pings and raise alerts, as a monitoring service would; redraw the table."""
        pings = self.receiver.pings
        new, self._seen = pings[self._seen :], len(pings)
        now = time.time()
        for ping in new:
            first = ping.name not in self._named
            self._named.add(ping.name)
            if _is_failure(ping) or first:
                body = f"  body: {ping.body.decode(errors='replace')!r}" if ping.body else ""
                self.say(f"ping  {ping.method} {ping.target}{body}", "dim")
        for watch in WATCHES:
            pings_for = [p for p in pings if p.name == watch.name]
            if not pings_for:
                continue
            state, _ = self._state(watch, pings_for, now)
            key = f"{watch.name}:{state}:{pings_for[-1].time if state == 'FAILED' else ''}"
            if state in ("LATE", "FAILED") and key not in self._alerted:
                self._alerted.add(key)
                if state == "FAILED":
                    detail = pings_for[-1].body.decode(errors="replace") or "failed"
                    line = f"ALERT {watch.name} failed: {detail} (run {pings_for[-1].query.get('rid', '?')})"
                else:
                    silent = now - (self.receiver.last_success_time(watch.name) or now)
                    line = (
                        f"ALERT {watch.name} is late: no ping for {silent:.1f} s "
                        f"(period {watch.period:g} s + grace {GRACE:g} s)"
                    )
                self.alerts.append(line)
                self.say(line, "red")
        if self.live:
            self._clear_table()
            self._draw_table()

    def wait(self, what: str, done: Callable[[], bool], timeout: float = STEP_TIMEOUT) -> None:
        """Tick until ``done()``; a step that never completes fails the run with a reason."""
        deadline = time.monotonic() + timeout
        while True:
            self.tick()
            if done():
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"gave up after {timeout:g} s waiting for {what}")
            time.sleep(REFRESH)


def _is_failure(ping: Ping) -> bool:
    return ping.path.endswith("/fail")


def _count(receiver: PingReceiver, name: str, kind: Callable[[Ping], bool]) -> int:
    return sum(1 for p in receiver.pings_for(name) if kind(p))


def _success(ping: Ping) -> bool:
    return ping.is_success


# -- subprocesses ---------------------------------------------------------------------------


class Processes:
    """Child processes, each in its own process group so stopping one stops its pool too."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.env = env
        self.running: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *celery_args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "quickstart_app.tasks", *celery_args],
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: Ctrl-C here never half-kills it
        )
        log.close()
        self.running[name] = proc
        return proc

    def stop(self, name: str, timeout: float = 10.0) -> int | None:
        """SIGTERM (a warm shutdown), then SIGKILL the whole group: nothing outlives this call."""
        proc = self.running.pop(name, None)
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # the parent only: it stops its own pool, flushing pings
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait(5.0)
        _signal_group(proc.pid, signal.SIGKILL)  # pool children that outlived their parent
        return proc.returncode

    def stop_all(self) -> None:
        """Stop every child at once (their warm shutdowns overlap), then sweep the groups."""
        for proc in self.running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for name in list(self.running):
            self.stop(name)

    def check_alive(self) -> None:
        for name, proc in self.running.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited early with status {proc.returncode}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@contextlib.contextmanager
def _interrupts_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP leave through the same ``finally`` as Ctrl-C does."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# -- the story ------------------------------------------------------------------------------


def run(screen: Screen, procs: Processes, receiver: PingReceiver) -> None:
    from quickstart_app import tasks  # imported once the environment points it at our temp dir

    def ok(name: str, count: int = 1) -> Callable[[], bool]:
        def done() -> bool:
            procs.check_alive()
            return _count(receiver, name, _success) >= count

        return done

    worker = procs.start(
        "worker",
        "worker",
        "--pool=prefork",
        "--concurrency=2",
        "--loglevel=WARNING",
        "--without-mingle",
        "--without-gossip",
        "--without-heartbeat",
        "--hostname=quickstart@%h",
    )
    screen.say(f"started celery worker (prefork, 2 processes), pid {worker.pid}")
    beat = procs.start("beat", "beat", "--loglevel=WARNING", f"--schedule={procs.workdir / 'beat-schedule'}")
    screen.say(f"started celery beat, pid {beat.pid}")

    screen.say("1. periodic pings: beat sends nightly-report and pings its own liveness monitor", "bold")
    screen.wait("the first beat-liveness ping", ok("beat-liveness"))
    screen.wait("the first nightly-report ping", ok("nightly-report"))

    screen.say("2. a chord: the weekly-crawl monitor is pinged once its body (aggregate) succeeded", "bold")
    crawl = chord([tasks.fetch_page.s(page) for page in range(3)], tasks.aggregate.s())
    celery_heartbeat.with_heartbeat(crawl, "weekly-crawl", app=tasks.app).apply_async()
    screen.wait("the weekly-crawl ping", ok("weekly-crawl"))

    screen.say("3. a task that fails once and retries: a retry is not a failure", "bold")
    tasks.import_feed.delay()
    screen.wait("the import-feed success ping", ok("import-feed"))
    failures = _count(receiver, "import-feed", _is_failure)
    screen.say(f"import-feed retried, then succeeded: {failures} failure pings, 1 success ping")

    screen.say("4. a task that fails for good: its monitor alerts at once", "bold")
    tasks.sync_invoices.delay()
    screen.wait("the invoice-sync failure ping", lambda: _count(receiver, "invoice-sync", _is_failure) >= 1)
    screen.tick()

    screen.say(f"5. celery beat dies (SIGTERM to pid {beat.pid}): nothing else will tell you", "bold")
    procs.stop("beat")
    stopped = time.time()
    screen.wait(
        "beat-liveness to go late",
        lambda: receiver.is_late("beat-liveness", period=PERIOD, grace=GRACE),
        timeout=PERIOD + GRACE + 10,
    )
    screen.say(f"the beat-liveness monitor noticed {time.time() - stopped:.1f} s after beat stopped")
    screen.wait(
        "nightly-report to go late",
        lambda: receiver.is_late("nightly-report", period=PERIOD, grace=GRACE),
        timeout=PERIOD + GRACE + 10,
    )
    screen.say("nightly-report, which only beat sends, goes late as well")

    screen.say("stopping the worker: a warm shutdown finishes running tasks and flushes pending pings")
    code = procs.stop("worker")
    screen.say(f"worker stopped (exit status {code})")


def main() -> int:
    with PingReceiver() as receiver, tempfile.TemporaryDirectory(prefix="celery-heartbeat-") as tmp:
        workdir = Path(tmp)
        env = dict(os.environ)
        env["QUICKSTART_DIR"] = str(workdir)
        env["QUICKSTART_MONITORS"] = receiver.base_url
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(EXAMPLES), env.get("PYTHONPATH")) if p)
        os.environ.update(QUICKSTART_DIR=env["QUICKSTART_DIR"], QUICKSTART_MONITORS=receiver.base_url)
        sys.path.insert(0, str(EXAMPLES))

        screen = Screen(receiver, sys.stdout)
        procs = Processes(workdir, env)
        screen.say(f"monitoring service stand-in (PingReceiver) at {receiver.base_url}")
        screen.say(f"broker: filesystem:// in {workdir} (no Redis, no RabbitMQ)")
        status = 0
        try:
            with _interrupts_raise():
                run(screen, procs, receiver)
        except KeyboardInterrupt:
            status = 130
            screen.say("interrupted: stopping worker and beat")
        except Exception as exc:
            status = 1
            screen.say(f"quickstart failed: {exc}", "red")
            for name in ("worker", "beat"):
                tail = procs.log_tail(name)
                if tail:
                    sys.stdout.write(f"--- last lines of the {name} log ---\n{tail}\n")
        finally:
            # A second Ctrl-C (or SIGTERM) during cleanup must not leave children behind.
            stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in stops}
            try:
                procs.stop_all()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        if status == 0:
            screen.table()
            print()
            print("What a monitoring service would have told you:")
            for line in screen.alerts:
                print(f"  {line}")
            print("Next: README.md, section 'One-minute setup'.")
        return status


if __name__ == "__main__":
    sys.exit(main())
