"""the node a task must run on (tasks.stage_host)

Revision ID: 20261206_03_expand
Revises: 20261206_02_expand
Create Date: 2026-12-06 03:00:00.000000

Rule: an expand migration only adds (tables, nullable columns, indexes) so the previous release keeps
working against it; a contract migration removes what no running release reads any more. Never both.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261206_03_expand"
down_revision = "20261206_02_expand"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage_host", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("stage_host")
