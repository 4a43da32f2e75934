"""What plain Glance answers differently from Glimpse, handled in one place.

* Errors come as webob HTML pages (or JSON whose message ends in ``<br /><br />``): only the text
  is kept.
* The 202 of an import names no task: the task is found among the image's tasks by the request id
  Glance stored in it.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from ._models import Task


class _PageText(HTMLParser):
    """The readable text of an HTML error page (webob's, as plain Glance sends), without its title."""

    _SKIPPED = frozenset({"head", "title", "h1", "script", "style"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIPPED:
            self._skipping += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIPPED and self._skipping:
            self._skipping -= 1

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _html_text(markup: str) -> str:
    parser = _PageText()
    parser.feed(markup)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


def error_body(response: httpx.Response) -> Any:
    """The error body with HTML turned into text: Glance's webob errors are HTML pages, and even its
    JSON errors end their message with ``<br /><br />``. ``None`` lets the default parsing run."""
    if "html" in response.headers.get("content-type", ""):
        return _html_text(response.text) or None
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        for obj in (body, body.get("error")):
            if isinstance(obj, dict) and isinstance(obj.get("message"), str) and "<" in obj["message"]:
                obj["message"] = _html_text(obj["message"])
    return body


def started_task(tasks: list[Task], request_ids: set[str]) -> Task | None:
    """The newest task created by the import request with one of ``request_ids``."""
    mine = [t for t in tasks if t.request_id in request_ids]
    return max(mine, key=lambda t: t.created_at or "") if mine else None
