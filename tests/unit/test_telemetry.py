"""The metrics catalogue: the docs and the Grafana dashboard name only metrics that exist, and the
node directory keeps the files of live processes only."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from glimpse.telemetry import MULTIPROC_ENV, metrics, prepare_directory

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _families() -> set[str]:
    """The exposed names of every metric: counters get ``_total``, histograms their series."""
    names: set[str] = set()
    for family in vars(metrics()).values():
        describe = getattr(family, "describe", None)
        if describe is None:
            continue
        for described in describe():
            names.add(described.name + ("_total" if described.type == "counter" else ""))
            if described.type == "histogram":
                names.update(f"{described.name}_{suffix}" for suffix in ("bucket", "count", "sum"))
    return names


def test_the_dashboard_queries_only_metrics_that_exist() -> None:
    dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
    used = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bglimpse_[a-z_]+", target["expr"])
    }
    assert used, "the dashboard queries nothing"
    assert used <= _families(), used - _families()
    # Every metric is on the dashboard (histograms through their buckets).
    shown = {re.sub(r"_(bucket|count|sum)$", "", name) for name in used}
    assert {re.sub(r"_(bucket|count|sum)$", "", n) for n in _families()} <= shown


def test_the_operations_page_documents_every_metric() -> None:
    page = (DOCS / "operations.md").read_text()
    documented = set(re.findall(r"`(glimpse_[a-z_]+)`", page))
    exposed = {name for name in _families() if not re.search(r"_(bucket|count|sum)$", name)}
    assert exposed == documented


def test_prepare_directory_keeps_live_processes_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / f"counter_{dead_pid}.db").write_bytes(b"x")
    (directory / f"gauge_livesum_{dead_pid}.db").write_bytes(b"x")
    (directory / f"counter_{os.getpid()}.db").write_bytes(b"x")
    prepare_directory(directory)
    assert sorted(p.name for p in directory.iterdir()) == [f"counter_{os.getpid()}.db"]
    assert os.environ[MULTIPROC_ENV] == str(directory)
    # Set already (by an operator): that directory wins.
    chosen = tmp_path / "chosen"
    monkeypatch.setenv(MULTIPROC_ENV, str(chosen))
    prepare_directory(directory)
    assert os.environ[MULTIPROC_ENV] == str(chosen)
    assert chosen.is_dir()
