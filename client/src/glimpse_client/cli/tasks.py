"""``glimpse image tasks`` (a table, or a live view with ``--watch``), ``glimpse task show``, and
cancelling: ``glimpse task cancel`` and ``glimpse image cancel-import``."""

from __future__ import annotations

import argparse
import math
from typing import Any

from glimpse_client import Task, TaskFailed, TaskHandle

from ._text import store_summary, task_method, utc_time
from .base import DictColumn, GlimpseLister, GlimpseShowOne, ListColumn, ProgressColumn, run_guarded
from .errors import CommandError, UsageError
from .exitcodes import ExitCode, watched_outcome
from .taskview import task_rows, watch_image_tasks


class ListImageTasks(GlimpseLister):
    """List an image's tasks; with --watch follow them live until none is pending or processing."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        parser.add_argument(
            "--watch",
            action="store_true",
            help="follow the tasks live until none is pending or processing; the exit code is then the "
            "outcome of the tasks that were running (0, 3 or 4)",
        )
        parser.add_argument(
            "--long", action="store_true", help="more columns (request id, project, expiry...)"
        )
        return parser

    def run(self, parsed_args: argparse.Namespace) -> int:
        if parsed_args.watch:
            return run_guarded(self, lambda: self._watch(parsed_args))
        return super().run(parsed_args)

    def _watch(self, parsed_args: argparse.Namespace) -> int:
        image = self.image(parsed_args.image)
        active: set[str] = set()
        tasks = watch_image_tasks(
            self.client,
            image.id,
            console=self.glimpse.out_console,
            long=parsed_args.long,
            active=active,
            image_ref=parsed_args.image,
        )
        if not active:
            return int(ExitCode.OK)
        return int(watched_outcome(tasks, active, self.client.get_image(image.id)))

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        image = self.image(parsed_args.image)
        return task_rows(self.client.image_tasks(image.id), parsed_args.long)


def task_fields(task: Task) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    data: dict[str, Any] = {
        "id": task.id,
        "type": task.type,
        "method": task_method(task),
        "status": task.status,
        "image_id": task.image_id,
        "owner": task.owner,
        "user_id": task.user_id,
        "request_id": task.request_id,
        "message": task.message,
        "stores": ListColumn(store_summary(task, detailed=True)),
        "progress": ProgressColumn(task),
        "input": DictColumn(task.input or {}),
        "result": DictColumn(task.result or {}),
        "created_at": utc_time(task.created_at),
        "updated_at": utc_time(task.updated_at),
        "expires_at": utc_time(task.expires_at),
    }
    if task.cancel_request:
        data["cancel_request"] = DictColumn(task.cancel_request)
    return tuple(data), tuple(data.values())


class ShowTask(GlimpseShowOne):
    """Show one task of an image, with its per-store progress."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        parser.add_argument("task", metavar="TASK", help="task ID")
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        image = self.image(parsed_args.image)
        return task_fields(self.client.get_task(image.id, parsed_args.task))


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait",
        action="store_true",
        help="wait until the runner has stopped the task and undone its work (a running task stops at "
        "its next heartbeat)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        dest="wait_timeout",
        help="with --wait: stop waiting after this long (exit code 5; the cancel still happens)",
    )


def _cancel(command: GlimpseShowOne, image_id: str, task_id: str, parsed_args: argparse.Namespace) -> Task:
    """Cancel, and with ``--wait`` follow the task until it has ended."""
    if parsed_args.wait_timeout is not None and not parsed_args.wait:
        raise UsageError("--timeout needs --wait")
    task = command.client.cancel_task(image_id, task_id)
    if task.is_done or not parsed_args.wait:
        if not task.is_done:
            command.say(
                f"Cancel requested; task {task_id} stops at its next heartbeat and then ends 'failure'."
            )
        return task
    timeout = math.inf if parsed_args.wait_timeout is None else parsed_args.wait_timeout
    try:
        return TaskHandle(command.client, image_id, task_id, None).wait(timeout)
    except TaskFailed as failed:
        return failed.task


class CancelTask(GlimpseShowOne):
    """Cancel a pending or running task of an image; it ends 'failure' and names who cancelled it."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        parser.add_argument("task", metavar="TASK", help="task ID")
        _add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        image = self.image(parsed_args.image)
        return task_fields(_cancel(self, image.id, parsed_args.task, parsed_args))


class CancelImport(GlimpseShowOne):
    """Cancel the import or copy under way on an image (the task that holds its import lock)."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID")
        _add_wait(parser)
        return parser

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        image = self.image(parsed_args.image)
        holder = image.properties.get("os_glance_import_task")
        active = [t for t in self.client.image_tasks(image.id) if not t.is_done]
        chosen = [t for t in active if t.id == holder] or active
        if not chosen:
            raise CommandError(
                f"Image {parsed_args.image} has no import or copy under way; there is nothing to cancel. "
                f"See its tasks: glimpse image tasks {parsed_args.image}"
            )
        if len(chosen) > 1:
            ids = ", ".join(t.id for t in chosen)
            raise CommandError(
                f"Image {parsed_args.image} has several tasks under way ({ids}); cancel one with "
                f"glimpse task cancel {parsed_args.image} TASK"
            )
        return task_fields(_cancel(self, image.id, chosen[0].id, parsed_args))
