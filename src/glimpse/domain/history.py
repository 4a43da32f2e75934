"""Image history: what happened to an image, by whom, kept after its tasks have expired.

Every change worth asking about later (an upload, an import or copy and how it ended, a cancel, the
removal of the data from one store, a status change such as deactivate, reactivate or delete) is one
:class:`HistoryEntry`, written in the same unit of work as the change itself. Entries are kept
``[DEFAULT] image_history_days`` days and then purged. See ``docs/history.md``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from glimpse.context import RequestContext
from glimpse.domain.imports import ImportMethod
from glimpse.domain.tasks import CancelRequest, Task


class HistoryAction(enum.StrEnum):
    CREATE = "create"
    UPLOAD = "upload"
    STAGE = "stage"
    IMPORT = "import"
    COPY = "copy"
    CANCEL = "cancel"
    STORE_DELETE = "store_delete"
    DEACTIVATE = "deactivate"
    REACTIVATE = "reactivate"
    DELETE = "delete"


class HistoryOutcome(enum.StrEnum):
    #: An import or copy was accepted: its task is pending.
    ACCEPTED = "accepted"
    #: A cancel was recorded on a running task; the task's own entry says how it ended.
    REQUESTED = "requested"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One thing that happened to an image. ``id`` is None until the entry is stored; stored ids
    grow, so the newest entry has the largest id."""

    image_id: str
    at: datetime
    action: HistoryAction
    outcome: HistoryOutcome
    user_id: str | None = None
    project_id: str | None = None
    request_id: str | None = None
    task_id: str | None = None
    stores: tuple[str, ...] = ()
    #: Bytes of image data moved by the change (written to stores and to staging), when it moved any.
    bytes_moved: int | None = None
    #: The image's status after the change, when the change set one.
    status: str | None = None
    message: str = ""
    id: int | None = None

    @classmethod
    def by(
        cls,
        ctx: RequestContext,
        image_id: str,
        at: datetime,
        action: HistoryAction,
        outcome: HistoryOutcome,
        *,
        stores: tuple[str, ...] = (),
        bytes_moved: int | None = None,
        status: str | None = None,
        message: str = "",
    ) -> HistoryEntry:
        """An entry for a change the caller ``ctx`` made."""
        return cls(
            image_id=image_id,
            at=at,
            action=action,
            outcome=outcome,
            user_id=ctx.user_id,
            project_id=ctx.project_id,
            request_id=ctx.request_id,
            stores=stores,
            bytes_moved=bytes_moved,
            status=status,
            message=message,
        )

    @classmethod
    def of_task(
        cls,
        task: Task,
        at: datetime,
        outcome: HistoryOutcome,
        *,
        bytes_moved: int | None = None,
        status: str | None = None,
        message: str = "",
    ) -> HistoryEntry:
        """An entry for a change of ``task`` (accepted, or how it ended), in the name of whoever
        started it."""
        assert task.image_id is not None
        return cls(
            image_id=task.image_id,
            at=at,
            action=task_action(task),
            outcome=outcome,
            user_id=task.user_id,
            project_id=task.owner,
            request_id=task.request_id,
            task_id=task.id,
            stores=tuple(task.stores),
            bytes_moved=bytes_moved,
            status=status,
            message=message,
        )

    @classmethod
    def cancel(cls, task: Task, request: CancelRequest, outcome: HistoryOutcome) -> HistoryEntry:
        """The cancel of ``task``, in the name of whoever cancelled it."""
        assert task.image_id is not None
        return cls(
            image_id=task.image_id,
            at=request.at,
            action=HistoryAction.CANCEL,
            outcome=outcome,
            user_id=request.user_id,
            project_id=request.project_id,
            request_id=request.request_id,
            task_id=task.id,
            stores=tuple(task.stores),
        )


def task_action(task: Task) -> HistoryAction:
    """``copy`` for a copy-image task, ``import`` for every other."""
    return HistoryAction.COPY if task.method is ImportMethod.COPY_IMAGE else HistoryAction.IMPORT


def visible_entry(
    viewer_project: str | None, is_admin: bool, image_owner: str | None, entry: HistoryEntry
) -> HistoryEntry:
    """The entry as a viewer may see it, redacted as the image's task list redacts other projects'
    tasks: the viewer's own project's entries (and every entry, for an administrator) in full; for
    the image's owner, another project's entry without its user and request ids; for any other
    viewer of the image (a public, community or shared one), another project's entry without its
    user, project and request ids. What happened, when and to which stores is never hidden.
    """
    if is_admin or entry.project_id is None or entry.project_id == viewer_project:
        return entry
    if image_owner is not None and image_owner == viewer_project:
        return replace(entry, user_id=None, request_id=None)
    return replace(entry, user_id=None, request_id=None, project_id=None)
