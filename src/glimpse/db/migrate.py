"""Run and check Alembic migrations from code (``glimpse-server db upgrade`` and ``db check``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from glimpse.db.models import Base

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision``; safe to run concurrently from several processes at start-up."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch mode rebuilds tables (copy, drop, rename); with foreign keys enforced, dropping the
            # old table would cascade-delete every child row. The pragma only takes effect outside a
            # transaction, so it goes straight to the driver connection before SQLAlchemy begins one.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    # Serialise concurrent upgrades (several API processes starting at once).
                    connection.exec_driver_sql("SELECT pg_advisory_xact_lock(73657)")
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"migration left rows that violate foreign keys: {broken[:5]}")
        finally:
            if sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def check(engine: Engine) -> list[str]:
    """Problems that stop this code from running on the database: not at head, or models drifted."""
    problems: list[str] = []
    if engine.dialect.name == "sqlite" and engine.url.database and not Path(engine.url.database).exists():
        return [f"database file {engine.url.database} does not exist: run `glimpse-server db upgrade`"]
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
        head = head_revision()
        if current != head:
            problems.append(
                f"database is at revision {current!r}, code expects {head!r}: run `glimpse-server db upgrade`"
            )
            return problems
        diff = compare_metadata(
            MigrationContext.configure(connection, opts={"compare_type": True}), Base.metadata
        )
        problems.extend(f"models and migrations disagree: {entry}" for entry in diff)
    return problems
