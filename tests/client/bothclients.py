"""The same test body for ``Client`` and ``AsyncClient`` (the ``connect`` fixture of conftest.py).

The async client is driven through :class:`Blocking`, which runs each of its coroutines on one
event loop and answers as the sync client does: results instead of coroutines, iterators (read to
their end first) instead of async iterators, and blocking task handles.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import httpx

from glimpse_client import AsyncClient, AsyncTaskHandle, Client, ClientConfig

#: Makes a client of the kind under test from a config (and an optional httpx mock transport); the
#: fixture closes it after the test.
Connect = Callable[..., Client]


async def _collected(items: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in items]


class Blocking:
    """An ``AsyncClient`` or ``AsyncTaskHandle`` answering as its synchronous counterpart."""

    def __init__(self, target: object, runner: asyncio.Runner) -> None:
        self._target = target
        self._runner = runner

    def close(self) -> None:
        self._runner.run(cast(AsyncClient, self._target).aclose())

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if isinstance(result, AsyncIterator):
                return iter(self._runner.run(_collected(result)))
            if inspect.iscoroutine(result):
                result = self._runner.run(result)
            if isinstance(result, AsyncTaskHandle):
                return Blocking(result, self._runner)
            return result

        return call


def connector(kind: str) -> tuple[Connect, Callable[[], None]]:
    """A ``Connect`` making clients of ``kind`` (``sync`` or ``async``), and what closes them all."""
    runner = asyncio.Runner() if kind == "async" else None
    opened: list[Client] = []

    def make(config: ClientConfig, transport: httpx.MockTransport | None = None) -> Client:
        if runner is None:
            client = Client(config, transport=transport)
        else:
            client = cast(Client, Blocking(AsyncClient(config, transport=transport), runner))
        opened.append(client)
        return client

    def close() -> None:
        for client in opened:
            client.close()
        if runner is not None:
            runner.close()

    return make, close
