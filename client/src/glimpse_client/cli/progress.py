"""Progress of file transfers and of import/copy tasks: rich bars on a terminal, plain lines elsewhere.

Nothing here depends on cliff, so other front ends (the python-openstackclient plugin) can use it.
Everything is written to the ``console`` the caller passes (``glimpse`` uses one on stderr, so
stdout keeps only the command's result).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Self

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TaskProgressColumn,
    TextColumn,
)
from rich.progress import Task as ProgressTask
from rich.text import Text

from glimpse_client import Task, TaskFailed, TaskHandle

from ._text import (
    STORE_PHASES,
    clock_time,
    human_duration,
    human_size,
    phase,
    phase_percent,
    plugin_states,
    progress_line,
    staged_bytes,
    staged_total,
    store_states,
    task_method,
)
from .conflict import WatchHint, watch_command

#: Seconds between two plain progress lines when nothing but the byte counts changed.
PLAIN_INTERVAL = 2.0


def is_live(console: Console) -> bool:
    """Whether ``console`` can show bars and live tables (a terminal that understands cursor moves)."""
    return console.is_terminal and not console.is_dumb_terminal


def say(console: Console, text: str) -> None:
    """A note for the user: word-wrapped on a terminal, one plain line elsewhere (logs, pipes)."""
    if is_live(console):
        console.print(text, markup=False, highlight=False)
    else:
        console.out(text, highlight=False)


def still_running_hint(task_id: str, image_ref: str, watch: WatchHint = watch_command) -> str:
    """What to tell a user who stopped waiting: the work goes on, and how to follow it again."""
    return (
        f"Task {task_id} goes on on the server; nothing was cancelled. "
        f"Resume watching it with: {watch(image_ref)}"
    )


def _rate(task: ProgressTask) -> float | None:
    """Bytes per second: rich's own estimate, else the one the server reported (``rate`` field)."""
    speed = task.finished_speed or task.speed
    if speed is None:
        reported = task.fields.get("rate")
        speed = float(reported) if isinstance(reported, int | float) and reported > 0 else None
    return speed


class RateColumn(ProgressColumn):
    """Transfer rate in binary units (``12.0 MiB/s``)."""

    def render(self, task: ProgressTask) -> Text:
        speed = _rate(task)
        return Text(f"{human_size(speed)}/s" if speed else "?", style="progress.data.speed")


class EtaColumn(ProgressColumn):
    """Time left (``eta 0:01:23``): the server's estimate of a task's phase when it gave one (the
    ``eta`` field), else the current rate's; ``stalled`` while the server sees no byte move (the
    ``stalled`` field); nothing once finished or when the size is unknown."""

    def render(self, task: ProgressTask) -> Text:
        if task.finished:
            return Text("")
        if task.fields.get("stalled"):
            return Text("stalled", style="red")
        reported = task.fields.get("eta")
        if isinstance(reported, int):
            return Text(f"eta {clock_time(reported)}", style="progress.remaining")
        if task.total is None:
            return Text("")
        speed = _rate(task)
        if not speed:
            return Text("eta -:--:--", style="progress.remaining")
        return Text(
            f"eta {clock_time(max(task.total - task.completed, 0) / speed)}", style="progress.remaining"
        )


def _columns() -> list[ProgressColumn]:
    return [
        TextColumn("{task.description}", style="bold"),
        BarColumn(bar_width=30),
        TaskProgressColumn(),
        DownloadColumn(binary_units=True),
        RateColumn(),
        EtaColumn(),
    ]


class TransferProgress:
    """A progress display for one file transfer, usable as the SDK's ``on_progress`` callback.

    On a terminal it is a rich bar with bytes, percent, rate and time left; elsewhere it writes a
    plain line every ``interval`` seconds and one at the end::

        with TransferProgress(console, "uploading disk.raw", total=size) as bar:
            client.upload(image_id, "disk.raw", on_progress=bar)
    """

    def __init__(
        self, console: Console, label: str, total: int | None = None, *, interval: float = PLAIN_INTERVAL
    ) -> None:
        self.console = console
        self.label = label
        self.total = total
        self.interval = interval
        self.done = 0
        self._started = time.monotonic()
        self._last_line = 0.0
        self._progress: Progress | None = None
        self._row: TaskID | None = None

    def __enter__(self) -> Self:
        self._started = time.monotonic()
        if is_live(self.console):
            self._progress = Progress(*_columns(), console=self.console)
            self._progress.start()
            self._row = self._progress.add_task(self.label, total=self.total)
        return self

    def __call__(self, done: int, total: int | None) -> None:
        self.done = done
        if total is not None:
            self.total = total
        if self._progress is not None and self._row is not None:
            self._progress.update(self._row, completed=done, total=self.total)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self.console.out(f"{self.label}: {self._fraction()}", highlight=False)

    def _fraction(self) -> str:
        if self.total:
            return f"{100 * self.done / self.total:.0f}% ({human_size(self.done)}/{human_size(self.total)})"
        return human_size(self.done)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
        if kind is not None:
            return
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = human_size(self.done / elapsed)
        took = f"{elapsed:.1f} s" if elapsed < 10 else human_duration(elapsed)
        summary = f"{self.label}: {human_size(self.done)} in {took} ({rate}/s)"
        if self._progress is None:
            self.console.out(summary, highlight=False)


class _TaskProgress(Progress):
    """Bars with a status line above them."""

    header: RenderableType = ""

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.header
        yield self.make_tasks_table(self.tasks)


_STATE_STYLE = {"done": "green", "failed": "red", "copying": "cyan", "pending": "dim"}


