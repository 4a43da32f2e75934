"""The pure parts of bench/peer.py (the side-by-side table) and bench/dbseed.py (the large listing)."""

from __future__ import annotations

import importlib
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture
def peer(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("peer")


@pytest.fixture
def dbseed(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("dbseed")


def test_ratios_and_verdicts(peer: ModuleType) -> None:
    up = peer.SideRow("upload", "MiB/s", glance=120.0, glimpse=360.0, limit=400.0, goal="min", target=330.0)
    assert up.ratio == pytest.approx(3.0)
    assert up.of_limit == pytest.approx(0.9)
    assert up.verdict == "ok"
    slow = peer.SideRow("upload", "MiB/s", glance=120.0, glimpse=329.9, goal="min", target=330.0)
    assert slow.verdict == "MISSED"
    # a time or a latency must stay under its target
    copy = peer.SideRow("copy", "s", glance=39.0, glimpse=5.9, goal="max", target=6.0)
    assert copy.verdict == "ok"
    assert peer.SideRow("p99", "ms", glimpse=10.0, goal="max", target=10.0).verdict == "MISSED"
    # a server left out (--only) or no target
    assert peer.SideRow("x", "req/s", glance=None, glimpse=5.0).ratio is None
    assert peer.SideRow("x", "req/s", glance=5.0, glimpse=None, goal="min", target=1.0).verdict == "-"
    assert peer.SideRow("x", "req/s", glance=5.0, glimpse=6.0).verdict == ""
    assert peer.SideRow("x", "req/s", glance=0.0, glimpse=6.0).ratio is None


def test_table_columns_line_up(peer: ModuleType) -> None:
    rows = [
        peer.SideRow(
            "upload 1024 MiB", "MiB/s", 121.0, 350.0, "md5+sha512 one thread", 388.0, "min", 330.0, ">= 330"
        ),
        peer.SideRow("  p99", "ms", 77.25, 4.5, goal="max", target=10.0, target_text="< 10 ms"),
        peer.SideRow("failed", "count", 15.0, 0.0),
    ]
    lines = peer.format_table(rows)
    header = "figure unit Glance Glimpse Glimpse/Glance limit Glimpse/limit target verdict"
    assert lines[0].split() == header.split()
    assert set(lines[1]) <= {"-", " "}
    upload, p99, failed = lines[2], lines[3], lines[4]
    assert "121.0" in upload
    assert "350.0" in upload
    assert "2.89" in upload
    assert "388.0 (md5+sha512 one thread)" in upload
    assert "0.90" in upload
    assert upload.endswith("ok")
    assert "77.25" in p99
    assert "4.50" in p99
    assert "0.06" in p99
    assert p99.endswith("ok")
    assert " 15 " in failed
    assert "15.0" not in failed
    # right-aligned number columns: the Glimpse column ends at the same offset on every row
    end = lines[0].index("Glimpse/Glance") - 2
    assert upload[:end].endswith("350.0")
    assert p99[:end].endswith("4.50")


def test_build_rows_with_one_server(peer: ModuleType) -> None:
    args = peer.parse_args(["--quick", "--only", "glimpse"])
    load = {"value": 3000.0, "rps": 3000.0, "p50_ms": 1.0, "p99_ms": 5.0}
    glimpse = {
        "upload": {"value": 400.0},
        "download": {"value": 2000.0},
        "copy": {"value": 0.1},
        "post": {"value": 600.0},
        "post_failures": {"value": 0},
        "tasks_fresh": load,
        "tasks_after": load,
        "list_fresh": load,
        "list_after": load,
        "list_big": {**load, "p99_ms": 20.0},
        "versions": {**load, "value": 6000.0},
    }
    limits = {"hash_single_pass": 380.0, "loopback": 3000.0, "disk_write_fsync": 500.0}
    rows = {row.figure: row for row in peer.build_rows(args, limits, {"glimpse": glimpse})}
    upload = rows["upload 32 MiB (PUT /file), median of 3"]
    assert upload.glance is None
    assert upload.glimpse == 400.0
    assert upload.verdict == "ok"
    download = rows["download 32 MiB (GET /file), median of 3"]
    assert download.target == pytest.approx(1800.0)
    assert download.verdict == "ok"
    copy = rows["copy-image 32 MiB fast -> 4 stores, median of 3"]
    assert copy.limit == pytest.approx(4 * 32 / 500.0)
    assert copy.target == pytest.approx(6.0 * 32 / 1024)
    assert copy.verdict == "ok"
    verdicts = [row.verdict for row in peer.build_rows(args, limits, {"glimpse": glimpse})]
    # the only miss: p99 of the large listing (20 ms, target < 15 ms)
    assert verdicts.count("MISSED") == 1


SCHEMA = """
CREATE TABLE images (id VARCHAR(36) PRIMARY KEY, name VARCHAR(255), status VARCHAR(30),
                     owner VARCHAR(255), created_at DATETIME, updated_at DATETIME, deleted BOOLEAN);
CREATE TABLE image_properties (id INTEGER PRIMARY KEY AUTOINCREMENT, image_id VARCHAR(36), name VARCHAR(255),
                               value TEXT, deleted BOOLEAN);
CREATE TABLE image_tags (id INTEGER PRIMARY KEY AUTOINCREMENT, image_id VARCHAR(36), value VARCHAR(255));
"""


def test_clone_images_copies_the_oldest_bulk_image(dbseed: ModuleType, tmp_path: Path) -> None:
    db = tmp_path / "images.sqlite"
    con = sqlite3.connect(db)
    con.executescript(SCHEMA)
    rows = [
        ("a", "bulk-0", "queued", "p1", "2026-12-06 10:00:00.000000", "2026-12-06 10:00:00.000000", 0),
        ("b", "bulk-1", "queued", "p1", "2026-12-06 10:00:05.000000", "2026-12-06 10:00:05.000000", 0),
        ("c", "other", "active", "p2", "2026-12-06 09:00:00.000000", "2026-12-06 09:00:00.000000", 0),
    ]
    con.executemany("INSERT INTO images VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    con.executemany(
        "INSERT INTO image_properties (image_id, name, value, deleted) VALUES (?, ?, ?, 0)",
        [("a", "foo", "bar-0"), ("a", "hw", "x"), ("b", "foo", "bar-1")],
    )
    con.execute("INSERT INTO image_tags (image_id, value) VALUES ('a', 'bulk')")
    con.commit()
    con.close()

    dbseed.clone_images(db, 2, 3)

    con = sqlite3.connect(db)
    clones = con.execute(
        "SELECT id, name, status, owner, created_at FROM images WHERE name IN ('bulk-2', 'bulk-3', 'bulk-4') "
        "ORDER BY name"
    ).fetchall()
    assert [c[1] for c in clones] == ["bulk-2", "bulk-3", "bulk-4"]
    assert [c[0] for c in clones] == [dbseed.seeded_id(i) for i in (2, 3, 4)]
    assert {(c[2], c[3]) for c in clones} == {("queued", "p1")}
    assert [c[4] for c in clones] == [
        "2026-12-06 09:59:58.000000",
        "2026-12-06 09:59:57.000000",
        "2026-12-06 09:59:56.000000",
    ]
    props = con.execute(
        "SELECT name, value FROM image_properties WHERE image_id = ? ORDER BY name", (dbseed.seeded_id(3),)
    ).fetchall()
    assert props == [("foo", "bar-3"), ("hw", "x")]
    assert con.execute("SELECT COUNT(*) FROM image_tags WHERE value = 'bulk'").fetchone()[0] == 4
    assert con.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 6
    con.close()


def test_clone_images_needs_a_template(dbseed: ModuleType, tmp_path: Path) -> None:
    db = tmp_path / "empty.sqlite"
    con = sqlite3.connect(db)
    con.executescript(SCHEMA)
    con.close()
    with pytest.raises(RuntimeError, match="no image named bulk-"):
        dbseed.clone_images(db, 0, 5)


def test_shifted_timestamp_keeps_the_format(dbseed: ModuleType) -> None:
    assert dbseed.shifted_timestamp("2026-12-06 10:00:00.000000", 61) == "2026-12-06 09:58:59.000000"
    assert dbseed.shifted_timestamp("2026-12-06T10:00:00", 1) == "2026-12-06T09:59:59"
    assert dbseed.shifted_timestamp("2026-01-01 00:00:00", 1) == "2025-12-31 23:59:59"


def test_measured_gathers_one_fact_of_loads_and_runs(peer: ModuleType) -> None:
    res = {
        "versions": {"value": 900.0, "busy_before": 12.0, "steal_percent": 0.5},
        "upload": {
            "value": 100.0,
            "runs": [{"mib_s": 1.0, "busy_before": 50.0, "steal_percent": 3.0}, {"busy_before": 7.0}],
        },
        "post": {"value": 30.0},
        "log_errors": 3,
    }
    assert sorted(peer.measured(res, "busy_before")) == [7.0, 12.0, 50.0]
    assert sorted(peer.measured(res, "steal_percent")) == [0.5, 3.0]
