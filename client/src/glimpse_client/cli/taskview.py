"""An image's tasks: rows for a table, and a live view that follows them until they are all done.

Nothing here depends on cliff, so other front ends (the python-openstackclient plugin) can use it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from glimpse_client import Client, Task

from ._text import short_id, since, store_summary, task_method, utc_time
from .conflict import WatchHint, watch_command
from .progress import PLAIN_INTERVAL, PlainLines, is_live, say

COLUMNS = ("ID", "Method", "Status", "Stores", "Message", "User", "Updated")
LONG_COLUMNS = (
    "ID",
    "Type",
    "Method",
    "Status",
    "Stores",
    "Message",
    "User",
    "Project",
    "Request ID",
    "Created",
    "Updated",
    "Expires",
)
#: Characters of the message shown without ``--long``.
MESSAGE_WIDTH = 60
_ACTIVE = frozenset({"pending", "processing"})
_STATUS_STYLE = {"success": "green", "failure": "red", "processing": "cyan", "pending": "yellow"}


def _message(task: Task, long: bool) -> str:
    text = task.message or ""
    if long or len(text) <= MESSAGE_WIDTH:
        return text
    return text[: MESSAGE_WIDTH - 1] + "…"


def _stores(task: Task) -> str:
    return ", ".join(store_summary(task, detailed=False))


def task_rows(tasks: Iterable[Task], long: bool) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
    """Column names and one row per task, oldest first, ready for a table or a cliff ``Lister``."""
    rows: list[tuple[Any, ...]] = []
    for task in tasks:
        if long:
            rows.append(
                (
                    task.id,
                    task.type,
                    task_method(task),
                    task.status,
                    _stores(task),
                    task.message or "",
                    task.user_id or "",
                    task.owner,
                    task.request_id,
                    utc_time(task.created_at),
                    utc_time(task.updated_at),
                    utc_time(task.expires_at),
                )
            )
        else:
            rows.append(
                (
                    task.id,
                    task_method(task),
                    task.status,
                    _stores(task),
                    _message(task, long=False),
                    task.user_id or "",
                    utc_time(task.updated_at),
                )
            )
    return (LONG_COLUMNS if long else COLUMNS), rows


class _Board:
    """The live table; rendered anew at each refresh so that "updated … ago" keeps counting."""

    def __init__(self, image_id: str, long: bool) -> None:
        self.image_id = image_id
        self.long = long
        self.tasks: list[Task] = []
        self.done = False

    def __rich__(self) -> Table:
        caption = "all tasks done" if self.done else "watching for changes… (Ctrl-C stops watching)"
        table = Table(title=f"Tasks of image {self.image_id}", caption=caption, title_justify="left")
        names = ["ID", "Method", "Status", "Stores", "Message", "User", "Updated"]
        if self.long:
            names += ["Project", "Request ID", "Expires"]
        for name in names:
            table.add_column(name, overflow="fold" if name in ("Message", "Stores") else "ellipsis")
        for task in self.tasks:
            status = Text(task.status or "", style=_STATUS_STYLE.get(task.status or "", ""))
            cells: list[str | Text] = [
                task.id if self.long else short_id(task.id),
                task_method(task),
                status,
                "\n".join(store_summary(task, detailed=True)),
                _message(task, self.long),
                task.user_id or "",
                since(task.updated_at),
            ]
            if self.long:
                cells += [task.owner or "", task.request_id or "", utc_time(task.expires_at)]
            table.add_row(*cells)
        if not self.tasks:
            table.add_row("(no tasks)", *[""] * (len(names) - 1))
        return table


def _watch_live(client: Client, image_id: str, console: Console, long: bool, active: set[str]) -> list[Task]:
    board = _Board(image_id, long)
    with Live(board, console=console, refresh_per_second=4, transient=False) as live:
        for tasks in client.watch_image_tasks(image_id):
            board.tasks = tasks
            _note_active(tasks, active)
            live.refresh()
        board.done = True
        live.refresh()
    return board.tasks


def _watch_plain(
    client: Client, image_id: str, console: Console, active: set[str], interval: float
) -> list[Task]:
    lines: dict[str, PlainLines] = {}
    tasks: list[Task] = []
    for tasks in client.watch_image_tasks(image_id):
        _note_active(tasks, active)
        for task in tasks:
            if task.id not in active:
                continue
            view = lines.setdefault(task.id, PlainLines(console, interval))
            if view.show(task):
                view.failure(task)
    if not active:
        console.out(f"image {image_id} has no tasks", highlight=False)
    return tasks


def _note_active(tasks: list[Task], active: set[str]) -> None:
    """Remember the running tasks; when none ran from the start, the latest one (resuming after it ended)."""
    first = not active
    active.update(t.id for t in tasks if t.status in _ACTIVE)
    if first and not active and tasks:
        active.add(tasks[-1].id)


def watch_image_tasks(
    client: Client,
    image_id: str,
    *,
    console: Console,
    long: bool = False,
    watch: WatchHint = watch_command,
    active: set[str] | None = None,
    image_ref: str | None = None,
    interval: float = PLAIN_INTERVAL,
) -> list[Task]:
    """Follow the image's tasks with the server's long-poll watch until none is pending or processing,
    and return them as last seen.

    On a terminal it is a table updated in place; elsewhere a plain line per task at each change of
    state and at most every ``interval`` seconds otherwise. ``active``, when given, receives the ids
    of the tasks seen pending or processing, or, when none was at the start, the id of the latest
    task (whose outcome a resumed watch reports). On Ctrl-C it says how to resume watching (``watch``
    names the command, ``image_ref`` the image in it, default its id) and re-raises ``KeyboardInterrupt``.
    """
    seen: set[str] = active if active is not None else set()
    try:
        if is_live(console):
            return _watch_live(client, image_id, console, long, seen)
        return _watch_plain(client, image_id, console, seen, interval)
    except KeyboardInterrupt:
        hint = watch(image_ref or image_id)
        say(console, f"Stopped watching; the tasks go on on the server. Resume with: {hint}")
        raise
