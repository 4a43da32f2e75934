"""Migrations on SQLite and PostgreSQL: upgrade from empty, idempotence, no model drift, data kept."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select

from glimpse.db import migrate
from glimpse.db.models import ImageMemberRow, ImagePropertyRow, ImageRow, ImageTagRow
from glimpse.db.session import make_engine, make_sessionmaker, unit_of_work


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    eng = make_engine(empty_database_url)
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


def test_sqlite_foreign_keys_are_on_after_upgrade(tmp_path: object, empty_sqlite_url: str) -> None:
    eng = make_engine(empty_sqlite_url)
    try:
        migrate.upgrade(eng)
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        eng.dispose()


REBUILDING_REVISION = """
import sqlalchemy as sa
from alembic import op

revision = "29990101_01_expand"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # An expression default makes SQLite's batch mode rebuild the whole images table.
    with op.batch_alter_table("images") as batch_op:
        batch_op.add_column(sa.Column("scratch", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("images") as batch_op:
        batch_op.drop_column("scratch")
"""


def test_sqlite_table_rebuild_keeps_child_rows(
    empty_sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "29990101_01_expand_rebuild.py").write_text(
        REBUILDING_REVISION.replace("{head}", migrate.head_revision())
    )
    eng = make_engine(empty_sqlite_url)
    try:
        migrate.upgrade(eng)
        now = datetime(2026, 1, 1, tzinfo=UTC)
        with unit_of_work(make_sessionmaker(eng)) as session:
            image = ImageRow(
                id="00000000-0000-0000-0000-000000000002",
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
            image.tags = [ImageTagRow(value="survives")]
            session.add(image)
        monkeypatch.setattr(migrate, "MIGRATIONS_DIR", scripts)
        migrate.upgrade(eng)
        with eng.connect() as conn:
            assert conn.exec_driver_sql("SELECT value FROM image_tags").scalars().all() == ["survives"]
            assert conn.exec_driver_sql("SELECT scratch FROM images").scalar() == 0
    finally:
        eng.dispose()
