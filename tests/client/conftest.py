"""Fixtures of the client tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bothclients import Connect, connector


@pytest.fixture(params=["sync", "async"])
def connect(request: pytest.FixtureRequest) -> Iterator[Connect]:
    """Makes clients of one kind, ``Client`` or ``AsyncClient``, and closes them after the test."""
    make, close = connector(request.param)
    yield make
    close()
