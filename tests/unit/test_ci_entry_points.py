"""The two entry points CI calls: ``.ci/run`` (every push: ``make test``) and ``.ci/nightly``
(the ten-minute soak, ``make soak``). What make would run is read with ``make -n``, nothing runs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("script", "target"), [(".ci/run", "test"), (".ci/nightly", "soak")])
def test_a_ci_entry_point_is_an_executable_that_runs_its_make_target(script: str, target: str) -> None:
    path = REPO_ROOT / script
    assert os.access(path, os.X_OK), f"{script} is not executable"
    text = path.read_text()
    assert text.startswith("#!/usr/bin/env bash\n"), text[:40]
    assert "set -euo pipefail" in text
    assert text.rstrip().endswith(f"exec make {target}"), text[-80:]


def test_the_nightly_soak_lasts_ten_minutes_and_installs_first() -> None:
    planned = subprocess.run(
        ["make", "-n", "soak"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    lines = [line for line in planned.splitlines() if line.strip()]
    assert any("bootstrap.sh" in line for line in lines), planned
    assert lines[-1].endswith("bench/soak.py --minutes 10"), planned
