"""Run and check Alembic migrations from code (``glimpse-server db upgrade`` and ``db check``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from glimpse.db.models import Base

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: The named lock that serialises concurrent upgrades on MariaDB/MySQL, and how long to wait for it.
MYSQL_LOCK_NAME = "glimpse-db-upgrade"
MYSQL_LOCK_TIMEOUT = 300


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
        mysql = connection.dialect.name in ("mysql", "mariadb")
        if mysql:
            # Serialise concurrent upgrades with a named lock held by this connection (DDL commits
            # implicitly on MariaDB/MySQL, so a transaction-scoped lock would not last).
            # One lock per database (names are server-wide, at most 64 characters).
            lock_name = f"{MYSQL_LOCK_NAME}:{engine.url.database or ''}"[:64]
            got = connection.execute(
                text("SELECT GET_LOCK(:name, :timeout)"), {"name": lock_name, "timeout": MYSQL_LOCK_TIMEOUT}
            ).scalar()
            connection.commit()
            if got != 1:
                raise RuntimeError(
                    f"another process has been upgrading the database for {MYSQL_LOCK_TIMEOUT}s "
                    f"(lock {lock_name!r}); wait for it to finish, then start again"
                )
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
            if mysql:
                connection.execute(text("SELECT RELEASE_LOCK(:name)"), {"name": lock_name})
                connection.commit()


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
