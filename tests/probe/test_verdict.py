"""The live / ready decision, rule by rule, from hand-made states (the subprocess tests cover the real thing)."""

from __future__ import annotations

from celery_heartbeat.probe.state import BeatState, Identity, PoolState, TaskState, WorkerState
from celery_heartbeat.probe.verdict import beat_verdict, worker_verdict

ME = Identity(pid=100, hostname="h", boot_id="b", start_ticks=1)
NOW = 1000.0


def worker(**changes: object) -> WorkerState:
    base = WorkerState(
        identity=ME,
        node="celery@h",
        written=NOW - 0.5,
        written_at="",
        started=NOW - 60,
        phase="running",
        broker_connected=True,
        broker_changed=NOW - 50,
        loop="hub",
        loop_tick=NOW - 0.5,
        queues=["celery"],
        pool=PoolState("prefork", 2, [101, 102], 2),
        tasks=[],
    )
    return base._replace(**changes)


def task(started_ago: float, limit: float | None, pid: int = 101) -> TaskState:
    return TaskState(id="i", name="t", started=NOW - started_ago, time_limit=limit, pid=pid)


def test_a_running_worker_is_live_and_ready() -> None:
    """Fresh state, a loop that ticks, connected and consuming: live and ready."""
    v = worker_verdict(worker(), NOW, 10)
    assert (True, True) == (v.live, v.ready)


def test_a_stale_file_is_not_live() -> None:
    """No write within max-age: the process is frozen or gone."""
    v = worker_verdict(worker(written=NOW - 11), NOW, 10)
    assert (False, False, True) == (v.live, v.ready, v.reason.startswith("state not written for 11.0s"))


def test_a_stalled_loop_with_nothing_running_in_the_process_is_not_live() -> None:
    """Children busy (prefork) do not excuse the main process's loop standing still."""
    v = worker_verdict(worker(loop_tick=NOW - 11, tasks=[task(5, None)]), NOW, 10)
    assert (False, "event loop made no progress for 11.0s") == (v.live, v.reason)


def test_a_task_on_the_loops_own_process_within_its_limit_is_busy() -> None:
    """Solo: the loop stalls for the task; within its time limit plus max-age that is busy."""
    v = worker_verdict(worker(loop_tick=NOW - 25, tasks=[task(25, 20.0, pid=100)]), NOW, 10)
    assert (True, True) == (v.live, v.reason.startswith("busy: task t[i] running 25.0s (time limit 20s)"))


def test_a_task_on_the_loops_own_process_past_its_limit_is_not_live() -> None:
    """Solo enforces no limit: past it (plus max-age) the worker is stuck."""
    v = worker_verdict(worker(loop_tick=NOW - 31, tasks=[task(31, 20.0, pid=100)]), NOW, 10)
    assert (False, True) == (v.live, "past its limit" in v.reason)


def test_a_task_without_a_time_limit_is_busy_however_long() -> None:
    """No limit: a long task cannot be told from a stuck one, so it is busy."""
    v = worker_verdict(worker(loop_tick=NOW - 9000, tasks=[task(9000, None, pid=100)]), NOW, 10)
    assert (True, True) == (v.live, "(no time limit)" in v.reason)


def test_every_pool_slot_past_its_limit_is_not_live_and_one_is_enough_to_stay_live() -> None:
    """All prefork slots held past their limits: the worker can never take a task; one free slot: live."""
    stuck = [task(40, 20.0), task(45, 20.0)]
    assert (False, True) == (
        worker_verdict(worker(tasks=stuck), NOW, 10).live,
        worker_verdict(worker(tasks=stuck[:1]), NOW, 10).live,
    )


def test_a_broker_outage_is_live_but_not_ready_whatever_the_loop() -> None:
    """Reconnecting: the loop waits in Celery's backoff by design; a restart cannot fix a broker."""
    v = worker_verdict(worker(broker_connected=False, broker_changed=NOW - 300, loop_tick=NOW - 300), NOW, 10)
    assert (True, False, "broker connection lost 300.0s ago; reconnecting") == (v.live, v.ready, v.reason)


def test_starting_and_stopping_are_live_not_ready() -> None:
    """Before the first connection and during a warm shutdown: live, not ready."""
    starting = worker_verdict(worker(phase="starting", broker_connected=False, loop_tick=None), NOW, 10)
    stopping = worker_verdict(worker(phase="stopping", broker_connected=False), NOW, 10)
    assert [(True, False), (True, False)] == [(starting.live, starting.ready), (stopping.live, stopping.ready)]


def test_consuming_no_queue_is_not_ready() -> None:
    """Connected, but every queue cancelled (cancel_consumer): live, not ready."""
    v = worker_verdict(worker(queues=[]), NOW, 10)
    assert (True, False, "consuming no queue") == (v.live, v.ready, v.reason)


def beat(**changes: object) -> BeatState:
    base = BeatState(ME, NOW - 0.5, written_at="", started=NOW - 100, phase="running", tick=None, next_wake=None)
    return base._replace(**changes)


def test_beat_asleep_until_its_next_wake_is_live_and_late_beyond_max_age_is_not() -> None:
    """The loop slept 250 s on purpose (next entry due later): live; 11 s past its own wake-up time: not."""
    asleep = beat_verdict(beat(tick=NOW - 250, next_wake=NOW + 50), NOW, 10)
    late = beat_verdict(beat(tick=NOW - 250, next_wake=NOW - 11), NOW, 10)
    assert (True, False) == (asleep.live, late.live)
    assert "next wake in 50.0s" in asleep.reason
    assert "11.0s late" in late.reason


def test_beat_with_a_stale_file_is_not_live() -> None:
    """A frozen beat stops writing too."""
    assert False is beat_verdict(beat(written=NOW - 11, tick=NOW - 1, next_wake=NOW + 100), NOW, 10).live
