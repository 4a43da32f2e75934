"""The domain stays pure: no I/O, no network, no framework, nothing from the layers around it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).parents[2] / "src" / "glimpse" / "domain"
#: Modules (and their submodules) no domain module may import.
FORBIDDEN = (
    "asyncio",
    "socket",
    "ssl",
    "os",
    "pathlib",
    "io",
    "json",
    "yaml",
    "httpx",
    "sqlalchemy",
    "fastapi",
    "starlette",
    "glimpse.api",
    "glimpse.cli",
    "glimpse.config",
    "glimpse.db",
    "glimpse.jobs",
    "glimpse.policy_file",
    "glimpse.runtime",
    "glimpse.services",
    "glimpse.storage",
)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(DOMAIN.glob("*.py")), ids=lambda p: p.name)
def test_domain_module_imports_nothing_impure(path: Path) -> None:
    bad = sorted(
        name
        for name in imported(path)
        for banned in FORBIDDEN
        if name == banned or name.startswith(banned + ".")
    )
    assert bad == [], f"{path.name} imports {bad}"
