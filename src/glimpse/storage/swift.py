"""``SwiftStore``: image bytes as objects of one container of OpenStack Swift (python-swiftclient).

Each object is ``<container>/<key>``; its location is ``swift+http://<auth host>/<container>/<key>``
(``swift+https://`` over HTTPS), without the credentials Glance puts into its locations. Only one
account is used (``swift_store_multi_tenant = false``), reached with v1 authentication (tempauth:
``auth_address`` is the v1 auth URL) or with Keystone v3 (``keystone`` given: ``auth_address`` is
the identity URL, and the storage URL comes from the token's catalog). For Keystone, one
keystoneauth session (thread-safe) holds the token for all the store's threads and gets a new one
when it expires; swiftclient asks it again after a 401.

A write buffers up to ``large_object_size`` bytes. A source that ends before that is sent with one
PUT; a longer one is cut into ``chunk_size`` segments in the ``<container>_segments`` container (at
most ``thread_pools`` in flight), named ``<key>/<random>/<number>``, and published by a Static Large
Object manifest, so memory stays bounded whatever the size. Only the PUT or the manifest makes the
object visible; any failure, ``max_size`` overrun or cancellation deletes the segments already sent.
Replacing or deleting a large object also deletes its old segments. swiftclient is blocking: every
call runs in the store's own thread pool, each thread with its own connection. Every error is
translated in :meth:`SwiftStore._translate`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import http.client
import io
import json
import logging
import re
import threading
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import keystoneauth1.exceptions
import keystoneauth1.identity.v3
import keystoneauth1.session
import requests.exceptions
import swiftclient.client
import swiftclient.exceptions
import urllib3.exceptions

from glimpse.errors import StorageError, StoreFull, StoreNotFound, TooLarge
from glimpse.ports import Capabilities, ObjectStat, StoredObject, StoreEntry
from glimpse.storage.base import (
    KEY_PATTERN,
    BlockReader,
    PrefixLocations,
    check_write_arguments,
    counting_failures,
    etag_md5,
    raise_first_error,
    run_blocking,
    withdraw,
)

__all__ = ["ENDPOINT_TYPES", "KeystoneAuth", "SwiftStore"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MiB: Final = 1024 * 1024
_READ_BLOCK: Final = MiB
_SLO_HEADER: Final = "x-static-large-object"
#: A segment of a large object: ``<key>/<random of one upload>/<number>``.
_SEGMENT_NAME: Final = re.compile(r"(?P<key>[^/]+)/(?P<upload>[0-9a-f]{32})/[0-9]+")


def _listing_time(text: str) -> datetime:
    """A container listing's ``last_modified`` (ISO 8601 in UTC, without a zone) as a UTC time."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


#: Glance's ``swift_store_endpoint_type`` values: the catalog interfaces a storage URL may come from.
ENDPOINT_TYPES: Final = ("publicURL", "internalURL", "adminURL")


class _MissingContainer(Exception):
    """A PUT found no container (and the store may not create it)."""


class _NoEndpoint(Exception):
    """The token's catalog has no storage URL for the configured service type, interface and region."""


@dataclass(frozen=True, slots=True)
class KeystoneAuth:
    """What Keystone v3 authentication needs besides the user name and password: the project the
    images go into, the domains (each ``None`` pair means the ``default`` domain) and where to find
    the storage URL in the catalog (Glance's ``swift_store_region``, ``swift_store_endpoint_type`` and
    ``swift_store_service_type``)."""

    project_name: str
    user_domain_id: str | None = None
    user_domain_name: str | None = None
    project_domain_id: str | None = None
    project_domain_name: str | None = None
    region: str | None = None
    endpoint_type: str = "publicURL"
    service_type: str = "object-store"

    def __post_init__(self) -> None:
        if not self.project_name:
            raise ValueError("Keystone authentication needs a project name.")
        if self.endpoint_type not in ENDPOINT_TYPES:
            raise ValueError(
                f"endpoint_type must be one of {', '.join(ENDPOINT_TYPES)}, got {self.endpoint_type!r}."
            )
        if not self.service_type:
            raise ValueError("service_type must not be empty.")

    def plugin(self, auth_url: str, user: str, password: str) -> keystoneauth1.identity.v3.Password:
        user_domain_id = self.user_domain_id or (None if self.user_domain_name else "default")
        project_domain_id = self.project_domain_id or (None if self.project_domain_name else "default")
        return keystoneauth1.identity.v3.Password(
            auth_url=auth_url,
            username=user,
            password=password,
            user_domain_id=user_domain_id,
            user_domain_name=self.user_domain_name,
            project_name=self.project_name,
            project_domain_id=project_domain_id,
            project_domain_name=self.project_domain_name,
        )


