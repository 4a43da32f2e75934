"""Fixtures for tests that drive the ASGI app in process (no socket)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.config import Settings, load_settings
from glimpse.db import migrate
from glimpse.runtime import Runtime

OWNER = {"X-Project-Id": "project-a", "X-User-Id": "user-a", "X-Roles": "member,reader"}
OTHER = {"X-Project-Id": "project-b", "X-User-Id": "user-b", "X-Roles": "member,reader"}
THIRD = {"X-Project-Id": "project-c", "X-User-Id": "user-c", "X-Roles": "member,reader"}
ADMIN = {"X-Project-Id": "project-admin", "X-User-Id": "admin", "X-Roles": "admin,member,reader"}


def make_settings(tmp_path: Path, database_url: str, **environ: str) -> Settings:
    env = {
        "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
        "GLIMPSE_DATABASE__CONNECTION": database_url,
        **environ,
    }
    return load_settings(environ=env)


@pytest.fixture
def make_client(tmp_path: Path, sqlite_url: str) -> Iterator[Callable[..., TestClient]]:
    """Build a client for an app with extra settings (``GLIMPSE_*`` environment names)."""
    runtimes: list[Runtime] = []
    clients: list[TestClient] = []

    def build(database_url: str | None = None, **environ: str) -> TestClient:
        settings = make_settings(tmp_path / f"app{len(runtimes)}", database_url or sqlite_url, **environ)
        runtime = Runtime.build(settings)
        migrate.upgrade(runtime.engine)
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
def client(make_client: Callable[..., TestClient], database_url: str) -> TestClient:
    """A client on a fresh app, once on SQLite and once on PostgreSQL."""
    return make_client(database_url)


PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
OCTET = {"Content-Type": "application/octet-stream"}


def new_image(client: TestClient, headers: dict[str, str] | None = None, **attrs: object) -> dict[str, Any]:
    body = {"name": "img", "disk_format": "raw", "container_format": "bare", **attrs}
    response = client.post("/v2/images", json=body, headers=headers or OWNER)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def upload(client: TestClient, image_id: str, data: bytes, headers: dict[str, str] | None = None) -> None:
    response = client.put(
        f"/v2/images/{image_id}/file", content=data, headers={**(headers or OWNER), **OCTET}
    )
    assert response.status_code == 204, response.text
