"""BackgroundSender: non-blocking submit, bounded memory, runs kept whole, fork safety, flush and close.

Concurrency and isolation between hosts: test_isolation.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time
from typing import Callable

import pytest
from celery import Celery
from support import wait_until

import celery_heartbeat
from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.delivery.ping import OutgoingPing
from celery_heartbeat.delivery.sender import THREAD_NAME, BackgroundSender
from celery_heartbeat.testing import Ping as Received
from celery_heartbeat.testing import PingReceiver

MakeSender = Callable[..., BackgroundSender]


def hc(url: str) -> Monitor:
    """A Healthchecks-style monitor: start, success and failure each have their own request, with rid."""
    return Monitor(url, "healthchecks")


def summary(pings: list[Received]) -> list[str]:
    """Each ping as "kind:rid" (kind from the Healthchecks path)."""
    out = []
    for ping in pings:
        suffix = ping.path.rsplit("/", 1)[-1]
        kind = suffix if suffix in ("start", "fail") else "success"
        out.append(f"{kind}:{ping.query.get('rid', '')[-1:]}")
    return out


def rid(char: str) -> str:
    """A run id whose Healthchecks rid ends in `char` (rids are UUIDs)."""
    return f"00000000-0000-0000-0000-00000000000{char}"


def accounted(stats: dict[str, int]) -> int:
    """Every submitted ping ends up exactly once in one of these (a failed delivery is kept: pending)."""
    return sum(stats[key] for key in ("coalesced", "pending", "sent", "rejected", "dropped"))


def test_nothing_starts_before_the_first_ping(make_sender: MakeSender, heartbeat_receiver: PingReceiver) -> None:
    """Constructing a sender starts no thread; the first ping starts one named daemon thread."""
    sender = make_sender()
    assert sender._thread is None
    assert sender.submit(OutgoingPing(hc(heartbeat_receiver.url("a")), "success"))
    thread = sender._thread
    assert thread is not None and (THREAD_NAME, True) == (thread.name, thread.daemon)
    assert sender.flush(5.0)
    assert ["GET /a"] == [f"{p.method} {p.path}" for p in heartbeat_receiver.pings]


def test_submit_never_blocks_while_the_endpoint_hangs(
    make_sender: MakeSender, heartbeat_receiver: PingReceiver
) -> None:
    """Two thousand submits to a hanging endpoint return at once: the caller never waits on HTTP."""
    heartbeat_receiver.respond(200, delay=5)
    sender = make_sender(timeout=3.0)
    monitor = hc(heartbeat_receiver.url("hang"))
    durations = []
    for i in range(2000):
        started = time.perf_counter()
        accepted = sender.submit(OutgoingPing(monitor, "success", f"run{i}"))
        durations.append(time.perf_counter() - started)
        assert accepted
    heartbeat_receiver.wait_for(1, name="hang")
    assert max(durations) < 0.05, f"slowest submit {max(durations):.4f}s"
    assert sum(durations) < 1.0
    assert 2 >= sender.stats()["pending"]


def test_pending_stays_bounded_for_100k_completions_to_a_dead_url(make_sender: MakeSender, free_port: int) -> None:
    """100,000 run completions (successes and failures) to one refused URL keep at most 3 pings pending."""
    sender = make_sender()
    monitor = hc(f"http://127.0.0.1:{free_port}/dead")
    peak = 0
    for i in range(100_000):
        sender.submit(OutgoingPing(monitor, "failure" if i % 10 == 0 else "success", f"run{i}"))
        if i % 500 == 0:
            peak = max(peak, sender.stats()["pending"])
    stats = sender.stats()
    assert peak <= 3 and stats["pending"] <= 3  # 1 monitor x 3 kinds; in flight included
    assert 100_000 == accounted(stats)


def test_start_pings_add_at_most_two_to_the_bound(make_sender: MakeSender, free_port: int) -> None:
    """With start pings too, a monitor holds one per kind, the finish of the start in flight, and that start."""
    sender = make_sender()
    monitor = hc(f"http://127.0.0.1:{free_port}/dead")
    peak = 0
    for i in range(100_000):
        run = i // 2  # each run: a start, then one finish (every seventh run fails)
        kind = "start" if i % 2 == 0 else "failure" if run % 7 == 0 else "success"
        sender.submit(OutgoingPing(monitor, kind, f"run{run}"))
        if i % 500 == 0:
            peak = max(peak, sender.stats()["pending"])
    assert peak <= 3 + 2
    assert 100_000 == accounted(sender.stats())


def test_a_dead_host_does_not_hold_up_monitors_elsewhere(make_sender: MakeSender) -> None:
    """A hanging host gets one attempt at a time, not one per monitor, and another host's ping does not wait
    for it: it is delivered while that attempt still hangs."""
    with PingReceiver() as sick, PingReceiver() as well:
        sick.respond(200, delay=30)
        sender = make_sender(timeout=10.0, backoff_max=30.0)
        for i in range(5):
            sender.submit(OutgoingPing(hc(sick.url(f"m{i}")), "success"))
        sender.submit(OutgoingPing(hc(well.url("other")), "success"))
        well.wait_for(1, timeout=5)
        sick.wait_for(1, timeout=5)
        wait_until(lambda: 1 == sender.stats()["sent"])
        assert (0, 1) == (sender.stats()["failed"], len(sick.pings))  # a second try needs the first to end


def test_a_started_run_keeps_its_finish_when_later_runs_coalesce(
    make_sender: MakeSender, heartbeat_receiver: PingReceiver
) -> None:
    """Once a run's start went out, its finish is delivered even if newer finishes pile up behind it."""
    rx = heartbeat_receiver
    sender = make_sender()
    monitor = hc(rx.url("m"))
    assert sender.submit(OutgoingPing(monitor, "start", rid("a")))
    assert sender.flush(5.0)
    rx.respond(500)
    sender.submit(OutgoingPing(monitor, "success", rid("a")))
    rx.wait_for(2, name="m")  # the finish of run a failed at least once: it is pending
    sender.submit(OutgoingPing(monitor, "start", rid("b")))
    sender.submit(OutgoingPing(monitor, "success", rid("b")))
    rx.healthy()
    recovered = time.time()
    assert sender.flush(5.0)
    delivered = [p for p in rx.pings if p.time >= recovered]
    assert ["success:a", "start:b", "success:b"] == summary(delivered)


