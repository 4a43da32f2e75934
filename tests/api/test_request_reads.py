"""A request's read (``Runtime.read``): a unit of work without the ORM session, on the event loop
for SQLite and on a worker thread for a database across a network."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import cast

import pytest
from apitools import make_settings

from glimpse.db.repositories import SqlRepositories
from glimpse.errors import DatabaseUnavailable, NotFound
from glimpse.ports import Repositories
from glimpse.runtime import Runtime


def test_reads_run_on_the_loop_only_for_sqlite(tmp_path: Path, migrated_database_url: str) -> None:
    runtime = Runtime.build(make_settings(tmp_path, migrated_database_url))

    async def scenario() -> tuple[int, int, int, bool]:
        loop_thread = threading.get_ident()
        read_thread = await runtime.read(lambda repos: threading.get_ident())
        run_thread = await runtime.run(lambda repos: threading.get_ident(), readonly=True)
        # The read is a real unit of work: it sees the database (no image has this id).
        seen = await runtime.read(lambda repos: repos.images.exists_ever("0" * 32))
        return loop_thread, read_thread, run_thread, seen

    try:
        loop_thread, read_thread, run_thread, seen = asyncio.run(scenario())
    finally:
        runtime.close()
    on_sqlite = migrated_database_url.startswith("sqlite")
    assert (read_thread == loop_thread) is on_sqlite
    assert run_thread != loop_thread
    assert seen is False


def test_a_read_cannot_write(tmp_path: Path, migrated_database_url: str) -> None:
    """A write through a read fails at once, before any statement (it has no ORM session to add to)."""
    runtime = Runtime.build(make_settings(tmp_path, migrated_database_url))
    try:
        with pytest.raises(AttributeError, match="ReadSession"):
            asyncio.run(runtime.read(lambda repos: repos.members.add("0" * 32, "someone")))
    finally:
        runtime.close()


def test_sqlite_reads_keep_one_connection_per_loop(tmp_path: Path, migrated_sqlite_url: str) -> None:
    """On SQLite a loop's reads share one connection: not handed back to the pool after each read,
    kept after a read that fails outside the database (a 404), replaced after one the database
    failed, and closed with the runtime."""
    runtime = Runtime.build(make_settings(tmp_path, migrated_sqlite_url))

    def connection_of(repos: Repositories) -> object:
        return cast(SqlRepositories, repos).images._session.connection()

    def database_gone(repos: Repositories) -> None:
        raise DatabaseUnavailable("The database cannot be reached right now.")

    async def scenario() -> list[object]:
        seen = [await runtime.read(connection_of), await runtime.read(connection_of)]
        with pytest.raises(NotFound):
            await runtime.read(lambda repos: repos.images.get("0" * 32))
        seen.append(await runtime.read(connection_of))
        assert runtime.engine.pool.checkedout() == 1  # type: ignore[attr-defined]
        with pytest.raises(DatabaseUnavailable):
            await runtime.read(database_gone)
        seen.append(await runtime.read(connection_of))
        return seen

    try:
        first, second, after_404, after_failure = asyncio.run(scenario())
    finally:
        runtime.close()
    assert first is second is after_404
    assert after_failure is not first
    assert runtime.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
