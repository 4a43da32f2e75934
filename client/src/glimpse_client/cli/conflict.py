"""One readable paragraph for a 409, naming the task that holds the image and what to do about it."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from glimpse_client import Conflict

from ._text import human_duration, parse_time

#: How a front end names its command that follows an image's tasks live: image reference -> command.
WatchHint = Callable[[str], str]


def watch_command(image_ref: str) -> str:
    """``glimpse``'s command that follows an image's tasks live (the default :data:`WatchHint`)."""
    return f"glimpse image tasks {shlex.quote(image_ref)} --watch"


def _who(lock: dict[str, Any]) -> str:
    user = lock.get("user_id")
    request = lock.get("request_id")
    if not user and not request:
        return "started by another project's request"
    parts = [f"user {user}" if user else "an unknown user"]
    if request:
        parts.append(f"in request {request}")
    return "started by " + " ".join(parts)


def _heartbeat(lock: dict[str, Any]) -> str:
    seconds = lock.get("seconds_since_heartbeat")
    if not isinstance(seconds, int | float):
        return ""
    ago = human_duration(float(seconds))
    if lock.get("status") == "pending":
        return f"It was queued {ago} ago and has not started yet"
    return f"Its last heartbeat was {ago} ago"


def _breakable(lock: dict[str, Any], now: datetime) -> str:
    stamp = lock.get("breakable_at")
    moment = parse_time(stamp if isinstance(stamp, str) else None)
    if moment is None:
        return ""
    left = (moment - now).total_seconds()
    if left <= 0:
        return f"the lock could be broken since {stamp} (a new import will break it)"
    return (
        f"the lock can be broken from {stamp} (in {human_duration(left)}) if the task stays silent until then"
    )


def _request_note(error: Conflict) -> str:
    return (
        f" (HTTP {error.status}, request {error.request_id})"
        if error.request_id
        else f" (HTTP {error.status})"
    )


def conflict_paragraph(
    error: Conflict, *, image_ref: str, watch: WatchHint = watch_command, now: datetime | None = None
) -> str:
    """Explain a 409 in one paragraph (no line breaks: the caller wraps it to its screen).

    With Glimpse's structured ``lock`` it says which task holds the image, whose request started it,
    when it last showed signs of life, when the lock can be broken, and the command to watch it.
    Without one (plain Glance, or a 409 that is not about the lock) it keeps the server's message and
    adds the watch command when the message talks about a task.
    """
    lock = error.lock
    hint = watch(image_ref)
    if lock is None:
        text = error.message.rstrip()
        if "task" in text.lower():
            return f"{text}{_request_note(error)}. To follow the task that holds the image, run: {hint}"
        return f"{text}{_request_note(error)}"
    task_id = lock.get("task_id") or "?"
    status = lock.get("status") or "unknown"
    sentences = [f"Image {image_ref} is busy: task {task_id} ({status}) holds its import lock, {_who(lock)}."]
    heartbeat = _heartbeat(lock)
    breakable = _breakable(lock, now or datetime.now(UTC))
    if heartbeat and breakable:
        sentences.append(f"{heartbeat}; {breakable}.")
    elif heartbeat or breakable:
        text = heartbeat or breakable
        sentences.append(f"{text[0].upper()}{text[1:]}.")
    sentences.append(f"Watch it with: {hint}")
    return " ".join(sentences)
