"""Engine and session factories, and the unit of work that owns one transaction."""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from glimpse.config import DatabaseTimeouts
from glimpse.errors import DatabaseUnavailable

READONLY_OPTION = "glimpse_readonly"


MYSQL_CHARSET = "utf8mb4"


def is_mysql(url: str) -> bool:
    """Whether ``url`` names a MariaDB or MySQL server (any driver)."""
    return url.split("://", 1)[0].split("+", 1)[0] in ("mysql", "mariadb")


def normalize_url(url: str) -> str:
    """Pick the driver we ship for URLs that name none, and a full UTF-8 charset on MariaDB/MySQL.

    ``postgresql://`` → psycopg 3; ``mysql://`` and ``mariadb://`` → PyMySQL. A MariaDB/MySQL URL always
    gets ``charset=utf8mb4`` (Glance's usual ``charset=utf8`` is the 3-byte subset, which cannot carry
    every character an image name or property may hold).
    """
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return "postgresql+psycopg://" + url[len(bare) :]
    if not is_mysql(url):
        return url
    for bare in ("mysql://", "mariadb://"):
        if url.startswith(bare):
            url = "mysql+pymysql://" + url[len(bare) :]
    parsed = make_url(url)
    if parsed.query.get("charset") != MYSQL_CHARSET:
        parsed = parsed.update_query_dict({"charset": MYSQL_CHARSET})
    return parsed.render_as_string(hide_password=False)


def make_engine(url: str, timeouts: DatabaseTimeouts | None = None, **kwargs: Any) -> Engine:
    """An engine configured for Glimpse: WAL and foreign keys on SQLite, pre-ping and a pool elsewhere.

    With ``timeouts`` (the API and task processes; not the migrations, whose statements may take
    long), a PostgreSQL or MariaDB server that stops answering fails the statement waiting for it
    after ``read_timeout`` seconds, and a new connection after ``connect_timeout``: the request
    gets 503 (:func:`unit_of_work`) instead of hanging, and the dropped connection is replaced."""
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
        def _sqlite_begin(conn: Connection) -> None:
            # Writers take the write lock up front (IMMEDIATE), so two writers never deadlock on a lock
            # upgrade; read-only units of work begin deferred and run beside them under WAL. Sent on
            # the driver's connection: through exec_driver_sql it cost 30 µs more per transaction.
            statement = "BEGIN" if conn.get_execution_options().get(READONLY_OPTION) else "BEGIN IMMEDIATE"
            try:
                conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
            except sqlite3.Error as exc:
                # "database is locked" after busy_timeout: SQLAlchemy's error, a 503 as for any statement.
                raise DBAPIError.instance(statement, (), exc, sqlite3.Error) from exc

        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    # Servers close idle connections after a while (MariaDB's wait_timeout, 8 hours by default).
    kwargs.setdefault("pool_recycle", timeouts.connection_recycle_time if timeouts else 3600)
    if timeouts is not None:
        kwargs.setdefault("pool_timeout", timeouts.pool_timeout)
    if is_mysql(url):
        # PostgreSQL's default isolation: each statement sees what was committed before it, and a
        # guarded UPDATE re-checks its WHERE against the latest committed row. InnoDB's default
        # (REPEATABLE READ) would let a read after a lost compare-and-set see an older snapshot.
        kwargs.setdefault("isolation_level", "READ COMMITTED")
        if timeouts is not None:
            # PyMySQL's own socket timeouts: an answer that does not come fails with error 2013.
            kwargs.setdefault(
                "connect_args",
                {
                    "connect_timeout": timeouts.connect_timeout,
                    "read_timeout": timeouts.read_timeout,
                    "write_timeout": timeouts.read_timeout,
                },
            )
        return create_engine(url, **kwargs)
    if timeouts is not None and url.startswith("postgresql+psycopg"):
        # libpq takes whole seconds, at least 2.
        kwargs.setdefault("connect_args", {"connect_timeout": max(2, math.ceil(timeouts.connect_timeout))})
        engine = create_engine(url, **kwargs)
        connect = _psycopg_with_read_timeout(timeouts.read_timeout)

        @event.listens_for(engine, "do_connect")
        def _timed_connect(dialect: Any, record: Any, cargs: Any, cparams: Any) -> Any:
            return connect(*cargs, **cparams)

        return engine
    return create_engine(url, **kwargs)


