"""Connection strings: the drivers Glimpse ships are picked, and MariaDB/MySQL always talk utf8mb4."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from glimpse.db.session import is_mysql, normalize_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        # Glance's usual strings, unchanged but for the 4-byte character set.
        (
            "mysql+pymysql://glance:s3cret@db.example.org/glance?charset=utf8",
            "mysql+pymysql://glance:s3cret@db.example.org/glance?charset=utf8mb4",
        ),
        (
            "mysql+pymysql://glance:s3cret@db.example.org:3306/glance",
            "mysql+pymysql://glance:s3cret@db.example.org:3306/glance?charset=utf8mb4",
        ),
        # No driver named: the one installed.
        ("mysql://u:p@h/db", "mysql+pymysql://u:p@h/db?charset=utf8mb4"),
        ("mariadb://u:p@h/db?charset=utf8mb4", "mysql+pymysql://u:p@h/db?charset=utf8mb4"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:////var/lib/glimpse/glimpse.sqlite", "sqlite:////var/lib/glimpse/glimpse.sqlite"),
    ],
)
def test_normalize_url(given: str, expected: str) -> None:
    assert normalize_url(given) == expected


def test_normalize_url_keeps_other_options_and_odd_passwords() -> None:
    url = sa.make_url(normalize_url("mysql+pymysql://u:p%40ss%2Fw@h/db?charset=latin1&read_timeout=5"))
    assert url.password == "p@ss/w"
    assert dict(url.query) == {"charset": "utf8mb4", "read_timeout": "5"}


@pytest.mark.parametrize(
    ("url", "mysql"),
    [
        ("mysql+pymysql://h/db", True),
        ("mysql://h/db", True),
        ("mariadb+pymysql://h/db", True),
        ("postgresql+psycopg://h/db", False),
        ("sqlite://", False),
    ],
)
def test_is_mysql(url: str, mysql: bool) -> None:
    assert is_mysql(url) is mysql
