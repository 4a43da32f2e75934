"""How the command line words what servers send."""

from __future__ import annotations

import pytest

from glimpse_client.cli._text import utc_time


@pytest.mark.parametrize(
    ("sent", "shown"),
    [
        ("2026-11-25T14:12:36.217770", "2026-11-25T14:12:36Z"),  # a Glance task: no zone means UTC
        ("2026-11-25T14:12:36.217770Z", "2026-11-25T14:12:36Z"),  # a Glimpse task
        ("2026-11-25T14:13:20Z", "2026-11-25T14:13:20Z"),  # an image, as it is shown
        ("2026-11-25T15:12:36+01:00", "2026-11-25T14:12:36Z"),
        ("yesterday", "yesterday"),  # unreadable: as sent
        (None, ""),
    ],
)
def test_task_times_are_shown_as_image_times(sent: str | None, shown: str) -> None:
    assert utc_time(sent) == shown
