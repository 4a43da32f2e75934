"""Reading tasks: an image's tasks for anyone who can see the image, and the admin-only task API."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from glimpse.context import RequestContext
from glimpse.domain.history import HistoryEntry, HistoryOutcome
from glimpse.domain.images import Image, is_uuid
from glimpse.domain.policy import PolicyRule
from glimpse.domain.tasks import (
    TERMINAL,
    CancelRequest,
    Clock,
    Task,
    TaskStatus,
    cancelled_outcome,
)
from glimpse.errors import Conflict, Forbidden, InvalidInput, NotFound
from glimpse.ports import Repositories, undo_import_request
from glimpse.services.images import ImageService
from glimpse.services.imports import describe_lock

TASK_FILTERS = ("type", "status")


def visible_task(ctx: RequestContext, image: Image, task: Task) -> Task | None:
    """The task as this caller may see it, or None.

    Glance shows a task only to its own project (and admins). Glimpse also shows the image owner the
    tasks other projects run on their image (an operator's copy, say), with that project's user and
    request ids removed: the owner learns why the image is busy without learning who asked.
    """
    if ctx.is_admin or task.owner is None or task.owner == ctx.project_id:
        return task
    if image.owner is not None and image.owner == ctx.project_id:
        return replace(task, user_id=None, request_id=None)
    return None


@dataclass(frozen=True, slots=True)
class ImageWork:
    """An image with its tasks and its import lock, as one caller may see them (the task page)."""

    image: Image
    tasks: list[Task]
    #: ``describe_lock``'s fields for the task holding the lock, None when no task holds it.
    lock: Mapping[str, object] | None
    now: datetime


class TaskService:
    def __init__(self, repos: Repositories, images: ImageService, clock: Clock) -> None:
        self.images = images
        self._repos = repos
        self.tasks = repos.tasks
        self.clock = clock

    def image_tasks(self, ctx: RequestContext, image_id: str) -> list[Task]:
        """Every non-expired task of an image the caller can see, oldest first."""
        image, _ = self.images.load(ctx, image_id, details=False)
        found = (visible_task(ctx, image, task) for task in self.tasks.for_image(image.id, self.clock()))
        return [task for task in found if task is not None]

    def image_work(self, ctx: RequestContext, image_id: str, stale_after: timedelta) -> ImageWork:
        """The image (with its locations), its tasks and who holds its lock: the 409's fields, with
        the holder's user and request left out for another project's task, as there."""
        image, _ = self.images.load(ctx, image_id)
        found = (visible_task(ctx, image, task) for task in self.tasks.for_image(image.id, self.clock()))
        now = self.clock()
        lock = None
        if image.import_task_id is not None:
            holder = self.tasks.find(image.import_task_id)
            _, lock = describe_lock(ctx, image.id, image.import_task_id, holder, now, stale_after)
        return ImageWork(image, [task for task in found if task is not None], lock, now)

    def image_task(self, ctx: RequestContext, image_id: str, task_id: str) -> Task:
        image, _ = self.images.load(ctx, image_id, details=False)
        task = self.tasks.find(task_id) if is_uuid(task_id) else None
        if task is not None and task.image_id == image.id:
            task = visible_task(ctx, image, self.tasks.get(task.id, self.clock()))
            if task is not None:
                return task
        raise NotFound(f"Image {image_id} has no task {task_id} that you can see.")

    # -- DELETE /v2/images/{id}/tasks/{task_id} ------------------------------------------------------
    def cancel_image_task(self, ctx: RequestContext, image_id: str, task_id: str, ttl: timedelta) -> Task:
        """Cancel a pending or running task of the image; returns the task as the caller sees it.

        A pending task ends ``failure`` at once (the image goes back to where the import request
        found it and the lock is released, in the same unit of work). A running one gets the cancel
        recorded in its row: whichever runner runs it stops at its next heartbeat, undoes its own
        work and ends it ``failure``. Cancelling a cancelled task again changes nothing (the same
        answer); a task that ended otherwise is a Conflict.
        """
        image, target = self.images.load(ctx, image_id, details=False)
        task = self.image_task(ctx, image_id, task_id)
        found = self.tasks.find(task.id)
        assert found is not None  # image_task just read it
        rule_target = {**target, "task_user_id": found.user_id}
        try:
            self.images.policy.enforce(PolicyRule.CANCEL_IMAGE_TASK, ctx, rule_target)
        except Forbidden as exc:
            exc.message += (
                " Only the user who started the task, a member of the image's owner project or an "
                "administrator may cancel it."
            )
            raise
        now = self.clock()
        request = found.cancel or CancelRequest(
            at=now, user_id=ctx.user_id, project_id=ctx.project_id, request_id=ctx.request_id
        )
        message = f"{request.describe()} It had not started. {cancelled_outcome(found.method, image.id)}"
        history = self._repos.history
        if found.status == TaskStatus.PENDING and self.tasks.cancel_pending(
            found.id, request, now, ttl, message
        ):
            undo_import_request(self._repos, found)
            history.add(HistoryEntry.cancel(found, request, HistoryOutcome.SUCCESS))
            history.add(
                HistoryEntry.of_task(found, now, HistoryOutcome.CANCELLED, message="It had not started.")
            )
        elif found.cancel is None and self.tasks.request_cancel(found.id, request, now):
            # Running (or claimed a moment ago): the runner sees it at its next heartbeat. A task
            # that ended in the meantime is left as it is (the update is guarded by the status).
            history.add(HistoryEntry.cancel(found, request, HistoryOutcome.REQUESTED))
        current = self.tasks.find(found.id)
        assert current is not None
        if current.status in TERMINAL and current.cancel is None:
            ended = current.updated_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise Conflict(
                f"Task {current.id} already ended with status '{current.status}' at {ended}; there is "
                "nothing to cancel. Its message says what it did."
            )
        shown = visible_task(ctx, image, current)
        assert shown is not None  # the caller could see it a moment ago; visibility is per project
        return shown

    # -- /v2/tasks (admin) -------------------------------------------------------------------------
    def list_tasks(
        self,
        ctx: RequestContext,
        *,
        filters: dict[str, str],
        sort_key: str,
        sort_dir: str,
        limit: int,
        marker: str | None,
    ) -> list[Task]:
        self.images.policy.enforce(PolicyRule.TASKS_API_ACCESS, ctx, {})
        self.images.policy.enforce(PolicyRule.GET_TASKS, ctx, {})
        if sort_dir not in ("asc", "desc"):
            raise InvalidInput(f"Invalid sort direction {sort_dir!r}; use asc or desc.")
        if marker is not None and not is_uuid(marker):
            raise InvalidInput(f"Invalid marker {marker!r}: markers are task ids.")
        return self.tasks.search(
            self.clock(), filters=filters, sort_key=sort_key, sort_dir=sort_dir, limit=limit, marker=marker
        )

    def get_task(self, ctx: RequestContext, task_id: str) -> Task:
        self.images.policy.enforce(PolicyRule.TASKS_API_ACCESS, ctx, {})
        self.images.policy.enforce(PolicyRule.GET_TASK, ctx, {})
        if not is_uuid(task_id):
            raise NotFound(f"Task with the given id {task_id} not found")
        return self.tasks.get(task_id, self.clock())
