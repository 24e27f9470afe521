"""The probe command: exit codes, one line, several workers, --node, and no Celery imported."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from celery_heartbeat.probe import cli, state

from .test_state import sample


@pytest.fixture(autouse=True)
def no_env_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(state.ENV_DIR, raising=False)


def write(directory: Path, node: str, age: float = 0.0, **changes: object) -> None:
    now = time.monotonic()
    s = sample(state.identity(), node)._replace(written=now - age, loop_tick=now - age, tasks=[])
    s = s._replace(**changes)
    state.write_atomically(state.worker_path(str(directory), node), s)


def test_without_a_directory_or_state_it_exits_2_saying_why(tmp_path: Path) -> None:
    """No --dir and no $CELERY_HEARTBEAT_PROBE_DIR, a missing directory, or no file: exit 2, one line."""
    assert (2, "no state: give --dir or set $CELERY_HEARTBEAT_PROBE_DIR") == cli.run(["worker"])
    assert 2 == cli.run(["worker", "--dir", str(tmp_path / "nope")])[0]
    assert (2, f"no state: no live worker state file in {tmp_path}") == cli.run(["worker", "--dir", str(tmp_path)])
    assert (2, f"no state: no live beat state file in {tmp_path}") == cli.run(["beat", "--dir", str(tmp_path)])
    assert 2 == cli.run(["worker", "--dir", str(tmp_path), "--max-age", "0"])[0]


def test_the_directory_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$CELERY_HEARTBEAT_PROBE_DIR is the default --dir."""
    write(tmp_path, "celery@a")
    monkeypatch.setenv(state.ENV_DIR, str(tmp_path))
    code, line = cli.run(["worker"])
    assert (0, True) == (code, line.startswith("live: celery@a: event loop ran ")), line


def test_every_worker_is_checked_and_node_picks_one(tmp_path: Path) -> None:
    """One unhealthy worker in the directory fails the probe; --node judges only the one named."""
    write(tmp_path, "celery@a")
    write(tmp_path, "celery@b", age=30)
    code, line = cli.run(["worker", "--dir", str(tmp_path)])
    # the age is read when the command runs: 30 s plus however long the machine took to get there
    found = re.fullmatch(
        r"not live: celery@b: state not written for (\d+\.\d)s \(process frozen, stopped or killed\)", line
    )
    assert 1 == code
    assert found is not None, line
    assert 30.0 <= float(found.group(1)) < 35.0, line
    code, line = cli.run(["worker", "--dir", str(tmp_path), "--node", "celery@a"])
    assert (0, True) == (code, line.startswith("live: celery@a: ")), line
    assert 2 == cli.run(["worker", "--dir", str(tmp_path), "--node", "celery@c"])[0]


def test_ready_asks_for_connected_and_consuming(tmp_path: Path) -> None:
    """--ready fails a live worker that lost its broker; without --ready the same worker passes."""
    write(tmp_path, "celery@a", broker_connected=False, queues=[])
    assert 0 == cli.run(["worker", "--dir", str(tmp_path)])[0]
    code, line = cli.run(["worker", "--dir", str(tmp_path), "--ready"])
    assert (1, True) == (code, line.startswith("not ready: celery@a: broker connection lost ")), line


def test_help_explains_live_and_ready(capsys: pytest.CaptureFixture[str]) -> None:
    """`worker --help` says what live and ready mean; bad usage exits 2 as documented."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["worker", "--help"])
    out = capsys.readouterr().out
    assert (0, True, True) == (exit_info.value.code, "busy, not dead" in out, "--ready" in out)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nonsense"])
    assert 2 == exit_info.value.code


IMPORTS = r"""
import json, runpy, sys
sys.argv = ["celery-heartbeat-probe", "worker", "--dir", sys.argv[1]]
try:
    runpy.run_module("celery_heartbeat.probe", run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("celery", "kombu", "billiard", "redis", "amqp"))
print(json.dumps({"code": code, "heavy": heavy}))
"""


@pytest.mark.slow
def test_the_probe_imports_neither_celery_nor_kombu(tmp_path: Path) -> None:
    """Run as a container runs it, the probe loads no Celery, kombu, billiard or broker client."""
    write(tmp_path, "celery@a")
    out = subprocess.run([sys.executable, "-c", IMPORTS, str(tmp_path)], capture_output=True, text=True, check=True)
    assert {"code": 0, "heavy": []} == json.loads(out.stdout.strip().splitlines()[-1])
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "celery_heartbeat.probe", "worker", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in timed.stderr.splitlines() if "|" in line}
    assert (0, set()) == (timed.returncode, {m for m in imported if m.split(".")[0] in ("celery", "kombu")})


@pytest.mark.slow
def test_the_console_script_is_installed(tmp_path: Path) -> None:
    """`celery-heartbeat-probe` is the same command."""
    script = Path(sys.executable).with_name("celery-heartbeat-probe")
    if not script.exists():
        pytest.skip("not installed as a distribution in this interpreter's environment")
    write(tmp_path, "celery@a")
    out = subprocess.run([str(script), "worker", "--dir", str(tmp_path)], capture_output=True, text=True)
    assert (0, True) == (out.returncode, out.stdout.startswith("live: celery@a: ")), out
