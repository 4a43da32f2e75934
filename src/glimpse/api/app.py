"""create_app(): the ASGI application, its routes, error handlers and lifespan."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI
from starlette.routing import BaseRoute

from glimpse import __version__
from glimpse.api import auth, errors, healthcheck, metrics, versions
from glimpse.api.middleware import RequestContextMiddleware
from glimpse.api.responses import JSONResponse
from glimpse.api.static_files import router as static_files_router
from glimpse.api.v2 import (
    discovery,
    history,
    image_data,
    images,
    imports,
    members,
    metadefs,
    schemas,
    tasks,
)
from glimpse.jobs.runner import TaskRunner
from glimpse.runtime import Runtime

#: The busiest requests: their routes are tried first, before the open routes (versions, health
#: check, the web view's files) and the rest of ``/v2``. FastAPI tries a request's path against
#: the routes one after the other (~4 µs each, more per router); the paths never overlap, so the
#: order only costs time.
_BUSIEST = (
    ("GET", "/v2/images"),
    ("GET", "/v2/images/{image_id}/tasks"),
    ("GET", "/v2/images/{image_id}"),
    ("GET", "/v2/images/{image_id}/file"),
    ("GET", "/v2/tasks/{task_id}"),
)


def _busy_rank(route: BaseRoute) -> int | None:
    """The route's place in ``_BUSIEST``; None when it is not one of them."""
    path = getattr(route, "path", "")
    places = [
        _BUSIEST.index((m, path)) for m in getattr(route, "methods", None) or () if (m, path) in _BUSIEST
    ]
    return min(places) if places else None


def _v2_routes() -> tuple[APIRouter, APIRouter]:
    """Every ``/v2`` route, in two routers: the busiest, and the rest in each module's order (the
    metadata definitions' many routes last)."""
    routes = [
        route
        for router in (
            images.router,
            tasks.router,
            image_data.router,
            imports.router,
            members.router,
            discovery.router,
            schemas.router,
            history.router,
            metrics.router,
            metadefs.router,
        )
        for route in router.routes
    ]
    ranked = [(_busy_rank(route), route) for route in routes]
    busy = [(rank, route) for rank, route in ranked if rank is not None]
    busiest, rest = APIRouter(), APIRouter()
    busiest.routes.extend(route for _, route in sorted(busy, key=lambda pair: pair[0]))
    rest.routes.extend(route for rank, route in ranked if rank is None)
    return busiest, rest


def create_app(runtime: Runtime) -> FastAPI:
    """Build the app around an already-built runtime (settings, database, stores, policy)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner: TaskRunner | None = None
        runner_job: asyncio.Task[None] | None = None
        if runtime.settings.embedded_runner:
            # Each API process runs a task runner too; an import accepted here wakes it at once.
            runner = TaskRunner(runtime)
            runtime.wake_runner = runner.wake
            runner_job = asyncio.create_task(runner.run(), name="glimpse-task-runner")
        try:
            yield
        finally:
            await runtime.close_task_watcher()
            if runner is not None and runner_job is not None:
                runner.request_stop()
                await asyncio.gather(runner_job, return_exceptions=True)
            runtime.close()

    app = FastAPI(
        title="Glimpse Image API",
        version=__version__,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        # A path with a trailing slash is another path: GET /v2/images/ is a 404 (an empty image
        # id), as in Glance, not a redirect to the image list.
        redirect_slashes=False,
        # Glimpse's own metrics (/metrics) and notifications are its telemetry. FastAPI's OpenTelemetry
        # hooks, on by default, would look up the global OpenTelemetry providers on every request
        # (~10 µs of CPU) to find none configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    app.state.runtime = runtime
    app.state.authenticator = auth.build_authenticator(runtime.settings)
    # The version documents and the health check are open, as in Glance; everything under /v2
    # needs an identity.
    busiest, rest = _v2_routes()
    app.include_router(busiest, dependencies=[Depends(auth.authenticate)])
    app.include_router(versions.router)
    app.include_router(healthcheck.router)
    app.include_router(static_files_router)  # the web view's script and style sheet: no data in them
    app.include_router(rest, dependencies=[Depends(auth.authenticate)])
    errors.install(app)
    app.add_middleware(RequestContextMiddleware, max_request_id_length=runtime.settings.max_request_id_length)
    return app
