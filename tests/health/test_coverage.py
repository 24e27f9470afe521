"""Which queue each beat entry and monitored task is sent to, resolved the way Celery routes it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery
from kombu import Queue
from support import write_django_settings

from celery_heartbeat.beat.entries import read_entries
from celery_heartbeat.health.coverage import Coverage, Route, route_entry, route_task, schedule_routes


def app_with_routes(**conf: object) -> Celery:
    app = Celery("routes", broker="memory://", set_as_current=False)
    app.conf.task_default_queue = "default"
    app.conf.update(conf)

    @app.task(name="proj.plain", shared=False)
    def plain() -> None:
        """Routed by task_routes, or to the default queue."""

    @app.task(name="proj.pinned", queue="pinned", shared=False)
    def pinned() -> None:
        """Its own queue option."""

    return app


def test_entries_route_by_own_option_then_task_option_then_task_routes_then_default() -> None:
    """The entry's `queue` beats the task's, which beats task_routes, which beats task_default_queue."""
    app = app_with_routes(
        task_routes={"proj.plain": {"queue": "routed"}, "proj.pinned": {"queue": "routed"}},
        beat_schedule={
            "own": {"task": "proj.plain", "schedule": 60.0, "options": {"queue": "own"}},
            "task-option": {"task": "proj.pinned", "schedule": 60.0},
            "task-routes": {"task": "proj.plain", "schedule": 60.0},
            "default": {"task": "proj.unregistered", "schedule": 60.0},
            "kombu-queue": {"task": "proj.plain", "schedule": 60.0, "options": {"queue": Queue("declared")}},
        },
    )

    queues = {entry.name: route_entry(app, entry).queue for entry in read_entries(app).entries}

    expected = {"own": "own", "task-option": "pinned", "task-routes": "routed", "default": "default"}
    assert {**expected, "kombu-queue": "declared"} == queues


def test_a_router_function_sees_the_entrys_arguments() -> None:
    """A function in task_routes is called with the entry's args and kwargs, as when beat sends it."""

    def by_region(name: str, args: tuple[object, ...], kwargs: dict[str, object], options: object, **_: object) -> str:
        return f"jobs-{kwargs.get('region', 'none')}"

    app = app_with_routes(
        task_routes=(by_region,),
        beat_schedule={"eu": {"task": "proj.plain", "schedule": 60.0, "kwargs": {"region": "eu"}}},
    )

    [entry] = read_entries(app).entries

    assert Route("entry", "eu", "proj.plain", "jobs-eu") == route_entry(app, entry)


def test_a_queue_that_cannot_be_resolved_is_reported_not_raised() -> None:
    """With task_create_missing_queues off, an unknown queue is a problem on the route, never an exception."""
    app = app_with_routes(task_create_missing_queues=False, task_queues=[Queue("default")])

    route = route_task(app, "proj.pinned")

    assert (None, "cannot resolve its queue (QueueNotFound: \"Queue 'pinned' missing from task_queues\")") == (
        route.queue,
        route.problem,
    )
    assert [route] == Coverage((route,), {"default": ["w1"]}, ("w1",)).uncovered()


def test_schedule_routes_cover_every_entry_and_every_monitored_task() -> None:
    """Beat entries first, then the tasks with a monitor (task_routes applied); unmonitored tasks are left out."""
    app = app_with_routes(
        task_routes={"proj.plain": "routed"},
        heartbeat_urls={"proj.*": "https://hc-ping.com/x"},
        beat_schedule={"nightly": {"task": "proj.plain", "schedule": 60.0}},
    )

    # Shared tasks that other tests in this process registered (proj.* too) reach every app: look at ours.
    ours = {"nightly", "proj.plain", "proj.pinned", "celery.backend_cleanup", "celery.chord_unlock"}
    routes = [r for r in schedule_routes(app) if r.name in ours]

    assert [("entry", "nightly", "routed"), ("task", "proj.pinned", "pinned"), ("task", "proj.plain", "routed")] == [
        (r.kind, r.name, r.queue) for r in routes
    ]


DJANGO_SCRIPT = """
import json
import django
django.setup()
from django.core.management import call_command
call_command("migrate", "django_celery_beat", verbosity=0)
from celery import Celery
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from celery_heartbeat.beat.entries import read_entries
from celery_heartbeat.health.coverage import route_entry

every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
PeriodicTask.objects.create(name="row-with-queue", task="proj.report", interval=every, queue="reports")
PeriodicTask.objects.create(name="row-without", task="proj.report", interval=every)

app = Celery("djcov", broker="memory://", set_as_current=False)
app.conf.beat_scheduler = "django_celery_beat.schedulers:DatabaseScheduler"
app.conf.task_default_queue = "default"
print(json.dumps({e.name: route_entry(app, e).queue for e in read_entries(app).entries}))
"""


@pytest.mark.slow
def test_django_celery_beat_rows_route_by_their_own_queue(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """A PeriodicTask row's `queue` column is the entry's queue (the DatabaseScheduler sends it there)."""
    pytest.importorskip("django_celery_beat")
    db = tmp_path / "db.sqlite3"
    write_django_settings(tmp_path, "djcov_settings", db)
    env = dict(clean_env, PYTHONPATH=f"{tmp_path}:{clean_env['PYTHONPATH']}", DJANGO_SETTINGS_MODULE="djcov_settings")

    done = subprocess.run([sys.executable, "-c", DJANGO_SCRIPT], env=env, capture_output=True, text=True, timeout=90)

    assert 0 == done.returncode, done.stderr
    assert {"row-with-queue": "reports", "row-without": "default"} == json.loads(done.stdout.splitlines()[-1])
