"""Declarative base with a naming convention, so migrations name constraints the same on every database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, MetaData, Text, TypeDecorator
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


#: Text of any length Glimpse accepts (a property value may have 65535 characters, each up to 4 bytes):
#: TEXT on SQLite and PostgreSQL, MEDIUMTEXT on MariaDB/MySQL, whose TEXT holds only 65535 bytes.
LongText = Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC (portable across SQLite, PostgreSQL and MariaDB); returns aware UTC datetimes.

    On MariaDB/MySQL the column is ``DATETIME(6)``: a plain ``DATETIME`` drops the microseconds that
    task leases, heartbeats and change feeds compare (PostgreSQL and SQLite keep them anyway).
    """

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)
        # SQLite returns the text SQLAlchemy stored ("2026-12-06 21:00:00.123456"): parsed and made
        # aware in one call, where the decorator's chain takes three (a page of images reads forty).
        parse = datetime.fromisoformat

        def process(value: str | None) -> datetime | None:
            return None if value is None else parse(value).replace(tzinfo=UTC)

        return process


def utcnow() -> datetime:
    """Now, in whole seconds: image and member timestamps are shown (and filtered) at that precision."""
    return datetime.now(UTC).replace(microsecond=0)
