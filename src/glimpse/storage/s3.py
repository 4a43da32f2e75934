"""``S3Store``: image bytes as objects of one bucket of an S3-compatible object store (boto3).

Each object is ``<bucket>/<key>`` and its location is ``s3+http://<host>/<bucket>/<key>`` when the
endpoint speaks plain HTTP, ``s3://<host>/<bucket>/<key>`` over HTTPS (Glance's schemes, without the
credentials Glance puts into its locations).

A write buffers up to ``large_object_size`` bytes. A source that ends before that is sent with one
``PutObject``; a longer one becomes a multipart upload of ``chunk_size`` parts, at most
``thread_pools`` of them in flight, so a write holds at most
``max(large_object_size, (thread_pools + 1) * chunk_size)`` bytes whatever the image size. The
object appears only when ``PutObject`` or ``CompleteMultipartUpload`` succeeds; a source that fails, a
``max_size`` overrun, a backend error or a cancellation aborts the multipart upload, so no part is
left behind. boto3 is blocking: every call runs in the store's own thread pool, and the event loop
never waits on the network. Every botocore error is translated in :meth:`S3Store._translate`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import boto3
import botocore.config
import botocore.exceptions

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

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

__all__ = ["BUCKET_URL_FORMATS", "MIN_PART_SIZE", "S3Store"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MiB: Final = 1024 * 1024
MIN_PART_SIZE: Final = 5 * MiB  # S3's own minimum for every part but the last
BUCKET_URL_FORMATS: Final = ("auto", "path", "virtual")
_READ_BLOCK: Final = MiB
_MISSING_CODES: Final = frozenset({"NoSuchKey", "NotFound", "404"})
_MISSING_BUCKET_CODES: Final = frozenset({"NoSuchBucket"})
_FULL_CODES: Final = frozenset({"QuotaExceeded", "InsufficientStorage", "507", "413"})
_CREDENTIAL_CODES: Final = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "InvalidToken"}
)


_SESSION_LOCK: Final = threading.Lock()


@functools.cache
def _session() -> boto3.session.Session:
    """One boto3 session per process: it loads the service models once for every store's client."""
    return boto3.session.Session()


def _error_code(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "")
    if code:
        return code
    return str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


