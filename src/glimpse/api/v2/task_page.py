"""``GET /v2/images/{id}/tasks`` for a browser (``Accept: text/html``): the live task page.

A server-rendered page of one image: what it is, which stores hold a copy, who holds its import lock
and when that lock can be broken, and each task with a progress bar per target store. The page works
as it is without JavaScript (reload to refresh); ``/static/task-view.js`` makes it live by reading the
same URL as a ``text/event-stream`` feed (see ``task_events``) with ``fetch()``, so the feed goes out
with whatever identity the page request carried (see docs/web-view.md). Nothing here writes a token,
a header or any other secret into the page.

Every value is escaped with ``html.escape``; the page loads only Glimpse's own static files, under a
Content-Security-Policy that allows nothing else (no inline script or style).

The page is chosen only when the client names ``text/html`` itself and does not prefer JSON (see
``wants_page``): Glance's clients send ``application/json``, ``*/*`` or no ``Accept`` header and keep
getting the JSON listing, byte for byte as before.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus

from glimpse.domain.history import HistoryEntry
from glimpse.domain.images import Image
from glimpse.domain.tasks import StoreProgress, StoreState, Task, TaskProgress, TaskStatus

MEDIA_TYPE = "text/html"
#: Only Glimpse's own files; no inline code, no frames, no other origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Vary": "Accept",
}


def _ranges(accept: str) -> list[tuple[str, float]]:
    ranges: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *params = (item.strip() for item in part.split(";"))
        if not media:
            continue
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        ranges.append((media.lower(), quality))
    return ranges


def wants_page(accept: str | None) -> bool:
    """Whether ``Accept`` asks for the page: ``text/html`` named with a quality above 0, above that of
    ``application/json`` (or equal and named first). ``*/*`` or ``text/*`` alone never do, so a client
    that accepts anything (glanceclient, curl) keeps the JSON listing."""
    ranges = _ranges(accept or "")
    names = [media for media, _ in ranges]
    html_q = max((q for media, q in ranges if media == MEDIA_TYPE), default=0.0)
    json_q = max((q for media, q in ranges if media == "application/json"), default=0.0)
    if html_q <= 0 or html_q < json_q:
        return False
    return html_q > json_q or names.index(MEDIA_TYPE) < names.index("application/json")


# --- the page's content -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LockView:
    """The import lock as the page shows it (from ``services.imports.describe_lock``)."""

    task_id: str
    status: str | None
    user_id: str | None
    request_id: str | None
    seconds_since_heartbeat: int | None
    breakable_at: str | None


@dataclass(frozen=True, slots=True)
class PageData:
    image: Image
    tasks: Sequence[Task]
    store_ids: Sequence[str]
    lock: LockView | None
    stale_after_minutes: int
    now: datetime
    #: The newest entries of the image's history, as the caller may see them; None when the rule
    #: ``get_image_history`` does not let the caller read it.
    history: Sequence[HistoryEntry] | None = None


#: History entries the page shows; the rest are a link away (``GET /v2/images/{id}/history``).
HISTORY_ON_PAGE = 20


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _when(value: datetime | None) -> str:
    if value is None:
        return "—"
    utc = value.astimezone(UTC)
    return f'<time datetime="{_e(utc.isoformat())}">{_e(utc.strftime("%Y-%m-%d %H:%M:%S UTC"))}</time>'


def _size(value: int | None) -> str:
    if value is None:
        return "unknown"
    if value < 1024:
        return f"{value} bytes"
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if value >= scale:
            return f"{value / scale:.1f} {unit} ({value} bytes)"
    return f"{value} bytes"


#: A symbol beside each state's word, so that no state is told by colour alone.
STATE_MARKS = {
    "pending": "…",
    "copying": "▶",
    "done": "✓",
    "failed": "✗",
    "processing": "▶",
    "success": "✓",
    "failure": "✗",
    "accepted": "…",
    "requested": "…",
    "cancelled": "⊘",
}


def _status(value: str, cls: str = "status") -> str:
    mark = STATE_MARKS.get(value, "•")
    return (
        f'<span class="{cls} state-{_e(value)}" data-state="{_e(value)}">'
        f'<span aria-hidden="true">{mark}</span> {_e(value)}</span>'
    )


def _store_text(progress: StoreProgress | None) -> str:
    if progress is None:
        return "waiting to start"
    done = _size(progress.bytes_done).split(" (")[0]
    total = "unknown size" if progress.bytes_total is None else _size(progress.bytes_total).split(" (")[0]
    percent = progress.percent
    head = f"{percent:g} %" if percent is not None else "size unknown"
    text = f"{head} · {progress.state} · {done} of {total}"
    if progress.error:
        text += f" · {progress.error}"
    return text


def _task_stores(task: Task) -> list[str]:
    names = list(task.stores)
    names += [name for name in task.progress.stores if name not in names]
    return names


def _bar(task: Task, store: str) -> str:
    progress = task.progress.stores.get(store)
    state = str(progress.state) if progress is not None else str(StoreState.PENDING)
    percent = progress.percent if progress is not None else 0.0
    label_id = f"bar-{task.id}-{store}"
    value = "" if percent is None else f' value="{percent:g}" aria-valuenow="{percent:g}"'
    text = _store_text(progress)
    return (
        f'<li class="store-bar" data-store="{_e(store)}">'
        f'<span class="store-name" id="{_e(label_id)}">{_e(store)}</span>'
        f'<progress max="100"{value} role="progressbar" aria-valuemin="0" aria-valuemax="100" '
        f'aria-labelledby="{_e(label_id)}" aria-valuetext="{_e(text)}"></progress>'
        f"{_status(state, 'store-state')}"
        f'<span class="store-text">{_e(text)}</span></li>'
    )


def _method(task: Task) -> str:
    method = task.method
    return str(method) if method is not None else str(task.type)


def _task(task: Task) -> str:
    stores = _task_stores(task)
    bars = "".join(_bar(task, store) for store in stores) or '<li class="no-stores">No target store.</li>'
    who = []
    if task.user_id:
        who.append(f"<dt>User</dt><dd>{_e(task.user_id)}</dd>")
    if task.request_id:
        who.append(f"<dt>Request</dt><dd>{_e(task.request_id)}</dd>")
    rate = task.progress.bytes_per_second
    rate_text = "—" if rate is None else f"{_size(int(rate)).split(' (')[0]}/s"
    left = _time_left(task.progress)
    return (
        f'<article class="task" id="task-{_e(task.id)}" data-task-id="{_e(task.id)}" '
        f'aria-labelledby="task-{_e(task.id)}-title">'
        f'<h3 id="task-{_e(task.id)}-title">{_e(_method(task))} <code>{_e(task.id)}</code> '
        f"{_status(str(task.status))}</h3>"
        f'<p class="task-message">{_e(task.message) or "No message yet."}</p>'
        f'<dl class="task-facts"><dt>Phase</dt><dd class="task-phase">{_e(task.progress.phase)}</dd>'
        f'<dt>Rate</dt><dd class="task-rate">{_e(rate_text)}</dd>'
        f'<dt>Time left</dt><dd class="task-eta">{_e(left)}</dd>'
        f"<dt>Created</dt><dd>{_when(task.created_at)}</dd>"
        f'<dt>Updated</dt><dd class="task-updated">{_when(task.updated_at)}</dd>{"".join(who)}</dl>'
        f'<ul class="bars" aria-label="Target stores of task {_e(task.id)}">{bars}</ul></article>'
    )


def _time_left(progress: TaskProgress) -> str:
    """The server's estimate of the phase under way (``0:01:23``), ``stalled since …`` while no
    byte moves, else a dash."""
    if progress.stalled_since is not None:
        return f"stalled since {progress.stalled_since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    if progress.eta_seconds is None:
        return "—"
    minutes, seconds = divmod(progress.eta_seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{seconds:02d}"


def _image(image: Image) -> str:
    facts = [
        ("ID", f"<code>{_e(image.id)}</code>"),
        ("Status", _status(str(image.status))),
        ("Disk / container format", f"{_e(image.disk_format or '—')} / {_e(image.container_format or '—')}"),
        ("Size", _e(_size(image.size))),
        ("Visibility", _e(image.visibility)),
        ("Owner", _e(image.owner or "—")),
        ("Updated", _when(image.updated_at)),
    ]
    rows = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in facts)
    return (
        '<section id="image" aria-labelledby="image-title"><h2 id="image-title">Image</h2>'
        f'<dl class="facts">{rows}</dl></section>'
    )


def _stores(image: Image, store_ids: Iterable[str]) -> str:
    held = image.stores
    known = [*store_ids, *(s for s in held if s not in store_ids)]
    items = []
    for store in known:
        has = store in held
        word = "holds a copy" if has else "no copy"
        mark = "✓" if has else "✗"
        items.append(
            f'<li data-store="{_e(store)}" data-has-copy="{"true" if has else "false"}" '
            f'class="{"has-copy" if has else "no-copy"}"><span aria-hidden="true">{mark}</span> '
            f'<span class="store-name">{_e(store)}</span>: {word}</li>'
        )
    summary = f"{len(held)} of {len(known)} stores hold a copy."
    return (
        '<section id="stores" aria-labelledby="stores-title"><h2 id="stores-title">Stores</h2>'
        f'<p class="stores-summary">{_e(summary)}</p><ul class="stores">{"".join(items)}</ul></section>'
    )


def _lock(data: PageData) -> str:
    lock = data.lock
    if lock is None:
        body = "<p>No import holds the lock: an import or a copy can start now.</p>"
    else:
        who = (
            f"started by user {_e(lock.user_id)} in request {_e(lock.request_id)}"
            if lock.user_id or lock.request_id
            else "started by another project's request"
            if lock.status is not None
            else "its task record is gone"
        )
        state = _status(lock.status) if lock.status else "unknown"
        if lock.seconds_since_heartbeat is None:
            timing = "The lock can be broken now by the next import."
        else:
            sign = "It was queued" if lock.status == str(TaskStatus.PENDING) else "Its last heartbeat was"
            timing = (
                f"{sign} {lock.seconds_since_heartbeat} seconds ago. The lock can be broken from "
                f"{_when(_parse_time(lock.breakable_at))} if the task "
                f"stays silent until then (after {data.stale_after_minutes} minutes without a heartbeat"
                f"{', doubled while it is pending' if lock.status == str(TaskStatus.PENDING) else ''})."
            )
        body = (
            f'<p>Held by task <code class="lock-task">{_e(lock.task_id)}</code> ({state}), {who}.</p>'
            f"<p>{timing}</p>"
        )
    title = '<h2 id="lock-title">Import lock</h2>'
    return f'<section id="lock" aria-labelledby="lock-title">{title}{body}</section>'


def _history(data: PageData) -> str:
    title = '<h2 id="history-title">History, newest first</h2>'
    link = f'<a href="/v2/images/{_e(data.image.id)}/history">/v2/images/{_e(data.image.id)}/history</a>'
    if data.history is None:
        body = "<p>The policy rule get_image_history does not let you read this image's history.</p>"
    elif not data.history:
        body = "<p>No history is recorded for this image yet.</p>"
    else:
        rows = "".join(_history_row(entry) for entry in data.history)
        count = len(data.history)
        shown = "The newest entry" if count == 1 else f"The newest {count} entries"
        body = (
            '<table class="history"><thead><tr><th scope="col">When</th><th scope="col">What</th>'
            '<th scope="col">Outcome</th><th scope="col">Stores</th><th scope="col">Who</th>'
            f'<th scope="col">Message</th></tr></thead><tbody>{rows}</tbody></table>'
            f"<p>{shown} of the history; all of it, as JSON: {link}.</p>"
        )
    return f'<section id="history" aria-labelledby="history-title">{title}{body}</section>'


def _history_row(entry: HistoryEntry) -> str:
    who = " · ".join(_e(part) for part in (entry.user_id, entry.project_id, entry.request_id) if part)
    outcome = _status(str(entry.outcome), "outcome")
    stores = ", ".join(entry.stores) or "—"
    return (
        f'<tr data-history-id="{_e(entry.id)}"><td>{_when(entry.at)}</td><td>{_e(entry.action)}</td>'
        f"<td>{outcome}</td><td>{_e(stores)}</td><td>{who or '—'}</td><td>{_e(entry.message)}</td></tr>"
    )


def _parse_time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value.replace("Z", "+00:00"))


def _document(title: str, body: str, main_attrs: str = "") -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title>"
        '<link rel="stylesheet" href="/static/task-view.css">'
        '<script src="/static/task-view.js" defer></script></head>'
        f"<body><main{main_attrs}>{body}</main></body></html>\n"
    )


def render_page(data: PageData) -> str:
    image = data.image
    name = image.name or image.id
    tasks_html = "".join(_task(task) for task in reversed(data.tasks)) or (
        '<p class="no-tasks">This image has no task that you can see (tasks expire '
        "some hours after they finish).</p>"
    )
    body = (
        f"<h1>Tasks of image {_e(name)}</h1>"
        '<p id="feed-status" role="status">Live updates need JavaScript; reload the page to refresh.</p>'
        f"{_image(image)}{_stores(image, data.store_ids)}{_lock(data)}"
        '<section id="tasks" aria-labelledby="tasks-title"><h2 id="tasks-title">Tasks, newest first</h2>'
        f'<div id="task-list">{tasks_html}</div></section>{_history(data)}'
        f'<p class="rendered" id="rendered">Page read at {_when(data.now)}.</p>'
    )
    attrs = f' id="view" data-tasks-url="/v2/images/{_e(image.id)}/tasks"'
    return _document(f"Tasks of image {name} · Glimpse", body, attrs)


def render_error(status: int, message: str) -> str:
    phrase = HTTPStatus(status).phrase
    body = (
        f'<h1>{status} {_e(phrase)}</h1><p class="error-message">{_e(message)}</p>'
        "<p>Check the image id and the identity your browser sends; an image you cannot see "
        "answers 404 as if it did not exist.</p>"
    )
    return _document(f"{status} {phrase} · Glimpse", body)
