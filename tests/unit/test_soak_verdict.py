"""The verdict of bench/soak.py: growth of RSS or descriptors after the warm-up row, and any failure."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
MiB = 2**20


@pytest.fixture
def soak(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("soak")


def samples(soak: ModuleType, *rows: tuple[int, int]) -> list[object]:
    """One sample per (RSS MiB of one process, descriptors)."""
    return [soak.Sample([rss * MiB], fds, 3) for rss, fds in rows]


def test_flat_rows_pass(soak: ModuleType) -> None:
    args = soak.parse_args([])
    # The first row warms up: its lower figures are not the baseline.
    result = soak.verdict(samples(soak, (90, 20), (140, 29), (141, 30), (142, 29)), soak.Window(), args)
    assert result.passed
    assert result.lines[-1] == "PASS"


def test_growing_rss_or_descriptors_fail(soak: ModuleType) -> None:
    args = soak.parse_args([])
    grown = soak.verdict(samples(soak, (140, 29), (140, 29), (200, 29)), soak.Window(), args)
    assert not grown.passed
    assert any(line.startswith("RSS:") and line.endswith("GREW") for line in grown.lines)
    leaking = soak.verdict(samples(soak, (140, 29), (140, 29), (141, 80)), soak.Window(), args)
    assert not leaking.passed
    assert any(line.startswith("fds:") and line.endswith("GREW") for line in leaking.lines)


def test_a_single_5xx_fails_and_is_named(soak: ModuleType) -> None:
    stats = soak.Stats()
    stats.record("list", 200, 0.01)
    stats.record("bad: GET /v2/x", 404, 0.01, bad=True)
    assert stats.record("upload: data", 503, 0.01) == "5xx"
    result = soak.verdict([], stats.total, soak.parse_args([]))
    assert not result.passed
    assert "5xx: 1 (first: upload: data -> 503)" in result.lines
    assert stats.total.classes["refused"] == 1
