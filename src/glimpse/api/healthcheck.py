"""``GET`` and ``HEAD /healthcheck``: whether this node can serve, for load balancers and monitoring.

The semantics are oslo.middleware's healthcheck, which Glance puts in front of its pipeline: no
authentication, ``200 OK`` (``text/plain``) when healthy, ``204`` to a ``HEAD``, ``503`` with the
reasons otherwise, and ``{"detailed": ..., "reasons": [...]}`` to ``Accept: application/json``.

A node is healthy when the database answers ``SELECT 1`` and the default store answers its
``probe()`` (a directory's permissions, an S3 ``HeadBucket``, a Swift container ``HEAD``), each within
``[healthcheck] timeout`` seconds, and the file ``[healthcheck] disable_by_file_path`` (if set) does not
exist. A probe that does not answer in time makes the answer a 503 but keeps running: the next
health request waits for that same probe instead of starting another, so a hung database or store
costs one thread per process, not one per health request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from starlette.responses import Response

from glimpse.api import deps
from glimpse.api.responses import JSONResponse
from glimpse.errors import GlimpseError
from glimpse.runtime import Runtime

log = logging.getLogger(__name__)

router = APIRouter(tags=["healthcheck"])

DISABLED_BY_FILE = "DISABLED BY FILE"
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one probe: its name, whether it passed, why not, and how long it was awaited."""

    name: str
    ok: bool
    reason: str
    seconds: float

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "reason": self.reason, "seconds": round(self.seconds, 3)}


class HealthProbes:
    """At most one probe of each kind in flight per event loop; requests share the one running."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._in_flight: dict[str, asyncio.Task[None]] = {}

    async def _ping_database(self) -> None:
        await _in_daemon_thread(self._runtime.ping_database)

    async def check(self) -> list[Check]:
        runtime = self._runtime
        store = runtime.stores.default
        return list(
            await asyncio.gather(
                self._probe(
                    "database",
                    self._ping_database,
                    "check [database] connection and that the database server is up",
                ),
                self._probe(
                    f"store '{store.id}'",
                    store.probe,
                    f"check the [{store.id}] section and that the store's service is up",
                ),
            )
        )

    async def _probe(self, name: str, start: Callable[[], Awaitable[None]], advice: str) -> Check:
        timeout = self._runtime.settings.healthcheck_timeout
        began = time.monotonic()
        task = self._in_flight.get(name)
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(start())
            self._in_flight[name] = task
            task.add_done_callback(self._forget(name))
        done, _ = await asyncio.wait({task}, timeout=timeout)
        elapsed = time.monotonic() - began
        if not done:
            reason = f"{name} did not answer within {timeout:g} s"
            log.warning("health check: %s", reason)
            return Check(name, False, f"{reason}; {advice}.", elapsed)
        error = asyncio.CancelledError() if task.cancelled() else task.exception()
        if error is None:
            return Check(name, True, "OK", elapsed)
        log.warning("health check: %s failed: %s", name, error)
        if isinstance(error, GlimpseError) and name != "database":
            reason = error.message  # store messages say what to check and carry no secrets
        else:
            reason = f"{name} failed ({type(error).__name__}); {advice}."
        return Check(name, False, reason, elapsed)

    def _forget(self, name: str) -> Callable[[asyncio.Task[None]], None]:
        def forget(task: asyncio.Task[None]) -> None:
            if self._in_flight.get(name) is task:
                del self._in_flight[name]
            if not task.cancelled():
                task.exception()  # retrieved, so asyncio does not report it as lost

        return forget


def _in_daemon_thread(func: Callable[[], None]) -> asyncio.Future[None]:
    """Run ``func`` in a daemon thread of its own. A query hanging there delays neither the event
    loop's shutdown (which waits for the default executor's threads) nor the process's exit, and
    takes no thread the requests need."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            func()
        except Exception as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed while the query hung
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="healthcheck-database", daemon=True).start()
    return future


def _probes(request: Request) -> HealthProbes:
    probes: HealthProbes | None = getattr(request.app.state, "health_probes", None)
    if probes is None:
        probes = HealthProbes(deps.runtime(request))
        request.app.state.health_probes = probes
    return probes


def _disabled(path: Path | None) -> bool:
    return path is not None and path.exists()


@router.api_route("/healthcheck", methods=["GET", "HEAD"], include_in_schema=False)
async def healthcheck(request: Request) -> Response:
    settings = deps.runtime(request).settings
    if _disabled(settings.healthcheck_disable_file):
        checks = [Check("disable_by_file_path", False, DISABLED_BY_FILE, 0.0)]
    else:
        checks = await _probes(request).check()
    healthy = all(check.ok for check in checks)
    reasons = ["OK"] if healthy else [check.reason for check in checks if not check.ok]
    if request.method == "HEAD":
        return Response(status_code=204 if healthy else 503, media_type="text/plain", headers=_NO_STORE)
    status = 200 if healthy else 503
    if "application/json" in request.headers.get("accept", ""):
        body: dict[str, object] = {"detailed": settings.healthcheck_detailed, "reasons": reasons}
        if settings.healthcheck_detailed:
            body["checks"] = [check.to_dict() for check in checks]
        return JSONResponse(body, status_code=status, headers=_NO_STORE)
    return Response("\n".join(reasons), status_code=status, media_type="text/plain", headers=_NO_STORE)
