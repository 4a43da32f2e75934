"""Fast JSON responses (orjson) shaped like Glance's."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def empty(status_code: int = 204, headers: dict[str, str] | None = None) -> Response:
    return Response(status_code=status_code, headers=headers)
