"""glimpse_client: a typed client for the OpenStack Image API v2 and Glimpse's task extensions."""

from ._client import AsyncClient, Client
from ._cloud import config_from_cloud, config_from_session
from ._config import ClientConfig
from ._exceptions import (
    APIError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    GlimpseClientError,
    NotFound,
    ServerError,
    TaskFailed,
    TaskTimeout,
    TooLarge,
    TransportError,
)
from ._imports import RemoteImage
from ._models import HistoryEntry, Image, Member, Task
from ._tasks import AsyncTaskHandle, TaskHandle

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncTaskHandle",
    "BadRequest",
    "Client",
    "ClientConfig",
    "ClientError",
    "Conflict",
    "Forbidden",
    "GlimpseClientError",
    "HistoryEntry",
    "Image",
    "Member",
    "NotFound",
    "RemoteImage",
    "ServerError",
    "Task",
    "TaskFailed",
    "TaskHandle",
    "TaskTimeout",
    "TooLarge",
    "TransportError",
    "config_from_cloud",
    "config_from_session",
]
