"""The glance-download source: another region's image service, found in the caller's catalog.

:func:`find_image_endpoint` reads the service catalog of the caller's token from Keystone
(``GET /v3/auth/catalog`` sent with that token, through keystoneauth1's session, its catalog
parser choosing the endpoint) and returns the ``image`` endpoint of the requested region and
interface. :func:`fetch_remote_image` reads the remote image's record with the same token, through
:class:`~glimpse.jobs.web_source.WebSource` (so the endpoint passes the import filter like any
web-download URL); the data is then streamed from ``<endpoint>/v2/images/<id>/file`` the same way.

Every failure is an :class:`~glimpse.errors.InvalidInput` or :class:`~glimpse.errors.DownloadFailed`
whose message says what to do next; the caller turns it into the task's message.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from glimpse.domain.imports import DIGEST_LENGTHS, ExpectedDigest
from glimpse.domain.url_rules import ImportFilter
from glimpse.errors import DownloadFailed, InvalidInput, TooLarge
from glimpse.jobs.web_source import WebSource

__all__ = ["RemoteImage", "data_url", "fetch_remote_image", "find_image_endpoint", "token_headers"]

#: The most bytes of a remote image record read (a record is a few kilobytes).
MAX_RECORD_SIZE: Final = 1024 * 1024
_VERSION_SUFFIX = re.compile(r"/v2(\.\d+)?$")


def token_headers(token: str) -> dict[str, str]:
    return {"X-Auth-Token": token, "Accept": "application/json"}


def _catalog_url(identity_url: str) -> str:
    base = identity_url.rstrip("/")
    if not base.endswith("/v3"):
        base += "/v3"
    return f"{base}/auth/catalog"


def _read_catalog(identity_url: str, token: str, timeout: float) -> list[dict[str, Any]]:
    # keystoneauth1 is loaded by the first glance-download, not by every process that runs tasks.
    from keystoneauth1 import exceptions as ks_exceptions
    from keystoneauth1 import session as ks_session

    session = ks_session.Session(timeout=timeout)
    url = _catalog_url(identity_url)
    try:
        response = session.get(url, headers=token_headers(token), authenticated=False, raise_exc=False)
    except ks_exceptions.ConnectFailure as exc:
        raise DownloadFailed(
            f"The identity service at {identity_url} cannot be reached to read the service catalog "
            f"({exc}); import again once it is back."
        ) from None
    except ks_exceptions.ClientException as exc:
        raise DownloadFailed(
            f"Reading the service catalog from {identity_url} failed ({exc}); import again."
        ) from None
    if response.status_code == 401:
        raise DownloadFailed(
            "The token of the import request is no longer valid (it expired or was revoked before "
            "the task ran), so the other region cannot be reached with it; import again with a "
            "fresh token."
        )
    if response.status_code != 200:
        raise DownloadFailed(
            f"The identity service at {identity_url} answered {response.status_code} to the catalog "
            "request; import again, and ask an operator if it keeps failing."
        )
    try:
        catalog = response.json()["catalog"]
    except (ValueError, KeyError, TypeError):
        raise DownloadFailed(f"The identity service at {identity_url} sent no service catalog.") from None
    if not isinstance(catalog, list):
        raise DownloadFailed(f"The identity service at {identity_url} sent no service catalog.")
    return catalog


def _choose(catalog: list[dict[str, Any]], region: str, interface: str) -> str:
    from keystoneauth1 import exceptions as ks_exceptions
    from keystoneauth1.access import service_catalog

    parsed = service_catalog.ServiceCatalogV3(catalog)
    try:
        url = parsed.url_for(service_type="image", interface=interface, region_name=region)
    except ks_exceptions.EndpointNotFound:
        known = sorted(
            {
                f"{endpoint.get('region_id') or endpoint.get('region')}/{endpoint.get('interface')}"
                for endpoints in parsed.get_endpoints(service_type="image").values()
                for endpoint in endpoints
                if endpoint is not None
            }
        )
        offered = ", ".join(known) if known else "none"
        raise InvalidInput(
            f"The service catalog of your token has no image endpoint in region '{region}' with "
            f"interface '{interface}' (image endpoints, as region/interface: {offered}); import "
            "again with a glance_region and glance_service_interface it lists."
        ) from None
    return _VERSION_SUFFIX.sub("", str(url).rstrip("/"))


async def find_image_endpoint(
    identity_url: str, token: str, region: str, interface: str, *, seconds: float = 60.0
) -> str:
    """The base URL of the ``image`` service of ``region`` at ``interface`` in the token's catalog."""
    catalog = await asyncio.to_thread(_read_catalog, identity_url, token, seconds)
    return _choose(catalog, region, interface)


