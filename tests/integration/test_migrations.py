"""Migrations on SQLite and PostgreSQL: upgrade from empty, idempotence, no model drift, data kept."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, inspect, select

from glimpse.db import migrate
from glimpse.db.models import ImageMemberRow, ImagePropertyRow, ImageRow, ImageTagRow
from glimpse.db.session import make_engine, make_sessionmaker, unit_of_work


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


def test_upgrade_from_empty_matches_models(engine: Engine) -> None:
    assert migrate.check(engine)  # empty database: not at head
    migrate.upgrade(engine)
    assert migrate.check(engine) == []
    tables = set(inspect(engine).get_table_names())
    assert {
        "images",
        "image_properties",
        "image_tags",
        "image_locations",
        "image_members",
        "alembic_version",
    } <= tables


def test_upgrade_is_idempotent_and_keeps_rows(engine: Engine) -> None:
    migrate.upgrade(engine)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        image = ImageRow(
            id="00000000-0000-0000-0000-000000000001",
            name="kept",
            status="queued",
            visibility="shared",
            protected=False,
            os_hidden=False,
            min_ram=0,
            min_disk=0,
            created_at=now,
            updated_at=now,
            deleted=False,
        )
        image.properties = [ImagePropertyRow(name="os_distro", value="debian")]
        image.tags = [ImageTagRow(value="gold")]
        session.add(image)
        session.flush()
        session.add(
            ImageMemberRow(image_id=image.id, member="p2", status="pending", created_at=now, updated_at=now)
        )
    migrate.upgrade(engine)
    with unit_of_work(sessions, readonly=True) as session:
        assert session.scalar(select(ImageRow.name)) == "kept"
        assert session.scalar(select(ImagePropertyRow.value)) == "debian"
        assert session.scalar(select(ImageTagRow.value)) == "gold"
        assert session.scalar(select(ImageMemberRow.member)) == "p2"
        assert session.scalar(select(ImageRow.created_at)) == now


def test_sqlite_foreign_keys_are_on_after_upgrade(tmp_path: object, sqlite_url: str) -> None:
    eng = make_engine(sqlite_url)
    try:
        migrate.upgrade(eng)
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        eng.dispose()
