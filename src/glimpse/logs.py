"""Process-wide logging set-up: one format for the service's own lines and the access log."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    """Log to stderr at ``level``; idempotent, so the parent and each worker process can call it."""
    root = logging.getLogger()
    if not any(getattr(h, "_glimpse", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._glimpse = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level)