class _LiveView:
    """One bar per target store (and one for a web-download's download), fed from ``Task.progress``."""

    def __init__(self, console: Console) -> None:
        self.progress = _TaskProgress(*_columns(), TextColumn("{task.fields[note]}"), console=console)
        self.rows: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def _row(self, key: str, label: str, total: int | None) -> TaskID:
        row = self.rows.get(key)
        if row is None:
            row = self.progress.add_task(label, total=total, note="", rate=None, eta=None, stalled=False)
            self.rows[key] = row
        return row

    def _rate_of(self, row: TaskID) -> object:
        return next((t.fields.get("rate") for t in self.progress.tasks if t.id == row), None)

    def update(self, task: Task) -> None:
        status_style = {"success": "green", "failure": "red"}.get(task.status or "", "cyan")
        header = Text.assemble(
            ("task ", ""),
            (task.id, "bold"),
            f" ({task_method(task)}) ",
            (task.status or "?", status_style),
            f"  {task.message}" if task.message else "",
        )
        self.progress.header = header
        staged = staged_bytes(task)
        current = phase(task)
        reported = (task.progress or {}).get("bytes_per_second")
        rate = float(reported) if isinstance(reported, int | float) else None
        # The server's view of the phase under way: its time left, or that nothing moves.
        eta, stalled = task.eta_seconds, task.stalled_since is not None
        if current == "staging" or staged:
            row = self._row("", "download", staged_total(task))
            if current == "staging":
                self.progress.update(
                    row, completed=staged, note="[cyan]downloading", rate=rate, eta=eta, stalled=stalled
                )
            else:
                self.progress.update(row, completed=staged, total=staged or 1, note="[green]done")
        self._steps(task, current)
        for state in store_states(task):
            row = self._row(state.name, state.name, state.total)
            style = _STATE_STYLE.get(state.state, "")
            note = state.state if state.state != "failed" else f"failed: {state.error or ''}"
            completed = state.total if state.state == "done" and state.total is not None else state.done
            if rate is not None and (state.state == "copying" or self._rate_of(row) is None):
                self.progress.update(row, rate=rate)
            if state.state == "copying" and current == "stores":
                self.progress.update(row, eta=eta, stalled=stalled)
            self.progress.update(
                row,
                completed=completed,
                total=state.total,
                note=f"[{style}]{escape(note)}" if style else note,
            )

    def _steps(self, task: Task, current: str | None) -> None:
        """A bar per import plugin (decompression, conversion), in percent."""
        for name, state in plugin_states(task).items():
            row = self._row(f"plugin:{name}", name, 100)
            if state == "running":
                percent = phase_percent(task) if current not in STORE_PHASES else None
                self.progress.update(row, completed=percent or 0, note=f"[cyan]{escape(current or state)}")
            elif state == "done":
                self.progress.update(row, completed=100, note="[green]done")
            elif state == "failed":
                self.progress.update(row, note="[red]failed")
            else:
                self.progress.update(row, note=escape(state))

    def finish(self, task: Task) -> None:
        self.update(task)
        self.progress.refresh()


class PlainLines:
    """Plain progress lines of one task: at each change of state, else at most every ``interval``
    seconds, and never the same line twice in a row."""

    def __init__(self, console: Console, interval: float) -> None:
        self.console = console
        self.interval = interval
        self._last_key: object = None
        self._last_line = ""
        self._last_time = 0.0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, task: Task) -> None:
        self.show(task)

    def show(self, task: Task) -> bool:
        """Write the task's line if it is due; whether it was written."""
        key = (task.status, phase(task), tuple((s.name, s.state) for s in store_states(task)))
        line = progress_line(task)
        now = time.monotonic()
        if line == self._last_line:  # nothing a reader could see has changed
            return False
        if key == self._last_key and (task.is_done or now - self._last_time < self.interval):
            return False
        self._last_key, self._last_line, self._last_time = key, line, now
        self.console.out(line, highlight=False)
        return True

    def failure(self, task: Task) -> None:
        """Why a failed task failed, on a line of its own."""
        if task.status == "failure" and task.message:
            self.console.out(f"task {task.id} failed: {task.message}", highlight=False)

    def finish(self, task: Task) -> None:
        self._last_time = 0.0
        self.show(task)  # prints unless that very state was the last line
        self.failure(task)


def follow_task(
    handle: TaskHandle,
    *,
    console: Console,
    timeout: float | None,
    image_ref: str,
    watch: WatchHint = watch_command,
    interval: float = PLAIN_INTERVAL,
) -> Task:
    """Show a task's progress until it ends, and return its last state (``success`` or ``failure``).

    On a terminal: a status line and one bar per target store (bytes, percent, rate, time left), plus
    one for a web-download's download. Elsewhere: plain ``task <id> <status>: fast 45% (…)`` lines at
    each change of state and at most every ``interval`` seconds otherwise, then a final line.

    Raises :class:`glimpse_client.TaskTimeout` when ``timeout`` seconds pass first (``None`` waits for
    ever). On Ctrl-C it prints how to resume watching and re-raises ``KeyboardInterrupt``. Neither
    changes anything on the server. ``watch`` names the front end's command to resume watching.
    """
    view: _LiveView | PlainLines = _LiveView(console) if is_live(console) else PlainLines(console, interval)
    try:
        with view:
            try:
                task = handle.wait(math.inf if timeout is None else timeout, on_progress=view.update)
            except TaskFailed as failed:
                task = failed.task
            view.finish(task)
    except KeyboardInterrupt:
        say(console, f"Interrupted. {still_running_hint(handle.task_id, image_ref, watch)}")
        raise
    return task
