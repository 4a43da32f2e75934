"""metadata definitions: namespaces, their entries, resource types and associations

Revision ID: 20261207_01_expand
Revises: 20261206_03_expand
Create Date: 2026-12-07 01:00:00.000000

Rule: an expand migration only adds (tables, nullable columns, indexes) so the previous release keeps
working against it; a contract migration removes what no running release reads any more. Never both.

Four new tables. ``metadef_entries`` holds a namespace's objects, properties and tags in one table
(``kind``), each with its JSON definition. The resource types that clients look for are created here
(protected), so associations and listings work before any definitions are loaded. On MariaDB/MySQL the
tables use the binary utf8mb4 collation, MEDIUMTEXT and DATETIME(6), as revision 20261206_01 made the
others.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "20261207_01_expand"
down_revision = "20261206_03_expand"
branch_labels = None
depends_on = None

#: Resource types created with the tables: the kinds of resources OpenStack services apply metadata to.
RESOURCE_TYPES = (
    "OS::Glance::Image",
    "OS::Cinder::Volume",
    "OS::Nova::Flavor",
    "OS::Nova::Aggregate",
    "OS::Nova::Server",
    "OS::Trove::Instance",
)
COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")


def _time() -> sa.types.TypeEngine[datetime]:
    return sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _text() -> sa.types.TypeEngine[str]:
    return sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")


def _stamps() -> list[sa.Column[datetime]]:
    return [
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
    ]


def _table_options() -> dict[str, Any]:
    if op.get_bind().dialect.name not in ("mysql", "mariadb"):
        return {}
    query = sa.text(
        "SELECT COLLATION_NAME FROM information_schema.COLLATIONS WHERE COLLATION_NAME IN :names"
    ).bindparams(sa.bindparam("names", expanding=True))
    available = set(op.get_bind().execute(query, {"names": list(COLLATIONS)}).scalars())
    collation = next(name for name in COLLATIONS if name in available)
    return {"mysql_charset": "utf8mb4", "mysql_collate": collation}


def upgrade() -> None:
    options = _table_options()
    op.create_table(
        "metadef_namespaces",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace", sa.String(length=80), nullable=False),
        sa.Column("display_name", sa.String(length=80), nullable=True),
        sa.Column("description", _text(), nullable=True),
        sa.Column("visibility", sa.String(length=32), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        sa.Column("owner", sa.String(length=255), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadef_namespaces")),
        sa.UniqueConstraint("namespace", name=op.f("uq_metadef_namespaces_namespace")),
        **options,
    )
    op.create_index("ix_metadef_namespaces_owner", "metadef_namespaces", ["owner"])
    op.create_index("ix_metadef_namespaces_listing", "metadef_namespaces", ["created_at", "id"])
    op.create_table(
        "metadef_entries",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("body", _text(), nullable=False),
        *_stamps(),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["metadef_namespaces.id"],
            name=op.f("fk_metadef_entries_namespace_id_metadef_namespaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadef_entries")),
        sa.UniqueConstraint(
            "namespace_id", "kind", "name", name=op.f("uq_metadef_entries_namespace_id_kind_name")
        ),
        **options,
    )
    resource_types = op.create_table(
        "metadef_resource_types",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("protected", sa.Boolean(), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadef_resource_types")),
        sa.UniqueConstraint("name", name=op.f("uq_metadef_resource_types_name")),
        **options,
    )
    op.create_table(
        "metadef_namespace_resource_types",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("resource_type_id", sa.Integer(), nullable=False),
        sa.Column("prefix", sa.String(length=80), nullable=True),
        sa.Column("properties_target", sa.String(length=80), nullable=True),
        *_stamps(),
        sa.ForeignKeyConstraint(
            ["namespace_id"],
            ["metadef_namespaces.id"],
            name=op.f("fk_metadef_namespace_resource_types_namespace_id_metadef_namespaces"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["resource_type_id"],
            ["metadef_resource_types.id"],
            name=op.f("fk_metadef_namespace_resource_types_resource_type_id_metadef_resource_types"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metadef_namespace_resource_types")),
        sa.UniqueConstraint(
            "namespace_id",
            "resource_type_id",
            name=op.f("uq_metadef_namespace_resource_types_namespace_id_resource_type_id"),
        ),
        **options,
    )
    op.create_index(
        "ix_metadef_namespace_resource_types_resource_type_id",
        "metadef_namespace_resource_types",
        ["resource_type_id"],
    )
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    op.bulk_insert(
        resource_types,
        [{"name": name, "protected": True, "created_at": now, "updated_at": now} for name in RESOURCE_TYPES],
    )


def downgrade() -> None:
    op.drop_index("ix_metadef_namespace_resource_types_resource_type_id", "metadef_namespace_resource_types")
    op.drop_table("metadef_namespace_resource_types")
    op.drop_table("metadef_resource_types")
    op.drop_table("metadef_entries")
    op.drop_index("ix_metadef_namespaces_listing", "metadef_namespaces")
    op.drop_index("ix_metadef_namespaces_owner", "metadef_namespaces")
    op.drop_table("metadef_namespaces")