class S3Store(PrefixLocations):
    """An ``ImageStore`` keeping each object in one bucket of an S3-compatible service."""

    def __init__(
        self,
        id: str,
        *,
        endpoint_url: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        region: str = "us-east-1",
        create_bucket_on_put: bool = False,
        large_object_size: int = 100 * MiB,
        chunk_size: int = 10 * MiB,
        thread_pools: int = 10,
        bucket_url_format: str = "auto",
        description: str = "",
        weight: int = 0,
    ) -> None:
        parsed = urllib.parse.urlsplit(endpoint_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"endpoint_url must be an http:// or https:// URL, got {endpoint_url!r}.")
        if not bucket:
            raise ValueError("bucket must not be empty.")
        if chunk_size < 1 or large_object_size < 0:
            raise ValueError("chunk_size must be at least 1 byte and large_object_size 0 or more.")
        if thread_pools < 1:
            raise ValueError(f"thread_pools must be at least 1, got {thread_pools}.")
        if bucket_url_format not in BUCKET_URL_FORMATS:
            raise ValueError(f"bucket_url_format must be one of {', '.join(BUCKET_URL_FORMATS)}.")
        self.id = id
        self.type = "s3"
        self.description = description
        self.weight = weight
        self.capabilities = Capabilities.WRITE | Capabilities.RANGE_READ
        self.endpoint_url = endpoint_url.rstrip("/")
        self.host = parsed.netloc
        self.bucket = bucket
        self.region = region
        self.create_bucket_on_put = create_bucket_on_put
        self.large_object_size = large_object_size
        self.chunk_size = chunk_size
        self.thread_pools = thread_pools
        self.bucket_url_format = bucket_url_format
        self._prefix = f"{'s3+http' if parsed.scheme == 'http' else 's3'}://{self.host}/{bucket}/"
        self._bucket_checked = False
        # Parts in flight of every write plus reads, deletes and listings.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=thread_pools * 2, thread_name_prefix=f"s3-{id}"
        )
        config = botocore.config.Config(
            region_name=region,
            signature_version="s3v4",
            s3={"addressing_style": bucket_url_format},  # type: ignore[arg-type]  # checked against BUCKET_URL_FORMATS above
            max_pool_connections=thread_pools * 2,
            retries={"mode": "standard", "max_attempts": 3},
            connect_timeout=10,
            read_timeout=60,
            # The checksums a newer boto3 adds by default cost a pass over every byte (and
            # aws-chunked encoding); TLS and the part ETags already protect the transfer.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        # The health probe's client answers fast or not at all: one attempt, short timeouts.
        probe_config = config.merge(
            botocore.config.Config(
                retries={"mode": "standard", "max_attempts": 1},
                connect_timeout=2,
                read_timeout=2,
                max_pool_connections=1,
            )
        )
        with _SESSION_LOCK:  # creating clients from one session is not thread-safe
            self._client: S3Client = _session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=config,
            )
            self._probe_client: S3Client = _session().client(
                "s3",
                endpoint_url=self.endpoint_url,
                aws_access_key_id=access_key,
                aws_secret_access_key=secret_key,
                config=probe_config,
            )

    def __repr__(self) -> str:
        return f"S3Store(id={self.id!r}, endpoint={self.endpoint_url!r}, bucket={self.bucket!r})"

    # -- writes ---------------------------------------------------------------------------------

    async def write(
        self, key: str, chunks: AsyncIterator[bytes], max_size: int | None = None
    ) -> StoredObject:
        check_write_arguments(key, max_size)
        await self._ensure_bucket()
        buffer = bytearray()
        size = 0
        upload: _MultipartUpload | None = None
        published = False

        def put(body: bytes) -> None:
            nonlocal published
            self._client.put_object(Bucket=self.bucket, Key=key, Body=body)
            published = True

        try:
            async for chunk in chunks:
                size += len(chunk)
                if max_size is not None and size > max_size:
                    raise TooLarge(f"The image data is larger than the limit of {max_size} bytes.")
                buffer += chunk
                if upload is None and len(buffer) > self.large_object_size and len(buffer) >= self.chunk_size:
                    upload = _MultipartUpload(self, key)
                    await upload.start()
                if upload is not None:
                    while len(buffer) >= self.chunk_size:
                        with memoryview(buffer) as view:  # one copy, not two
                            part = bytes(view[: self.chunk_size])
                        del buffer[: self.chunk_size]
                        await upload.add_part(part)
            if upload is None:
                body = bytes(buffer)
                buffer = bytearray()
                with self._translate("save the image data"):
                    await self._call(functools.partial(put, body))
            else:
                if buffer:
                    await upload.add_part(bytes(buffer))
                    buffer = bytearray()
                await upload.complete()
        except BaseException:
            if upload is not None:
                await upload.abort()
            if published or (upload is not None and upload.completed):
                await withdraw(self, key)  # published, yet the caller hears of a failure (a cancellation)
            raise
        return StoredObject(location=self.location_for(key), size=size)

    async def _ensure_bucket(self) -> None:
        if self._bucket_checked or not self.create_bucket_on_put:
            return
        with self._translate("create the bucket"):
            await self._call(self._create_bucket_if_missing)
        self._bucket_checked = True

    def _create_bucket_if_missing(self) -> None:
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
        logger.info("store %s: creating bucket %s", self.id, self.bucket)
        try:
            if self.region == "us-east-1":
                self._client.create_bucket(Bucket=self.bucket)
            else:
                self._client.create_bucket(
                    Bucket=self.bucket,
                    CreateBucketConfiguration={"LocationConstraint": self.region},  # type: ignore[typeddict-item]
                )
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise

    # -- reads, deletes, listings -----------------------------------------------------------------

    async def open(self, location: str, offset: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        if offset < 0:
            raise ValueError(f"offset must be 0 or more, got {offset}.")
        if length is not None and length < 0:
            raise ValueError(f"length must be 0 or more, got {length}.")
        key = self._require_key(location)
        if length == 0:
            await self.stat(location)  # StoreNotFound when missing
            return self._reader(None, 0)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if offset or length is not None:
            end = "" if length is None else str(offset + length - 1)
            arguments["Range"] = f"bytes={offset}-{end}"
        try:
            with self._translate("open the image data", missing_is_not_found=True):
                response = await self._call(
                    functools.partial(self._client.get_object, **arguments), on_abandon=_close_body
                )
        except StorageError as exc:
            if isinstance(exc, StoreNotFound) or not _is_unsatisfiable_range(exc.__cause__):
                raise
            await self.stat(location)  # a range past the end of an existing object: no bytes
            return self._reader(None, 0)
        return self._reader(response["Body"], int(response.get("ContentLength", 0)))

    def _reader(self, body: Any, remaining: int) -> BlockReader:
        """The bytes of one GET's body (None: no bytes), read in blocks in the store's threads."""
        translate = functools.partial(self._translate, "read the image data")
        return BlockReader.of_body(
            self.id, body, remaining, block_size=_READ_BLOCK, executor=self._executor, translate=translate
        )

    async def stat(self, location: str) -> ObjectStat:
        """``HeadObject``: the size, and the md5 when the ETag is one (see :func:`_object_md5`)."""
        key = self._require_key(location)
        with self._translate("read the image size", missing_is_not_found=True):
            response = await self._call(
                functools.partial(self._client.head_object, Bucket=self.bucket, Key=key)
            )
        return ObjectStat(size=int(response["ContentLength"]), md5=_object_md5(response))

    async def delete(self, location: str) -> None:
        key = self._require_key(location)
        await self.stat(location)  # S3 deletes are idempotent; the contract wants StoreNotFound
        with self._translate("delete the image data", missing_is_not_found=True):
            await self._call(functools.partial(self._client.delete_object, Bucket=self.bucket, Key=key))

    async def objects(self) -> list[StoreEntry]:
        def listing() -> list[StoreEntry]:
            found: list[StoreEntry] = []
            paginator = self._client.get_paginator("list_objects_v2")
            try:
                for page in paginator.paginate(Bucket=self.bucket):
                    for item in page.get("Contents", []):
                        key, modified = item.get("Key"), item.get("LastModified")
                        if key is not None and modified is not None and KEY_PATTERN.fullmatch(key):
                            found.append(StoreEntry(key, modified.astimezone(UTC)))
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) in _MISSING_BUCKET_CODES:
                    return []
                raise
            return sorted(found, key=lambda entry: entry.key)

        with self._translate("list the image data"):
            return await self._call(listing)

    async def sweep_unfinished(self, older_than: datetime) -> list[str]:
        """Abort the multipart uploads of this bucket's keys that were neither completed nor
        aborted and whose last activity (start or newest part) was before ``older_than``."""

        def sweep() -> list[str]:
            removed: list[str] = []
            paginator = self._client.get_paginator("list_multipart_uploads")
            try:
                pages = list(paginator.paginate(Bucket=self.bucket))
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) in _MISSING_BUCKET_CODES:
                    return []
                raise
            for page in pages:
                for upload in page.get("Uploads", []):
                    key, upload_id, started = (
                        upload.get("Key"),
                        upload.get("UploadId"),
                        upload.get("Initiated"),
                    )
                    if key is None or upload_id is None or started is None or not KEY_PATTERN.fullmatch(key):
                        continue
                    if started >= older_than or self._last_part_time(key, upload_id, started) >= older_than:
                        continue
                    try:
                        self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                    except botocore.exceptions.ClientError as exc:
                        if _error_code(exc) != "NoSuchUpload":  # completed or aborted meanwhile
                            raise
                        continue
                    removed.append(f"multipart upload {upload_id} of {key} (started {started.isoformat()})")
            return removed

        with self._translate("remove unfinished writes"):
            return await self._call(sweep)

    def _last_part_time(self, key: str, upload_id: str, started: datetime) -> datetime:
        """The time of the newest part of an upload (its start when it has none or is gone)."""
        newest = started
        paginator = self._client.get_paginator("list_parts")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                for part in page.get("Parts", []):
                    modified = part.get("LastModified")
                    if modified is not None and modified > newest:
                        newest = modified
        except botocore.exceptions.ClientError as exc:
            if _error_code(exc) != "NoSuchUpload":
                raise
        return newest

    async def probe(self) -> None:
        """``HeadBucket``: the service answers, the credentials work and the bucket exists (or the
        first write may create it)."""

        def head() -> bool:
            try:
                self._probe_client.head_bucket(Bucket=self.bucket)
            except botocore.exceptions.ClientError as exc:
                if _error_code(exc) in ("404", "NoSuchBucket", "NotFound"):
                    return False
                raise
            return True

        with self._translate("reach its bucket"):
            # Not _call(): nothing to clean up after a probe, so a cancelled one need not be awaited.
            found = await asyncio.get_running_loop().run_in_executor(self._executor, head)
        if not found and not self.create_bucket_on_put:
            logger.warning("store %s: bucket %s does not exist", self.id, self.bucket)
            raise StorageError(
                f"store '{self.id}' could not reach its bucket: it does not exist; create it or set "
                "s3_store_create_bucket_on_put = true."
            )

    def describe(self) -> Mapping[str, object]:
        return {
            "bucket": self.bucket,
            "large_object_size": self.large_object_size,
            "large_object_chunk_size": self.chunk_size,
            "thread_pools": self.thread_pools,
        }

    # -- plumbing -------------------------------------------------------------------------------

    async def _call(self, func: Callable[[], T], on_abandon: Callable[[T], None] | None = None) -> T:
        """Run ``func`` in the store's thread pool (see :func:`~glimpse.storage.base.run_blocking`)."""
        return await run_blocking(self._executor, func, on_abandon)

    @contextlib.contextmanager
    def _translate(self, action: str, missing_is_not_found: bool = False) -> Iterator[None]:
        """The one place botocore's errors become ``StorageError``s. Messages say what to check and
        never carry the bucket, the keys or the credentials (those go to the log)."""
        with counting_failures(self.id):
            try:
                yield
            except botocore.exceptions.ClientError as exc:
                code = _error_code(exc)
                logger.warning("store %s could not %s (bucket %s): %s", self.id, action, self.bucket, exc)
                if code in _MISSING_CODES and missing_is_not_found:
                    raise StoreNotFound(f"The image data could not be found in store '{self.id}'.") from exc
                if code in _MISSING_BUCKET_CODES:
                    if missing_is_not_found:
                        raise StoreNotFound(
                            f"The image data could not be found in store '{self.id}'."
                        ) from exc
                    raise StorageError(
                        f"store '{self.id}' could not {action}: its bucket does not exist; create it or set "
                        "s3_store_create_bucket_on_put = true."
                    ) from exc
                if code in _FULL_CODES:
                    raise StoreFull(f"store '{self.id}' has no space left for the image data.") from exc
                if code in _CREDENTIAL_CODES:
                    raise StorageError(
                        f"store '{self.id}' could not {action}: the object store refused the credentials "
                        f"({code}); check s3_store_access_key and s3_store_secret_key."
                    ) from exc
                raise StorageError(
                    f"store '{self.id}' could not {action}: the object store answered {code}."
                ) from exc
            except botocore.exceptions.BotoCoreError as exc:
                logger.warning("store %s could not %s at %s: %s", self.id, action, self.endpoint_url, exc)
                raise StorageError(
                    f"store '{self.id}' could not {action}: the object store is unreachable or failed "
                    f"({type(exc).__name__}); check s3_store_host and that the service is up."
                ) from exc


