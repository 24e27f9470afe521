"""The package's layering: no import cycles (imports inside functions count), one exception tree."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

import celery_heartbeat
from celery_heartbeat import _exceptions

PACKAGE = Path(celery_heartbeat.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports at run time (anywhere in the file; TYPE_CHECKING excluded)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only or not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(anchor[: len(anchor) - node.level + 1] + ([node.module] if node.module else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            for target in targets:
                if target in modules and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def test_no_import_cycles() -> None:
    """Lower layers never import higher ones: the module graph (function-level imports included) is acyclic."""
    graph = _import_graph()
    assert len(graph) > 30  # the walk found the package
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_every_exception_is_a_heartbeat_error_and_drawn_in_the_tree() -> None:
    """Every exception class in the package derives from HeartbeatError and is named in _exceptions' docstring."""
    found = {
        obj
        for module in (vars(_exceptions),)
        for obj in module.values()
        if isinstance(obj, type) and issubclass(obj, BaseException)
    }
    assert {"HeartbeatError", "ConfigurationError", "ProviderError", "BrokerDown", "UnsupportedSchedule"} <= {
        cls.__name__ for cls in found
    }
    for cls in found:
        assert issubclass(cls, _exceptions.HeartbeatError)
        assert cls.__name__ in (_exceptions.__doc__ or "")
    defined_elsewhere = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ClassDef)
                and any(
                    isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id in {"ValueError"})
                    for b in node.bases
                )
                and path.name != "_exceptions.py"
            ):
                defined_elsewhere.append(f"{path.name}:{node.name}")
    assert [] == defined_elsewhere


def test_the_moved_exceptions_keep_their_old_import_paths() -> None:
    """ProviderError, BrokerDown and UnsupportedSchedule are still importable where they used to live."""
    from celery_heartbeat.beat.cron import UnsupportedSchedule
    from celery_heartbeat.health.broker import BrokerDown
    from celery_heartbeat.sync.client import ProviderError

    assert (UnsupportedSchedule, BrokerDown, ProviderError) == (
        _exceptions.UnsupportedSchedule,
        _exceptions.BrokerDown,
        _exceptions.ProviderError,
    )
    assert issubclass(UnsupportedSchedule, ValueError)
