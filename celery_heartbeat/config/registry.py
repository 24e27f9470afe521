"""Which monitor a task name maps to: exact entry, then the task's own option, then the longest glob."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Callable

from celery_heartbeat.config.monitor import Monitor, MonitorSpec, parse_monitor

GLOB_CHARS = frozenset("*?[")

# Celery's built-ins and this library's own tasks (canvas pings, beat liveness) already ping
# their own monitor; a broad glob such as "*" must not make every canvas ping ping twice.
GLOB_EXEMPT_PREFIXES = ("celery.", "celery_heartbeat.")

TaskOption = Callable[[str], MonitorSpec]
"""Looks up a task's own `heartbeat=` option by name (None when it has none)."""


def is_glob(name: str) -> bool:
    return not GLOB_CHARS.isdisjoint(name)


class Registry:
    """Resolves task names to monitors, caching each answer (the hot path is one dict lookup)."""

    def __init__(self, urls: Mapping[str, Monitor], task_option: TaskOption) -> None:
        self._exact = {name: m for name, m in urls.items() if not is_glob(name)}
        # Longest pattern first: the most specific glob wins.
        self._globs = sorted(((name, m) for name, m in urls.items() if is_glob(name)), key=lambda item: -len(item[0]))
        self._task_option = task_option
        self._cache: dict[str, Monitor | None] = {}

    def resolve(self, task_name: str) -> Monitor | None:
        try:
            return self._cache[task_name]
        except KeyError:
            monitor = self._cache[task_name] = self._lookup(task_name)
            return monitor

    def by_name(self, name: str) -> Monitor | None:
        """A `heartbeat_urls` entry by its exact key (canvas helpers refer to monitors by name)."""
        return self._exact.get(name)

    def _lookup(self, task_name: str) -> Monitor | None:
        exact = self._exact.get(task_name)
        if exact is not None:
            return exact
        option = self._task_option(task_name)
        if option is not None and option != "":
            return parse_monitor(f"{task_name}.heartbeat", option)
        if task_name.startswith(GLOB_EXEMPT_PREFIXES):
            return None
        for pattern, monitor in self._globs:
            if fnmatch.fnmatchcase(task_name, pattern):
                return monitor
        return None

    def unmatched(self, task_names: Iterable[str]) -> list[str]:
        """Mapping keys that look like task names but match no registered task (likely typos).

        Keys without a dot and without glob characters are treated as monitor names
        for the canvas helpers, so they are not reported.
        """
        names = list(task_names)
        out = []
        for key in list(self._exact) + [pattern for pattern, _ in self._globs]:
            if not is_glob(key) and "." not in key:
                continue
            if is_glob(key):
                if not any(fnmatch.fnmatchcase(n, key) for n in names):
                    out.append(key)
            elif key not in names:
                out.append(key)
        return sorted(out)
