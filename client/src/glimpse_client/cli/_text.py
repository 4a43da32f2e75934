"""Small, dependency-free helpers to read tasks and to put sizes, times and progress into words."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from glimpse_client import Task

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(count: float | None) -> str:
    """``12.0 MiB``; ``?`` when unknown."""
    if count is None:
        return "?"
    value = float(count)
    for unit in _UNITS:
        if abs(value) < 1024 or unit == _UNITS[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    """``9 s``, ``4 min 10 s``, ``2 h 5 min``."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def parse_time(stamp: str | None) -> datetime | None:
    """A server timestamp (``…Z``, ``…+00:00`` or without zone, meaning UTC) as an aware datetime."""
    if not stamp:
        return None
    try:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def utc_time(stamp: str | None) -> str:
    """A server timestamp as images show theirs, in UTC to the second (``2026-11-25T14:12:36Z``);
    the stamp as sent when it cannot be read."""
    moment = parse_time(stamp)
    if moment is None:
        return stamp or ""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def since(stamp: str | None, now: datetime | None = None) -> str:
    """How long ago ``stamp`` was, as ``12 s ago``; the stamp itself when it cannot be read."""
    moment = parse_time(stamp)
    if moment is None:
        return stamp or ""
    seconds = ((now or datetime.now(UTC)) - moment).total_seconds()
    return f"{human_duration(seconds)} ago" if seconds >= 0 else "just now"


def short_id(value: str | None, length: int = 8) -> str:
    if not value:
        return ""
    return value if len(value) <= length else value[:length] + "…"


def task_method(task: Task) -> str:
    """The import method of an import task (``glance-direct``, ``copy-image``...), else its type."""
    request = (task.input or {}).get("import_req")
    if isinstance(request, dict):
        method = request.get("method")
        if isinstance(method, dict) and isinstance(method.get("name"), str):
            return str(method["name"])
    return task.type or ""


def task_targets(task: Task) -> list[str]:
    """The stores the task writes to: its ``backend`` input, else the stores of its progress."""
    backend = (task.input or {}).get("backend")
    if isinstance(backend, list) and all(isinstance(s, str) for s in backend):
        return list(backend)
    return list(_progress_stores(task))


def _progress_stores(task: Task) -> dict[str, dict[str, Any]]:
    stores = (task.progress or {}).get("stores")
    if not isinstance(stores, dict):
        return {}
    return {k: v for k, v in stores.items() if isinstance(v, dict)}


@dataclass(frozen=True)
class StoreState:
    """One target store of a task, as its ``progress`` object reports it."""

    name: str
    state: str
    done: int
    total: int | None
    percent: float | None
    error: str | None

    def brief(self) -> str:
        """``fast 45% (12.0 MiB/26.7 MiB)``, ``fast done (26.7 MiB)`` or ``fast failed: <why>``."""
        if self.state == "done":
            return f"{self.name} done ({human_size(self.total if self.total is not None else self.done)})"
        if self.state == "failed":
            return f"{self.name} failed: {self.error}" if self.error else f"{self.name} failed"
        if self.state == "pending":
            return f"{self.name} pending"
        percent = f"{self.percent:.0f}%" if self.percent is not None else "?%"
        return f"{self.name} {percent} ({human_size(self.done)}/{human_size(self.total)})"

    def short(self) -> str:
        """``fast 45%``, ``fast done``, ``fast failed``."""
        if self.state in ("done", "failed", "pending"):
            return f"{self.name} {self.state}"
        return f"{self.name} {self.percent:.0f}%" if self.percent is not None else f"{self.name} copying"


def store_states(task: Task) -> list[StoreState]:
    """Every target store with its state, in the task's order; stores without progress are pending.

    Empty when the server reports no ``progress`` at all (plain Glance): nothing is known per store.
    """
    if task.progress is None:
        return []
    reported = _progress_stores(task)
    names = task_targets(task)
    names += [name for name in reported if name not in names]
    states = []
    for name in names:
        entry = reported.get(name, {})
        done = entry.get("bytes_done")
        total = entry.get("bytes_total")
        percent = entry.get("percent")
        error = entry.get("error")
        states.append(
            StoreState(
                name=name,
                state=str(entry.get("state") or "pending"),
                done=done if isinstance(done, int) else 0,
                total=total if isinstance(total, int) else None,
                percent=float(percent) if isinstance(percent, int | float) else None,
                error=error if isinstance(error, str) else None,
            )
        )
    return states


def store_summary(task: Task, *, detailed: bool) -> list[str]:
    """Each target store and its state (``StoreState.brief`` when ``detailed``, else ``short``); the
    bare store names when the server reports no progress."""
    states = store_states(task)
    if not states:
        return task_targets(task)
    return [s.brief() if detailed else s.short() for s in states]


def failed_stores(task: Task) -> list[str]:
    return [s.name for s in store_states(task) if s.state == "failed"]


def phase(task: Task) -> str | None:
    value = (task.progress or {}).get("phase")
    return value if isinstance(value, str) else None


def staged_bytes(task: Task) -> int:
    value = (task.progress or {}).get("staged_bytes")
    return value if isinstance(value, int) else 0


def staged_total(task: Task) -> int | None:
    """The size a web-download's server announced (Glimpse); None when unknown."""
    value = (task.progress or {}).get("staged_total")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


#: The phases whose progress is the stores' (or nothing yet); any other phase is a step of its own.
STORE_PHASES = frozenset({"pending", "stores", "done", "failed"})


def phase_percent(task: Task) -> float | None:
    """How far the current step is (``decompressing``, ``converting``...), when the server says."""
    value = (task.progress or {}).get("percent")
    return float(value) if isinstance(value, int | float) else None


def plugin_states(task: Task) -> dict[str, str]:
    """Each import plugin of the task → its state (``pending``, ``running``, ``done``, ...)."""
    raw = (task.progress or {}).get("plugins")
    if not isinstance(raw, dict):
        return {}
    return {str(name): str(state) for name, state in raw.items()}


def clock_time(seconds: float) -> str:
    """``0:01:23``: hours, minutes and seconds."""
    minutes, secs = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}"


def timing(task: Task) -> str:
    """``, eta 0:01:23`` from the server's estimate, ``, stalled since 2026-…Z`` while no byte
    moves, or nothing (Glance, a finished task, no estimate yet)."""
    if task.is_done:
        return ""
    if task.stalled_since is not None:
        return f", stalled since {utc_time(task.stalled_since)}"
    eta = task.eta_seconds
    return f", eta {clock_time(eta)}" if eta is not None else ""


def progress_line(task: Task) -> str:
    """``task <id> processing: fast 45% (12.0 MiB/26.7 MiB), cheap 30% (…), eta 0:00:42`` for logs
    and pipes; ``task <id> processing: converting, 42%`` while a step of its own runs."""
    head = f"task {task.id} {task.status}"
    current = phase(task)
    if current == "staging":
        return f"{head}: downloading, {human_size(staged_bytes(task))} so far{timing(task)}"
    if current is not None and current not in STORE_PHASES:
        percent = phase_percent(task)
        return f"{head}: {current}" + (f", {percent:.0f}%" if percent is not None else "") + timing(task)
    states = store_states(task)
    if not states:
        return f"{head}: {task.message}" if task.message else head
    return f"{head}: " + ", ".join(s.brief() for s in states) + timing(task)
