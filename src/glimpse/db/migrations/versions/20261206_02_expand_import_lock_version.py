"""images.import_lock_version: the lock holder's re-check writes the row

Revision ID: 20261206_02_expand
Revises: 20261206_01_expand
Create Date: 2026-12-06 03:10:00.000000

Rule: an expand migration only adds (tables, nullable columns, indexes) so the previous release keeps
working against it; a contract migration removes what no running release reads any more. Never both.

``hold_lock`` (a running task asserting it still holds the image's import lock) used to write the
holder's own id back, which changes nothing. On one server that still row-locks the image, but a
Galera cluster certifies only rows that changed, so a lock bust on another node would not conflict
with it. The task now bumps this counter instead: a real write of the image row. Nullable, with no
default: the previous release neither reads nor writes it.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261206_02_expand"
down_revision = "20261206_01_expand"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("import_lock_version", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("import_lock_version")
