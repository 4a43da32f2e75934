"""create_app(): the ASGI application, its routes, error handlers and lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from glimpse import __version__
from glimpse.api import errors, versions
from glimpse.api.middleware import RequestContextMiddleware
from glimpse.api.responses import JSONResponse
from glimpse.api.v2 import discovery, image_data, images, members, schemas, tasks
from glimpse.runtime import Runtime


def create_app(runtime: Runtime) -> FastAPI:
    """Build the app around an already-built runtime (settings, database, stores, policy)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.close()

    app = FastAPI(
        title="Glimpse Image API",
        version=__version__,
        default_response_class=JSONResponse,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.runtime = runtime
    for router in (
        versions.router,
        images.router,
        image_data.router,
        members.router,
        discovery.router,
        schemas.router,
        tasks.router,
    ):
        app.include_router(router)
    errors.install(app)
    app.add_middleware(RequestContextMiddleware, max_request_id_length=runtime.settings.max_request_id_length)
    return app
