"""run_steps: execute in order, revert what started in reverse order, for the right reason."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from glimpse.domain.tasks import TaskLost
from glimpse.jobs.errors import ImageDeleted, Interrupted, LockLost
from glimpse.jobs.steps import Why, run_steps, why


@dataclass
class Log:
    events: list[str] = field(default_factory=list)


@dataclass
class Step:
    name: str
    fail_with: BaseException | None = None
    revert_fails_with: BaseException | None = None

    async def execute(self, run: Log) -> None:
        run.events.append(f"do {self.name}")
        if self.fail_with is not None:
            raise self.fail_with

    async def revert(self, run: Log, reason: Why) -> None:
        run.events.append(f"undo {self.name} ({reason.value})")
        if self.revert_fails_with is not None and reason != Why.LOST:
            raise self.revert_fails_with


def test_steps_run_in_order() -> None:
    log = Log()
    asyncio.run(run_steps([Step("a"), Step("b")], log))
    assert log.events == ["do a", "do b"]


def test_a_failure_reverts_every_started_step_backwards() -> None:
    log = Log()
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(run_steps([Step("a"), Step("b", fail_with=ValueError("boom")), Step("c")], log))
    assert log.events == ["do a", "do b", "undo b (failed)", "undo a (failed)"]


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (Interrupted(), Why.INTERRUPTED),
        (TaskLost("t"), Why.LOST),
        (LockLost("i", "t2"), Why.LOST),
        (ImageDeleted("i"), Why.LOST),
        (RuntimeError("x"), Why.FAILED),
    ],
)
def test_reasons(error: BaseException, reason: Why) -> None:
    assert why(error) == reason


def test_losing_the_lock_while_undoing_falls_back_to_undoing_only_our_objects() -> None:
    log = Log()
    steps = [Step("a"), Step("b", fail_with=ValueError("boom"), revert_fails_with=LockLost("i", "other"))]
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(run_steps(steps, log))
    assert log.events == ["do a", "do b", "undo b (failed)", "undo b (lost)", "undo a (lost)"]


def test_a_broken_revert_does_not_stop_the_others() -> None:
    log = Log()
    steps = [Step("a"), Step("b", fail_with=ValueError("boom"), revert_fails_with=OSError("disk"))]
    with pytest.raises(ValueError, match="boom"):
        asyncio.run(run_steps(steps, log))
    assert log.events == ["do a", "do b", "undo b (failed)", "undo a (failed)"]


def test_cancellation_reverts_nothing() -> None:
    log = Log()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run_steps([Step("a"), Step("b", fail_with=asyncio.CancelledError())], log))
    assert log.events == ["do a", "do b"]
