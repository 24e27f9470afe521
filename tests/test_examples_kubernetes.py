"""examples/kubernetes: the manifests are valid Kubernetes objects, and their probes pass against a real worker."""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from worker_process import celery_worker

from celery_heartbeat.probe import cli

KUBERNETES = Path(__file__).resolve().parent.parent / "examples" / "kubernetes"
MANIFESTS = sorted(KUBERNETES.glob("*.yaml"))


def load(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((KUBERNETES / name).read_text())
    return doc


def container(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]["containers"][0]
    return spec


def test_there_are_worker_and_beat_manifests() -> None:
    """The README points at these files."""
    assert ["beat.yaml", "worker-http.yaml", "worker.yaml"] == [p.name for p in MANIFESTS]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_is_valid_offline(path: Path) -> None:
    """Each manifest validates against the Kubernetes schema (strict: no unknown fields), offline."""
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_the_readmes_kubernetes_snippets_are_valid_and_probe_with_real_commands() -> None:
    """The worker and beat Deployments shown in the README validate too, and their probes parse."""
    readme = (KUBERNETES.parent.parent / "README.md").read_text()
    section = readme.split("<!-- section: kubernetes -->")[1].split("<!-- /section: kubernetes -->")[0]
    blocks = [b.split("```")[0] for b in section.split("```yaml\n")[1:]]
    assert ["celery-worker", "celery-beat"] == [yaml.safe_load(b)["metadata"]["name"] for b in blocks]
    for block in blocks:
        doc = yaml.safe_load(block)
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)
        for key, probe in container(doc).items():
            if key.endswith("Probe"):
                cli._parser().parse_args(probe["exec"]["command"][1:])


def test_validation_catches_a_misspelt_probe_field() -> None:
    """The check above can fail: a typo in a probe is rejected."""
    doc = copy.deepcopy(load("worker.yaml"))
    probe = container(doc)["livenessProbe"]
    probe["exec"] = {"commmand": probe["exec"]["command"]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("name", ["worker.yaml", "beat.yaml"])
def test_manifest_probe_commands_are_real_probe_invocations(name: str) -> None:
    """Every exec probe in the manifests is `celery-heartbeat-probe` with arguments the command accepts."""
    c = container(load(name))
    commands = [c[p]["exec"]["command"] for p in ("startupProbe", "livenessProbe", "readinessProbe") if p in c]
    assert commands
    for command in commands:
        assert "celery-heartbeat-probe" == command[0]
        cli._parser().parse_args(command[1:])  # exits 2 on anything it does not accept
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["CELERY_HEARTBEAT_PROBE_DIR"] in mounts  # the state dir is the emptyDir


def _get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return response.status, json.loads(response.read())


@pytest.mark.slow
def test_the_manifests_probes_pass_against_the_example_worker(
    tmp_path: Path, clean_env: dict[str, str], redis_url: str, unique_name: str
) -> None:
    """The example app as the manifests run it: their exec probes and HTTP paths all answer healthy."""
    scripts = Path(sys.executable).parent
    if not (scripts / "celery-heartbeat-probe").exists():
        pytest.skip("the console script is not installed in this interpreter's environment")
    shutil.copy(KUBERNETES / "proj.py", tmp_path / "proj.py")
    # The example as is, isolated on the shared broker: its broadcasts reach only this test's worker.
    (tmp_path / "isolated.py").write_text(f"from proj import app\napp.conf.control_exchange = {unique_name!r}\n")
    port = _free_port()
    env = dict(clean_env, CELERY_BROKER_URL=redis_url, CELERY_QUEUE=unique_name, PYTHONWARNINGS="ignore")
    env["PATH"] = os.pathsep.join([str(scripts), env.get("PATH", "")])  # as in the image: the script on PATH
    env.update(CELERY_HEARTBEAT_PROBE_DIR=str(tmp_path / "probe"), CELERY_HEARTBEAT_PROBE_PORT=str(port))
    exec_probes = [container(load("worker.yaml"))[p]["exec"]["command"] for p in ("livenessProbe", "readinessProbe")]
    http = container(load("worker-http.yaml"))
    with celery_worker("isolated", tmp_path, env, "-P", "solo", f"--hostname={unique_name}@k8s") as (_, log):
        for command in exec_probes:
            done = _poll(command, env)
            assert (0, "") == (done.returncode, done.stderr), (command, done.stdout, log.read_text())
            assert done.stdout.startswith(f"{'ready' if '--ready' in command else 'live'}: {unique_name}@k8s: ")
        for probe in ("livenessProbe", "readinessProbe"):
            code, body = _get(port, http[probe]["httpGet"]["path"])
            assert (200, "ok") == (code, body["status"])


def _poll(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a probe until it passes (the first state is written as the worker starts) or 20 tries pass."""
    for _ in range(20):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
        if done.returncode == 0:
            break
        time.sleep(0.25)
    return done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
