"""Fixtures for tests that drive the ASGI app in process (no socket)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apitools import OWNER, make_settings
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.runtime import Runtime


@pytest.fixture
def make_client(tmp_path: Path, migrated_sqlite_url: str) -> Iterator[Callable[..., TestClient]]:
    """Build a client for an app with extra settings (``GLIMPSE_*`` environment names)."""
    runtimes: list[Runtime] = []
    clients: list[TestClient] = []

    def build(database_url: str | None = None, **environ: str) -> TestClient:
        settings = make_settings(
            tmp_path / f"app{len(runtimes)}", database_url or migrated_sqlite_url, **environ
        )
        runtime = Runtime.build(settings)
        runtimes.append(runtime)
        client = TestClient(create_app(runtime), headers={**OWNER, "Accept": "application/json"})
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()
    for runtime in runtimes:
        runtime.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    """A client on a fresh app, once on SQLite and once on PostgreSQL."""
    return make_client(migrated_database_url)


@pytest.fixture
def watched(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    """A client on SQLite and PostgreSQL whose watcher hub looks for task changes every 50 ms."""
    return make_client(migrated_database_url, GLIMPSE_TASK__TASK_WATCH_INTERVAL="0.05")
