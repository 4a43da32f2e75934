"""The exit codes of ``glimpse``, and how a finished import or copy task maps to one.

Scripts may rely on these numbers; docs/cli.md has the same table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum

from glimpse_client import Image, Task

from ._text import failed_stores, task_targets


class ExitCode(IntEnum):
    """What ``glimpse`` exits with."""

    #: Done; for an import or copy, every requested store holds the image.
    OK = 0
    #: The server refused the request (any API error, a 409 included), or the input was wrong (a file
    #: that cannot be read, an image name that matches no image or several).
    ERROR = 1
    #: The command line itself is wrong: unknown command or option, missing argument, options that
    #: cannot go together, no server given.
    USAGE = 2
    #: The task ran and failed: no store got the data.
    FAILED = 3
    #: The task succeeded, but some of the requested stores failed (``--allow-failure``).
    PARTIAL = 4
    #: ``--wait`` ran out of ``--timeout``. The task goes on on the server; nothing was undone.
    TIMEOUT = 5
    #: Ctrl-C. The task goes on on the server; nothing was undone.
    INTERRUPTED = 130


def outcome(task: Task, image: Image | None, requested_stores: Sequence[str] | None) -> ExitCode:
    """The exit code for ``task``, read after it ended.

    ``requested_stores`` are the stores the user asked for; ``None`` (``--all-stores``, or the default
    store) means the task's own targets. A store counts as failed when the task's ``progress`` says
    so, or when the image lists it in ``os_glance_failed_import``, or when the image (if given) does
    not hold it after a successful task. A task that has not ended yet counts as a timeout.
    """
    if task.status == "failure":
        return ExitCode.FAILED
    if task.status != "success":
        return ExitCode.TIMEOUT
    wanted = list(requested_stores) if requested_stores else task_targets(task)
    failed = set(failed_stores(task))
    if image is not None:
        failed.update(image.failed_import)
        if wanted and image.stores:
            failed.update(s for s in wanted if s not in image.stores)
    if wanted and failed.intersection(wanted):
        return ExitCode.PARTIAL
    if not wanted and failed:
        return ExitCode.PARTIAL
    return ExitCode.OK


#: Which outcome wins when several watched tasks ended differently.
_SEVERITY = (ExitCode.OK, ExitCode.PARTIAL, ExitCode.FAILED, ExitCode.TIMEOUT)


def watched_outcome(tasks: Sequence[Task], watched: Iterable[str], image: Image) -> ExitCode:
    """The exit code of watching an image's tasks: the worst :func:`outcome` of the ``watched``
    tasks (each against its own target stores), OK when none was watched."""
    ids = set(watched)
    codes = [outcome(t, image, task_targets(t)) for t in tasks if t.id in ids]
    return max(codes, key=_SEVERITY.index, default=ExitCode.OK)


def image_outcome(image: Image, requested_stores: Sequence[str] | None) -> ExitCode:
    """The exit code of an import that ended without a task to read (a server that names none), from
    the image alone: not active is a failure; a requested store that failed or does not hold the
    image (any store in ``os_glance_failed_import`` when none was requested) is a partial failure."""
    if image.status != "active":
        return ExitCode.FAILED
    failed = set(image.failed_import)
    missing = {s for s in requested_stores or [] if s not in image.stores} if image.stores else set()
    if failed.intersection(requested_stores or failed) or missing:
        return ExitCode.PARTIAL
    return ExitCode.OK
