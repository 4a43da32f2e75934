"""the Idempotency-Key records (idempotency_keys)

Revision ID: 20261207_02_expand
Revises: 20261206_03_expand
Create Date: 2026-12-07 02:00:00.000000

Rule: an expand migration only adds (tables, nullable columns, indexes) so the previous release keeps
working against it; a contract migration removes what no running release reads any more. Never both.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "20261207_02_expand"
down_revision = "20261207_01_expand"
branch_labels = None
depends_on = None

#: Binary utf8mb4 collations, preferred first (the ones revision 20261206_01_expand chooses from).
COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")


def _table_options() -> dict[str, Any]:
    """On MariaDB/MySQL, utf8mb4 with a binary collation, so keys compare case-sensitively."""
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
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("idem_key", sa.String(length=255), nullable=False),
        sa.Column("claim_id", sa.String(length=36), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("response_headers", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")),
        sa.Column("response_body", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")),
        sa.Column("created_at", _datetime(), nullable=False),
        sa.Column("claimed_until", _datetime(), nullable=False),
        sa.Column("expires_at", _datetime(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "idem_key", name=op.f("pk_idempotency_keys")),
        **_table_options(),
    )
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_keys_expires_at", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_keys_expires_at")
    op.drop_table("idempotency_keys")
