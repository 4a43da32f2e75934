"""Rolling upgrades: the previous release keeps working on a schema an expand migration has changed.

While a new release rolls out, its first process migrates the database and the nodes still running
the previous release go on reading and writing it (docs/dev/migrations.md, "Expand and contract").
For every expand revision of the chain, on every database backend, this brings a database to the
revision before it (the schema the running release was written for), reflects the tables as that
release knows them, writes a row into each the way it would (naming only the columns it knows),
runs the expand migration, and then checks that the old release's view still holds:

* every table and column it knew is still there, with the same or a looser nullability;
* every column the migration added to a table it knew can be left out of an insert (nullable or
  with a server-side default: the old release's inserts never name it);
* no unique constraint or unique index was added over columns it knew (its writes could break it);
* its rows are still there, and its inserts and reads still succeed on the migrated schema.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, MetaData, Table, func, insert, inspect, select

from glimpse.db import migrate
from glimpse.db.session import make_engine


def expand_revisions() -> list[tuple[str, str]]:
    """(revision, previous revision) of every expand migration that has a predecessor, oldest first."""
    script = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    found = []
    for revision in script.walk_revisions():
        previous = revision.down_revision
        if "expand" in revision.revision and isinstance(previous, str):
            found.append((revision.revision, previous))
    return sorted(found)


@pytest.fixture
def engine(empty_database_url: str) -> Iterator[Engine]:
    eng = make_engine(empty_database_url)
    yield eng
    eng.dispose()


def _value(column: Column[Any], number: int, parents: dict[tuple[str, str], Any]) -> Any:
    """A value the old release could have written into ``column``."""
    for key in column.foreign_keys:
        return parents[(key.column.table.name, key.column.name)]
    kind = column.type
    python_type: type = kind.python_type
    if python_type is bool:
        return False
    if python_type is int:
        return number
    if python_type is dt.datetime:
        return dt.datetime(2026, 1, 1, 12, 0, number % 60, tzinfo=dt.UTC)
    if python_type is str:
        length = getattr(kind, "length", None) or 64
        return f"{column.name[:20]}-{number}"[:length]
    if python_type in (dict, list):
        return {}
    if python_type is bytes:
        return b"x"
    return number


def _write_row(engine: Engine, old: MetaData, number: int) -> None:
    """One row into every table the old release knows, parents first, naming only its columns."""
    parents: dict[tuple[str, str], Any] = {}
    with engine.begin() as connection:
        for table in old.sorted_tables:
            values = {
                # An integer key of its own is given explicitly, far from the rows a migration may
                # have inserted (the standard metadefs resource types): reflection does not say the
                # same thing about autoincrement on every backend.
                column.name: 1000 + number
                if column.primary_key and not column.foreign_keys and column.type.python_type is int
                else _value(column, number, parents)
                for column in table.columns
            }
            connection.execute(insert(table).values(**values))
            parents.update({(table.name, name): value for name, value in values.items()})


def _unique_column_sets(engine: Engine, table: str) -> set[frozenset[str]]:
    inspector = inspect(engine)
    found = {frozenset(c["column_names"]) for c in inspector.get_unique_constraints(table)}
    found |= {
        frozenset(str(n) for n in i["column_names"]) for i in inspector.get_indexes(table) if i["unique"]
    }
    return found


@pytest.mark.parametrize(("revision", "previous"), expand_revisions())
def test_the_previous_release_keeps_working_during_an_expand_migration(
    engine: Engine, revision: str, previous: str
) -> None:
    migrate.upgrade(engine, previous)
    old = MetaData()
    old.reflect(engine)
    old.remove(old.tables["alembic_version"])
    unique_before = {name: _unique_column_sets(engine, name) for name in old.tables}
    with engine.connect() as connection:  # rows the migrations themselves inserted
        seeded = {
            table.name: connection.execute(select(func.count()).select_from(table)).scalar_one()
            for table in old.sorted_tables
        }
    _write_row(engine, old, 1)

    migrate.upgrade(engine, revision)

    new = MetaData()
    new.reflect(engine)
    problems: list[str] = []
    for name, old_table in old.tables.items():
        if name not in new.tables:
            problems.append(f"table {name} was dropped")
            continue
        new_table: Table = new.tables[name]
        for column in old_table.columns:
            if column.name not in new_table.columns:
                problems.append(f"column {name}.{column.name} was dropped")
            elif column.nullable and not new_table.columns[column.name].nullable:
                problems.append(f"column {name}.{column.name} became NOT NULL")
        for column in new_table.columns:
            if column.name in old_table.columns:
                continue
            if not column.nullable and column.server_default is None and column.autoincrement is not True:
                problems.append(
                    f"new column {name}.{column.name} is NOT NULL without a server default: "
                    "the old release's inserts would fail"
                )
        old_columns = set(old_table.columns.keys())
        for columns in _unique_column_sets(engine, name) - unique_before[name]:
            if columns <= old_columns:
                problems.append(
                    f"new unique constraint on {name}({', '.join(sorted(columns))}): the old release "
                    "does not know it and may break it"
                )
    assert problems == [], f"{revision} is not safe for a rolling upgrade from {previous}: {problems}"

    # The old release, still running, writes and reads as it always did.
    _write_row(engine, old, 2)
    with engine.connect() as connection:
        for table in old.sorted_tables:
            count = connection.execute(select(func.count()).select_from(table)).scalar_one()
            expected = seeded[table.name] + 2
            assert count == expected, f"{table.name}: {count} rows read the old way, expected {expected}"
            connection.execute(select(*table.columns)).all()


def test_every_expand_revision_is_checked() -> None:
    """The chain has expand migrations after the first, so the test above checks something."""
    assert expand_revisions(), "no expand migration with a predecessor was found in the chain"
