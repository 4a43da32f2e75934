"""The SDK's public surface: ``__all__`` matches what is defined, and the server is never imported."""

from __future__ import annotations

import ast
import subprocess
import sys
import types
from pathlib import Path

import glimpse_client

PACKAGE_DIR = Path(glimpse_client.__file__).parent


def test_all_lists_exactly_the_public_names() -> None:
    # Subpackages (cli, osc) become attributes of the package once something imports them.
    public = {
        name
        for name, value in vars(glimpse_client).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert sorted(glimpse_client.__all__) == sorted(public)
    for name in glimpse_client.__all__:
        assert getattr(glimpse_client, name).__module__.startswith("glimpse_client")


def test_package_source_never_imports_the_server() -> None:
    for source in PACKAGE_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "glimpse" or n.startswith("glimpse.") for n in names), source


def test_importing_the_package_loads_no_server_module() -> None:
    code = (
        "import sys, glimpse_client; "
        "print(any(m == 'glimpse' or m.startswith('glimpse.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_importing_the_package_loads_only_httpx() -> None:
    # The openstack extra (openstacksdk, keystoneauth1) is imported only when a cloud config is built.
    code = (
        "import sys, glimpse_client; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'openstack', 'keystoneauth1'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
