"""ASGI entry point for process managers: ``uvicorn --factory glimpse.api.asgi:app``."""

from __future__ import annotations

from fastapi import FastAPI

from glimpse.api.app import create_app
from glimpse.config import load_settings
from glimpse.runtime import Runtime


def app() -> FastAPI:
    """Build the app from the environment (``GLIMPSE_CONFIG_FILE`` and ``GLIMPSE_*`` variables)."""
    return create_app(Runtime.build(load_settings()))
