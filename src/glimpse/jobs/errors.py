"""Why a running task stops early, and the failures a flow reports to the user.

::

    TaskStopped                 the runner must stop this task now; only its own partial work is undone
    ├── LockLost                the image's import lock is no longer held by this task
    ├── ImageDeleted            the image was deleted (or never existed)
    ├── Interrupted             the runner is shutting down; the task is put back in the queue
    └── LimitReached            a time limit of the task ran out; it fails, undoing its work as a cancel does
        ├── DeadlineReached     the import request's ``deadline`` or ``[task] task_max_duration`` passed
        └── Stalled             no byte moved for ``[task] task_stall_timeout`` seconds

``glimpse.domain.tasks.TaskLost`` (the task row is no longer this runner's: failed by a lock
bust or by the reaper, or claimed again after a lease expired) is the fourth reason to stop. A flow
that fails tells the user why with ``glimpse.errors.FlowFailed``.
"""

from __future__ import annotations


class TaskStopped(Exception):
    """The task must stop at once; what to undo depends on the subclass."""


class LockLost(TaskStopped):
    def __init__(self, image_id: str, holder: str | None) -> None:
        self.image_id = image_id
        self.holder = holder
        who = f"task {holder}" if holder else "nobody"
        super().__init__(f"the import lock of image {image_id} is now held by {who}")


class ImageDeleted(TaskStopped):
    def __init__(self, image_id: str) -> None:
        self.image_id = image_id
        super().__init__(f"image {image_id} was deleted")


class Interrupted(TaskStopped):
    """The runner is stopping: undo this run's work and hand the task back as pending."""


class LimitReached(TaskStopped):
    """A time limit ran out: undo this run's work as for a cancel, then end the task ``failure``
    with ``message``, which says which limit was reached and when."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class DeadlineReached(LimitReached):
    """The task ran past its deadline (the import request's, or the server's longest task time)."""


class Stalled(LimitReached):
    """A step moved no byte for the stall timeout."""
