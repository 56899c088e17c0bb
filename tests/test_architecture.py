"""The shape of the house (issue: one application service owns every transaction): imports run
inward, SQL and transactions live in one place each, only the CLI exits."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SERVICE = Path(__file__).resolve().parents[1] / "service"
MAX_LINES = 400


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SERVICE.rglob("*.py")):
        parts = path.relative_to(SERVICE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (lazy imports inside functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# (importer package, packages it must not import)
RULES = [
    ("service.domain", ["service"]),  # pure: nothing of the service but the domain itself
    ("service.storage", ["service.api", "service.kafka", "service.application", "service.runtime"]),
    ("service.kafka", ["service.api", "service.tools", "service.cli"]),
    ("service.application", ["service.api", "service.kafka", "service.tools", "service.runtime"]),
    ("service.pipeline", ["service.api", "service.kafka", "service.tools", "service.runtime"]),
    ("service.runtime", ["service.api", "service.kafka", "service.tools", "service.cli"]),
    ("service.sweeper", ["service.api", "service.kafka", "service.tools"]),
    ("service.sinks", ["service.api", "service.kafka", "service.tools", "service.runtime"]),
    ("service.webhook_relay", ["service.api", "service.kafka", "service.tools"]),
    ("service.monitoring", ["service.api", "service.kafka", "service.tools"]),
    ("service.tools", ["service.api", "service.cli"]),
    ("service.embedded", ["service.api", "service.application", "service.runtime"]),
]


@pytest.mark.parametrize(("package", "forbidden"), RULES, ids=[r[0] for r in RULES])
def test_imports_run_inward(package: str, forbidden: list[str]) -> None:
    wrong = []
    for name, path in modules().items():
        if not _within(name, package):
            continue
        for imported in imports(path):
            if not imported.startswith("service"):
                continue
            if package == "service.domain" and _within(imported, "service.domain"):
                continue
            if any(_within(imported, f) for f in forbidden):
                wrong.append(f"{name} imports {imported}")
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_the_size_bound() -> None:
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def _calls(path: Path, attribute: str) -> list[int]:
    return [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == attribute
    ]


def test_transactions_are_opened_in_one_place() -> None:
    opened = {
        name: lines
        for name, path in modules().items()
        if (lines := _calls(path, "begin")) and name != "service.storage.db"
    }
    assert not opened, f"transactions opened outside service.storage.db: {opened}"


def test_sql_lives_in_storage_only() -> None:
    outside = [
        name
        for name, path in modules().items()
        if not _within(name, "service.storage")
        and any(_within(i, "sqlalchemy.text") or i == "sqlalchemy.sql.text" for i in imports(path))
    ]
    assert not outside, f"SQL text outside service.storage: {outside}"


def test_only_the_cli_exits() -> None:
    raising = [
        name
        for name, path in modules().items()
        if name != "service.cli" and "SystemExit" in path.read_text(encoding="utf-8")
    ]
    assert not raising, f"SystemExit outside service.cli: {raising}"