class _Connection(swiftclient.client.Connection):  # type: ignore[misc]  # swiftclient is untyped
    """A swiftclient connection that says so when the catalog has no storage URL (swiftclient would
    go on with none)."""

    def get_auth(self) -> tuple[str, str]:
        url, token = super().get_auth()
        if not url:
            raise _NoEndpoint()
        return str(url), str(token)


class SwiftStore(PrefixLocations):
    """An ``ImageStore`` keeping each object in one container of a Swift account."""

    def __init__(
        self,
        id: str,
        *,
        auth_address: str,
        user: str,
        key: str,
        container: str = "glance",
        create_container_on_put: bool = False,
        large_object_size: int = 5 * 1024 * MiB,
        chunk_size: int = 200 * MiB,
        thread_pools: int = 4,
        retries: int = 2,
        keystone: KeystoneAuth | None = None,
        cacert: str | None = None,
        insecure: bool = False,
        credential_options: str = "swift_store_user and swift_store_key",
        address_option: str = "swift_store_auth_address",
        description: str = "",
        weight: int = 0,
    ) -> None:
        parsed = urllib.parse.urlsplit(auth_address)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"auth_address must be an http:// or https:// URL, got {auth_address!r}.")
        if not container or "/" in container:
            raise ValueError(f"container must be a name without '/', got {container!r}.")
        if chunk_size < 1 or large_object_size < 0 or thread_pools < 1:
            raise ValueError("chunk_size and thread_pools must be at least 1, large_object_size 0 or more.")
        self.id = id
        self.type = "swift"
        self.description = description
        self.weight = weight
        self.capabilities = Capabilities.WRITE | Capabilities.RANGE_READ
        self.auth_address = auth_address
        self.container = container
        self.segments_container = f"{container}_segments"
        self.create_container_on_put = create_container_on_put
        self.large_object_size = large_object_size
        self.chunk_size = chunk_size
        self.thread_pools = thread_pools
        self.keystone = keystone
        self._user = user
        self._key = key
        self._retries = retries
        self._cacert = cacert
        self._insecure = insecure
        self._credential_options = credential_options
        self._address_option = address_option
        self._session: keystoneauth1.session.Session | None = None
        if keystone is not None:
            self._session = keystoneauth1.session.Session(
                auth=keystone.plugin(auth_address, user, key),
                verify=False if insecure else (cacert or True),
                timeout=60,
            )
        scheme = "swift+http" if parsed.scheme == "http" else "swift+https"
        self._prefix = f"{scheme}://{parsed.netloc}/{container}/"
        self._local = threading.local()
        self._containers_ready: set[str] = set()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=thread_pools * 2, thread_name_prefix=f"swift-{id}"
        )

    def __repr__(self) -> str:
        version = "1" if self.keystone is None else "3"
        return (
            f"SwiftStore(id={self.id!r}, auth_address={self.auth_address!r}, auth_version={version!r}, "
            f"container={self.container!r})"
        )

    def _connection(self) -> swiftclient.client.Connection:
        """This thread's connection (a swiftclient connection must not be shared between threads)."""
        connection: swiftclient.client.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._new_connection(retries=self._retries, timeout=60)
            self._local.connection = connection
        return connection

    def _new_connection(self, *, retries: int, timeout: float) -> swiftclient.client.Connection:
        """A connection authenticated as the store is configured: v1, or Keystone v3 through the
        store's session."""
        common: dict[str, Any] = {
            "retries": retries,
            "starting_backoff": 0.2,
            "max_backoff": 2,
            "timeout": timeout,
            "cacert": self._cacert,
            "insecure": self._insecure,
        }
        if self.keystone is None:
            return _Connection(
                authurl=self.auth_address, user=self._user, key=self._key, auth_version="1", **common
            )
        # The storage URL is looked up in the session's catalog, the token asked of the session
        # (which renews it); after a 401 swiftclient invalidates it and tries once more.
        return _Connection(
            session=self._session,
            os_options={
                "service_type": self.keystone.service_type,
                "endpoint_type": self.keystone.endpoint_type,
                "region_name": self.keystone.region,
            },
            **common,
        )

    # -- writes ---------------------------------------------------------------------------------

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        check_write_arguments(key, max_size)
        buffer = bytearray()
        size = 0
        upload: _SegmentedUpload | None = None
        old_segments: list[str] = []
        published = False

        def put(body: bytes) -> None:
            nonlocal published
            self._put(self.container, key, body)
            published = True

        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise TooLarge(f"The image data is larger than the limit of {max_size} bytes.")
                buffer += chunk
                if upload is None and len(buffer) > self.large_object_size and len(buffer) >= self.chunk_size:
                    upload = _SegmentedUpload(self, key)
                if upload is not None:
                    while len(buffer) >= self.chunk_size:
                        with memoryview(buffer) as view:
                            part = bytes(view[: self.chunk_size])
                        del buffer[: self.chunk_size]
                        await upload.add_segment(part)
            with self._translate("save the image data"):
                old_segments = await self._call(functools.partial(self._segments_of, key))
            if upload is None:
                body = bytes(buffer)
                buffer = bytearray()
                with self._translate("save the image data"):
                    await self._call(functools.partial(put, body))
            else:
                if buffer:
                    await upload.add_segment(bytes(buffer))
                    buffer = bytearray()
                await upload.commit()
        except BaseException:
            if upload is not None:
                await upload.discard()
            if published or (upload is not None and upload.published):
                # Published, yet the caller hears of a failure (a cancellation): take the new
                # object (and its segments) back, and the segments of the object it replaced.
                await withdraw(self, key)
                if old_segments:
                    await run_blocking(self._executor, functools.partial(self._delete_segments, old_segments))
            raise
        if old_segments:
            await self._call(functools.partial(self._delete_segments, old_segments))
        return StoredObject(location=self.location_for(key), size=size)

    def _put(self, container: str, name: str, body: bytes, query_string: str | None = None) -> str:
        """PUT one object, creating its container first when allowed; returns its ETag."""
        connection = self._connection()
        if self.create_container_on_put and container not in self._containers_ready:
            connection.put_container(container)
            self._containers_ready.add(container)
        try:
            # A seekable body, not bytes: swiftclient can send it again when it retries, after a 401
            # (an expired token, or one a restarted Swift forgot: it authenticates again) or a
            # broken connection; bytes it would refuse to resend.
            etag: str = connection.put_object(
                container, name, io.BytesIO(body), content_length=len(body), query_string=query_string
            )
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status == 404:
                raise _MissingContainer() from exc
            raise
        return etag

    def _segments_of(self, key: str) -> list[str]:
        """The segment paths (``container/name``) of ``key`` if it is a large object, else ``[]``."""
        connection = self._connection()
        try:
            headers = connection.head_object(self.container, key)
            if headers.get(_SLO_HEADER, "").lower() != "true":
                return []
            _, manifest = connection.get_object(self.container, key, query_string="multipart-manifest=get")
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status == 404:
                return []
            raise
        return [str(entry["name"]).lstrip("/") for entry in json.loads(manifest)]

    def _published_segments(self, key: str) -> list[str] | None:
        """What the sweep may rely on before deleting segments of ``key``: the segment paths its
        large object refers to, ``[]`` when there is certainly no large object at ``key``, ``None``
        when Swift's answers disagree.

        Unlike :meth:`_segments_of`, a missing object is not taken on one answer: a ``HEAD`` that
        says 404 must be confirmed by the container listing, and an object whose manifest cannot be
        read after its ``HEAD`` succeeded keeps its segments. Deleting a live object's segments
        destroys its data; leaving an orphan set until the next sweep costs only space."""
        connection = self._connection()
        try:
            headers = connection.head_object(self.container, key)
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status != 404:
                raise
            _, listing = connection.get_container(self.container, prefix=key, full_listing=True)
            return None if any(str(item["name"]) == key for item in listing) else []
        if headers.get(_SLO_HEADER, "").lower() != "true":
            return []
        try:
            _, manifest = connection.get_object(self.container, key, query_string="multipart-manifest=get")
        except swiftclient.exceptions.ClientException as exc:
            if exc.http_status == 404:
                return None
            raise
        return [str(entry["name"]).lstrip("/") for entry in json.loads(manifest)]

    def _delete_segments(self, paths: list[str]) -> None:
        """Delete segments, logging (not raising) failures: this runs after the write succeeded."""
        connection = self._connection()
        for path in paths:
            container, _, name = path.partition("/")
            try:
                connection.delete_object(container, name)
            except swiftclient.exceptions.ClientException as exc:
                if exc.http_status != 404:
                    logger.error("store %s could not delete segment %s: %s", self.id, path, exc)
            except (requests.exceptions.RequestException, keystoneauth1.exceptions.ClientException) as exc:
                logger.error("store %s could not delete segment %s: %s", self.id, path, exc)

    # -- reads, deletes, listings -----------------------------------------------------------------

    async def open(self, location: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if offset < 0:
            raise ValueError(f"offset must be 0 or more, got {offset}.")
        if length is not None and length < 0:
            raise ValueError(f"length must be 0 or more, got {length}.")
        key = self._require_key(location)
        if length == 0:
            await self.stat(location)
            return self._reader(None, 0)
        headers: dict[str, str] = {}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            headers["Range"] = f"bytes={offset}-{end}"

        def get() -> tuple[dict[str, str], Any]:
            result: tuple[dict[str, str], Any] = self._connection().get_object(
                self.container, key, resp_chunk_size=_READ_BLOCK, headers=headers
            )
            return result

        try:
            with self._translate("open the image data", missing_is_not_found=True):
                response_headers, body = await self._call(get, on_abandon=lambda result: result[1].close())
        except StorageError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, swiftclient.exceptions.ClientException) and cause.http_status == 416):
                raise
            await self.stat(location)  # a range past the end of an existing object: no bytes
            return self._reader(None, 0)
        return self._reader(body, int(response_headers.get("content-length", 0)))

    def _reader(self, body: Any, remaining: int) -> BlockReader:
        """The bytes of one GET's body (None: no bytes), read in blocks in the store's threads."""
        translate = functools.partial(self._translate, "read the image data")
        return BlockReader.of_body(
            self.id, body, remaining, block_size=_READ_BLOCK, executor=self._executor, translate=translate
        )

    async def stat(self, location: str) -> ObjectStat:
        """HEAD: the size, and the ETag as the md5 for a plain object (a large object's ETag is
        derived from its segments' and says nothing of the bytes)."""
        key = self._require_key(location)
        with self._translate("read the image size", missing_is_not_found=True):
            headers = await self._call(functools.partial(self._head, key))
        large = headers.get(_SLO_HEADER, "").lower() == "true" or "x-object-manifest" in headers
        md5 = None if large else etag_md5(headers.get("etag"))
        return ObjectStat(size=int(headers["content-length"]), md5=md5)

    def _head(self, key: str) -> dict[str, str]:
        headers: dict[str, str] = self._connection().head_object(self.container, key)
        return headers

    async def delete(self, location: str) -> None:
        key = self._require_key(location)

        def remove() -> None:
            connection = self._connection()
            headers = connection.head_object(self.container, key)
            large = headers.get(_SLO_HEADER, "").lower() == "true"
            # For a large object, Swift deletes the manifest and every segment it lists.
            connection.delete_object(
                self.container, key, query_string="multipart-manifest=delete" if large else None
            )

        with self._translate("delete the image data", missing_is_not_found=True):
            await self._call(remove)

    async def objects(self) -> list[StoreEntry]:
        def listing() -> list[StoreEntry]:
            try:
                _, objects = self._connection().get_container(self.container, full_listing=True)
            except swiftclient.exceptions.ClientException as exc:
                if exc.http_status == 404:
                    return []
                raise
            return sorted(
                (
                    StoreEntry(str(item["name"]), _listing_time(str(item["last_modified"])))
                    for item in objects
                    if KEY_PATTERN.fullmatch(str(item["name"]))
                ),
                key=lambda entry: entry.key,
            )

        with self._translate("list the image data"):
            return await self._call(listing)

    async def sweep_unfinished(self, older_than: datetime) -> list[str]:
        """Delete the segments of large objects whose manifest was never written: every segment
        set (``<key>/<random>/``) in the segments container whose newest segment was written before
        ``older_than`` and that the manifest of ``<key>`` does not refer to."""

        def sweep() -> list[str]:
            connection = self._connection()
            try:
                _, listing = connection.get_container(self.segments_container, full_listing=True)
            except swiftclient.exceptions.ClientException as exc:
                if exc.http_status == 404:
                    return []
                raise
            sets: dict[str, tuple[str, datetime, list[str]]] = {}  # prefix -> (key, newest, names)
            for item in listing:
                name = str(item["name"])
                match = _SEGMENT_NAME.fullmatch(name)
                if match is None or KEY_PATTERN.fullmatch(match["key"]) is None:
                    continue
                prefix = f"{match['key']}/{match['upload']}/"
                modified = _listing_time(str(item["last_modified"]))
                key, newest, names = sets.get(prefix, (match["key"], modified, []))
                names.append(name)
                sets[prefix] = (key, max(newest, modified), names)
            removed: list[str] = []
            for prefix, (key, newest, names) in sorted(sets.items()):
                if newest >= older_than:
                    continue
                published = self._published_segments(key)
                if published is None:
                    continue  # Swift's answers about the key disagree: decide at a later sweep
                if any(path.startswith(f"{self.segments_container}/{prefix}") for path in published):
                    continue  # the key's current large object
                self._delete_segments([f"{self.segments_container}/{name}" for name in names])
                removed.append(
                    f"{len(names)} segment(s) {prefix}* of {key} (last written {newest.isoformat()}), "
                    "no manifest refers to them"
                )
            return removed

        with self._translate("remove unfinished writes"):
            return await self._call(sweep)

    async def probe(self) -> None:
        """``HEAD`` of the container: Swift answers, the credentials work and the container exists
        (or the first write may create it). One attempt with a short timeout, on a connection of its
        own so that a hung Swift does not hold one the transfers use."""

        def head() -> None:
            connection = self._new_connection(retries=0, timeout=2)
            try:
                connection.head_container(self.container)
            except swiftclient.exceptions.ClientException as exc:
                if exc.http_status != 404:
                    raise
                if not self.create_container_on_put:
                    raise _MissingContainer() from exc
            finally:
                connection.close()

        with self._translate("reach its container"):
            # Not _call(): nothing to clean up after a probe, so a cancelled one need not be awaited.
            await asyncio.get_running_loop().run_in_executor(self._executor, head)

    def describe(self) -> Mapping[str, object]:
        # The properties Glance shows for a swift store in GET /v2/info/stores/detail.
        return {
            "container": self.container,
            "large_object_size": self.large_object_size,
            "large_object_chunk_size": self.chunk_size,
        }

    # -- plumbing -------------------------------------------------------------------------------

    async def _call(self, func: Callable[[], T], on_abandon: Callable[[T], None] | None = None) -> T:
        return await run_blocking(self._executor, func, on_abandon)

    @contextlib.contextmanager
    def _translate(self, action: str, missing_is_not_found: bool = False) -> Iterator[None]:
        """The one place swiftclient's errors become ``StorageError``s; container names, paths and
        credentials go to the log, not into the message."""
        with counting_failures(self.id):
            try:
                yield
            except _MissingContainer as exc:
                raise StorageError(
                    f"store '{self.id}' could not {action}: its container does not exist; create it or set "
                    "swift_store_create_container_on_put = true."
                ) from exc
            except (_NoEndpoint, keystoneauth1.exceptions.EndpointNotFound) as exc:
                raise self._no_endpoint_error(action) from exc
            except keystoneauth1.exceptions.ClientException as exc:
                raise self._keystone_error(action, exc) from exc
            except swiftclient.exceptions.ClientException as exc:
                status = exc.http_status
                logger.warning(
                    "store %s could not %s (container %s): %s", self.id, action, self.container, exc
                )
                if status == 404 and missing_is_not_found:
                    raise StoreNotFound(f"The image data could not be found in store '{self.id}'.") from exc
                if status in (413, 507):
                    raise StoreFull(f"store '{self.id}' has no space left for the image data.") from exc
                if status in (401, 403):
                    raise StorageError(
                        f"store '{self.id}' could not {action}: Swift refused the credentials ({status}); "
                        f"check {self._credential_options}."
                    ) from exc
                if status is None:
                    raise StorageError(
                        f"store '{self.id}' could not {action}: Swift is unreachable or failed; check "
                        f"{self._address_option} and that the service is up."
                    ) from exc
                raise StorageError(f"store '{self.id}' could not {action}: Swift answered {status}.") from exc
            except requests.exceptions.RequestException as exc:
                logger.warning("store %s could not %s at %s: %s", self.id, action, self.auth_address, exc)
                raise StorageError(
                    f"store '{self.id}' could not {action}: Swift is unreachable or failed "
                    f"({type(exc).__name__}); check {self._address_option} and that the service is up."
                ) from exc
            except (urllib3.exceptions.HTTPError, http.client.HTTPException, ConnectionError) as exc:
                # A body being read when the connection breaks (swiftclient reads it from urllib3).
                logger.warning("store %s could not %s: the connection broke: %s", self.id, action, exc)
                raise StorageError(
                    f"store '{self.id}' could not {action}: the connection to Swift broke "
                    f"({type(exc).__name__}); check {self._address_option} and that the service is up."
                ) from exc

    def _no_endpoint_error(self, action: str) -> StorageError:
        keystone = self.keystone
        assert keystone is not None  # v1 auth always answers with a storage URL
        logger.warning(
            "store %s: no %s endpoint (%s, region %s) in the catalog of %s",
            self.id,
            keystone.service_type,
            keystone.endpoint_type,
            keystone.region,
            self.auth_address,
        )
        region = f"in region '{keystone.region}'" if keystone.region else "in any region"
        return StorageError(
            f"store '{self.id}' could not {action}: Keystone's catalog has no '{keystone.service_type}' "
            f"endpoint of type {keystone.endpoint_type} {region}; check swift_store_service_type, "
            "swift_store_endpoint_type and swift_store_region."
        )

    def _keystone_error(self, action: str, exc: keystoneauth1.exceptions.ClientException) -> StorageError:
        """A keystoneauth error (raised while getting a token or the catalog) as a ``StorageError``."""
        logger.warning("store %s could not %s: Keystone at %s: %r", self.id, action, self.auth_address, exc)
        prefix = f"store '{self.id}' could not {action}"
        status = getattr(exc, "http_status", None)
        if isinstance(exc, keystoneauth1.exceptions.Unauthorized):
            return StorageError(
                f"{prefix}: Keystone refused the store's credentials (401); check "
                f"{self._credential_options}, the project and the domains."
            )
        if isinstance(
            exc, keystoneauth1.exceptions.ConnectionError | keystoneauth1.exceptions.DiscoveryFailure
        ):
            return StorageError(
                f"{prefix}: Keystone cannot be reached ({type(exc).__name__}); check "
                f"{self._address_option} and that the identity service is up."
            )
        if status in (403, 404):
            return StorageError(
                f"{prefix}: Keystone answered {status}; check that {self._address_option} is the v3 "
                f"identity URL (ending in /v3) and that {self._credential_options} name a user of the "
                "project."
            )
        return StorageError(
            f"{prefix}: Keystone failed ({type(exc).__name__}); check {self._address_option} and that the "
            "identity service is up."
        )


