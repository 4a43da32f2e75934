"""Runtime: the long-lived objects a process builds once from Settings and hands to every request."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from glimpse.config import Settings
from glimpse.db.session import make_engine, make_sessionmaker, unit_of_work
from glimpse.domain.policy import Policy
from glimpse.domain.tasks import Clock, system_clock
from glimpse.storage.registry import StoreRegistry, build_stores

T = TypeVar("T")


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    stores: StoreRegistry
    policy: Policy
    #: Where "now" comes from: tests inject a frozen or advanced clock (never sleep for an hour).
    clock: Clock = system_clock
    #: Called after a unit of work that created a pending task committed; the embedded runner
    #: replaces it to wake up at once (other processes find the task by polling).
    wake_runner: Callable[[], None] = field(default=lambda: None)
    limiter: anyio.CapacityLimiter = field(init=False)

    def __post_init__(self) -> None:
        # Few threads beat many: database work is mostly Python (SQLAlchemy) holding the GIL, and
        # every extra thread adds GIL hand-offs that the event loop pays for (measured in bench/).
        self.limiter = anyio.CapacityLimiter(self.settings.effective_database_threads)

    @classmethod
    def build(cls, settings: Settings, *, stores: StoreRegistry | None = None) -> Runtime:
        engine = make_engine(settings.database_connection)
        policy = Policy.from_file(settings.policy_file) if settings.policy_file else Policy()
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            stores=stores or build_stores(settings),
            policy=policy,
        )

    @contextmanager
    def uow(self, *, readonly: bool = False) -> Iterator[Session]:
        with unit_of_work(self.sessions, readonly=readonly) as session:
            yield session

    async def run(self, fn: Callable[[Session], T], *, readonly: bool = False) -> T:
        """Run ``fn`` in one transaction on a worker thread, off the event loop."""

        def _call() -> T:
            with self.uow(readonly=readonly) as session:
                return fn(session)

        return await anyio.to_thread.run_sync(_call, limiter=self.limiter)

    def close(self) -> None:
        self.engine.dispose()
