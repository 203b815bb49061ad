"""Every service's ``domain.py`` is pure: no I/O, no framework, no clock. Found by glob, so a new
service is covered the day its domain module exists."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOMAINS = sorted(ROOT.glob("services/*/domain.py"))
#: What a domain may import besides the standard library (which has no I/O it would use).
ALLOWED = ("shared.aggregate", "shared.events", "shared.contracts")
#: Standard-library modules that do I/O or reach outside the process.
FORBIDDEN_STDLIB = {"asyncio", "os", "pathlib", "socket", "subprocess", "sqlite3", "time", "logging", "io"}


def test_every_service_has_its_domain_checked() -> None:
    services = {p.parent.name for p in ROOT.glob("services/*/__init__.py")}
    assert services and services == {p.parent.name for p in DOMAINS}


def own_modules(path: Path, tree: ast.Module) -> list[Path]:
    """The modules of the same service a domain imports (``from services.x import calendar``):
    they are part of the domain and held to the same rules."""
    package = f"services.{path.parent.name}"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == package:
            found += [path.parent / f"{alias.name}.py" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package + "."):
            found.append(path.parent / f"{node.module.rsplit('.', 1)[1]}.py")
    return found


def assert_pure(path: Path, seen: set[Path]) -> None:
    seen.add(path)
    source = path.read_text()
    tree = ast.parse(source)
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    package = f"services.{path.parent.name}"
    stdlib = {m for m in imported if m.split(".")[0] in sys.stdlib_module_names}
    own = {m for m in imported if m == package or m.startswith(package + ".")}
    assert {m for m in imported - stdlib - own if not m.startswith(ALLOWED)} == set(), path.name
    assert {m.split(".")[0] for m in stdlib} & FORBIDDEN_STDLIB == set(), path.name
    # The caller passes "today" in.
    assert "today()" not in source and ".now(" not in source and "shared.clock" not in source, path.name
    for module in own_modules(path, tree):
        assert module.exists(), f"{path.name} imports {module.name}, which is not a module file"
        if module not in seen:
            assert_pure(module, seen)


@pytest.mark.parametrize("path", DOMAINS, ids=lambda p: p.parent.name)
def test_domain_module_is_pure(path: Path) -> None:
    assert_pure(path, set())
