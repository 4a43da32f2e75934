"""/v2/images/{id}/file: upload and (ranged) download of image data."""

from __future__ import annotations

import re

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from glimpse.api import deps
from glimpse.api.responses import empty
from glimpse.api.v2.openapi import DOWNLOAD, OCTET_STREAM_BODY
from glimpse.domain.imports import ExpectedDigest, parse_digest_header
from glimpse.errors import InvalidInput, UnsupportedMediaType
from glimpse.services.image_data import ByteRange, ImageDataService

router = APIRouter(prefix="/v2/images", tags=["image data"])

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None) -> ByteRange | None:
    if header is None:
        return None
    match = _RANGE.match(header.strip().replace(" ", ""))
    if not match or (match.group(1) == "" and match.group(2) == ""):
        raise InvalidInput(
            f"Unsupported Range header {header!r}; use a single range such as 'bytes=0-1023', "
            "'bytes=1024-' or 'bytes=-512'."
        )
    start = int(match.group(1)) if match.group(1) else None
    end = int(match.group(2)) if match.group(2) else None
    if start is not None and end is not None and end < start:
        raise InvalidInput(f"Invalid Range header {header!r}: the last byte comes before the first.")
    return ByteRange(start=start, end=end)


def content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.strip().isdigit():
        raise InvalidInput(f"Invalid Content-Length {raw!r}.")
    return int(raw)


def expected_digests(request: Request) -> list[ExpectedDigest]:
    """The digests of the ``Content-Digest`` and ``Repr-Digest`` headers (RFC 9530); an upload is
    sent without content coding, so both describe the same bytes."""
    found: list[ExpectedDigest] = []
    for name in ("Content-Digest", "Repr-Digest"):
        value = request.headers.get(name)
        if value is not None:
            found.extend(parse_digest_header(name, value))
    return found


@router.put("/{image_id}/file", status_code=204, openapi_extra=OCTET_STREAM_BODY)
async def upload_image_data(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    media_type = request.headers.get("content-type", "application/octet-stream").split(";")[0].strip().lower()
    if media_type != "application/octet-stream":
        raise UnsupportedMediaType(
            f"Image data must be sent as application/octet-stream, not '{media_type}'."
        )
    await ImageDataService(rt).upload(
        ctx,
        image_id,
        request.stream(),
        content_length=content_length(request),
        store_id=request.headers.get("x-image-meta-store"),
        expected=expected_digests(request),
    )
    return empty()


@router.get("/{image_id}/file", response_class=Response, openapi_extra=DOWNLOAD)
async def download_image_data(request: Request, image_id: str) -> Response:
    rt, ctx = deps.runtime(request), deps.context(request)
    download = await ImageDataService(rt).download(ctx, image_id, parse_range(request.headers.get("range")))
    if download is None:
        return empty()
    headers = {"Content-Length": str(download.length)}
    if download.partial:
        headers["Content-Range"] = f"bytes {download.first}-{download.last}/{download.total}"
    elif download.image.checksum:
        headers["Content-MD5"] = download.image.checksum
    return StreamingResponse(
        download.stream,
        status_code=206 if download.partial else 200,
        headers=headers,
        media_type="application/octet-stream",
    )
