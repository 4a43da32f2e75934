"""``glimpse image tasks`` (a table, or a live view with ``--watch``) and ``glimpse task show``."""

from __future__ import annotations

import argparse
from typing import Any

from glimpse_client import Task

from ._text import store_summary, task_method, utc_time
from .base import DictColumn, GlimpseLister, GlimpseShowOne, ListColumn, ProgressColumn, run_guarded
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