def _psycopg_with_read_timeout(read_timeout: float) -> Callable[..., Any]:
    """psycopg's ``connect``, for connections whose every wait for the server (a statement, a commit,
    the pool's ping) ends after ``read_timeout`` seconds: the connection is closed (SQLAlchemy then
    drops it from the pool) and the wait fails with an OperationalError that says so. libpq has no
    such timeout of its own, and its TCP keepalives do not see a server that takes packets but never
    answers."""
    import psycopg

    class AnsweringConnection(psycopg.Connection[Any]):
        def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
            if timeout is not None:  # psycopg's own bounded waits (a cancel)
                return super().wait(gen, interval, timeout)
            began = time.monotonic()
            try:
                return super().wait(gen, interval, read_timeout)
            except psycopg.OperationalError:
                if time.monotonic() - began < read_timeout:
                    raise
                self.pgconn.finish()  # its state is unknown: never reuse it
                raise psycopg.OperationalError(
                    f"no answer from the database server within {read_timeout:g} s ([database] read_timeout)"
                ) from None

    return AnsweringConnection.connect


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)


def unavailable(exc: DBAPIError) -> DatabaseUnavailable:
    """The error a request or task gets when the database does not answer: what failed (the driver's
    first line) and what to do about it."""
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc.orig).__name__
    return DatabaseUnavailable(
        f"The database cannot be reached right now ({reason}), so this request was not completed; "
        "try again in a few moments."
    )


def _unreachable(exc: DBAPIError) -> DatabaseUnavailable | None:
    """The 503 for an error that says the database did not answer: an OperationalError, or any error
    under which the connection died (SQLAlchemy invalidated it); None for every other error."""
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        return unavailable(exc)
    return None


@contextmanager
def unit_of_work(factory: sessionmaker[Session], *, readonly: bool = False) -> Iterator[Session]:
    """One transaction: commit when the block ends normally, roll back on any exception."""
    session = factory()
    try:
        if readonly:
            session.connection(execution_options={READONLY_OPTION: True})
        yield session
        session.commit()
    except DBAPIError as exc:
        session.rollback()
        unreachable = _unreachable(exc)
        if unreachable is not None:
            raise unreachable from exc
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


class ReadSession:
    """One read-only transaction on a pooled connection, without the ORM's session around it.

    It offers what the repositories' reads use of a :class:`Session`: ``connection()`` and
    ``get_bind()`` (every read is a Core statement on the connection). A write, or a query that
    asks for ORM objects, finds no such method and fails at once (AttributeError): such work
    belongs in :func:`unit_of_work`. Without the ORM session's transaction bookkeeping, an empty
    read-only unit of work costs 77 µs of CPU instead of 154.
    """

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    def connection(self) -> Connection:
        return self._connection

    def get_bind(self) -> Connection:
        return self._connection


@contextmanager
def _database_errors() -> Iterator[None]:
    """A database that did not answer raises :class:`DatabaseUnavailable` (503); other errors pass."""
    try:
        yield
    except DBAPIError as exc:
        unreachable = _unreachable(exc)
        if unreachable is not None:
            raise unreachable from exc
        raise


@contextmanager
def read_unit_of_work(engine: Engine) -> Iterator[ReadSession]:
    """A read-only transaction (deferred ``BEGIN`` on SQLite) on a pooled connection, with the errors
    of :func:`unit_of_work`."""
    with _database_errors(), engine.connect() as connection:
        connection.execution_options(**{READONLY_OPTION: True})
        with connection.begin():
            yield ReadSession(connection)


def reader_connection(engine: Engine) -> Connection:
    """A connection taken from the pool for :func:`read_on` (read-only units of work), until closed."""
    with _database_errors():
        return engine.connect().execution_options(**{READONLY_OPTION: True})


@contextmanager
def read_on(connection: Connection) -> Iterator[ReadSession]:
    """:func:`read_unit_of_work` on a connection of :func:`reader_connection` that the caller keeps:
    without the pool's check-out and check-in (50 µs of CPU)."""
    with _database_errors(), connection.begin():
        yield ReadSession(connection)


def ping(engine: Engine) -> None:
    """Run ``SELECT 1`` on a pooled connection; ``DatabaseUnavailable`` when the database does not answer."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except OperationalError as exc:
        raise unavailable(exc) from exc
