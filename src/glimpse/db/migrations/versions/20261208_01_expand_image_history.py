"""image_history: what happened to each image, kept after its tasks expire

Revision ID: 20261208_01_expand
Revises: 20261207_02_expand
Create Date: 2026-12-08 01:00:00.000000

Rule: an expand migration only adds (tables, nullable columns, indexes) so the previous release keeps
working against it; a contract migration removes what no running release reads any more. Never both.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "20261208_01_expand"
down_revision = "20261207_02_expand"
branch_labels = None
depends_on = None

#: Binary utf8mb4 collations, preferred first (the ones revision 20261206_01_expand chooses from).
COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")


def _table_options() -> dict[str, Any]:
    """On MariaDB/MySQL, utf8mb4 with a binary collation, so ids compare case-sensitively."""
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return {}
    query = sa.text(
        "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN :names"
    ).bindparams(sa.bindparam("names", expanding=True))
    available = set(bind.execute(query, {"names": list(COLLATIONS)}).scalars())
    for name in COLLATIONS:
        if name in available:
            return {"mysql_charset": "utf8mb4", "mysql_collate": name}
    raise RuntimeError(f"the server has none of the collations {', '.join(COLLATIONS)}")


def _datetime() -> sa.types.TypeEngine[Any]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _long_text() -> sa.types.TypeEngine[Any]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def upgrade() -> None:
    op.create_table(
        "image_history",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.String(length=64), nullable=True),
        sa.Column("project_id", sa.String(length=255), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        sa.Column("stores", _long_text(), nullable=True),
        sa.Column("bytes_moved", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=True),
        sa.Column("message", _long_text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_history")),
        **_table_options(),
    )
    with op.batch_alter_table("image_history", schema=None) as batch_op:
        batch_op.create_index("ix_image_history_image_id", ["image_id", "id"], unique=False)
        batch_op.create_index("ix_image_history_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_history", schema=None) as batch_op:
        batch_op.drop_index("ix_image_history_created_at")
        batch_op.drop_index("ix_image_history_image_id")
    op.drop_table("image_history")
