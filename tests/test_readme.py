"""Every code block of the README runs as shown.

Python blocks are taken from README.md verbatim and run: against a real worker
(Redis broker and result backend, a PingReceiver as the monitoring service) for
the ones that send tasks, in a subprocess with a Django project made of the
README's own `proj/celery.py` and `proj/settings.py`, or through pytest for the
test module the README shows. Blocks import what they use from `proj`, the
project the README describes; the tests provide that project. A new Python block
without a test here fails `test_every_python_block_is_run_by_a_test`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery import Celery, _state
from celery.contrib.testing.worker import start_worker
from conftest import REDIS_HOST, REDIS_PORT, require_broker
from sync.fake_monitoring_api import FakeHealthchecks
from worker_process import celery_worker

import celery_heartbeat
from celery_heartbeat.health import HealthReport
from celery_heartbeat.testing import PingReceiver

README = Path(__file__).resolve().parent.parent / "README.md"
HC_URL = "https://hc-ping.com/0b8e5d6c-2f3a-4c1e-9d7b-6a5f4e3d2c1b"


@dataclass(frozen=True)
class Block:
    lang: str
    line: int
    code: str


def readme_blocks(lang: str) -> list[Block]:
    """The README's fenced code blocks in one language, in order."""
    found: list[Block] = []
    current: list[str] | None = None
    start, kind = 0, ""
    for number, text in enumerate(README.read_text().splitlines(), 1):
        if current is None and text.startswith("```"):
            current, start, kind = [], number + 1, text[3:].strip()
        elif current is not None and text.startswith("```"):
            if kind == lang:
                found.append(Block(kind, start, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(text)
    return found


# Each Python block, by a line only it has, and the test that runs it.
MARKERS = {
    'namespace="CELERY")': "test_django_setup_blocks_map_tasks_from_settings",
    "# proj/settings.py": "test_django_setup_blocks_map_tasks_from_settings",
    '"weekly-crawl"': "test_canvas_block_runs_and_pings",
    "install_beat_liveness(app,": "test_beat_liveness_block_adds_the_entry_and_pings",
    "from celery_heartbeat.health import": "test_health_block_runs",
    "# FastAPI:": "test_fastapi_and_flask_blocks_serve_health",
    "# Flask:": "test_fastapi_and_flask_blocks_serve_health",
    "# proj/urls.py": "test_django_urls_block_serves_health",
    "# proj/celery.py (or Django": "test_monitors_as_code_blocks_and_sync_console",
    "app.conf.heartbeat_beat_entries": "test_per_entry_settings_and_sync_monitors_blocks",
    "sync_monitors(app": "test_per_entry_settings_and_sync_monitors_blocks",
    'pytest_plugins = ["celery_heartbeat.testing"]': "test_testing_block_passes_under_pytest",
    "probe_dir=os.environ": "test_probe_dir_block_installs_with_the_directory",
}


def block(marker: str) -> Block:
    (found,) = [b for b in readme_blocks("python") if marker in b.code]
    return found


def run_block(marker: str, **names: Any) -> dict[str, Any]:
    """Run one README block in a fresh namespace; its variables afterwards."""
    found = block(marker)
    namespace: dict[str, Any] = {"__name__": "readme_block", **names}
    exec(compile(found.code, f"README.md:{found.line}", "exec"), namespace)
    return namespace


def test_every_python_block_is_run_by_a_test() -> None:
    """Each Python block of the README is matched by exactly one marker, and each marker by one block."""
    blocks = readme_blocks("python")
    assert [1] * len(blocks) == [sum(marker in b.code for marker in MARKERS) for b in blocks]
    assert [1] * len(MARKERS) == [sum(marker in b.code for b in blocks) for marker in MARKERS]
    tests = {name for name, value in globals().items() if name.startswith("test_") and callable(value)}
    assert set(MARKERS.values()) <= tests


# -- the in-process project: proj.celery.app on Redis, with a worker ------------------------------


@dataclass
class Project:
    app: Celery
    rx: PingReceiver
    loaded: list[Any]
    name: str


def _modules(**modules: ModuleType) -> None:
    sys.modules.update(modules)


@pytest.fixture(scope="module")
def project() -> Iterator[Project]:
    """`proj.celery.app` and `proj.tasks` as the README's blocks import them, served by a real worker."""
    require_broker("Redis", REDIS_HOST, REDIS_PORT)
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{os.environ.get('PYTEST_REDIS_DB', '1')}"
    name = f"t{uuid.uuid4().hex[:10]}"
    loaded: list[Any] = []
    previous = _state.get_current_app()
    with PingReceiver() as rx:
        app = Celery(name, broker=url, backend=url)  # current app: the canvas helpers' default
        app.conf.update(task_default_queue=name, control_exchange=name, result_expires=300)

        @app.task(name="proj.tasks.fetch")
        def fetch(page: str) -> int:
            return len(page)

        @app.task(name="proj.tasks.aggregate")
        def aggregate(sizes: list[int]) -> int:
            return sum(sizes)

        @app.task(name="proj.tasks.extract")
        def extract() -> dict[str, int]:
            return {"rows": 3}

        @app.task(name="proj.tasks.load")
        def load(data: dict[str, int]) -> None:
            loaded.append(data)

        monitors = ("weekly-crawl", "nightly-etl", "extracted", "proj.tasks.load")
        urls = {key: {"url": rx.url(key.rsplit(".", 1)[-1]), "provider": "healthchecks"} for key in monitors}
        handle = celery_heartbeat.install(app, urls=urls, coalesce_seconds=0)
        proj, celery_module, tasks = ModuleType("proj"), ModuleType("proj.celery"), ModuleType("proj.tasks")
        celery_module.app = app  # type: ignore[attr-defined]
        for task in (fetch, aggregate, extract, load):
            setattr(tasks, task.name.rsplit(".", 1)[-1], task)
        _modules(proj=proj, **{"proj.celery": celery_module, "proj.tasks": tasks})
        try:
            with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False, shutdown_timeout=15):
                yield Project(app, rx, loaded, name)
        finally:
            for module in ("proj", "proj.celery", "proj.tasks"):
                sys.modules.pop(module, None)
            handle.uninstall()
            _state._set_current_app(previous)


def test_canvas_block_runs_and_pings(project: Project) -> None:
    """The canvas block: one chord ping, a start and finish of one run, a ping link that hands data on."""
    rx = project.rx
    run_block('"weekly-crawl"')
    (crawl,) = rx.wait_for(1, name="weekly-crawl", timeout=20)
    start, finish = rx.wait_for(2, name="nightly-etl", timeout=20)
    (extracted,) = rx.wait_for(1, name="extracted", timeout=20)
    # Both loads ran. Their success pings may be one: a success still queued when the next one of the same
    # monitor arrives is replaced by it (pending pings of one URL coalesce, even with coalesce_seconds=0).
    rx.wait_for(1, name="load", timeout=20)
    deadline = time.monotonic() + 20
    while len(project.loaded) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ("/nightly-etl/start", "/nightly-etl") == (start.path, finish.path)
    assert start.query["rid"] == finish.query["rid"]
    assert [True, True] == [crawl.is_success, extracted.is_success]
    assert [{"rows": 3}, {"rows": 3}] == project.loaded


def test_beat_liveness_block_adds_the_entry_and_pings(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The beat-liveness block adds the schedule entry; its task, run by the worker, pings HC_BEAT_URL."""
    monkeypatch.setenv("HC_BEAT_URL", project.rx.url("beat"))
    run_block("install_beat_liveness(app,")
    entry = project.app.conf.beat_schedule["celery-heartbeat-beat-liveness"]
    project.app.send_task(entry["task"], **entry.get("options", {}))
    (ping,) = project.rx.wait_for(1, name="beat", timeout=20)
    assert ("/beat", 60.0) == (ping.path, entry["schedule"].total_seconds())


@pytest.mark.slow
def test_health_block_runs(project: Project, tmp_path: Path, clean_env: dict[str, str]) -> None:
    """The health block, with the two workers its comments assume, ends with the report it shows."""
    second = f"from celery import Celery\n\napp = Celery({project.name!r}, broker={project.app.conf.broker_url!r})\n"
    second += f"app.conf.update(task_default_queue={project.name!r}, control_exchange={project.name!r})\n"
    (tmp_path / "second.py").write_text(second)
    with celery_worker("second", tmp_path, clean_env, "-P", "solo", "-n", f"second@{project.name}"):
        names = run_block("from celery_heartbeat.health import")
    shown = (True, "ok", 200, '{"status":"ok","workers":2}')
    assert shown == (names["r"].ok, names["r"].status, names["r"].http_status, names["r"].to_json())
    assert isinstance(names["r"], HealthReport)


def test_fastapi_and_flask_blocks_serve_health(project: Project) -> None:
    """The FastAPI and Flask blocks build apps that answer the queue health endpoint."""
    from fastapi.testclient import TestClient

    path = f"/health/celery/queue/{project.name}?threshold=10"
    api = run_block("# FastAPI:")["api"]
    web = run_block("# Flask:")["web"]
    with TestClient(api) as client:
        fastapi_answer = client.get(path)
    flask_answer = web.test_client().get(path)
    expected = {"status": "ok", "queue": project.name, "depth": 0, "threshold": 10}
    assert (200, expected) == (fastapi_answer.status_code, fastapi_answer.json())
    assert (200, expected) == (flask_answer.status_code, flask_answer.get_json())


# -- subprocess projects -------------------------------------------------------------------------


def _project_dir(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _run(code: str, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(env, PYTHONPATH=f"{cwd}{os.pathsep}{env['PYTHONPATH']}")
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


_DJANGO_SETUP = """
import json
from proj.celery import app
from celery_heartbeat._heartbeat import installed

handle = installed(app)
print(json.dumps({
    "charge_cards": handle.monitor_for("billing.tasks.charge_cards").url,
    "reports": handle.monitor_for("reports.tasks.weekly").url,
    "beat_liveness": "celery-heartbeat-beat-liveness" in app.conf.beat_schedule,
}))
"""


@pytest.mark.slow
def test_django_setup_blocks_map_tasks_from_settings(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """`proj/celery.py` and `proj/settings.py` as shown: the app maps tasks and beat from Django settings."""
    files = {
        "proj/__init__.py": "",
        "proj/celery.py": block('namespace="CELERY")').code,
        "proj/settings.py": block("# proj/settings.py").code,
    }
    env = dict(clean_env, DJANGO_SETTINGS_MODULE="proj.settings")
    env.update(HC_CHARGE_CARDS_URL=HC_URL + "1", HC_REPORTS_URL=HC_URL + "2", HC_BEAT_URL=HC_URL + "3")
    done = _run(_DJANGO_SETUP, _project_dir(tmp_path, files), env)
    assert 0 == done.returncode, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"charge_cards": HC_URL + "1", "reports": HC_URL + "2", "beat_liveness": True} == result


_DJANGO_URLS = """
import json, sys
import django
from django.conf import settings

settings.configure(
    ROOT_URLCONF="proj.urls", CELERY_HEARTBEAT_APP="proj.celery.app", ALLOWED_HOSTS=["testserver"], SECRET_KEY="t"
)
django.setup()
from django.test import Client

response = Client().get(sys.argv[1])
print(json.dumps({"status": response.status_code, "body": json.loads(response.content)}))
"""


@pytest.mark.slow
def test_django_urls_block_serves_health(
    tmp_path: Path, clean_env: dict[str, str], redis_url: str, unique_name: str
) -> None:
    """`proj/urls.py` as shown serves the queue health endpoint."""
    files = {
        "proj/__init__.py": "",
        "proj/celery.py": f"from celery import Celery\n\napp = Celery({unique_name!r}, broker={redis_url!r})\n",
        "proj/urls.py": block("# proj/urls.py").code,
    }
    done = _run(_DJANGO_URLS, _project_dir(tmp_path, files), clean_env, f"/health/celery/queue/{unique_name}")
    assert 0 == done.returncode, done.stderr
    expected = {"status": "ok", "queue": unique_name, "depth": 0, "threshold": 1000}
    assert {"status": 200, "body": expected} == json.loads(done.stdout.strip().splitlines()[-1])


def _console(lang: str) -> list[tuple[str, list[str]]]:
    """The console blocks' commands (comments dropped) and the output shown after each."""
    runs: list[tuple[str, list[str]]] = []
    for console in readme_blocks(lang):
        for line in console.code.splitlines():
            if line.startswith("$ "):
                runs.append((line[2:].split("#", 1)[0].strip(), []))
            elif runs:
                runs[-1][1].append(line)
    return runs


def _monitors_project(root: Path, api_url: str, *before_install: str) -> Path:
    """`proj/celery.py` from the README, with the stand-in API's URL (and `before_install`) before install()."""
    install = "celery_heartbeat.install(app)"
    lines = [f"app.conf.heartbeat_healthchecks_api_url = {api_url!r}  # test: the local stand-in API\n"]
    code = block("# proj/celery.py (or Django").code.replace(install, "".join([*lines, *before_install]) + install)
    return _project_dir(root, {"proj/__init__.py": "", "proj/celery.py": code})


@pytest.mark.slow
def test_monitors_as_code_blocks_and_sync_console(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """The monitors-as-code module runs, and `celery -A proj heartbeat sync` prints exactly what is shown."""
    runs = _console("console")
    assert ["celery -A proj heartbeat sync", "celery -A proj heartbeat sync --dry-run"] == sorted({c for c, _ in runs})
    with FakeHealthchecks() as hc:
        root = _monitors_project(tmp_path, hc.url)
        env = dict(clean_env, HC_PING_KEY="ping-key-0123456789", HC_API_KEY=hc.api_key)
        env["PYTHONPATH"] = f"{root}{os.pathsep}{env['PYTHONPATH']}"
        for command, shown in runs:
            argv = [sys.executable, "-m", "celery", *command.split()[1:]]
            done = subprocess.run(argv, cwd=root, env=env, capture_output=True, text=True, timeout=60)
            assert (0, shown) == (done.returncode, done.stdout.splitlines()), done.stderr


_SYNC = """
import sys

exec(compile(open(sys.argv[1]).read(), "README.md sync_monitors block", "exec"), {"__name__": "readme"})
"""


@pytest.mark.slow
def test_per_entry_settings_and_sync_monitors_blocks(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """Per-entry settings placed where the README says, then its sync_monitors block: grace and slug land."""
    with FakeHealthchecks() as hc:
        root = _monitors_project(tmp_path, hc.url, block("app.conf.heartbeat_beat_entries").code)
        (root / "sync_block.py").write_text(block("sync_monitors(app").code)
        env = dict(clean_env, HC_PING_KEY="ping-key-0123456789", HC_API_KEY=hc.api_key)
        done = _run(_SYNC, root, env, str(root / "sync_block.py"))
        assert 0 == done.returncode, done.stdout + done.stderr
        checks = {check["slug"]: check for check in hc.checks.values()}
        assert {"nightly-report", "sync-eu", "us-sync"} == set(checks)
        assert (3600, 300) == (checks["nightly-report"]["grace"], checks["sync-eu"]["grace"])


_PROBE_SETTINGS = """
import json
from proj.celery import app
from celery_heartbeat._heartbeat import installed

print(json.dumps(installed(app).settings.probe_dir))
"""


@pytest.mark.slow
def test_probe_dir_block_installs_with_the_directory(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """The probe block as `proj/celery.py`: the app is installed with the directory from the environment."""
    root = _project_dir(tmp_path, {"proj/__init__.py": "", "proj/celery.py": block("probe_dir=os.environ").code})
    done = _run(_PROBE_SETTINGS, root, dict(clean_env, CELERY_HEARTBEAT_PROBE_DIR=str(tmp_path)))
    assert 0 == done.returncode, done.stderr
    assert str(tmp_path) == json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_testing_block_passes_under_pytest(tmp_path: Path, clean_env: dict[str, str]) -> None:
    """The README's test module for your own wiring passes under pytest as shown."""
    test_file = tmp_path / "test_wiring.py"
    test_file.write_text(block('pytest_plugins = ["celery_heartbeat.testing"]').code)
    done = subprocess.run(
        # The same plugins off as in this project's own pytest configuration (pytest-celery's break on 5.3).
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:celery", str(test_file)],
        cwd=tmp_path,
        env=clean_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == done.returncode, done.stdout + done.stderr
    assert re.search(r"\b2 passed\b", done.stdout), done.stdout
