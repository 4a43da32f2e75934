"""The root fixtures hand out real, fresh databases (empty or migrated), and clean up after themselves."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from glimpse.db import migrate
from glimpse.db.models import Base
from glimpse.db.session import make_engine


def _table_names(url: str) -> list[str]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        return sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def _row_counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with engine.connect() as conn:
            return {
                table.name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
                for table in Base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def test_empty_database_url_is_empty_and_writable(empty_database_url: str) -> None:
    assert _table_names(empty_database_url) == []
    engine = sa.create_engine(empty_database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"))
            conn.execute(sa.text("INSERT INTO probe (id, name) VALUES (1, 'x')"))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT name FROM probe")).scalar_one() == "x"
    finally:
        engine.dispose()


@pytest.mark.parametrize("fixture", ["empty_database_url", "migrated_database_url"])
def test_database_url_matches_its_backend(
    request: pytest.FixtureRequest, database_backend: str, fixture: str
) -> None:
    database_url: str = request.getfixturevalue(fixture)
    assert database_backend == request.node.callspec.params["database_backend"]
    url = sa.make_url(database_url)
    assert url.get_backend_name() == {"mariadb": "mysql"}.get(database_backend, database_backend)
    if database_backend == "mariadb":
        assert url.drivername == "mysql+pymysql"
        engine = sa.create_engine(url, poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                version = conn.execute(sa.text("SELECT version()")).scalar_one()
                current = conn.execute(sa.text("SELECT database()")).scalar_one()
        finally:
            engine.dispose()
        assert "MariaDB" in version
        assert current == url.database
    if database_backend == "postgresql":
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


# Two rounds per backend: had the copies been shared, or the template written to, the later round
# would find the table the earlier one created.
@pytest.mark.parametrize("round_", [1, 2])
def test_migrated_database_url_is_at_head_with_no_rows(migrated_database_url: str, round_: int) -> None:
    engine = make_engine(migrated_database_url)
    try:
        assert migrate.check(engine) == []
    finally:
        engine.dispose()
    counts = _row_counts(migrated_database_url)
    assert counts
    # No rows but the ones the migrations insert: the six standard metadefs resource types.
    seeded = {"metadef_resource_types": 6}
    assert {table: n for table, n in counts.items() if n} == seeded, counts
    assert "probe" not in _table_names(migrated_database_url)
    engine = sa.create_engine(migrated_database_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()


@pytest.mark.parametrize("round_", [1, 2])
def test_migrated_sqlite_url_is_a_copy_of_its_own(
    migrated_sqlite_url: str, tmp_path: Path, round_: int
) -> None:
    url = sa.make_url(migrated_sqlite_url)
    assert url.database is not None
    assert url.database.startswith(str(tmp_path))
    tables = _table_names(migrated_sqlite_url)
    assert "images" in tables
    assert "probe" not in tables
    engine = sa.create_engine(migrated_sqlite_url, poolclass=sa.NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id INTEGER PRIMARY KEY)"))
    finally:
        engine.dispose()


def test_empty_sqlite_url_is_a_fresh_file(empty_sqlite_url: str, tmp_path: Path) -> None:
    url = sa.make_url(empty_sqlite_url)
    assert url.get_backend_name() == "sqlite"
    assert url.database is not None
    assert url.database.startswith(str(tmp_path))
    assert _table_names(empty_sqlite_url) == []


def test_two_sqlite_fixtures_of_one_test_are_two_files(
    empty_sqlite_url: str, migrated_sqlite_url: str
) -> None:
    assert sa.make_url(empty_sqlite_url).database != sa.make_url(migrated_sqlite_url).database
    assert _table_names(empty_sqlite_url) == []
    assert "images" in _table_names(migrated_sqlite_url)


@pytest.mark.postgres
def test_postgres_template_accepts_no_connections(
    request: pytest.FixtureRequest, postgres_admin_url: str
) -> None:
    template: str = request.getfixturevalue("_postgres_template")
    url = sa.make_url(postgres_admin_url).set(database=template)
    engine = sa.create_engine(url, poolclass=sa.NullPool)
    try:
        with pytest.raises(sa.exc.OperationalError, match="not currently accepting connections"):
            engine.connect()
    finally:
        engine.dispose()


class _DropCheck:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.held: list[sa.Connection] = []

    def databases_left(self, admin_url: str, query: sa.TextClause) -> list[str]:
        """Which of the test's databases ``query`` (given ``names``) still finds on the server; the
        connections the test held are let go whatever the answer."""
        engine = sa.create_engine(admin_url, poolclass=sa.NullPool)
        try:
            with engine.connect() as conn:
                left = list(conn.execute(query, {"names": self.names}).scalars().all())
        finally:
            engine.dispose()
            for held in self.held:
                held.invalidate()
        assert self.names
        return left


@pytest.fixture
def drop_check(postgres_admin_url: str) -> Iterator[_DropCheck]:
    """Set up before the test's database fixture, so its teardown runs after that fixture's DROP DATABASE."""
    check = _DropCheck()
    yield check
    query = sa.text("SELECT datname FROM pg_database WHERE datname = ANY(:names)")
    assert check.databases_left(postgres_admin_url, query) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database_backend", ["postgresql"], indirect=True)
@pytest.mark.parametrize("fixture", ["empty_database_url", "migrated_database_url"])
def test_postgres_database_is_dropped_after_the_test(
    request: pytest.FixtureRequest, drop_check: _DropCheck, database_backend: str, fixture: str
) -> None:
    database_url: str = request.getfixturevalue(fixture)
    name = sa.make_url(database_url).database
    assert name is not None
    drop_check.names.append(name)
    # A connection still open when the test ends must not keep the database alive.
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    conn = engine.connect()
    drop_check.held.append(conn)
    assert conn.execute(sa.text("SELECT current_database()")).scalar_one() == name


@pytest.fixture
def mariadb_drop_check(mariadb_admin_url: str) -> Iterator[_DropCheck]:
    """Like ``drop_check``, on the MariaDB server."""
    check = _DropCheck()
    yield check
    query = sa.text(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME IN :names"
    ).bindparams(sa.bindparam("names", expanding=True))
    assert check.databases_left(mariadb_admin_url, query) == []


@pytest.mark.mariadb
@pytest.mark.parametrize("database_backend", ["mariadb"], indirect=True)
@pytest.mark.parametrize("fixture", ["empty_database_url", "migrated_database_url"])
def test_mariadb_database_is_dropped_after_the_test(
    request: pytest.FixtureRequest, mariadb_drop_check: _DropCheck, database_backend: str, fixture: str
) -> None:
    database_url: str = request.getfixturevalue(fixture)
    name = sa.make_url(database_url).database
    assert name is not None
    mariadb_drop_check.names.append(name)
    # A connection left in an open transaction holds metadata locks that a plain DROP DATABASE
    # would wait for: the fixture must end it.
    engine = sa.create_engine(database_url, poolclass=sa.NullPool)
    conn = engine.connect()
    mariadb_drop_check.held.append(conn)
    conn.execute(sa.text("CREATE TABLE IF NOT EXISTS held (id INTEGER PRIMARY KEY)"))
    conn.execute(sa.text("SELECT COUNT(*) FROM held")).scalar_one()
    assert conn.execute(sa.text("SELECT database()")).scalar_one() == name


@pytest.mark.mariadb
@pytest.mark.parametrize("database_backend", ["mariadb"], indirect=True)
def test_mariadb_copy_has_the_template_schema(migrated_database_url: str) -> None:
    """The replayed schema keeps what ``CREATE TABLE … LIKE`` would lose: the foreign keys (a child
    row of a missing image is refused) and the binary collation (tags differing only in case or a
    trailing space are three tags, as on PostgreSQL)."""
    engine = make_engine(migrated_database_url)
    try:
        fks = sa.inspect(engine).get_foreign_keys("image_tags")
        assert [fk["referred_table"] for fk in fks] == ["images"]
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO image_tags (image_id, value) VALUES ('missing', 'x')"))
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO images (id, status, visibility, protected, os_hidden, min_ram, min_disk, "
                    "created_at, updated_at, deleted) VALUES ('i1', 'queued', 'private', 0, 0, 0, 0, "
                    "'2026-01-01 00:00:00.123456', '2026-01-01 00:00:00', 0)"
                )
            )
            for value in ("Gold", "gold", "gold "):
                conn.execute(
                    sa.text("INSERT INTO image_tags (image_id, value) VALUES ('i1', :v)"), {"v": value}
                )
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM image_tags WHERE value = 'gold'")).scalar() == 1
            created = conn.execute(sa.text("SELECT created_at FROM images")).scalar()
        assert created is not None
        assert created.microsecond == 123456
    finally:
        engine.dispose()