def _object_md5(response: Mapping[str, Any]) -> str | None:
    """The md5 of an object's bytes from its ETag, or None when the ETag is something else: a
    multipart upload's (``<md5 of the part md5s>-<parts>``) or one under SSE-KMS or SSE-C
    encryption (not the md5 of the plain bytes)."""
    if response.get("SSECustomerAlgorithm") or str(response.get("ServerSideEncryption", "")).startswith(
        "aws:kms"
    ):
        return None
    return etag_md5(response.get("ETag"))


def _close_body(response: Any) -> None:
    with contextlib.suppress(Exception):
        response["Body"].close()


def _is_unsatisfiable_range(exc: BaseException | None) -> bool:
    return isinstance(exc, botocore.exceptions.ClientError) and _error_code(exc) in (
        "InvalidRange",
        "416",
    )


class _MultipartUpload:
    """One multipart upload: parts go up ``thread_pools`` at a time; ``abort`` leaves no part."""

    def __init__(self, store: S3Store, key: str) -> None:
        self._store = store
        self._key = key
        self._upload_id: str | None = None
        #: Set once S3 has assembled the object (even if the caller was cancelled meanwhile).
        self.completed = False
        self._parts: dict[int, str] = {}
        self._in_flight: set[asyncio.Future[None]] = set()
        self._number = 0

    async def start(self) -> None:
        store = self._store
        with store._translate("save the image data"):
            response = await store._call(
                functools.partial(store._client.create_multipart_upload, Bucket=store.bucket, Key=self._key),
                on_abandon=self._abort_abandoned,
            )
        self._upload_id = response["UploadId"]

    async def add_part(self, data: bytes) -> None:
        """Send one part; returns as soon as fewer than ``thread_pools`` parts are in flight."""
        while len(self._in_flight) >= self._store.thread_pools:
            done, _ = await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)
            self._in_flight -= done
            raise_first_error(done)  # the first failed part fails the write
        self._number += 1
        self._in_flight.add(asyncio.ensure_future(self._send(self._number, data)))

    async def _send(self, number: int, data: bytes) -> None:
        store = self._store
        with store._translate("save the image data"):
            response = await store._call(
                functools.partial(
                    store._client.upload_part,
                    Bucket=store.bucket,
                    Key=self._key,
                    UploadId=self._upload_id or "",
                    PartNumber=number,
                    Body=data,
                )
            )
        self._parts[number] = response["ETag"]

    async def complete(self) -> None:
        await self._drain()
        store = self._store
        parts = [{"PartNumber": number, "ETag": etag} for number, etag in sorted(self._parts.items())]
        upload_id = self._upload_id or ""

        def finish() -> None:
            store._client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self._key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
            )
            self.completed = True
            self._upload_id = None

        with store._translate("save the image data"):
            await store._call(finish)

    async def _drain(self) -> None:
        while self._in_flight:
            done, _ = await asyncio.wait(self._in_flight)
            self._in_flight -= done
            raise_first_error(done)

    async def abort(self) -> None:
        """Stop the parts in flight (waiting for the requests already sent), then abort the upload.
        Never raises: it runs while another error is on its way to the caller."""
        for part in self._in_flight:
            part.cancel()
        while any(not part.done() for part in self._in_flight):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(self._in_flight)
        for part in self._in_flight:
            if not part.cancelled():
                part.exception()  # retrieved, so asyncio does not log it
        self._in_flight.clear()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        store = self._store
        abort = functools.partial(
            store._client.abort_multipart_upload, Bucket=store.bucket, Key=self._key, UploadId=upload_id
        )
        future = asyncio.get_running_loop().run_in_executor(store._executor, abort)
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((future,))
        if future.exception() is not None:
            logger.error(
                "store %s could not abort multipart upload %s of %s: %s",
                store.id,
                upload_id,
                self._key,
                future.exception(),
            )

    def _abort_abandoned(self, response: Any) -> None:
        """A ``CreateMultipartUpload`` that returned after its write was cancelled: abort it now."""
        store = self._store
        with contextlib.suppress(Exception):
            store._client.abort_multipart_upload(
                Bucket=store.bucket, Key=self._key, UploadId=response["UploadId"]
            )
