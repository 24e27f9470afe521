"""django-celery-beat on a real prefork worker: the auto-monitor table is read once, in the parent.

A query in a forked child at worker_process_init ran before Celery's Django
fixup closed the connection the child inherited, so children could share one
database socket. The table is now built in the worker's main process at
worker_init (then its connection is closed) and inherited by the children.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from celery import Celery
from support import write_django_settings
from worker_process import celery_worker

from celery_heartbeat.testing import PingReceiver

pytestmark = pytest.mark.slow

APP_MODULE = """
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djsettings")
import django

django.setup()
from django.core.management import call_command
from django.db.backends.signals import connection_created

call_command("migrate", "django_celery_beat", verbosity=0)
from django_celery_beat.models import IntervalSchedule, PeriodicTask

every = IntervalSchedule.objects.get_or_create(every=10, period=IntervalSchedule.MINUTES)[0]
PeriodicTask.objects.get_or_create(name="poll", defaults={"task": "dj.poll", "interval": every, "args": "[1, 2]"})


def log_connection(**_):
    with open(os.environ["CONNECTIONS"], "a") as f:
        f.write(f"{os.getpid()}\\n")


connection_created.connect(log_connection)

from celery import Celery
import celery_heartbeat

app = Celery(os.environ["QUEUE"], broker=os.environ["BROKER"])
app.conf.task_default_queue = os.environ["QUEUE"]
app.conf.control_exchange = os.environ["QUEUE"]
app.conf.beat_scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
app.conf.heartbeat_healthchecks_ping_key = "pk"
app.conf.heartbeat_healthchecks_ping_url = os.environ["RECEIVER"]
celery_heartbeat.install(app)


@app.task(name="dj.poll")
def poll(a, b):
    return a + b
"""


def test_prefork_children_never_query_the_schedule_database(
    tmp_path: Path, clean_env: dict[str, str], redis_url: str, unique_name: str
) -> None:
    """Only the worker's main process opens a database connection; the children's pings still find the entry."""
    pytest.importorskip("django_celery_beat")
    write_django_settings(tmp_path, "djsettings", tmp_path / "db.sqlite3")
    (tmp_path / "djapp.py").write_text(APP_MODULE)
    connections = tmp_path / "connections.log"
    with PingReceiver() as rx:
        env = dict(
            clean_env,
            BROKER=redis_url,
            QUEUE=unique_name,
            RECEIVER=rx.base_url,
            CONNECTIONS=str(connections),
        )
        with celery_worker("djapp", tmp_path, env, "--pool=prefork", "--concurrency=2") as (proc, log):
            producer = Celery(unique_name, broker=redis_url, set_as_current=False)
            try:
                producer.send_task("dj.poll", args=[1, 2], queue=unique_name)
                (ping,) = rx.wait_for(1, name="pk", timeout=20)
            finally:
                producer.close()
            assert "/pk/poll" == ping.path, log.read_text()
            pids = {int(line) for line in connections.read_text().split()}
            assert {proc.pid} == pids, log.read_text()
            assert "1 beat entry monitored automatically" in log.read_text()
    assert os.path.exists(connections)
