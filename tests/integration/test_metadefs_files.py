"""``glimpse-server db load-metadefs`` and ``db export-metadefs``: definitions files (one JSON document per
namespace, Glance's format) in and out, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from glimpse.api.app import create_app
from glimpse.cli.main import STANDARD_METADEFS, main
from glimpse.config import load_settings
from glimpse.runtime import Runtime

ADMIN = {"X-Project-Id": "project-admin", "X-User-Id": "admin", "X-Roles": "admin,member,reader"}


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, migrated_database_url: str) -> Iterator[str]:
    for name in [n for n in os.environ if n.startswith("GLIMPSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GLIMPSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("GLIMPSE_DATABASE__CONNECTION", migrated_database_url)
    before = dict(os.environ)
    yield migrated_database_url
    os.environ.clear()
    os.environ.update(before)


def _documents(directory: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(directory.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        found[document["namespace"]] = document
    return found


def _without_empty(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if value not in ([], {})}


def _api(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(
        environ={"GLIMPSE_DATA_DIR": str(tmp_path / "api"), "GLIMPSE_DATABASE__CONNECTION": database_url}
    )
    runtime = Runtime.build(settings)
    try:
        with TestClient(create_app(runtime), headers={**ADMIN, "Accept": "application/json"}) as client:
            yield client
    finally:
        runtime.close()


def test_standard_definitions_round_trip(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shipped = _documents(STANDARD_METADEFS)
    assert len(shipped) >= 5
    assert main(["db", "load-metadefs"]) == 0
    assert f"{len(shipped)} created" in capsys.readouterr().out

    exported = tmp_path / "exported"
    assert main(["db", "export-metadefs", str(exported)]) == 0
    assert f"exported {len(shipped)} namespace(s)" in capsys.readouterr().out
    # Exactly what was shipped comes back (the files list no empty collections).
    assert {name: _without_empty(doc) for name, doc in _documents(exported).items()} == shipped

    # The API serves what was loaded, prefixes applied for a resource type.
    for client in _api(database, tmp_path):
        shown = client.get(
            "/v2/metadefs/namespaces/OS::Compute::CPUTopology", params={"resource_type": "OS::Nova::Flavor"}
        ).json()
        assert "hw:cpu_sockets" in shown["properties"]
        assert shown["objects"][0]["required"] == ["hw:cpu_sockets", "hw:cpu_cores", "hw:cpu_threads"]
        listed = client.get(
            "/v2/metadefs/namespaces", params={"resource_types": "OS::Nova::Flavor", "limit": 100}
        ).json()
        assert {n["namespace"] for n in listed["namespaces"]} == {
            name
            for name, doc in shipped.items()
            if any(a["name"] == "OS::Nova::Flavor" for a in doc["resource_type_associations"])
        }
        # Change one through the API: a second load keeps it, --overwrite puts the file's back.
        client.put(
            "/v2/metadefs/namespaces/OS::Compute::Watchdog",
            json={"namespace": "OS::Compute::Watchdog", "visibility": "private"},
        )
    assert main(["db", "load-metadefs"]) == 0
    assert f"{len(shipped)} skipped" in capsys.readouterr().out
    assert main(["db", "export-metadefs", str(tmp_path / "kept")]) == 0
    assert _documents(tmp_path / "kept")["OS::Compute::Watchdog"]["visibility"] == "private"
    assert main(["db", "load-metadefs", str(exported), "--overwrite"]) == 0
    assert f"{len(shipped)} replaced" in capsys.readouterr().out
    assert main(["db", "export-metadefs", str(tmp_path / "again")]) == 0
    again = tmp_path / "again"
    assert sorted(p.name for p in again.iterdir()) == sorted(p.name for p in exported.iterdir())
    for path in exported.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


def test_load_reports_bad_files_and_loads_the_rest(
    database: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "defs"
    source.mkdir()
    (source / "a-good.json").write_text(
        json.dumps(
            {
                "namespace": "Test::Good",
                "visibility": "public",
                # Kept in the file's order (not the resource types'), as Glance's files list them.
                "resource_type_associations": [
                    {"name": "OS::Nova::Flavor", "prefix": "t:"},
                    {"name": "OS::Glance::Image", "prefix": "t_"},
                ],
                # Object and property descriptions have no length limit (Glance's own run to 1500+).
                "objects": [{"name": "Long", "description": "x" * 3000}],
                "properties": {
                    "modes": {
                        "title": "Modes",
                        "type": "array",
                        "items": {"type": "string", "enum": ["a", "b"]},
                        "operators": ["<or>"],
                        "uniqueItems": True,
                    }
                },
                "tags": [{"name": "x"}],
            }
        )
    )
    (source / "b-broken.json").write_text("{ not json")
    (source / "c-invalid.json").write_text(json.dumps({"namespace": "Test::Bad", "visibility": "everyone"}))
    assert main(["db", "load-metadefs", str(source)]) == 1
    captured = capsys.readouterr()
    assert "a-good.json: created" in captured.out
    assert "b-broken.json: not loaded" in captured.err
    assert "c-invalid.json: not loaded: 'visibility' must be 'public' or 'private'" in captured.err
    assert "1 created, 0 replaced, 0 skipped, 2 failed" in captured.out
    out = tmp_path / "out"
    assert main(["db", "export-metadefs", str(out)]) == 0
    assert list(_documents(out)) == ["Test::Good"]
    good = _documents(out)["Test::Good"]
    assert good["properties"]["modes"]["items"]["enum"] == ["a", "b"]
    assert [a["name"] for a in good["resource_type_associations"]] == [
        "OS::Nova::Flavor",
        "OS::Glance::Image",
    ]
    assert len(good["objects"][0]["description"]) == 3000

    assert main(["db", "load-metadefs", str(tmp_path / "nothing-here")]) == 2
    assert "no *.json files" in capsys.readouterr().err


def test_export_from_a_database_without_tables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("GLIMPSE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GLIMPSE_DATA_DIR", str(tmp_path / "data"))
    before = dict(os.environ)
    try:
        assert main(["db", "export-metadefs", str(tmp_path / "out")]) == 1
        assert "glimpse-server db check" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()
    finally:
        os.environ.clear()
        os.environ.update(before)
