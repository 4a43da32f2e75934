"""Engine and session factories, and the unit of work that owns one transaction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from glimpse.errors import DatabaseUnavailable

READONLY_OPTION = "glimpse_readonly"


def normalize_url(url: str) -> str:
    """Pick the driver we ship for URLs that name none (``postgresql://`` → psycopg 3)."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine configured for Glimpse: WAL and foreign keys on SQLite, pre-ping and a pool elsewhere."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy emit BEGIN itself so that writers take the lock at BEGIN IMMEDIATE time.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Writers take the write lock up front (IMMEDIATE), so two writers never deadlock on a lock
            # upgrade; read-only units of work begin deferred and run beside them under WAL.
            if conn.get_execution_options().get(READONLY_OPTION):
                conn.exec_driver_sql("BEGIN")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


@contextmanager
def unit_of_work(factory: sessionmaker[Session], *, readonly: bool = False) -> Iterator[Session]:
    """One transaction: commit when the block ends normally, roll back on any exception."""
    session = factory()
    try:
        if readonly:
            session.connection(execution_options={READONLY_OPTION: True})
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise DatabaseUnavailable(f"The database failed: {exc.orig}") from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def ping(engine: Engine) -> None:
    """Run ``SELECT 1`` on a pooled connection; ``DatabaseUnavailable`` when the database does not answer."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise DatabaseUnavailable(f"The database failed: {exc.orig}") from exc
