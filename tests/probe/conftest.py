"""Fixtures for the probe tests: a home directory with the worker's app module and a state directory."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import APP_MODULE, Probe


@dataclass
class Home:
    path: Path
    state: Path
    env: dict[str, str]  # for the worker: BROKER, QUEUE, PROBE_DIR
    probe: Probe


@pytest.fixture
def probe_env(clean_env: dict[str, str]) -> dict[str, str]:
    env = dict(clean_env, PYTHONWARNINGS="ignore")
    env.pop("CELERY_HEARTBEAT_PROBE_DIR", None)
    return env


@pytest.fixture
def home(tmp_path: Path, unique_name: str, probe_env: dict[str, str]) -> Home:
    """The worker's app module (broker from $BROKER), its state dir and the probe for that dir."""
    (tmp_path / "probeapp.py").write_text(textwrap.dedent(APP_MODULE))
    state = tmp_path / "state"
    env = dict(probe_env, QUEUE=unique_name, PROBE_DIR=str(state))
    return Home(tmp_path, state, env, Probe(state, probe_env))
