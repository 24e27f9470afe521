"""State files: atomic round trip, and files of processes that are gone are recognised (and swept)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from celery_heartbeat.probe import state
from celery_heartbeat.probe.state import BeatState, PoolState, TaskState, WorkerState
from celery_heartbeat.probe.writer import StateWriter, sweep


def sample(identity: state.Identity, node: str = "celery@h") -> WorkerState:
    return WorkerState(
        identity=identity,
        node=node,
        written=1.0,
        written_at="2026-01-01T00:00:00Z",
        started=0.5,
        phase="running",
        broker_connected=True,
        broker_changed=0.6,
        loop="hub",
        loop_tick=0.9,
        queues=["q"],
        pool=PoolState("solo", 1, [identity.pid], 1),
        tasks=[TaskState("id", "t", 0.7, 30.0, identity.pid)],
    )


def dead_identity() -> state.Identity:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return state.identity()._replace(pid=proc.pid, start_ticks=None)


def test_write_then_read_gives_the_same_state(tmp_path: Path) -> None:
    """What the writer wrote is what the probe reads, and no temporary file stays behind."""
    worker = sample(state.identity())
    beat = BeatState(state.identity(), 2.0, "x", 1.0, "running", 1.5, 9.5)
    state.write_atomically(state.worker_path(str(tmp_path), "celery@h/x"), worker)
    state.write_atomically(state.beat_path(str(tmp_path)), beat)
    assert ["beat.json", "worker-celery@h_x.json"] == sorted(os.listdir(tmp_path))
    assert worker == state.read(str(tmp_path / "worker-celery@h_x.json"))
    assert beat == state.read(str(tmp_path / "beat.json"))


def test_a_file_of_another_shape_is_a_bad_state(tmp_path: Path) -> None:
    """A truncated or foreign file is reported, not trusted."""
    (tmp_path / "worker-x.json").write_text('{"v": 1, "kind": "worker"}')
    (tmp_path / "worker-y.json").write_text("{")
    for name in ("worker-x.json", "worker-y.json"):
        try:
            state.read(str(tmp_path / name))
        except state.ProbeStateError as exc:
            assert name in str(exc)
        else:
            raise AssertionError(f"{name} was accepted")


def test_this_process_is_not_gone_a_dead_pid_and_a_reused_pid_are() -> None:
    """A dead pid is gone; a live pid whose start time differs (reused in a new container) is gone too."""
    me = state.identity()
    assert (False, True) == (state.process_gone(me), state.process_gone(dead_identity()))
    if me.start_ticks is not None:  # Linux
        assert True is state.process_gone(me._replace(start_ticks=me.start_ticks + 1))
    if me.boot_id is not None:
        assert True is state.process_gone(me._replace(boot_id="another-boot"))
    assert False is state.process_gone(dead_identity()._replace(hostname="another-host"))  # pids mean nothing there


def test_writer_sweeps_files_of_gone_processes_and_removes_its_own_on_close(tmp_path: Path) -> None:
    """A new writer removes leftovers of dead processes only; closing removes its own file."""
    leftover = tmp_path / "worker-old.json"
    other = tmp_path / "worker-other.json"
    state.write_atomically(str(leftover), sample(dead_identity(), "old"))
    state.write_atomically(str(other), sample(state.identity(), "other"))
    sweep(str(tmp_path))
    assert (False, True) == (leftover.exists(), other.exists())

    mine = tmp_path / "worker-mine.json"
    writer = StateWriter(str(mine), lambda: sample(state.identity(), "mine"), interval=0.05)
    writer.start()
    assert "mine" == state.read(str(mine)).node  # type: ignore[union-attr]
    writer.close()
    assert (False, True) == (mine.exists(), other.exists())
