"""GET / and GET /versions: the API versions this service speaks (v2.0 … v2.12, v2.12 CURRENT)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps
from glimpse.api.middleware import MAX_MINOR_VERSION
from glimpse.api.responses import JSONResponse

router = APIRouter(tags=["versions"])


def versions_document(base_url: str) -> dict[str, object]:
    href = f"{base_url}/v2/"
    versions = []
    for minor in range(MAX_MINOR_VERSION, -1, -1):
        status = "CURRENT" if minor == MAX_MINOR_VERSION else "SUPPORTED"
        versions.append({"id": f"v2.{minor}", "status": status, "links": [{"rel": "self", "href": href}]})
    return {"versions": versions}


def _base(request: Request) -> str:
    return deps.runtime(request).settings.public_endpoint or str(request.base_url).rstrip("/")


@router.get("/versions")
@router.get("/versions/", include_in_schema=False)  # Glance answers this one with a slash too
async def list_versions(request: Request) -> Response:
    return JSONResponse(versions_document(_base(request)))


@router.get("/", status_code=300)
async def root(request: Request) -> Response:
    return JSONResponse(versions_document(_base(request)), status_code=300)
