"""Reading `heartbeat_*` settings from `app.conf` as the user wrote them.

Celery's configuration accepts any key, so a misspelt setting would be ignored
in silence. Every key that looks like ours is checked against the declared
settings (`Settings`): an unknown one is a ConfigurationError naming it and the
closest real name. Messages name the key the user wrote: with Django's
`namespace="CELERY"` that is `CELERY_HEARTBEAT_TIMEOUT`, not `heartbeat_timeout`.
Keys that look like ours but are never read (no namespace prefix) give warnings.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery_heartbeat._exceptions import ConfigurationError
from celery_heartbeat.config.settings import KNOWN, NAMES, PREFIX, Settings, parse_settings


@dataclass
class ConfRead:
    """The raw values found, under their canonical keys, and how the user spelt each one."""

    raw: dict[str, Any] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _closest(name: str, prefix: str) -> str:
    """The real setting closest to a misspelt one, spelt as the user spells (`heartbeat_` or `CELERY_HEARTBEAT_`)."""

    def spell(n: str) -> str:
        return prefix + (n.upper() if prefix.isupper() else n)

    match = difflib.get_close_matches(name, NAMES, n=1, cutoff=0.6)
    return f"did you mean {spell(match[0])}?" if match else f"known settings: {', '.join(spell(n) for n in NAMES)}"


def _keys(conf: Any) -> Iterable[tuple[str, bool]]:
    """Every key in every layer of the configuration, with whether it was assigned on `app.conf` directly."""
    maps = getattr(conf, "maps", None)
    layers: list[Any] = list(maps) if maps is not None else [conf]
    changes = getattr(conf, "changes", None)
    for layer in layers:
        try:
            keys = list(layer.keys())
        except Exception:  # a settings object that cannot list itself: nothing to check there
            continue
        for key in keys:
            if isinstance(key, str):
                yield key, layer is changes


def read_conf(conf: Any, namespace: str | None = None) -> ConfRead:
    """Collect our keys from `conf`; raise for an unknown one, warn for one that is never read.

    `namespace` is the app's `config_from_object(..., namespace=)` (Django: "CELERY").
    """
    out = ConfRead()
    if hasattr(conf, "get"):
        conf.get(PREFIX + "urls")  # a pending Celery configuration loads on first read: its layers are real then
    prefix = namespace.rstrip("_") + "_" if namespace else ""
    # Celery reads a namespaced key in the namespace's case: CELERY_HEARTBEAT_URLS, celery_heartbeat_urls.
    cased = str.upper if prefix.isupper() else str.lower
    namespaced = cased(prefix + PREFIX)
    for key, direct in _keys(conf):
        upper = key.upper()
        if prefix and key.startswith(namespaced) and key == cased(key):
            name, spelt_as = key[len(namespaced) :].lower(), namespaced
        elif key.startswith(PREFIX):
            name, spelt_as = key[len(PREFIX) :], PREFIX
        elif upper.startswith((PREFIX.upper(), "CELERY_" + PREFIX.upper())):
            out.warnings.append(_unread(key, prefix))
            continue
        else:
            continue
        if name not in NAMES:
            value = conf.get(key) if hasattr(conf, "get") else None
            raise ConfigurationError(key, value, f"unknown setting; {_closest(name, spelt_as)}")
        canonical = PREFIX + name
        out.written.setdefault(canonical, canonical if direct else key)
    for canonical in KNOWN:
        value = conf.get(canonical)
        if value is not None or canonical in out.written:
            out.raw[canonical] = value
    return out


def _unread(key: str, prefix: str) -> str:
    """Why a key that looks like ours is never read, and how to spell it instead."""
    upper = key.upper()
    bare = upper[len("CELERY_") :] if upper.startswith("CELERY_" + PREFIX.upper()) else upper
    if prefix:
        right = (prefix + bare).upper() if prefix.isupper() else (prefix + bare).lower()
        return f"{key} is ignored: with namespace {prefix.rstrip('_')!r} Celery reads {right}"
    return (
        f"{key} is ignored: set {bare.lower()} in app.conf, or load Django settings with "
        f"config_from_object(..., namespace='CELERY') to use CELERY_{bare}"
    )


def settings_from_conf(
    conf: Any, overrides: Mapping[str, Any], namespace: str | None = None
) -> tuple[Settings, list[str]]:
    """`conf` values, then install() keywords (given with or without the `heartbeat_` prefix); and warnings."""
    read = read_conf(conf, namespace)
    raw = dict(read.raw)
    written = dict(read.written)
    for name, value in overrides.items():
        key = name if name.startswith(PREFIX) else PREFIX + name
        if key not in KNOWN:
            raise ConfigurationError(name, value, f"unknown setting; {_closest(key[len(PREFIX) :], '')}")
        raw[key] = value
        written[key] = key  # a keyword stands for the setting of that name
    try:
        return parse_settings(raw), read.warnings
    except ConfigurationError as exc:
        raise _as_written(exc, written) from None


def _as_written(exc: ConfigurationError, written: Mapping[str, str]) -> ConfigurationError:
    for canonical, key in written.items():
        if key != canonical and (exc.key == canonical or exc.key.startswith(canonical + "[")):
            return exc.renamed(key + exc.key[len(canonical) :])
    return exc
