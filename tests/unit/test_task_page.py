"""The task page's negotiation and rendering: which clients get it, escaping, bars and the lock."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from glimpse.api.v2.task_page import LockView, PageData, render_error, render_page, wants_page
from glimpse.domain.history import HistoryAction, HistoryEntry, HistoryOutcome
from glimpse.domain.images import Image, ImageStatus, Location, Visibility
from glimpse.domain.tasks import StoreProgress, StoreState, Task, TaskProgress, TaskStatus, TaskType

T0 = datetime(2026, 12, 6, 6, 0, tzinfo=UTC)
HOSTILE = "<script>alert('x')</script>&\""


@pytest.mark.parametrize(
    ("accept", "page"),
    [
        # what browsers send when they navigate
        ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8", True),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", True),
        ("text/html", True),
        ("TEXT/HTML; q=0.5", True),
        # Glance's clients and scripts: the JSON listing, as before
        (None, False),
        ("", False),
        ("*/*", False),
        ("text/*", False),
        ("application/json", False),
        ("application/json, text/html", False),
        ("text/html;q=0.5, application/json", False),
        ("text/html;q=0", False),
        ("text/event-stream", False),
    ],
)
def test_only_a_client_that_names_html_first_gets_the_page(accept: str | None, page: bool) -> None:
    assert wants_page(accept) is page


def _image(**overrides: object) -> Image:
    image = Image(
        id="11111111-2222-3333-4444-555555555555",
        owner="proj",
        created_at=T0,
        updated_at=T0,
        name=HOSTILE,
        status=ImageStatus.ACTIVE,
        visibility=Visibility.PRIVATE,
        size=3 * 1024 * 1024,
        disk_format="raw",
        container_format="bare",
        locations=[Location(store_id="fast", url="file:///x")],
    )
    for name, value in overrides.items():
        setattr(image, name, value)
    return image


def _task(status: TaskStatus = TaskStatus.PROCESSING) -> Task:
    progress = TaskProgress(
        phase="stores",
        stores={
            "cheap": StoreProgress(
                state=StoreState.COPYING, bytes_done=1024 * 1024, bytes_total=3 * 1024 * 1024
            ),
            HOSTILE: StoreProgress(
                state=StoreState.FAILED, bytes_done=0, bytes_total=None, error="disk <full>"
            ),
        },
    )
    return Task(
        id="task-1",
        type=TaskType.API_IMAGE_IMPORT,
        status=status,
        owner="proj",
        image_id="11111111-2222-3333-4444-555555555555",
        request_id="req-1",
        user_id="alice",
        input={"backend": ["cheap", "reliable"], "import_req": {"method": {"name": "copy-image"}}},
        created_at=T0,
        updated_at=T0 + timedelta(seconds=5),
        message="Copied 1 MiB",
        progress=progress,
    )


def _page(
    lock: LockView | None = None,
    tasks: list[Task] | None = None,
    history: list[HistoryEntry] | None = None,
) -> str:
    data = PageData(
        image=_image(),
        tasks=[_task()] if tasks is None else tasks,
        store_ids=("fast", "cheap", "reliable"),
        lock=lock,
        stale_after_minutes=60,
        now=T0 + timedelta(seconds=10),
        history=history,
    )
    return render_page(data)


class _Elements(HTMLParser):
    """Every start tag with its attributes, and whether any script element carries code."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.inline_code = False
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_code = True


