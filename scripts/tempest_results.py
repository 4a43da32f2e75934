"""Summarise a Tempest run: read its subunit v2 stream on stdin, print one JSON object on stdout.

    stestr last --subunit | <tempest venv>/bin/python scripts/tempest_results.py

The object maps each test id, as stestr names it (with Tempest's ``[id-...,smoke]`` attributes),
to ``{"status": ..., "reason": ...}``: the status is subunit's (``success``, ``fail``, ``skip``,
``xfail``, ``uxsuccess``, ...), the reason is a skip's reason or the end of a failure's traceback.
Run by the Tempest virtualenv's interpreter (scripts/tempest-venv.sh), which has python-subunit
and testtools; the project's own environment does not need them.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import subunit  # type: ignore[import-not-found]
import testtools  # type: ignore[import-not-found]

#: How much of a failure's traceback is kept (its end, where the assertion is).
TRACEBACK_CHARS = 3000


def _text(details: dict[str, Any], name: str) -> str:
    content = details.get(name)
    return content.as_text() if content is not None else ""


def main() -> None:
    results: dict[str, dict[str, str]] = {}

    def on_test(test: dict[str, Any]) -> None:
        details = test["details"]
        if test["status"] == "skip":
            reason = _text(details, "reason")
        else:
            reason = _text(details, "traceback")[-TRACEBACK_CHARS:]
        results[test["id"]] = {"status": test["status"], "reason": reason.strip()}

    stream = subunit.ByteStreamToStreamResult(sys.stdin.buffer, non_subunit_name="stdout")
    result = testtools.StreamToDict(on_test)
    result.startTestRun()
    try:
        stream.run(result)
    finally:
        result.stopTestRun()
    json.dump(results, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
