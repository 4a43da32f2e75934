"""``glimpse image history``: what happened to an image, newest first (a table, or ``--json``)."""

from __future__ import annotations

import argparse
from typing import Any

from cliff.columns import FormattableColumn

from glimpse_client import HistoryEntry

from ._text import human_size, utc_time
from .base import GlimpseLister, ListColumn, looks_like_id
from .errors import UsageError

COLUMNS = ("ID", "When", "Action", "Outcome", "Stores", "Moved", "User", "Project", "Message")
LONG_COLUMNS = (*COLUMNS, "Status", "Request ID", "Task ID")


class SizeColumn(FormattableColumn[int | None]):
    """Bytes: ``3.0 MiB`` in tables, the number in ``-f json``; empty when nothing moved."""

    def human_readable(self) -> str:
        return "" if self._value is None else human_size(self._value)

    def machine_readable(self) -> Any:
        return self._value


def history_row(entry: HistoryEntry, long: bool) -> tuple[Any, ...]:
    row: tuple[Any, ...] = (
        entry.id,
        utc_time(entry.created_at),
        entry.action,
        entry.outcome,
        ListColumn(entry.stores),
        SizeColumn(entry.bytes_moved),
        entry.user_id or "",
        entry.project_id or "",
        entry.message,
    )
    if long:
        row += (entry.status or "", entry.request_id or "", entry.task_id or "")
    return row


class ImageHistory(GlimpseLister):
    """Show an image's history (imports, copies, cancels, uploads, store deletions, status changes),
    newest first; kept image_history_days days, after its tasks have expired."""

    def get_parser(self, prog_name: str) -> argparse.ArgumentParser:
        parser = super().get_parser(prog_name)
        parser.add_argument("image", metavar="IMAGE", help="image name or ID (an ID for a deleted image)")
        parser.add_argument(
            "--limit", type=int, metavar="N", help="show only the N newest entries (default: all)"
        )
        parser.add_argument(
            "--long", action="store_true", help="more columns (image status after, request id, task id)"
        )
        parser.add_argument("--json", action="store_true", help="print the entries as JSON (same as -f json)")
        return parser

    def run(self, parsed_args: argparse.Namespace) -> int:
        if parsed_args.json:
            parsed_args.formatter = "json"  # before cliff picks the formatter
        return super().run(parsed_args)

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        if parsed_args.limit is not None and parsed_args.limit < 1:
            raise UsageError("--limit must be 1 or more")
        ref = parsed_args.image
        # An ID is used as it is, so that an administrator can read a deleted image's history.
        image_id = ref if looks_like_id(ref) else self.image(ref).id
        entries = self.client.image_history(image_id, limit=parsed_args.limit)
        rows = [history_row(entry, parsed_args.long) for entry in entries]
        return (LONG_COLUMNS if parsed_args.long else COLUMNS), rows