def _parse(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def test_everything_from_the_data_is_escaped_and_no_code_is_inline() -> None:
    page = _page()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;" in page
    assert "disk &lt;full&gt;" in page
    parsed = _parse(page)
    assert not parsed.inline_code
    assert [attrs.get("src") for tag, attrs in parsed.tags if tag == "script"] == ["/static/task-view.js"]
    assert not [
        attrs for _, attrs in parsed.tags if "style" in attrs or any(k.startswith("on") for k in attrs)
    ]


def test_each_target_store_has_a_labelled_progressbar_with_its_value_in_words() -> None:
    bars = [attrs for tag, attrs in _parse(_page()).tags if attrs.get("role") == "progressbar"]
    # the task input's stores first, then any other store the progress names
    labels = [attrs["aria-labelledby"] for attrs in bars]
    assert labels == ["bar-task-1-cheap", "bar-task-1-reliable", f"bar-task-1-{HOSTILE}"]
    cheap, reliable, failed = bars
    assert cheap["aria-valuenow"] == "33.3"
    assert (cheap["aria-valuemin"], cheap["aria-valuemax"]) == ("0", "100")
    assert cheap["aria-valuetext"] == "33.3 % · copying · 1.0 MiB of 3.0 MiB"
    assert reliable["aria-valuenow"] == "0"
    assert reliable["aria-valuetext"] == "waiting to start"
    assert "aria-valuenow" not in failed  # no total: the bar is indeterminate, and says so
    assert failed["aria-valuetext"] == "size unknown · failed · 0 bytes of unknown size · disk <full>"
    page = _page()
    assert '<span aria-hidden="true">✗</span> failed' in page  # a mark and a word, not colour alone
    assert '<span aria-hidden="true">▶</span> copying' in page


def test_the_stores_say_in_words_which_hold_a_copy() -> None:
    page = _page()
    assert "1 of 3 stores hold a copy." in page
    assert re.search(r'data-store="fast" data-has-copy="true"[^>]*>.*?fast</span>: holds a copy', page)
    assert re.search(r'data-store="reliable" data-has-copy="false"[^>]*>.*?reliable</span>: no copy', page)


def test_the_lock_names_its_holder_and_when_it_can_be_broken() -> None:
    assert "No import holds the lock" in _page()
    held = LockView("task-1", "processing", "alice", "req-1", 42, "2026-12-06T07:00:05Z")
    page = _page(held)
    assert "started by user alice in request req-1" in page
    assert "Its last heartbeat was 42 seconds ago." in page
    assert '<time datetime="2026-12-06T07:00:05+00:00">2026-12-06 07:00:05 UTC</time>' in page
    assert "after 60 minutes without a heartbeat)." in page
    queued = _page(LockView("task-1", "pending", None, None, 3, "2026-12-06T08:00:00Z"))
    assert "started by another project's request" in queued
    assert "It was queued 3 seconds ago" in queued
    assert "doubled while it is pending" in queued


def test_no_tasks_and_errors_are_pages_too() -> None:
    assert "This image has no task that you can see" in _page(tasks=[])
    error = render_error(404, f"No image found with ID {HOSTILE}")
    assert "<h1>404 Not Found</h1>" in error
    assert "No image found with ID &lt;script&gt;" in error
    assert 'id="view"' not in error  # the script finds nothing to follow on an error page


def test_each_task_shows_the_time_left_or_since_when_it_is_stalled() -> None:
    assert '<dt>Time left</dt><dd class="task-eta">—</dd>' in _page()  # no estimate yet
    timed = _task()
    timed.progress.eta_seconds = 3725
    assert '<dd class="task-eta">1:02:05</dd>' in _page(tasks=[timed])
    stalled = _task()
    stalled.progress.stalled_since = T0 + timedelta(seconds=3)
    assert '<dd class="task-eta">stalled since 2026-12-06T06:00:03Z</dd>' in _page(tasks=[stalled])


def test_the_history_is_listed_newest_first_escaped_with_outcomes_in_words() -> None:
    entries = [
        HistoryEntry(
            "11111111-2222-3333-4444-555555555555",
            T0 + timedelta(seconds=5),
            HistoryAction.COPY,
            HistoryOutcome.CANCELLED,
            user_id="alice",
            project_id="proj",
            request_id="req-2",
            stores=("cheap", "reliable"),
            message=f"cancelled by {HOSTILE}",
            id=7,
        ),
        HistoryEntry(
            "11111111-2222-3333-4444-555555555555", T0, HistoryAction.UPLOAD, HistoryOutcome.SUCCESS, id=3
        ),
    ]
    page = _page(history=entries)
    rows = re.findall(r'<tr data-history-id="(\d+)">(.*?)</tr>', page)
    assert [row_id for row_id, _ in rows] == ["7", "3"]
    first = rows[0][1]
    assert "<td>copy</td>" in first
    assert "<td>cheap, reliable</td>" in first
    assert "alice · proj · req-2" in first
    assert '<span aria-hidden="true">⊘</span> cancelled' in first  # a mark and a word
    assert "cancelled by &lt;script&gt;" in first
    assert '<span aria-hidden="true">✓</span> success' in rows[1][1]
    assert 'href="/v2/images/11111111-2222-3333-4444-555555555555/history"' in page
    assert not _parse(page).inline_code


def test_the_page_says_when_there_is_no_history_or_it_may_not_be_read() -> None:
    assert "No history is recorded for this image yet." in _page(history=[])
    assert "get_image_history does not let you read" in _page(history=None)
