"""Imports: what the server offers (stores, import methods), starting an import or a copy and
finding its task, and waiting on the image when there is no task to follow."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import httpx

from ._config import ClientConfig
from ._core import AsyncDriver, Call, Flow, SyncDriver, idempotent, pause, single
from ._exceptions import ClientError, TaskTimeout
from ._glance import started_task
from ._images import get_image
from ._models import Image
from ._tasks import AsyncTaskHandle, TaskHandle, image_tasks

if TYPE_CHECKING:
    from ._client import AsyncClient, Client


def _stores(response: httpx.Response) -> list[dict[str, Any]]:
    stores: list[dict[str, Any]] = response.json()["stores"]
    return stores


def _info(response: httpx.Response) -> dict[str, Any]:
    info: dict[str, Any] = response.json()
    return info


def stores() -> Flow[list[dict[str, Any]]]:
    return single(Call("GET", "/v2/info/stores"), _stores)


def import_info() -> Flow[dict[str, Any]]:
    return single(Call("GET", "/v2/info/import"), _info)


def validation_data(checksum: str) -> dict[str, str]:
    """``"sha256:<hex>"`` as the import body's ``validation_data``; ValueError when it is not
    ``ALGORITHM:HEX``."""
    algorithm, sep, value = checksum.partition(":")
    if not sep or not algorithm.strip() or not value.strip():
        raise ValueError(f"checksum {checksum!r} must look like ALGORITHM:HEX, e.g. sha256:9f86d08...")
    return {"os_hash_algo": algorithm.strip().lower(), "os_hash_value": value.strip().lower()}


@dataclass(frozen=True)
class RemoteImage:
    """The image a glance-download fetches: its id in the other region, the region (as the Keystone
    catalog names it) and the catalog interface of that region's image service."""

    image_id: str
    region: str
    interface: str = "public"

    def method_fields(self) -> dict[str, str]:
        return {
            "glance_image_id": self.image_id,
            "glance_region": self.region,
            "glance_service_interface": self.interface,
        }


def _import_body(
    method: str,
    uri: str | None,
    stores: list[str] | None,
    all_stores: bool,
    allow_failure: bool,
    checksum: str | None = None,
    retry_failed: bool = False,
    deadline: int | None = None,
    remote: RemoteImage | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"method": {"name": method}}
    if uri is not None:
        body["method"]["uri"] = uri
    if remote is not None:
        body["method"].update(remote.method_fields())
    if retry_failed:
        if stores is not None or all_stores:
            raise ValueError("retry_failed names the stores itself; give neither stores nor all_stores")
        body["stores"] = "failed"
    if stores is not None:
        body["stores"] = stores
    if all_stores:
        body["all_stores"] = True
    body["all_stores_must_succeed"] = not allow_failure
    if checksum is not None:
        body["validation_data"] = validation_data(checksum)
    if deadline is not None:
        if isinstance(deadline, bool) or not isinstance(deadline, int) or deadline <= 0:
            raise ValueError(f"deadline must be a whole number of seconds above 0, not {deadline!r}")
        body["deadline"] = deadline
    return body


def _request_ids(config: ClientConfig, response: httpx.Response) -> set[str]:
    """The ids a server may have stored as the task's ``request_id`` for this request."""
    ids: set[str] = set()
    for value in (response.headers.get("x-openstack-request-id"), config.request_id):
        if value:
            ids.update({value, value.removeprefix("req-")})
    return ids


@dataclass(frozen=True)
class Started:
    """The task an import started, and where the server said it can be read (``None``: nowhere)."""

    task_id: str
    location: str | None


def start_import(
    config: ClientConfig, image_id: str, body: dict[str, Any], key: str | None = None
) -> Flow[Started | None]:
    """Glimpse names the task in the 202. Plain Glance does not: the task is then looked up among
    the image's tasks by the request id of the 202 (Glance stores it in the task). ``None`` when the
    server created no task or offers no way to find it. The request carries an ``Idempotency-Key``
    (``key`` or a new one), so a broken connection is retried and still starts one task."""
    call = Call("POST", f"/v2/images/{image_id}/import", json=body)
    response = yield from idempotent(call, config, key)
    task_id = response.headers.get("openstack-image-import-task-id") or None
    if task_id is None:
        try:
            tasks = yield from image_tasks(image_id)
        except ClientError:
            return None
        started = started_task(tasks, _request_ids(config, response))
        if started is None:
            return None
        task_id = started.id
    return Started(task_id, response.headers.get("location"))


def _image_step(image: Image, deadline: float, timeout: float) -> float | None:
    """One step of waiting on an image's import: None once no import is under way, else the
    seconds left. Raises TaskTimeout once the deadline has passed."""
    if not image.is_importing:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TaskTimeout(f"image {image.id} still being imported after {timeout}s")
    return remaining


def wait_for_import(config: ClientConfig, image_id: str, timeout: float) -> Flow[Image]:
    deadline = time.monotonic() + timeout
    while True:
        image = yield from get_image(image_id)
        remaining = _image_step(image, deadline, timeout)
        if remaining is None:
            return image
        yield from pause(min(config.poll_interval, remaining))