class _SegmentedUpload:
    """The segments of one large object: sent ``thread_pools`` at a time, published by an SLO
    manifest, deleted again by :meth:`discard`."""

    def __init__(self, store: SwiftStore, key: str) -> None:
        self._store = store
        self._prefix = f"{key}/{uuid.uuid4().hex}/"
        self._segments: dict[int, tuple[str, str, int]] = {}  # number -> (name, etag, size)
        self._in_flight: set[asyncio.Future[None]] = set()
        self._number = 0
        self._key = key
        #: Set once the manifest is in place (even if the caller was cancelled meanwhile); from
        #: then on the segments belong to the object and :meth:`discard` leaves them alone.
        self.published = False

    async def add_segment(self, data: bytes) -> None:
        while len(self._in_flight) >= self._store.thread_pools:
            done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            self._in_flight -= done
            raise_first_error(done)
        self._number += 1
        self._in_flight.add(asyncio.ensure_future(self._send(self._number, data)))

    async def _send(self, number: int, data: bytes) -> None:
        store = self._store
        name = f"{self._prefix}{number:08d}"
        # Recorded before the PUT: a segment whose PUT was interrupted may still have been stored.
        self._segments[number] = (name, "", len(data))
        with store._translate("save the image data"):
            etag = await store._call(functools.partial(store._put, store.segments_container, name, data))
        self._segments[number] = (name, etag, len(data))

    async def commit(self) -> None:
        while self._in_flight:
            done, _ = await asyncio.wait(self._in_flight)
            self._in_flight -= done
            raise_first_error(done)
        store = self._store
        manifest = json.dumps(
            [
                {"path": f"/{store.segments_container}/{name}", "etag": etag, "size_bytes": size}
                for _, (name, etag, size) in sorted(self._segments.items())
            ]
        ).encode()

        def publish() -> None:
            store._put(store.container, self._key, manifest, query_string="multipart-manifest=put")
            self.published = True

        with store._translate("save the image data"):
            await store._call(publish)
        self._segments.clear()

    async def discard(self) -> None:
        """Stop the segments in flight (waiting for the requests already sent), then delete every
        segment sent. Never raises: it runs while another error is on its way to the caller."""
        for part in self._in_flight:
            part.cancel()
        while any(not part.done() for part in self._in_flight):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(self._in_flight)
        for part in self._in_flight:
            if not part.cancelled():
                part.exception()
        self._in_flight.clear()
        if self.published:
            return
        store = self._store
        paths = [f"{store.segments_container}/{name}" for name, _, _ in self._segments.values()]
        self._segments.clear()
        if not paths:
            return
        future = asyncio.get_running_loop().run_in_executor(
            store._executor, functools.partial(store._delete_segments, paths)
        )
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((future,))
        if future.exception() is not None:
            logger.error(
                "store %s could not delete the segments of %s: %s", store.id, self._key, future.exception()
            )
