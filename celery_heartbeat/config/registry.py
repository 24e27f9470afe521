"""Which monitor a task name maps to: exact entry, then the task's own option, then the longest glob.

This module is the one place the precedence and the glob rule are written.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from typing import Callable

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat.config.monitor import Monitor, MonitorValue, parse_monitor
from celery_heartbeat.config.names import is_internal

GLOB_CHARS = frozenset("*?[")

TaskOption = Callable[[str], MonitorValue]
"""Looks up a task's own `heartbeat=` option by name (None when it has none)."""


def is_glob(name: str) -> bool:
    return not GLOB_CHARS.isdisjoint(name)


def check_name(key: str, value: str) -> str:
    """A `heartbeat_urls` name used as a monitor reference: not a glob, and not a URL missing its scheme."""
    name = value.strip()
    if not name or is_glob(name):
        raise ConfigurationError(key, value, "expected a URL, a monitor dict or a heartbeat_urls name (not a glob)")
    if "/" in name:
        raise ConfigurationError(key, value, "looks like a URL without http:// or https://")
    return name


def matching_glob(task_name: str, patterns: Iterable[str]) -> str | None:
    """The glob that covers `task_name`: the longest matching pattern; never for internal tasks."""
    if is_internal(task_name):
        return None
    for pattern in sorted((p for p in patterns if is_glob(p)), key=lambda p: (-len(p), p)):
        if fnmatch.fnmatchcase(task_name, pattern):
            return pattern
    return None


class Registry:
    """Resolves task names to monitors, caching each answer (the hot path is one dict lookup)."""

    def __init__(self, urls: Mapping[str, Monitor], task_option: TaskOption) -> None:
        self._urls = dict(urls)
        self._exact = {name: m for name, m in urls.items() if not is_glob(name)}
        self._globs = [name for name in urls if is_glob(name)]
        self._task_option = task_option
        self._cache: dict[str, Monitor | None] = {}

    def resolve(self, task_name: str) -> Monitor | None:
        try:
            return self._cache[task_name]
        except KeyError:
            monitor = self._cache[task_name] = self._lookup(task_name)
            return monitor

    def any_start(self) -> bool:
        """Whether a configured monitor, or one resolved so far, asks for start pings itself."""
        monitors = [*self._urls.values(), *self._cache.values()]
        return any(monitor is not None and monitor.start for monitor in monitors)

    def by_name(self, name: str) -> Monitor | None:
        """A `heartbeat_urls` entry by its exact key (canvas helpers refer to monitors by name)."""
        return self._exact.get(name)

    def source(self, task_name: str) -> str | None:
        """Why a task has its monitor: 'heartbeat_urls', 'task option', 'glob <pattern>', or None."""
        if task_name in self._exact:
            return "heartbeat_urls"
        option = self._task_option(task_name)
        if option is not None and option != "":
            return "task option"
        pattern = matching_glob(task_name, self._globs)
        return None if pattern is None else f"glob {pattern}"

    def _lookup(self, task_name: str) -> Monitor | None:
        exact = self._exact.get(task_name)
        if exact is not None:
            return exact
        option = self._task_option(task_name)
        if option is not None and option != "":
            return parse_monitor(f"{task_name}.heartbeat", option)
        pattern = matching_glob(task_name, self._globs)
        return None if pattern is None else self._urls[pattern]

    def unmatched(self, task_names: Iterable[str]) -> list[str]:
        """Mapping keys that look like task names but match no registered task (likely typos).

        Keys without a dot and without glob characters are treated as monitor names
        for the canvas helpers, so they are not reported.
        """
        names = list(task_names)
        out = []
        for key in self._urls:
            if not is_glob(key) and "." not in key:
                continue
            if is_glob(key):
                if not any(fnmatch.fnmatchcase(n, key) for n in names):
                    out.append(key)
            elif key not in names:
                out.append(key)
        return sorted(out)