class SyncImports(SyncDriver):
    # discovery
    def stores(self) -> list[dict[str, Any]]:
        return self._run(stores())

    def import_info(self) -> dict[str, Any]:
        return self._run(import_info())

    def import_image(
        self,
        image_id: str,
        method: str,
        uri: str | None = None,
        stores: list[str] | None = None,
        all_stores: bool = False,
        allow_failure: bool = False,
        checksum: str | None = None,
        retry_failed: bool = False,
        idempotency_key: str | None = None,
        deadline: int | None = None,
        remote: RemoteImage | None = None,
    ) -> TaskHandle | None:
        """Start an import; the handle follows its task, ``None`` when there is no task to follow.

        Glimpse names the task in the 202. Plain Glance does not: the task is then looked up among
        the image's tasks by the request id of the 202 (Glance stores it in the task). ``None`` means
        the server created no task (a copy to stores that all hold the image already) or offers no
        way to find it (a Glance older than API 2.12, without ``/v2/images/{id}/tasks``).

        ``checksum`` (``"sha256:<hex>"``, web-download and glance-direct) is the digest the data
        must have: sent as ``validation_data``, the server fails the import when the data differs.

        ``remote`` (glance-download) names the image of another region to import.

        ``retry_failed`` (Glimpse) sends ``"stores": "failed"``: exactly the stores the image's last
        import or copy failed to write (``Image.failed_import``); ``Conflict`` when there are none.

        The request carries an ``Idempotency-Key`` (``idempotency_key``, or a new UUID): when the
        connection breaks or times out before the answer, it is sent again with the same key
        (``config.retries`` times at most), and a Glimpse server answers with the first request's
        task instead of a 409. Pass your own key to retry across restarts of your program.

        ``deadline`` (Glimpse) is the seconds within which the task must end: past them the server
        fails it and undoes its work, as a cancel does. Plain Glance ignores it.
        """
        body = _import_body(
            method, uri, stores, all_stores, allow_failure, checksum, retry_failed, deadline, remote
        )
        started = self._run(start_import(self.config, image_id, body, idempotency_key))
        if started is None:
            return None
        # This class is only ever mixed into Client.
        return TaskHandle(cast("Client", self), image_id, started.task_id, started.location)

    def copy_image(
        self,
        image_id: str,
        stores: list[str] | None = None,
        all_stores: bool = False,
        *,
        retry_failed: bool = False,
        allow_failure: bool = False,
        deadline: int | None = None,
    ) -> TaskHandle | None:
        return self.import_image(
            image_id,
            "copy-image",
            stores=stores,
            all_stores=all_stores,
            retry_failed=retry_failed,
            allow_failure=allow_failure,
            deadline=deadline,
        )

    def wait_for_import(self, image_id: str, timeout: float = 300.0) -> Image:
        """Wait until no import or copy is under way on the image (:attr:`Image.is_importing`) and
        return the image; for a server that names no task to follow (Glance before API 2.12). The image is
        read every ``config.poll_interval`` seconds. Only reads; raises TaskTimeout when ``timeout``
        runs out."""
        return self._run(wait_for_import(self.config, image_id, timeout))


class AsyncImports(AsyncDriver):
    # discovery
    async def stores(self) -> list[dict[str, Any]]:
        return await self._run(stores())

    async def import_info(self) -> dict[str, Any]:
        return await self._run(import_info())

    async def import_image(
        self,
        image_id: str,
        method: str,
        uri: str | None = None,
        stores: list[str] | None = None,
        all_stores: bool = False,
        allow_failure: bool = False,
        checksum: str | None = None,
        retry_failed: bool = False,
        idempotency_key: str | None = None,
        deadline: int | None = None,
        remote: RemoteImage | None = None,
    ) -> AsyncTaskHandle | None:
        """Start an import; the handle follows its task, ``None`` when there is no task to follow
        (see :meth:`Client.import_image`)."""
        body = _import_body(
            method, uri, stores, all_stores, allow_failure, checksum, retry_failed, deadline, remote
        )
        started = await self._run(start_import(self.config, image_id, body, idempotency_key))
        if started is None:
            return None
        # This class is only ever mixed into AsyncClient.
        return AsyncTaskHandle(cast("AsyncClient", self), image_id, started.task_id, started.location)

    async def copy_image(
        self,
        image_id: str,
        stores: list[str] | None = None,
        all_stores: bool = False,
        *,
        retry_failed: bool = False,
        allow_failure: bool = False,
        deadline: int | None = None,
    ) -> AsyncTaskHandle | None:
        return await self.import_image(
            image_id,
            "copy-image",
            stores=stores,
            all_stores=all_stores,
            retry_failed=retry_failed,
            allow_failure=allow_failure,
            deadline=deadline,
        )

    # Same signature as the sync client: the deadline spans many requests.
    async def wait_for_import(self, image_id: str, timeout: float = 300.0) -> Image:  # noqa: ASYNC109
        """Wait until no import or copy is under way on the image (see :meth:`Client.wait_for_import`)."""
        return await self._run(wait_for_import(self.config, image_id, timeout))
