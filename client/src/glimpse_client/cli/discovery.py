"""``glimpse stores list`` and ``glimpse import info``."""

from __future__ import annotations

import argparse
from typing import Any

from .base import GlimpseLister, GlimpseShowOne, ListColumn


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


class ListStores(GlimpseLister):
    """List the stores of the site (GET /v2/info/stores)."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], list[tuple[Any, ...]]]:
        stores = self.client.stores()
        return ("ID", "Description", "Default"), [
            (s.get("id"), s.get("description", ""), _flag(s.get("default"))) for s in stores
        ]


class ShowImportInfo(GlimpseShowOne):
    """Show the import methods the site offers (GET /v2/info/import)."""

    def take_action(self, parsed_args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[Any, ...]]:
        info = self.client.import_info()
        methods = info.get("import-methods", {})
        values = methods.get("value", []) if isinstance(methods, dict) else []
        return ("import-methods",), (ListColumn(list(values)),)
