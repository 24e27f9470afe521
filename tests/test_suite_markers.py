"""The suite's own rule: every test that starts a subprocess carries the `slow` marker (`-m "not slow"` stays fast).

A static scan of tests/: a function "spawns" when it calls `subprocess.run/Popen/...` or, transitively, a
function, class, or fixture of the test modules (or their local helper modules) that does.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).parent
SPAWN_CALLS = {"run", "Popen", "call", "check_call", "check_output"}


@dataclass
class Module:
    path: Path
    tree: ast.Module
    defs: dict[str, ast.AST] = field(default_factory=dict)  # module-level functions and classes
    imports: dict[str, tuple[Path, str]] = field(default_factory=dict)  # local name -> (helper file, its name)


def _local_module(path: Path, node: ast.ImportFrom) -> Path | None:
    base = path.parent
    for _ in range(max(node.level - 1, 0)):
        base = base.parent
    if node.level == 0:
        base = TESTS
    parts = (node.module or "").split(".") if node.module else []
    target = base.joinpath(*parts) if parts else base
    candidates = [target.with_suffix(".py"), target / "__init__.py"] if parts else [target / "__init__.py"]
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def _load(path: Path) -> Module:
    module = Module(path, ast.parse(path.read_text()))
    for node in module.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            module.defs[node.name] = node
        elif isinstance(node, ast.ImportFrom):
            source = _local_module(path, node)
            if source is not None:
                for alias in node.names:
                    module.imports[alias.asname or alias.name] = (source, alias.name)
    return module


MODULES = {path: _load(path) for path in TESTS.rglob("*.py")}


def _spawns_directly(node: ast.AST) -> bool:
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        if isinstance(func, ast.Attribute) and func.attr in SPAWN_CALLS and ast.unparse(func.value) == "subprocess":
            return True
        if isinstance(func, ast.Name) and func.id == "Popen":
            return True
    return False


def _fixtures(path: Path) -> dict[str, ast.FunctionDef]:
    """Fixtures visible from `path`: its conftest.py chain (outermost first), then its own."""
    chain = [p / "conftest.py" for p in reversed(path.parents) if p == TESTS or TESTS in p.parents]
    found: dict[str, ast.FunctionDef] = {}
    for source in [*chain, path]:
        module = MODULES.get(source)
        for node in module.tree.body if module else []:
            if isinstance(node, ast.FunctionDef) and any("fixture" in ast.unparse(d) for d in node.decorator_list):
                found[node.name] = node
    return found


def _spawning() -> set[tuple[Path, str]]:
    """(file, name) of every module-level def that starts a subprocess, directly or through another one."""
    spawning = {(m.path, name) for m in MODULES.values() for name, node in m.defs.items() if _spawns_directly(node)}
    changed = True
    while changed:
        changed = False
        for module in MODULES.values():
            fixtures = _fixtures(module.path)
            for name, node in module.defs.items():
                if (module.path, name) not in spawning and _uses_spawning(module, node, spawning, fixtures):
                    spawning.add((module.path, name))
                    changed = True
    return spawning


def _uses_spawning(
    module: Module, node: ast.AST, spawning: set[tuple[Path, str]], fixtures: dict[str, ast.FunctionDef]
) -> bool:
    for name in ast.walk(node):
        if isinstance(name, ast.Name) and _resolve(module, name.id) in spawning:
            return True
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for arg in node.args.args:
            fixture = fixtures.get(arg.arg)
            if fixture is not None and fixture is not node and _defining(fixture) in spawning:
                return True
    return False


def _resolve(module: Module, name: str) -> tuple[Path, str] | None:
    if name in module.defs:
        return module.path, name
    return module.imports.get(name)


def _defining(node: ast.AST) -> tuple[Path, str] | None:
    for module in MODULES.values():
        for name, candidate in module.defs.items():
            if candidate is node:
                return module.path, name
    return None


def _is_slow(decorators: list[ast.expr]) -> bool:
    return any("mark.slow" in ast.unparse(d) for d in decorators)


def _module_slow(module: Module) -> bool:
    for node in module.tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return "mark.slow" in ast.unparse(node.value)
    return False


def _tests(module: Module) -> Iterator[tuple[str, ast.AST, bool]]:
    """(name, node, marked slow) of each test function and method in the module."""
    module_slow = _module_slow(module)
    for node in module.tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
            yield node.name, node, module_slow or _is_slow(node.decorator_list)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            class_slow = module_slow or _is_slow(node.decorator_list)
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name.startswith("test"):
                    yield f"{node.name}.{item.name}", item, class_slow or _is_slow(item.decorator_list)


def spawning_tests() -> dict[str, bool]:
    """Each test that starts a subprocess (as `file::name`), and whether it is marked slow."""
    spawning = _spawning()
    found = {}
    for path, module in sorted(MODULES.items()):
        if not path.name.startswith("test_"):
            continue
        fixtures = _fixtures(path)
        for name, node, slow in _tests(module):
            if _spawns_directly(node) or _uses_spawning(module, node, spawning, fixtures):
                found[f"{path.relative_to(TESTS).as_posix()}::{name}"] = slow
    return found


def test_every_test_that_starts_a_subprocess_is_marked_slow() -> None:
    """`pytest -m "not slow"` runs no subprocess: each test that starts one is marked `slow`."""
    assert [] == [test for test, slow in spawning_tests().items() if not slow]


def test_the_scan_follows_calls_helper_modules_and_fixtures() -> None:
    """The scan is not vacuous: it sees a direct call, one through a helper module, one through a fixture."""
    found = spawning_tests()
    assert "test_import_side_effects.py::test_import_and_install_start_nothing_and_touch_no_network" in found
    # celery_worker() of worker_process.py:
    assert "test_pools.py::test_pool_delivers_start_and_success_and_flushes_on_sigterm" in found
    assert "health/test_health.py::test_one_live_worker_is_ok" in found  # the module's `fleet` fixture
    assert "test_redact.py::test_redact_never_contains_the_token" not in found