def test_a_start_that_never_went_out_coalesces_together_with_its_finish(
    make_sender: MakeSender, free_port: int
) -> None:
    """While the endpoint is down, an older run is replaced whole: no finish without its start remains."""
    sender = make_sender()
    monitor = hc(f"http://127.0.0.1:{free_port}/m")
    for run in "ab":
        sender.submit(OutgoingPing(monitor, "start", rid(run)))
        sender.submit(OutgoingPing(monitor, "success", rid(run)))
    wait_until(lambda: sender.stats()["failed"] >= 1)
    with PingReceiver(port=free_port) as rx:
        assert sender.flush(5.0)
        assert ["start:b", "success:b"] == summary(rx.pings)


def test_a_finish_that_gives_way_takes_its_unsent_start_along(make_sender: MakeSender, free_port: int) -> None:
    """Run 2 starts after run 1 but finishes first: when run 1's finish replaces it, run 2's start goes too."""
    sender = make_sender()
    monitor = hc(f"http://127.0.0.1:{free_port}/m")
    for kind, run in (("start", "1"), ("start", "2"), ("success", "2"), ("success", "1")):
        sender.submit(OutgoingPing(monitor, kind, rid(run)))
    wait_until(lambda: sender.stats()["failed"] >= 1)
    with PingReceiver(port=free_port) as rx:
        assert sender.flush(5.0)
        delivered = summary(rx.pings)
    assert "start:2" not in delivered
    assert delivered[-1] == "success:1"
    assert 4 == accounted(sender.stats())


