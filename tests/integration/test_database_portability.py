"""What each database must store exactly as given: the widest text, case, trailing spaces, microseconds.

MariaDB needs the most care (TEXT holds 65535 bytes, DATETIME keeps whole seconds, the default
collations ignore case and trailing spaces); revision ``20261206_01_expand`` fixes that there, and these
tests hold every backend to the same answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, select

from glimpse.db.models import ImagePropertyRow, ImageRow, ImageTagRow, TaskRow
from glimpse.db.session import make_engine, make_sessionmaker, unit_of_work

WHEN = datetime(2026, 12, 6, 3, 4, 5, 123456, tzinfo=UTC)


@pytest.fixture
def engine(migrated_database_url: str) -> Iterator[Engine]:
    eng = make_engine(migrated_database_url)
    yield eng
    eng.dispose()


def _image(image_id: str) -> ImageRow:
    return ImageRow(
        id=image_id,
        name="Debian",
        status="queued",
        visibility="private",
        protected=False,
        os_hidden=False,
        min_ram=0,
        min_disk=0,
        created_at=WHEN,
        updated_at=WHEN,
        deleted=False,
    )


def test_text_case_spaces_and_four_byte_characters_are_kept(engine: Engine) -> None:
    longest = "\U0001f600" * 65535  # the longest property value Glimpse accepts, 4 bytes a character
    image = _image("00000000-0000-0000-0000-00000000000a")
    image.properties = [
        ImagePropertyRow(name="os_distro", value=longest),
        ImagePropertyRow(name="OS_DISTRO", value="upper"),
    ]
    image.tags = [ImageTagRow(value=v) for v in ("gold", "Gold", "gold ")]
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        session.add(image)
        session.add(_image("00000000-0000-0000-0000-00000000000b"))
    with unit_of_work(sessions, readonly=True) as session:
        rows = session.execute(select(ImagePropertyRow.name, ImagePropertyRow.value)).all()
        values = {row.name: row.value for row in rows}
        tags = session.scalars(select(ImageTagRow.value).where(ImageTagRow.value == "gold")).all()
        by_name = session.scalars(select(ImageRow.id).where(ImageRow.name == "debian")).all()
        ordered = session.scalars(select(ImageTagRow.value).order_by(ImageTagRow.value)).all()
    assert values == {"os_distro": longest, "OS_DISTRO": "upper"}
    assert tags == ["gold"]
    assert by_name == []  # names compare case-sensitively, as on PostgreSQL
    assert ordered == ["Gold", "gold", "gold "]  # code point order


def test_task_times_keep_microseconds(engine: Engine) -> None:
    sessions = make_sessionmaker(engine)
    with unit_of_work(sessions) as session:
        session.add(
            TaskRow(
                id="00000000-0000-0000-0000-0000000000c1",
                type="api_image_import",
                status="processing",
                input="{}",
                message="",
                progress="{}",
                created_at=WHEN,
                updated_at=WHEN,
                deleted=False,
                lease_expires_at=WHEN,
                heartbeat_at=WHEN,
                attempt=1,
            )
        )
    with unit_of_work(sessions, readonly=True) as session:
        row = session.execute(
            select(TaskRow.lease_expires_at, TaskRow.heartbeat_at, TaskRow.created_at)
        ).one()
        earlier = session.scalars(
            select(TaskRow.id).where(TaskRow.lease_expires_at < WHEN.replace(microsecond=123457))
        ).all()
    assert tuple(row) == (WHEN, WHEN, WHEN)
    assert earlier == ["00000000-0000-0000-0000-0000000000c1"]
