"""The root test fixtures hand out real, fresh, empty databases, and clean up after themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa


def _table_names(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_database_url_is_empty_and_writable(database_url: str) -> None:
    assert _table_names(database_url) == []
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"))
            conn.execute(sa.text("INSERT INTO probe (id, name) VALUES (1, 'x')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM probe")).scalar_one() == "x"
    finally:
        engine.dispose()


def test_database_url_matches_its_backend(request: pytest.FixtureRequest, database_url: str) -> None:
    backend = request.node.callspec.params["database_url"]
    url = sa.make_url(database_url)
    assert url.get_backend_name() == backend
    if backend == "postgresql":
        assert url.drivername == "postgresql+psycopg"
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                version = conn.execute(sa.text("SELECT version()")).scalar_one()
                current = conn.execute(sa.text("SELECT current_database()")).scalar_one()
        finally:
            engine.dispose()
        assert version.startswith("PostgreSQL ")
        assert current == url.database
        assert current != "postgres"


def test_sqlite_url_is_a_fresh_file(sqlite_url: str, tmp_path: Path) -> None:
    url = sa.make_url(sqlite_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database is not None
    assert url.database.startswith(str(tmp_path))
    assert _table_names(sqlite_url) == []


class _DropCheck:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.held: list[sa.Connection] = []


@pytest.fixture
def drop_check(postgres_admin_url: str) -> Iterator[_DropCheck]:
    """Requested before ``database_url``, so its teardown runs after that fixture's DROP DATABASE."""
    check = _DropCheck()
    yield check
    engine = sa.create_engine(postgres_admin_url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            left = (
                conn.execute(
                    sa.text("SELECT datname FROM pg_database WHERE datname = ANY(:names)"),
                    {"names": check.names},
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
        for held in check.held:
            held.invalidate()
    assert check.names
    assert left == []


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_postgres_database_is_dropped_after_the_test(drop_check: _DropCheck, database_url: str) -> None:
    name = sa.make_url(database_url).database
    assert name is not None
    drop_check.names.append(name)
    # A connection still open when the test ends must not keep the database alive.
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    conn = engine.connect()
    drop_check.held.append(conn)
    assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == name