class RemoteImage:
    """The record of the image a glance-download fetches, as the remote service shows it."""

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.record = dict(record)

    def text(self, name: str) -> str | None:
        value = self.record.get(name)
        return value if isinstance(value, str) else None

    @property
    def status(self) -> str | None:
        return self.text("status")

    @property
    def size(self) -> int | None:
        value = self.record.get("size")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def os_hash(self) -> ExpectedDigest | None:
        """The digest the remote image records: its multihash when this site can compute that
        algorithm, else its md5 ``checksum``; None when it records neither."""
        for algorithm, value in (
            (self.text("os_hash_algo"), self.text("os_hash_value")),
            ("md5", self.text("checksum")),
        ):
            if algorithm is None or value is None or algorithm not in DIGEST_LENGTHS:
                continue
            try:
                return ExpectedDigest.parse({"os_hash_algo": algorithm, "os_hash_value": value})
            except InvalidInput:
                continue
        return None

    def properties(self, names: tuple[str, ...], base: frozenset[str]) -> dict[str, str]:
        """The properties to copy: string values whose name is or begins with one of ``names``
        (Glance's ``extra_properties``), never a base attribute nor an ``os_glance`` name."""
        return {
            key: value
            for key, value in self.record.items()
            if isinstance(value, str)
            and key not in base
            and not key.startswith("os_glance")
            and any(key.startswith(name) for name in names)
        }


def data_url(endpoint: str, image_id: str) -> str:
    return f"{endpoint}/v2/images/{image_id}/file"


async def fetch_remote_image(
    flt: ImportFilter, endpoint: str, image_id: str, token: str, region: str
) -> RemoteImage:
    """GET ``<endpoint>/v2/images/<id>`` with the caller's token (the endpoint filtered)."""
    url = f"{endpoint}/v2/images/{image_id}"
    source = WebSource(flt, max_size=MAX_RECORD_SIZE)
    try:
        async with source.stream(url, token_headers(token)) as download:
            body = b"".join([chunk async for chunk in download.chunks])
    except DownloadFailed as exc:
        if exc.status == 404:
            raise DownloadFailed(
                f"Image {image_id} was not found in region '{region}' ({url} answered 404), or your "
                "project cannot see it there; check glance_image_id and glance_region."
            ) from None
        if exc.status == 401:
            raise DownloadFailed(
                f"The image service of region '{region}' refused the token of the import request "
                "(401); import again with a fresh token."
            ) from None
        raise
    except TooLarge:
        raise DownloadFailed(f"The image record at {url} is larger than {MAX_RECORD_SIZE} bytes.") from None
    except InvalidInput as exc:
        detail = exc.message.split(": ", 1)[-1]
        raise InvalidInput(
            f"The image endpoint of region '{region}' in the service catalog does not pass this site's "
            f"import filtering ([import_filtering_opts]): {detail}; an operator must allow it there, or "
            "import from another region."
        ) from None
    try:
        record = json.loads(body)
    except ValueError:
        raise DownloadFailed(
            f"The image service at {url} did not answer with an image record (JSON)."
        ) from None
    if not isinstance(record, dict):
        raise DownloadFailed(f"The image service at {url} did not answer with an image record (JSON).")
    return RemoteImage(record)
