"""quota reservations (quota_projects, quota_reservations)

Revision ID: 20261208_02_expand
Revises: 20261208_01_expand
Create Date: 2026-12-08 04:00:00.000000

Rule: an expand migration only adds (tables, nullable columns, indexes) so the previous release keeps
working against it; a contract migration removes what no running release reads any more. Never both.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "20261208_02_expand"
down_revision = "20261208_01_expand"
branch_labels = None
depends_on = None

#: Binary utf8mb4 collations, preferred first (the ones revision 20261206_01_expand chooses from).
COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")


def _table_options() -> dict[str, Any]:
    """On MariaDB/MySQL, utf8mb4 with a binary collation, so project ids compare case-sensitively."""
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


def upgrade() -> None:
    options = _table_options()
    op.create_table(
        "quota_projects",
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("project", name=op.f("pk_quota_projects")),
        **options,
    )
    op.create_table(
        "quota_reservations",
        sa.Column("resource", sa.String(length=32), nullable=False),
        sa.Column("holder", sa.String(length=36), nullable=False),
        sa.Column("project", sa.String(length=255), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("expires_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("resource", "holder", name=op.f("pk_quota_reservations")),
        **options,
    )
    with op.batch_alter_table("quota_reservations", schema=None) as batch_op:
        batch_op.create_index("ix_quota_reservations_project_resource", ["project", "resource"], unique=False)
        batch_op.create_index("ix_quota_reservations_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("quota_reservations", schema=None) as batch_op:
        batch_op.drop_index("ix_quota_reservations_expires_at")
        batch_op.drop_index("ix_quota_reservations_project_resource")
    op.drop_table("quota_reservations")
    op.drop_table("quota_projects")
