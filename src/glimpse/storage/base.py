"""What every store driver shares: the rule for object keys and the checks a write starts with.

The driver interface itself, ``ImageStore``, is a port (:mod:`glimpse.ports`), so that the services
and the task runner can use stores without importing any driver.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

__all__ = [
    "KEY_PATTERN",
    "MAX_KEY_LENGTH",
    "check_write_arguments",
    "raise_first_error",
    "run_blocking",
    "validate_key",
]

T = TypeVar("T")

MAX_KEY_LENGTH: Final = 200
KEY_PATTERN: Final = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._-]{{0,{MAX_KEY_LENGTH - 1}}}")


def validate_key(key: str) -> None:
    """Raise ``ValueError`` unless ``key`` is usable as an object name in every store.

    A key is one path segment of 1 to 200 letters, digits, ``.``, ``_`` or ``-`` that starts with a
    letter or digit: it cannot escape a directory, cannot collide with a hidden temporary file and
    needs no quoting inside a location.
    """
    if not isinstance(key, str) or KEY_PATTERN.fullmatch(key) is None:
        raise ValueError(
            f"Store key {key!r} is not valid: use 1-{MAX_KEY_LENGTH} letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )


def check_write_arguments(key: str, max_size: int | None) -> None:
    """The argument checks every driver's ``write`` starts with (raises ``ValueError``)."""
    validate_key(key)
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be 0 or more, got {max_size}.")


async def run_blocking(
    executor: concurrent.futures.Executor,
    func: Callable[[], T],
    on_abandon: Callable[[T], None] | None = None,
) -> T:
    """Run the blocking ``func`` in ``executor`` and return its result.

    A thread cannot be interrupted, so when the awaiting task is cancelled this waits for ``func``
    to finish before re-raising the cancellation: clean-up that follows never races a request still
    in flight. A result nobody wants any more is handed to ``on_abandon``.
    """
    future = asyncio.get_running_loop().run_in_executor(executor, func)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait((future,))
        if not future.cancelled() and future.exception() is None and on_abandon is not None:
            on_abandon(future.result())
        raise


def raise_first_error(futures: Iterable[asyncio.Future[Any]]) -> None:
    """Look at every finished future's outcome (so asyncio never reports one as not retrieved),
    then raise the first error among them, if any."""
    first: BaseException | None = None
    for future in futures:
        if future.cancelled():
            continue
        error = future.exception()
        if error is not None and first is None:
            first = error
    if first is not None:
        raise first
