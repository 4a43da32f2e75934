"""Large listings without hours of POSTs: copies of one API-made image, written into the SQLite file.

100,000 ``POST /v2/images`` take about half an hour on the Glance peer (about 50 a second), so the
side-by-side benchmark creates the first images through the API (that rate is one of its figures)
and then clones the oldest of them (named ``bulk-*``) in the server's own database: the same row, its tags and
its properties, with a new id, name (``bulk-<n>``), ``foo`` property (``bar-<n>``) and timestamps
(``<n>`` seconds before the template's, so the API-made images stay first in the default order).

Nothing here knows either server's schema beyond what both share with Glance's: the tables
``images`` (``id``, ``name``, ``created_at``, ``updated_at``), ``image_tags`` and
``image_properties`` (``image_id``; properties also ``name`` and ``value``). Every other column is
copied from the template as the server wrote it. The ids are derived from the index, so both
servers get the same ids. The count is then checked through the API, and the listing is measured
through the API.
"""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta
from pathlib import Path

#: Namespace of the seeded ids: uuid5(SEED_NAMESPACE, "bulk-<n>").
SEED_NAMESPACE = uuid.UUID("6f1d2c3b-4a59-4e8d-9c7b-0a1b2c3d4e5f")


def seeded_id(index: int) -> str:
    return str(uuid.uuid5(SEED_NAMESPACE, f"bulk-{index}"))


def shifted_timestamp(template: str, seconds_before: int) -> str:
    """``template`` moved back by whole seconds, written in the template's own format."""
    value = datetime.fromisoformat(template) - timedelta(seconds=seconds_before)
    separator = "T" if "T" in template else " "
    timespec = "microseconds" if "." in template else "seconds"
    return value.isoformat(sep=separator, timespec=timespec)


def _columns(con: sqlite3.Connection, table: str) -> list[str]:
    return [str(row[1]) for row in con.execute(f"PRAGMA table_info({table})")]


def clone_images(db_path: Path, first_index: int, count: int) -> None:
    """Insert ``count`` copies of the oldest ``bulk-*`` image, numbered from ``first_index``."""
    con = sqlite3.connect(db_path, timeout=120)
    try:
        con.row_factory = sqlite3.Row
        found = con.execute(
            "SELECT * FROM images WHERE name LIKE 'bulk-%' ORDER BY created_at, id LIMIT 1"
        ).fetchall()
        if not found:
            raise RuntimeError(f"{db_path}: no image named bulk-* to copy")
        image = dict(found[0])
        props = [
            dict(r) for r in con.execute("SELECT * FROM image_properties WHERE image_id = ?", (image["id"],))
        ]
        tags = [dict(r) for r in con.execute("SELECT * FROM image_tags WHERE image_id = ?", (image["id"],))]
        image_cols = _columns(con, "images")
        prop_cols = [c for c in _columns(con, "image_properties") if c != "id"]
        tag_cols = [c for c in _columns(con, "image_tags") if c != "id"]
        image_rows, prop_rows, tag_rows = [], [], []
        for index in range(first_index, first_index + count):
            new_id = seeded_id(index)
            row = dict(image, id=new_id, name=f"bulk-{index}")
            for stamp in ("created_at", "updated_at"):
                if row.get(stamp):
                    row[stamp] = shifted_timestamp(str(row[stamp]), index)
            image_rows.append(tuple(row[c] for c in image_cols))
            for prop in props:
                value = f"bar-{index}" if prop["name"] == "foo" else prop["value"]
                prop_rows.append(tuple(dict(prop, image_id=new_id, value=value)[c] for c in prop_cols))
            for tag in tags:
                tag_rows.append(tuple(dict(tag, image_id=new_id)[c] for c in tag_cols))

        def insert(table: str, cols: list[str], rows: list[tuple[object, ...]]) -> None:
            marks = ", ".join("?" for _ in cols)
            # table and column names come from this module and from PRAGMA table_info, never from input
            con.executemany(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", rows)  # noqa: S608

        with con:
            insert("images", image_cols, image_rows)
            insert("image_properties", prop_cols, prop_rows)
            insert("image_tags", tag_cols, tag_rows)
    finally:
        con.close()
