"""Importing and installing have no side effects: no thread, no signal receiver before install, no network."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, socket, threading

calls = []
_connect = socket.socket.connect
def spy(self, *args):
    calls.append(repr(args))
    return _connect(self, *args)
socket.socket.connect = spy

from celery import Celery, signals
names = ("task_prerun", "task_success", "task_failure", "task_revoked", "worker_ready", "beat_init")
def receivers():
    return {n: len(getattr(signals, n).receivers or []) for n in names}
before = receivers()
import celery_heartbeat, celery_heartbeat.health, celery_heartbeat.cli, celery_heartbeat.sync, celery_heartbeat.testing
after_import = receivers()
app = Celery("side", broker="redis://127.0.0.1:1/0")
app.conf.beat_schedule = {"e": {"task": "x", "schedule": 5.0}}
hb = celery_heartbeat.install(
    app,
    urls={"x": "https://hc-ping.com/abc"},
    beat_url="https://hc-ping.com/beat",
    healthchecks_ping_key="pingkey123",
)
after_install = receivers()
print(json.dumps({
    "threads": threading.active_count(),
    "connects": calls,
    "import_changed": before != after_import,
    "install_added": after_install["task_success"] - before["task_success"],
}))
"""


def test_import_and_install_start_nothing_and_touch_no_network() -> None:
    """Import connects no signal; install() starts no thread and opens no socket, and adds exactly one hook set."""
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"threads": 1, "connects": [], "import_changed": False, "install_added": 1} == facts


def test_importing_the_package_loads_no_celery_until_a_name_is_used() -> None:
    """`import celery_heartbeat` is lazy (the probe path needs that); the first public name loads Celery."""
    script = (
        "import json, sys, celery_heartbeat, celery_heartbeat.probe\n"
        "before = 'celery' in sys.modules or 'kombu' in sys.modules\n"
        "celery_heartbeat.install\n"
        "print(json.dumps([before, 'celery' in sys.modules, sorted(dir(celery_heartbeat)) == dir(celery_heartbeat)]))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert [False, True, True] == json.loads(out.stdout.strip().splitlines()[-1])
