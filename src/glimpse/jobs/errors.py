"""Why a running task stops early, and the failures a flow reports to the user.

::

    TaskStopped                 the runner must stop this task now; only its own partial work is undone
    ├── LockLost                the image's import lock is no longer held by this task
    ├── ImageDeleted            the image was deleted (or never existed)
    └── Interrupted             the runner is shutting down; the task is put back in the queue

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
