"""Identities and small request helpers shared by the API tests (importable as ``apitools``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from glimpse.config import Settings, load_settings

OWNER = {"X-Project-Id": "project-a", "X-User-Id": "user-a", "X-Roles": "member,reader"}
OTHER = {"X-Project-Id": "project-b", "X-User-Id": "user-b", "X-Roles": "member,reader"}
THIRD = {"X-Project-Id": "project-c", "X-User-Id": "user-c", "X-Roles": "member,reader"}
ADMIN = {"X-Project-Id": "project-admin", "X-User-Id": "admin", "X-Roles": "admin,member,reader"}

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


def make_settings(tmp_path: Path, database_url: str, **environ: str) -> Settings:
    """Settings of an app under test: its data directory under ``tmp_path``, ``database_url``, and
    extra ``GLIMPSE_*`` environment names."""
    env = {
        "GLIMPSE_DATA_DIR": str(tmp_path / "data"),
        "GLIMPSE_DATABASE__CONNECTION": database_url,
        **environ,
    }
    return load_settings(environ=env)
