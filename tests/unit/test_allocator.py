"""keep_freed_memory: blocks of a stream reuse freed memory instead of faulting in new pages."""

from __future__ import annotations

import subprocess
import sys

import pytest

#: Streams' pattern: a few ~1.25 MiB blocks joined from 256 KiB pieces, in flight, then freed.
PATTERN = """
import os, resource, sys
from glimpse.runtime import keep_freed_memory

if sys.argv[1] == "kept":
    assert keep_freed_memory()

def rounds(count):
    for _ in range(count):
        pieces = [os.urandom(256 * 1024) for _ in range(5)]
        blocks = [b"".join(pieces) for _ in range(6)]
        del blocks, pieces

rounds(5)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(200)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(faults / (200 * 7 * 1.25))
"""


def faults_per_mib(mode: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", PATTERN, mode], capture_output=True, text=True, timeout=120, check=True
    )
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_blocks_are_reused_without_new_page_faults() -> None:
    assert faults_per_mib("kept") < 1
    # The same pattern with glibc's defaults faults every block in afresh (about 200 per MiB).
    assert faults_per_mib("default") > 50