def test_newer_pings_replace_older_ones_of_the_same_kind_and_order_is_kept(
    make_sender: MakeSender, free_port: int
) -> None:
    """Pending pings coalesce per (URL, kind); the monitor still sees the last event last."""
    sender = make_sender()
    monitor = hc(f"http://127.0.0.1:{free_port}/m")
    sender.submit(OutgoingPing(monitor, "success", rid("1")))
    sender.submit(OutgoingPing(monitor, "failure", rid("2"), detail="ValueError"))
    sender.submit(OutgoingPing(monitor, "success", rid("3")))
    wait_until(lambda: sender.stats()["failed"] >= 1)
    with PingReceiver(port=free_port) as rx:
        assert sender.flush(5.0)
        assert ["fail:2", "success:3"] == summary(rx.pings)
        assert b"ValueError" == rx.pings[0].body
    assert sender.stats()["coalesced"] >= 1


def test_failure_pings_never_age_out_but_late_successes_are_dropped(
    make_sender: MakeSender, heartbeat_receiver: PingReceiver
) -> None:
    """Past max_age a success is dropped (it would show health at the wrong time); a failure still goes."""
    rx = heartbeat_receiver
    rx.respond(500)
    sender = make_sender(max_age=0.3)
    monitor = hc(rx.url("m"))
    sender.submit(OutgoingPing(monitor, "success", rid("1")))
    sender.submit(OutgoingPing(monitor, "failure", rid("2")))
    time.sleep(0.5)
    rx.healthy()
    recovered = time.time()
    assert sender.flush(5.0)
    assert ["fail:2"] == summary([p for p in rx.pings if p.time >= recovered])
    assert 1 == sender.stats()["dropped"]


def test_a_rejected_ping_is_dropped_and_counted(make_sender: MakeSender, heartbeat_receiver: PingReceiver) -> None:
    """A 4xx answer means the URL is wrong: the ping is not retried, and counted as rejected."""
    heartbeat_receiver.respond(404)
    sender = make_sender()
    sender.submit(OutgoingPing(hc(heartbeat_receiver.url("gone")), "success"))
    assert sender.flush(5.0)
    stats = sender.stats()
    assert (1, 0, 0, 1) == (stats["rejected"], stats["retried"], stats["pending"], len(heartbeat_receiver.pings))


def test_retry_after_is_honoured_between_attempts(make_sender: MakeSender, heartbeat_receiver: PingReceiver) -> None:
    """A 429 with Retry-After: 1 makes the next attempt wait at least a second."""
    rx = heartbeat_receiver
    rx.respond(429, headers={"Retry-After": "1"})
    sender = make_sender()
    sender.submit(OutgoingPing(hc(rx.url("m")), "success"))
    rx.wait_for(1)
    rx.healthy()
    first, second = rx.wait_for(2, timeout=5)
    assert second.time - first.time >= 0.95
    assert sender.flush(5.0)
    assert (1, 1) == (sender.stats()["sent"], sender.stats()["retried"])


def test_a_long_retry_after_backs_the_url_off_without_holding_other_monitors(
    make_sender: MakeSender, heartbeat_receiver: PingReceiver
) -> None:
    """Retry-After: 30 pauses that URL only; other monitors' pings keep flowing meanwhile."""
    rx = heartbeat_receiver
    rx.respond(429, headers={"Retry-After": "30"}, name="limited")
    sender = make_sender(backoff_max=60.0)
    sender.submit(OutgoingPing(hc(rx.url("limited")), "success"))
    rx.wait_for(1, name="limited")
    wait_until(lambda: sender.stats()["failed"] >= 1)  # the 429 is settled: its backoff is decided
    # Barrier: another monitor's ping, submitted after; an early retry of "limited" would be handed out with it.
    sender.submit(OutgoingPing(hc(rx.url("other")), "success"))
    rx.wait_for(1, name="other", timeout=2)
    wait_until(lambda: sender.stats()["sent"] >= 1)  # and its answer is settled
    assert 1 == len(rx.pings_for("limited"))
    assert (1, 1) == (sender.stats()["sent"], sender.stats()["pending"])


