"""initial schema: images, properties, tags, locations, members

Revision ID: 20261125_01_expand
Revises: (none)
Create Date: 2026-11-25 15:21:54.396468

Rule: an expand migration only adds (tables, nullable columns, indexes) so the previous release keeps
working against it; a contract migration removes what no running release reads any more. Never both.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261125_01_expand"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("visibility", sa.String(length=20), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("os_hidden", sa.Boolean(), nullable=False),
        sa.Column("checksum", sa.String(length=32), nullable=True),
        sa.Column("os_hash_algo", sa.String(length=64), nullable=True),
        sa.Column("os_hash_value", sa.String(length=128), nullable=True),
        sa.Column("owner", sa.String(length=255), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("virtual_size", sa.BigInteger(), nullable=True),
        sa.Column("container_format", sa.String(length=32), nullable=True),
        sa.Column("disk_format", sa.String(length=32), nullable=True),
        sa.Column("min_ram", sa.Integer(), nullable=False),
        sa.Column("min_disk", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_listing", ["deleted", "created_at", "id"], unique=False)
        batch_op.create_index("ix_images_name", ["name"], unique=False)
        batch_op.create_index("ix_images_owner", ["owner"], unique=False)
        batch_op.create_index("ix_images_status", ["status"], unique=False)
        batch_op.create_index("ix_images_visibility", ["visibility"], unique=False)

    op.create_table(
        "image_locations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("store_id", sa.String(length=255), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("meta_data", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_locations_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_locations")),
        sa.UniqueConstraint("image_id", "store_id", name=op.f("uq_image_locations_image_id_store_id")),
    )
    with op.batch_alter_table("image_locations", schema=None) as batch_op:
        batch_op.create_index("ix_image_locations_image_id", ["image_id"], unique=False)

    op.create_table(
        "image_members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("member", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_members_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_members")),
        sa.UniqueConstraint("image_id", "member", name=op.f("uq_image_members_image_id_member")),
    )
    with op.batch_alter_table("image_members", schema=None) as batch_op:
        batch_op.create_index("ix_image_members_member", ["member"], unique=False)

    op.create_table(
        "image_properties",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_properties_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_properties")),
        sa.UniqueConstraint("image_id", "name", name=op.f("uq_image_properties_image_id_name")),
    )
    with op.batch_alter_table("image_properties", schema=None) as batch_op:
        batch_op.create_index("ix_image_properties_name", ["name"], unique=False)

    op.create_table(
        "image_tags",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=36), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(
            ["image_id"], ["images.id"], name=op.f("fk_image_tags_image_id_images"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_tags")),
        sa.UniqueConstraint("image_id", "value", name=op.f("uq_image_tags_image_id_value")),
    )
    with op.batch_alter_table("image_tags", schema=None) as batch_op:
        batch_op.create_index("ix_image_tags_value", ["value"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_image_tags_value")

    op.drop_table("image_tags")
    with op.batch_alter_table("image_properties", schema=None) as batch_op:
        batch_op.drop_index("ix_image_properties_name")

    op.drop_table("image_properties")
    with op.batch_alter_table("image_members", schema=None) as batch_op:
        batch_op.drop_index("ix_image_members_member")

    op.drop_table("image_members")
    with op.batch_alter_table("image_locations", schema=None) as batch_op:
        batch_op.drop_index("ix_image_locations_image_id")

    op.drop_table("image_locations")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_visibility")
        batch_op.drop_index("ix_images_status")
        batch_op.drop_index("ix_images_owner")
        batch_op.drop_index("ix_images_name")
        batch_op.drop_index("ix_images_listing")

    op.drop_table("images")
