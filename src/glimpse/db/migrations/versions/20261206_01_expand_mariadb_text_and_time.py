"""mariadb: binary utf8mb4 text, MEDIUMTEXT and microsecond datetimes

Revision ID: 20261206_01_expand
Revises: 20261125_02_expand
Create Date: 2026-12-06 03:05:00.000000

Rule: an expand migration only adds (tables, nullable columns, indexes) so the previous release keeps
working against it; a contract migration removes what no running release reads any more. Never both.

Only MariaDB and MySQL change; on SQLite and PostgreSQL this revision does nothing.

* Every table is converted to utf8mb4 with a binary, no-pad collation, whatever the server's default
  character set was when the earlier revisions created them: names, tags, properties and member ids
  compare and sort by code point, case- and accent-sensitively, with trailing spaces significant,
  as they do on PostgreSQL and SQLite (a case-insensitive collation would make the tags ``Gold`` and
  ``gold`` collide on the unique index).
* Every datetime column becomes ``DATETIME(6)``: a plain ``DATETIME`` keeps whole seconds, and task
  leases, heartbeats and the change feed compare microseconds.
* Text columns become ``MEDIUMTEXT``: ``TEXT`` holds 65535 bytes, and a property value may have
  65535 characters of up to 4 bytes each.

It only widens what is stored, so the previous release keeps working against it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261206_01_expand"
down_revision = "20261125_02_expand"
branch_labels = None
depends_on = None

#: table -> [(column, kind, nullable)]: the datetime and text columns of the first two revisions.
COLUMNS: dict[str, list[tuple[str, str, bool]]] = {
    "images": [
        ("created_at", "DATETIME", False),
        ("updated_at", "DATETIME", False),
        ("deleted_at", "DATETIME", True),
    ],
    "image_properties": [("value", "TEXT", False)],
    "image_tags": [],
    "image_locations": [
        ("url", "TEXT", False),
        ("meta_data", "TEXT", False),
        ("created_at", "DATETIME", False),
    ],
    "image_members": [
        ("created_at", "DATETIME", False),
        ("updated_at", "DATETIME", False),
    ],
    "tasks": [
        ("input", "TEXT", False),
        ("result", "TEXT", True),
        ("message", "TEXT", False),
        ("progress", "TEXT", False),
        ("expires_at", "DATETIME", True),
        ("created_at", "DATETIME", False),
        ("updated_at", "DATETIME", False),
        ("deleted_at", "DATETIME", True),
        ("lease_expires_at", "DATETIME", True),
        ("heartbeat_at", "DATETIME", True),
    ],
}

#: The tables whose image_id links images.id (ON DELETE CASCADE).
CHILDREN = ("image_properties", "image_tags", "image_locations", "image_members")

#: Binary utf8mb4 collations, preferred first: MariaDB's no-pad one, MySQL 8's, then the padded one.
COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")


def _mysql() -> bool:
    return op.get_bind().dialect.name in ("mysql", "mariadb")


def _collation() -> str:
    query = sa.text(
        "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN :names"
    ).bindparams(sa.bindparam("names", expanding=True))
    available = set(op.get_bind().execute(query, {"names": list(COLLATIONS)}).scalars())
    for name in COLLATIONS:
        if name in available:
            return name
    raise RuntimeError(f"the server has none of the collations {', '.join(COLLATIONS)}")


def _modify(table: str, datetime: str, text: str) -> None:
    specs = [
        f"MODIFY `{column}` {datetime if kind == 'DATETIME' else text} {'NULL' if nullable else 'NOT NULL'}"
        for column, kind, nullable in COLUMNS[table]
    ]
    if specs:
        op.execute(f"ALTER TABLE `{table}` {', '.join(specs)}")


def upgrade() -> None:
    if not _mysql():
        return
    collation = _collation()
    # MariaDB refuses to change the collation of a column a foreign key links (even with the checks
    # off), so the links to images.id are dropped, both sides converted, and the links made again.
    for table in CHILDREN:
        op.drop_constraint(f"fk_{table}_image_id_images", table, type_="foreignkey")
    for table in COLUMNS:
        op.execute(f"ALTER TABLE `{table}` CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}")
        _modify(table, "DATETIME(6)", "MEDIUMTEXT")
    for table in CHILDREN:
        op.create_foreign_key(
            f"fk_{table}_image_id_images", table, "images", ["image_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    if not _mysql():
        return
    for table in COLUMNS:
        _modify(table, "DATETIME", "TEXT")