def test_trouble_is_logged_once_per_url_per_change_of_state_with_the_url_redacted(
    make_sender: MakeSender, heartbeat_receiver: PingReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    """Many failed deliveries log one WARNING; recovery logs one more; the URL's secret never appears."""
    rx = heartbeat_receiver
    rx.respond(500)
    sender = make_sender(backoff_max=0.05)
    monitor = hc(rx.url("0a1b2c3d-secret-uuid"))
    with caplog.at_level(logging.DEBUG, logger="celery_heartbeat"):
        for i in range(5):
            sender.submit(OutgoingPing(monitor, "success", f"run{i}"))
            wait_until(lambda i=i: sender.stats()["failed"] > i)
        rx.healthy()
        assert sender.flush(5.0)
    messages = [r.getMessage() for r in caplog.records if r.name == "celery_heartbeat"]
    assert [logging.WARNING, logging.WARNING] == [r.levelno for r in caplog.records if r.name == "celery_heartbeat"]
    assert f"cannot deliver pings to http://127.0.0.1:{rx.port}/0a1b… (HTTP 500)" in messages[0]
    assert "answering again" in messages[1]
    assert not any("secret" in m for m in messages)
    assert not any(r.exc_info for r in caplog.records)


def test_flush_is_bounded_when_the_endpoint_hangs(make_sender: MakeSender, heartbeat_receiver: PingReceiver) -> None:
    """flush(0.5) returns False after about half a second even though each attempt may take 5 s."""
    heartbeat_receiver.respond(200, delay=10)
    sender = make_sender(timeout=5.0)
    sender.submit(OutgoingPing(hc(heartbeat_receiver.url("hang")), "success"))
    heartbeat_receiver.wait_for(1)
    started = time.monotonic()
    assert not sender.flush(0.5)
    assert 0.4 <= time.monotonic() - started < 1.0
    assert 1 == sender.stats()["pending"]


def test_flush_gives_up_early_when_every_url_failed_again(make_sender: MakeSender, free_port: int) -> None:
    """A dead endpoint costs a flush one more round of attempts, not the whole timeout."""
    sender = make_sender(backoff_initial=2.0, backoff_max=30.0)  # no retry of its own before the flush
    sender.submit(OutgoingPing(hc(f"http://127.0.0.1:{free_port}/dead"), "success"))
    wait_until(lambda: sender.stats()["failed"] >= 1)
    started = time.monotonic()
    assert not sender.flush(10.0)
    assert time.monotonic() - started < 2.0
    assert 2 == sender.stats()["failed"]


def test_flush_tries_a_backing_off_url_again_at_once(make_sender: MakeSender, free_port: int) -> None:
    """A URL that is backing off (for seconds here) is tried again as soon as a flush begins, once."""
    sender = make_sender(backoff_initial=2.0, backoff_max=30.0)
    sender.submit(OutgoingPing(hc(f"http://127.0.0.1:{free_port}/m"), "success"))
    wait_until(lambda: sender.stats()["failed"] >= 1)  # the host now backs off for 3 s or more
    for attempt in range(2):
        assert not sender.flush(2.0)
        assert 2 + attempt == sender.stats()["failed"]  # one more try per flush, then it gives up
    with PingReceiver(port=free_port) as rx:
        started = time.monotonic()
        assert sender.flush(5.0)
        assert time.monotonic() - started < 1.0
        assert 1 == len(rx.pings)


def test_a_delivery_that_began_before_the_flush_does_not_count_as_its_try(
    make_sender: MakeSender, heartbeat_receiver: PingReceiver
) -> None:
    """A failure answered to a request sent before the flush began still gets the flush's own retry."""
    rx = heartbeat_receiver
    rx.respond(500, delay=0.5)
    sender = make_sender(timeout=2.0, backoff_max=30.0)
    sender.submit(OutgoingPing(hc(rx.url("m")), "success"))
    rx.wait_for(1)  # in flight: it will be answered 500 after the flush has begun
    rx.healthy()
    assert sender.flush(5.0)
    assert [500, 200] == [p.status for p in rx.pings]


def test_expedite_starts_urgent_delivery_without_waiting(make_sender: MakeSender, free_port: int) -> None:
    """expedite() returns at once (it runs in a signal handler) and the backed-off ping goes out now."""
    sender = make_sender(backoff_max=30.0)
    sender.submit(OutgoingPing(hc(f"http://127.0.0.1:{free_port}/m"), "success"))
    wait_until(lambda: sender.stats()["failed"] >= 1)
    with PingReceiver(port=free_port) as rx:
        started = time.monotonic()
        sender.expedite(5.0)
        assert time.monotonic() - started < 0.05
        rx.wait_for(1, timeout=2.0)


def test_close_drops_what_is_left_and_stops_the_thread(make_sender: MakeSender, free_port: int) -> None:
    """close() counts undelivered pings as dropped, refuses new ones and lets the thread exit."""
    sender = make_sender(backoff_max=30.0)
    sender.submit(OutgoingPing(hc(f"http://127.0.0.1:{free_port}/m"), "success"))
    wait_until(lambda: sender.stats()["failed"] >= 1)
    thread = sender._thread
    assert thread is not None
    sender.close(0.1)
    thread.join(5.0)
    assert not thread.is_alive()
    assert not sender.submit(OutgoingPing(hc(f"http://127.0.0.1:{free_port}/m"), "success"))
    stats = sender.stats()
    assert (0, 2) == (stats["pending"], stats["dropped"])


def test_an_idle_thread_exits_and_the_next_ping_starts_another(
    make_sender: MakeSender, heartbeat_receiver: PingReceiver
) -> None:
    """No thread lingers: after idle_exit seconds the thread ends; the next ping is delivered by a new one."""
    sender = make_sender(idle_exit=0.2)
    monitor = hc(heartbeat_receiver.url("m"))
    sender.submit(OutgoingPing(monitor, "success"))
    first = sender._thread
    assert first is not None and sender.flush(5.0)
    first.join(5.0)
    assert (False, None) == (first.is_alive(), sender._thread)
    sender.submit(OutgoingPing(monitor, "success"))
    assert sender.flush(5.0)
    assert 2 == len(heartbeat_receiver.pings)


def test_pings_reuse_one_keep_alive_connection(make_sender: MakeSender, heartbeat_receiver: PingReceiver) -> None:
    """Twenty pings in a row travel over a single TCP connection."""
    sender = make_sender()
    for i in range(20):
        sender.submit(OutgoingPing(hc(heartbeat_receiver.url(f"m{i}")), "success"))
        assert sender.flush(5.0)
    assert (20, 1) == (len(heartbeat_receiver.pings), heartbeat_receiver.connections_accepted)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_sender_and_never_inherits_a_held_lock(
    make_sender: MakeSender, heartbeat_receiver: PingReceiver
) -> None:
    """A child forked while the parent's sender is busy and its lock held starts clean and delivers."""
    rx = heartbeat_receiver
    rx.respond(200, delay=30, name="parent")
    sender = make_sender(timeout=1.0)
    sender.submit(OutgoingPing(hc(rx.url("parent")), "success"))
    rx.wait_for(1, name="parent")  # the parent's thread is now in the middle of a request
    sender._lock.acquire()
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit code
            code = 1
            try:
                inherited = sender.stats()["pending"]
                accepted = sender.submit(OutgoingPing(hc(rx.url("child")), "success"))
                code = 0 if (inherited, accepted, sender.flush(5.0)) == (0, True, True) else 2
            finally:
                os._exit(code)
    finally:
        sender._lock.release()
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    assert 1 == len(rx.pings_for("child"))
    sender.submit(OutgoingPing(hc(rx.url("after")), "success"))  # the parent's sender still works
    rx.wait_for(1, name="after", timeout=10)
    assert sender.flush(5.0) is False  # the hanging "parent" ping is still pending
    assert 1 == sender.stats()["sent"]


SCRIPT = """
import atexit, json, sys, time
from celery_heartbeat.config.monitor import Monitor
from celery_heartbeat.delivery.ping import OutgoingPing
from celery_heartbeat.delivery.sender import BackgroundSender, SenderConfig

# Registered first, so it runs last: after the sender's own atexit flush.
atexit.register(lambda: print(json.dumps(sender.stats()), flush=True))
sender = BackgroundSender(SenderConfig(timeout=30.0, shutdown_timeout=20.0))
sender.submit(OutgoingPing(Monitor(sys.argv[1], "generic"), "success"))
if len(sys.argv) > 2:
    sender.flush(float(sys.argv[2]))
print(time.time(), flush=True)  # the end of the script: what follows is exiting
"""


def run_script(clean_env: dict[str, str], *args: str) -> tuple[float, str]:
    """Run SCRIPT; the seconds from the end of its code to its exit (imports not counted), and its stats."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), *args],
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    exited = time.time()
    assert 0 == done.returncode, done.stderr
    ended, stats = done.stdout.strip().splitlines()
    return exited - float(ended), stats


@pytest.mark.slow
def test_a_plain_script_flushes_at_exit(heartbeat_receiver: PingReceiver, clean_env: dict[str, str]) -> None:
    """Outside a worker, atexit delivers what is pending (here a ping answered after half a second)."""
    heartbeat_receiver.respond(200, delay=0.5)
    _, stats = run_script(clean_env, heartbeat_receiver.url("script"))
    assert '"sent": 1' in stats and '"pending": 0' in stats


@pytest.mark.slow
def test_atexit_does_not_wait_again_after_a_shutdown_flush(
    heartbeat_receiver: PingReceiver, clean_env: dict[str, str]
) -> None:
    """When a shutdown flush already gave up, exiting does not wait a second time.

    A second wait would take the whole shutdown_timeout (20 s): far from any interpreter exit time.
    """
    heartbeat_receiver.respond(200, delay=60)
    elapsed, stats = run_script(clean_env, heartbeat_receiver.url("script"), "0.2")
    assert '"pending": 1' in stats
    assert elapsed < 10.0, f"exit took {elapsed:.2f}s"


def test_100k_completions_through_the_installed_hook_keep_pending_bounded(free_port: int) -> None:
    """100,000 task successes through a real installed app's hook to one dead URL keep pending <= kinds."""
    app = Celery("bounded", broker="memory://", set_as_current=False)

    @app.task(name="proj.tick")
    def tick() -> None:
        return None

    url = f"http://127.0.0.1:{free_port}/dead"
    hb = celery_heartbeat.install(
        app, urls={"proj.tick": url}, coalesce_seconds=0, timeout=0.5, max_attempts=2, backoff_max=0.5
    )
    try:
        peak = 0
        for i in range(100_000):
            tick.push_request(id=f"id-{i}")
            try:
                hb._hooks.on_success(sender=tick, result=None)
            finally:
                tick.pop_request()
            if i % 1000 == 0:
                peak = max(peak, hb.stats()["pending"])
        stats = hb.stats()
        assert peak <= 3 and stats["pending"] <= 3
        assert 100_000 == accounted(stats)
    finally:
        hb.uninstall()
