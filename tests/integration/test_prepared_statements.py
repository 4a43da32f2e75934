"""Prepared statements (glimpse.db.prepared) answer exactly what SQLAlchemy's own execution answers,
on every database: the same rows, the same converted values, the same errors."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, bindparam, literal_column, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from glimpse.db.models import ImagePropertyRow, ImageRow, TaskRow
from glimpse.db.prepared import Prepared
from glimpse.db.session import make_engine, make_sessionmaker, read_unit_of_work, unit_of_work

WHEN = datetime(2026, 12, 6, 3, 4, 5, 123456, tzinfo=UTC)
IMAGES = ImageRow.__table__
PROPERTIES = ImagePropertyRow.__table__
TASKS = TaskRow.__table__


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[Engine]:
    eng = make_engine(migrated_database_url)
    with unit_of_work(make_sessionmaker(eng)) as session:
        for n, visibility in enumerate(("public", "private", "shared")):
            image_id = f"00000000-0000-0000-0000-00000000000{n}"
            session.add(
                ImageRow(
                    id=image_id,
                    name=f"image {n}",
                    status="active",
                    visibility=visibility,
                    protected=n == 1,
                    os_hidden=False,
                    size=None if n == 2 else 2**40 + n,
                    min_ram=0,
                    min_disk=0,
                    created_at=WHEN + timedelta(seconds=n),
                    updated_at=WHEN,
                    deleted=False,
                    properties=[ImagePropertyRow(name="os_distro", value=f"debian {n}")],
                )
            )
            session.add(
                TaskRow(
                    id=f"10000000-0000-0000-0000-00000000000{n}",
                    type="api_image_import",
                    status="success",
                    owner="project",
                    image_id=image_id,
                    input="{}",
                    message="",
                    progress="{}",
                    expires_at=WHEN + timedelta(hours=n),
                    created_at=WHEN,
                    updated_at=WHEN,
                    deleted=False,
                    attempt=1,
                )
            )
    yield eng
    eng.dispose()


STATEMENTS: dict[str, tuple[Any, dict[str, Any]]] = {
    "literal and boolean and datetime columns": (
        select(IMAGES)
        .where(IMAGES.c.visibility != "shared", IMAGES.c.deleted.is_(False))
        .order_by(IMAGES.c.id),
        {},
    ),
    "a datetime parameter, converted as the column converts it": (
        select(TASKS.c.id, TASKS.c.expires_at)
        .where(TASKS.c.expires_at > bindparam("now"))
        .order_by(TASKS.c.id),
        {"now": WHEN + timedelta(minutes=30)},
    ),
    "one parameter used twice, and a limit": (
        select(IMAGES.c.id)
        .where(
            (IMAGES.c.owner == bindparam("who"))
            | (IMAGES.c.name == bindparam("who"))
            | IMAGES.c.owner.is_(None)
        )
        .order_by(IMAGES.c.created_at.desc())
        .limit(2),
        {"who": "image 1"},
    ),
    "an expanding IN list and a labelled literal": (
        select(literal_column("'p'").label("kind"), PROPERTIES.c.image_id, PROPERTIES.c.value)
        .where(PROPERTIES.c.image_id.in_(bindparam("ids", expanding=True)))
        .order_by(PROPERTIES.c.image_id),
        {"ids": ["00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000002"]},
    ),
    "an empty IN list": (
        select(IMAGES.c.id).where(IMAGES.c.id.in_(bindparam("ids", expanding=True))),
        {"ids": []},
    ),
}


def _by_sqlalchemy(connection: Connection, statement: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(row) for row in connection.execute(statement, params).mappings()]


@pytest.mark.parametrize("name", list(STATEMENTS))
def test_rows_match_sqlalchemy_execution(engine: Engine, name: str) -> None:
    statement, params = STATEMENTS[name]
    prepared = Prepared(statement)
    with read_unit_of_work(engine) as session:
        connection = session.connection()
        expected = _by_sqlalchemy(connection, statement, params)
        assert prepared.rows(connection, params) == expected
        assert prepared.rows(connection, params) == expected  # the second run reuses the plan
    if name != "an empty IN list":
        assert expected, "the statement selects rows, so that the comparison means something"


def test_in_lists_of_every_length_get_their_own_sql(engine: Engine) -> None:
    """The SQL for each length of the list is worked out once and reused; a list used twice in the
    statement, beside a plain parameter, takes its elements in the right places each time."""
    ids = bindparam("ids", expanding=True)
    statement = (
        select(IMAGES.c.id, IMAGES.c.name)
        .where(
            IMAGES.c.id.in_(ids) | (IMAGES.c.name == bindparam("name")),
            IMAGES.c.id.in_(ids) | IMAGES.c.protected.is_(True),
        )
        .order_by(IMAGES.c.id)
    )
    prepared = Prepared(statement)
    ids_of = [f"00000000-0000-0000-0000-00000000000{n}" for n in range(3)]
    runs = [ids_of[:1], ids_of[1:], [], ids_of[:1], ids_of, ["no such id", ids_of[2]]]
    with read_unit_of_work(engine) as session:
        connection = session.connection()
        for wanted in runs:
            params = {"ids": wanted, "name": "image 1"}
            assert prepared.rows(connection, params) == _by_sqlalchemy(connection, statement, params)
    assert sorted(prepared._plans[engine.dialect].shapes) == [(0,), (1,), (2,), (3,)]


def test_runs_in_the_transaction_of_the_unit_of_work(engine: Engine) -> None:
    """A prepared read sees what its own transaction wrote before it commits, and the rollback undoes it."""
    names = Prepared(select(IMAGES.c.name).where(IMAGES.c.id == bindparam("image_id")))
    image = {"image_id": "00000000-0000-0000-0000-000000000001"}
    seen_inside = []

    def rename_then_fail() -> None:
        with unit_of_work(make_sessionmaker(engine)) as session:
            connection = session.connection()
            connection.execute(IMAGES.update().where(IMAGES.c.id == image["image_id"]).values(name="renamed"))
            seen_inside.extend(names.rows(connection, image))
            raise RuntimeError("roll back")

    with pytest.raises(RuntimeError):
        rename_then_fail()
    assert seen_inside == [{"name": "renamed"}]
    with read_unit_of_work(engine) as session:
        assert names.rows(session.connection(), image) == [{"name": "image 1"}]


def test_a_failing_statement_raises_sqlalchemys_error(engine: Engine) -> None:
    broken = Prepared(select(literal_column("no_such_column")).select_from(IMAGES))
    with engine.connect() as connection, pytest.raises(DBAPIError) as caught:
        broken.rows(connection, {})
    assert "no_such_column" in str(caught.value)
    assert "SELECT no_such_column" in str(caught.value)  # the statement, as SQLAlchemy shows it


def test_a_plan_is_per_engine(migrated_database_url: str, tmp_path: Any) -> None:
    """The same prepared statement serves two engines of different databases, each with its own SQL."""
    statement = Prepared(select(IMAGES.c.id).where(IMAGES.c.id.in_(bindparam("ids", expanding=True))))
    other = make_engine(f"sqlite:///{tmp_path / 'other.sqlite'}")
    try:
        with other.begin() as connection:
            connection.execute(text("CREATE TABLE images (id VARCHAR(36))"))
            connection.execute(text("INSERT INTO images VALUES ('x')"))
        first = make_engine(migrated_database_url)
        try:
            with read_unit_of_work(first) as session:
                assert statement.rows(session.connection(), {"ids": ["x"]}) == []
            with read_unit_of_work(other) as session:
                assert statement.rows(session.connection(), {"ids": ["x"]}) == [{"id": "x"}]
        finally:
            first.dispose()
    finally:
        other.dispose()


def test_sqlite_writer_that_cannot_get_the_lock_gets_sqlalchemys_error(tmp_path: Any) -> None:
    """BEGIN IMMEDIATE, sent on the driver's connection, still fails as an OperationalError (the
    unit of work's 503), not as the driver's own exception."""
    path = tmp_path / "locked.sqlite"
    engine = make_engine(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    try:
        with engine.connect() as connection:  # connected (WAL on) before the lock is taken
            connection.connection.driver_connection.execute("PRAGMA busy_timeout=50")  # type: ignore[union-attr]
            holder.execute("BEGIN IMMEDIATE")
            with pytest.raises(OperationalError, match="locked"):
                connection.begin()
    finally:
        holder.close()
        engine.dispose()
