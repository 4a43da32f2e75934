"""``GET /static/{name}``: the web view's own script and style sheet, served from the package.

Only the files listed here are served (no path is ever built from the request), without
authentication: they are the same for everyone and hold no data. Each is read once per process.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from starlette.responses import Response

from glimpse.errors import NotFound

router = APIRouter(tags=["web view"])

#: The files of ``glimpse/api/static/`` and their media types.
FILES = {
    "task-view.js": "text/javascript; charset=utf-8",
    "task-view.css": "text/css; charset=utf-8",
}


@cache
def _content(name: str) -> bytes:
    return (resources.files("glimpse.api") / "static" / name).read_bytes()


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str) -> Response:
    media_type = FILES.get(name)
    if media_type is None:
        raise NotFound(f"No static file {name!r}; the web view serves only {', '.join(sorted(FILES))}.")
    headers = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
    return Response(_content(name), media_type=media_type, headers=headers)
