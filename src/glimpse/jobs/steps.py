"""Linear flows: a list of steps, each with ``execute`` and ``revert``.

:func:`run_steps` executes the steps in order. When one raises, every step that started (the failing
one included, since it may have left partial work) is reverted in reverse order, and the error is
raised again. What a revert undoes depends on *why* the flow stopped (:class:`Why`): a failure of a
task that still holds the lock undoes everything it did to the image; a task that lost its claim or
its lock removes only the objects it wrote and touches no metadata; an interrupted task (the runner
is stopping) puts the image back exactly as the import request left it, so it can run again, and so
does a cancelled one, before the runner undoes the import request too.

A flow stopped by the database (``DatabaseUnavailable``) is reverted as an interrupted one, once
``settle`` (waiting for the database to answer again) has returned: undoing needs the database too.

A hard cancellation (``asyncio.CancelledError``) reverts nothing: the task's lease lapses and the
reaper undoes its work from the database's point of view.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from glimpse.domain.tasks import TaskCancelled, TaskLost
from glimpse.errors import DatabaseUnavailable
from glimpse.jobs.errors import Interrupted, LimitReached, TaskStopped

log = logging.getLogger(__name__)

R = TypeVar("R", contravariant=True)


class Why(enum.Enum):
    """Why a flow is being reverted."""

    #: The flow failed while this task still owns the task row and the image lock.
    FAILED = "failed"
    #: The task row or the image lock is no longer this run's (or the image is gone).
    LOST = "lost"
    #: The runner is stopping (restore the state the import request created, then re-queue), or
    #: the task was cancelled or ran out of time (the same undo, then the import request itself is
    #: undone).
    INTERRUPTED = "interrupted"


def why(error: BaseException) -> Why:
    if isinstance(error, Interrupted | TaskCancelled | DatabaseUnavailable | LimitReached):
        return Why.INTERRUPTED
    if isinstance(error, (TaskStopped, TaskLost)):
        return Why.LOST
    return Why.FAILED


class Step(Protocol, Generic[R]):
    name: str

    async def execute(self, run: R) -> None: ...

    async def revert(self, run: R, reason: Why) -> None: ...


async def run_steps(
    steps: Sequence[Step[R]],
    run: R,
    settle: Callable[[BaseException], Awaitable[None]] | None = None,
) -> None:
    """Execute ``steps``; when one raises, await ``settle(error)`` (if given), revert, raise again."""
    started: list[Step[R]] = []
    try:
        for step in steps:
            started.append(step)
            await step.execute(run)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        if settle is not None:
            await settle(exc)
        reason = why(exc)
        log.debug("flow stopped in step %s (%s): reverting", started[-1].name, reason.value)
        for step in reversed(started):
            try:
                await step.revert(run, reason)
            except (TaskStopped, TaskLost) as lost:
                # The lock or the claim went away while undoing: what is left is only our objects.
                log.info("revert of step %s stopped: %s; undoing only this run's objects", step.name, lost)
                reason = Why.LOST
                await _revert_quietly(step, run, reason)
            except Exception:
                log.exception("revert of step %s failed; the reaper will finish the clean-up", step.name)
        raise


async def _revert_quietly(step: Step[R], run: R, reason: Why) -> None:
    try:
        await step.revert(run, reason)
    except Exception:
        log.exception("revert of step %s failed; the reaper will finish the clean-up", step.name)
