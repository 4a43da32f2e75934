"""``Client`` and ``AsyncClient``: each resource's methods, every one running a flow written once
(see ``_core``) with the synchronous or the asynchronous driver."""

from __future__ import annotations

from ._data import AsyncData, SyncData
from ._history import AsyncHistory, SyncHistory
from ._images import AsyncImages, SyncImages
from ._imports import AsyncImports, SyncImports
from ._members import AsyncMembers, SyncMembers
from ._tasks import AsyncTasks, SyncTasks


class Client(SyncImages, SyncMembers, SyncData, SyncImports, SyncTasks, SyncHistory):
    """Synchronous client. Use as a context manager or call :meth:`close`."""


class AsyncClient(AsyncImages, AsyncMembers, AsyncData, AsyncImports, AsyncTasks, AsyncHistory):
    """Asynchronous client. Use as an async context manager or await :meth:`aclose`."""
