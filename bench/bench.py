"""Benchmark Glimpse on loopback against the machine's own limits, measured in the same run.

Run from the repository root: ``.venv/bin/python bench/bench.py`` (``--help`` for the options,
``--quick`` for a small smoke run). It starts ``glimpse-server serve`` on 127.0.0.1 in a temporary data
directory, measures, stops the server and removes the directory. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import limits
import loadgen
import procinfo
import rawhttp
import tasks_bench
from service import HOST, Server, ServerFailed, glimpse_command

MiB = 1024 * 1024
UPLOAD_TARGET_RATIO = 0.70
UPLOAD_TARGET_MIB_S = 300.0
LIST_TARGET_RPS = 600.0
RSS_TARGET_MIB = 200.0
TASKS_TARGET_RPS = 1000.0
TASKS_TARGET_P99_MS = 10.0
#: RSS is "flat" when the largest sample of the last quarter of the upload exceeds the largest of
#: the first quarter by at most this much: holding the stream would grow it by a quarter of the size.
RSS_FLAT_TOLERANCE_MIB = 16.0


class BenchFailed(Exception):
    """The service answered wrongly (status, size, checksum): the figures would mean nothing."""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Row:
    figure: str
    value: float | None
    unit: str
    limit_name: str = ""
    limit_value: float | None = None
    target: str = ""
    verdict: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.limit_value:
            return None
        return self.value / self.limit_value


@dataclass
class Transfer:
    mib_s: float
    seconds: float
    server_cores: float
    client_cores: float
    busy_before: float
    #: share of the machine's CPU time the hypervisor took during the run.
    steal_percent: float = 0.0
    #: md5+sha512 one-thread rate measured just before this run (uploads only).
    paired_limit_mib_s: float | None = None


@dataclass
class Report:
    machine: dict[str, object]
    config: dict[str, object]
    limits: dict[str, dict[str, object]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- CLI
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.py",
        description="Benchmark a local Glimpse (upload, download, RSS, image list) against the "
        "machine's own limits measured in the same run. Only 127.0.0.1 is used.",
    )
    parser.add_argument("--size-mib", type=int, default=None, help="image size for upload/download (1024)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per transfer and limit; median (3)")
    parser.add_argument(
        "--images", type=int, default=None, help="images in the database for the list (10000)"
    )
    parser.add_argument("--connections", type=int, default=8, help="connections for the list load (8)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of list load (10)")
    parser.add_argument(
        "--rss-size-mib", type=int, default=None, help="upload size while RSS is sampled (4096)"
    )
    parser.add_argument("--skip-rss", action="store_true", help="skip the RSS upload")
    parser.add_argument("--workers", type=int, default=None, help="server --workers (server default)")
    parser.add_argument("--quick", action="store_true", help="small smoke run: 64 MiB, 500 images, 3 s load")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the tables")
    parser.add_argument("--json-file", default=None, help="also write the JSON document to this file")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="client send / hash chunk size (1024)")
    parser.add_argument(
        "--chunked", action="store_true", help="upload with chunked framing, not Content-Length"
    )
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="list load generator (auto: wrk if found)",
    )
    parser.add_argument("--install-wrk", action="store_true", help="apt-get install wrk if it is missing")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk -t (2, as for the Glance peer)")
    parser.add_argument("--seed-connections", type=int, default=8, help="connections creating images (8)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of list load before measuring (1)")
    parser.add_argument(
        "--quiet-wait", type=float, default=30.0, help="max s to wait for an idle machine (30)"
    )
    parser.add_argument("--server-log-level", default=None, help="GLIMPSE_LOG_LEVEL for the server")
    parser.add_argument("--tmp-dir", default=None, help="parent of the temporary data directory")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the data directory (for debugging)")
    parser.add_argument("--max-seconds", type=int, default=3600, help="abort the whole run after this (3600)")
    parser.add_argument("--check-targets", action="store_true", help="exit 3 when a target is missed")
    parser.add_argument("--seed", type=int, default=20261125, help="seed of the pseudo-random block")
    args = parser.parse_args(argv)
    full = {"size_mib": 1024, "images": 10000, "duration": 10.0, "rss_size_mib": 4096}
    small = {"size_mib": 64, "images": 500, "duration": 3.0, "rss_size_mib": 256}
    for name, value in (small if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("size_mib", "repeats", "connections", "rss_size_mib", "chunk_kib", "seed_connections"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.images < 0 or args.duration <= 0:
        parser.error("--images must be 0 or more and --duration positive")
    return args


# ---------------------------------------------------------------------------------------- helpers
def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def expect(response: rawhttp.Response, status: int, what: str) -> rawhttp.Response:
    if response.status != status:
        raise BenchFailed(f"{what}: expected {status}, got {response.status}: {response.body[:300]!r}")
    return response


def create_image(server: Server, name: str) -> str:
    body = {"name": name, "disk_format": "raw", "container_format": "bare"}
    reply = expect(
        rawhttp.request(HOST, server.port, "POST", "/v2/images", json_body=body), 201, "POST /v2/images"
    ).json()
    if not isinstance(reply, dict) or not isinstance(reply.get("id"), str):
        raise BenchFailed(f"POST /v2/images returned no id: {reply!r}")
    return reply["id"]


def get_image(server: Server, image_id: str) -> dict[str, Any]:
    reply = expect(
        rawhttp.request(HOST, server.port, "GET", f"/v2/images/{image_id}"), 200, "GET /v2/images/{id}"
    ).json()
    if not isinstance(reply, dict):
        raise BenchFailed(f"GET /v2/images/{image_id} is not an object")
    return reply


def delete_image(server: Server, image_id: str) -> None:
    expect(
        rawhttp.request(HOST, server.port, "DELETE", f"/v2/images/{image_id}"), 204, "DELETE /v2/images/{id}"
    )


@contextlib.contextmanager
def cpu_meter(server: Server) -> Iterator[dict[str, float]]:
    """Server (process tree) and client CPU seconds used inside the block, and the share of the
    machine's CPU time the hypervisor took meanwhile."""
    pids = procinfo.process_tree(server.pid)
    server_before = procinfo.tree_cpu_seconds(pids)
    client_before = os.times()
    steal_before = procinfo.steal_times()
    started = time.perf_counter()
    meter: dict[str, float] = {}
    yield meter
    elapsed = time.perf_counter() - started
    client_after = os.times()
    client = sum(client_after[:4]) - sum(client_before[:4])
    meter["elapsed"] = elapsed
    meter["server_cores"] = (procinfo.tree_cpu_seconds(pids) - server_before) / max(elapsed, 1e-9)
    meter["client_cores"] = client / max(elapsed, 1e-9)
    meter["steal_percent"] = procinfo.steal_percent(steal_before, procinfo.steal_times())


def quiet(args: argparse.Namespace) -> float:
    started = time.monotonic()
    busy = procinfo.wait_until_quiet(args.quiet_wait)
    waited = time.monotonic() - started
    if waited > 5:
        log(f"waited {waited:.0f} s for an idle machine; {busy:.0f}% busy at the start")
    return busy


def source_version() -> str:
    """The commit of the working tree the benchmark runs from, with '+dirty' for local changes."""
    root = Path(__file__).resolve().parent.parent
    git = shutil.which("git")
    if git is None:
        return "unknown"
    try:
        head = subprocess.run(
            [git, "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            [git, "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "src"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


# ------------------------------------------------------------------------------------------ phases
def measure_limits(args: argparse.Namespace, stream: rawhttp.PatternStream) -> limits.HashLimits:
    busy = quiet(args)
    log(f"limits: hashing {stream.size // MiB} MiB x {args.repeats} (machine busy {busy:.0f}% before)")
    return limits.hash_limits(stream, args.repeats)


def upload_once(
    server: Server,
    stream: rawhttp.PatternStream,
    image_id: str,
    args: argparse.Namespace,
    progress: Callable[[int], None] | None = None,
) -> Transfer:
    busy = quiet(args)
    with cpu_meter(server) as meter:
        response = rawhttp.upload(
            HOST, server.port, f"/v2/images/{image_id}/file", stream, chunked=args.chunked, progress=progress
        )
    server.check_alive()
    expect(response, 204, "PUT /v2/images/{id}/file")
    return Transfer(
        mib_s=stream.size / MiB / response.elapsed,
        seconds=response.elapsed,
        server_cores=meter["server_cores"],
        client_cores=meter["client_cores"],
        busy_before=busy,
        steal_percent=meter["steal_percent"],
    )


def verify_image(
    server: Server, image_id: str, size: int, md5_hex: str | None, sha512_hex: str | None
) -> None:
    image = get_image(server, image_id)
    problems = []
    if image.get("status") != "active":
        problems.append(f"status {image.get('status')!r}, expected 'active'")
    if image.get("size") != size:
        problems.append(f"size {image.get('size')!r}, expected {size}")
    if md5_hex is not None and image.get("checksum") != md5_hex:
        problems.append(f"checksum {image.get('checksum')!r}, expected {md5_hex}")
    if (
        sha512_hex is not None
        and image.get("os_hash_algo") == "sha512"
        and image.get("os_hash_value") != sha512_hex
    ):
        problems.append("os_hash_value differs from the sha512 of the bytes sent")
    if problems:
        raise BenchFailed(f"image {image_id} after upload: " + "; ".join(problems))


def download_once(
    server: Server, image_id: str, size: int, md5_hex: str, args: argparse.Namespace
) -> Transfer:
    """GET /file of an image, counted and thrown away; its length and any Content-MD5 are checked."""
    busy = quiet(args)
    with cpu_meter(server) as meter:
        response = rawhttp.download(HOST, server.port, f"/v2/images/{image_id}/file")
    server.check_alive()
    expect(response, 200, "GET /v2/images/{id}/file")
    if response.length != size:
        raise BenchFailed(f"download of {image_id}: {response.length} bytes, expected {size}")
    sent_md5 = response.headers.get("content-md5")
    if sent_md5 is not None and sent_md5 != md5_hex:
        raise BenchFailed(f"download of {image_id}: Content-MD5 {sent_md5}, expected {md5_hex}")
    return Transfer(
        mib_s=size / MiB / response.elapsed,
        seconds=response.elapsed,
        server_cores=meter["server_cores"],
        client_cores=meter["client_cores"],
        busy_before=busy,
        steal_percent=meter["steal_percent"],
    )


def transfers(
    args: argparse.Namespace,
    server: Server,
    stream: rawhttp.PatternStream,
    hashes: limits.HashLimits,
    report: Report,
) -> None:
    ids = []
    ups: list[Transfer] = []
    for attempt in range(args.repeats):
        image_id = create_image(server, f"bench-upload-{attempt}")
        ids.append(image_id)
        paired, _, _ = limits.single_pass(stream)
        run = upload_once(server, stream, image_id, args)
        run.paired_limit_mib_s = paired
        verify_image(server, image_id, stream.size, hashes.md5_hex, hashes.sha512_hex)
        ups.append(run)
        log(
            f"upload {attempt + 1}/{args.repeats}: {run.mib_s:.1f} MiB/s in {run.seconds:.2f} s "
            f"(md5+sha512 just before: {paired:.0f} MiB/s), server "
            f"{run.server_cores:.2f} cores, client {run.client_cores:.2f} "
            f"(busy before {run.busy_before:.0f}%)"
        )
    downs: list[Transfer] = []
    for attempt in range(args.repeats):
        run = download_once(server, ids[attempt % len(ids)], stream.size, hashes.md5_hex, args)
        downs.append(run)
        log(
            f"download {attempt + 1}/{args.repeats}: {run.mib_s:.1f} MiB/s in {run.seconds:.2f} s, server "
            f"{run.server_cores:.2f} cores, client {run.client_cores:.2f} "
            f"(busy before {run.busy_before:.0f}%)"
        )
    for image_id in ids:
        delete_image(server, image_id)
    report.results["upload"] = {
        "median_mib_s": median([r.mib_s for r in ups]),
        "paired_limit_median_mib_s": median([r.paired_limit_mib_s or 0.0 for r in ups]),
        "paired_ratio_median": median([r.mib_s / (r.paired_limit_mib_s or 1.0) for r in ups]),
        "runs": [asdict(r) for r in ups],
    }
    report.results["download"] = {
        "median_mib_s": median([r.mib_s for r in downs]),
        "runs": [asdict(r) for r in downs],
    }


def rss_run(args: argparse.Namespace, server: Server, block: bytes, report: Report) -> None:
    stream = rawhttp.PatternStream(block, args.rss_size_mib * MiB)
    image_id = create_image(server, "bench-rss")
    sampler = procinfo.RssSampler(server.pid, interval=0.1)
    idle = sampler.sample(time.monotonic())
    log(f"rss: uploading {args.rss_size_mib} MiB; server RSS before {idle.total_rss / MiB:.1f} MiB")

    def progress(sent: int) -> None:
        sampler.progress = sent

    sampler.start()
    try:
        run = upload_once(server, stream, image_id, args, progress=progress)
    finally:
        sampler.stop()
    verify_image(server, image_id, stream.size, None, None)
    after = sampler.sample(time.monotonic())
    delete_image(server, image_id)
    samples = sampler.samples
    if not samples:
        raise BenchFailed("no RSS sample was taken during the upload")
    quarter_max = []
    for quarter in range(4):
        low, high = stream.size * quarter / 4, stream.size * (quarter + 1) / 4
        inside = [
            s.total_rss for s in samples if low <= s.progress < high or (quarter == 3 and s.progress >= high)
        ]
        quarter_max.append(max(inside) / MiB if inside else float("nan"))
    peak = max(s.total_rss for s in samples) / MiB
    largest_process = max(s.largest_rss for s in samples) / MiB
    growth = quarter_max[3] - quarter_max[0]
    flat = growth <= RSS_FLAT_TOLERANCE_MIB
    report.results["rss"] = {
        "size_mib": args.rss_size_mib,
        "before_mib": idle.total_rss / MiB,
        "max_mib": peak,
        "largest_process_max_mib": largest_process,
        "after_mib": after.total_rss / MiB,
        "quarter_max_mib": quarter_max,
        "growth_first_to_last_quarter_mib": growth,
        "flat": flat,
        "samples": len(samples),
        "upload_mib_s": run.mib_s,
        "upload_server_cores": run.server_cores,
        "processes": len(procinfo.process_tree(server.pid)),
    }
    log(
        f"rss: max {peak:.1f} MiB (quarters {', '.join(f'{q:.1f}' for q in quarter_max)}), "
        f"{'flat' if flat else 'GROWING'}; upload {run.mib_s:.1f} MiB/s"
    )


def count_images(server: Server) -> int:
    total, path = 0, "/v2/images?limit=1000"
    for _ in range(10000):
        page = expect(
            rawhttp.request(HOST, server.port, "GET", path, timeout=120), 200, "GET /v2/images"
        ).json()
        if not isinstance(page, dict):
            raise BenchFailed("GET /v2/images is not an object")
        total += len(page.get("images", []))
        next_link = page.get("next")
        if not next_link:
            return total
        path = str(next_link)
    raise BenchFailed("GET /v2/images: the pages never ended")


def run_load(args: argparse.Namespace, server: Server, path: str, duration: float) -> loadgen.LoadResult:
    if args.loadgen_tool == "wrk":
        return loadgen.wrk_load(server.url + path, args.connections, duration, args.wrk_threads)
    return loadgen.python_load(HOST, server.port, path, args.connections, duration)


def load_phase(
    args: argparse.Namespace, server: Server, path: str
) -> tuple[loadgen.LoadResult, dict[str, float]]:
    if args.warmup > 0:
        run_load(args, server, path, args.warmup)
    busy = quiet(args)
    with cpu_meter(server) as meter:
        result = run_load(args, server, path, args.duration)
    server.check_alive()
    meter["busy_before"] = busy
    if result.requests == 0:
        raise BenchFailed(f"GET {path}: no request completed")
    if result.non_2xx or result.errors:
        raise BenchFailed(f"GET {path}: {result.non_2xx} non-2xx responses and {result.errors} socket errors")
    return result, meter


def list_phase(args: argparse.Namespace, server: Server, report: Report) -> None:
    before = count_images(server)
    wanted = max(0, args.images - before)
    log(f"list: creating {wanted} images over {args.seed_connections} connections")
    seconds, failures = loadgen.seed_images(
        HOST,
        server.port,
        wanted,
        args.seed_connections,
        report=lambda done, elapsed: log(f"list: {done} images created in {elapsed:.0f} s"),
    )
    server.check_alive()
    have = count_images(server)
    log(
        f"list: {wanted} images created in {seconds:.1f} s "
        f"({wanted / max(seconds, 1e-9):.0f}/s); {have} listed"
    )
    if have < args.images:
        raise BenchFailed(f"GET /v2/images lists {have} images, expected at least {args.images}")
    path = "/v2/images?limit=20"
    first = expect(rawhttp.request(HOST, server.port, "GET", path), 200, "GET /v2/images?limit=20").json()
    if not isinstance(first, dict) or len(first.get("images", [])) != min(20, have):
        raise BenchFailed("GET /v2/images?limit=20 did not return 20 images")
    result, meter = load_phase(args, server, path)
    log(
        f"list: {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms "
        f"({result.tool}, server {meter['server_cores']:.2f} cores)"
    )
    floor, floor_meter = load_phase(args, server, "/versions")
    log(f"floor: GET /versions {floor.rps:.0f} req/s, p50 {floor.p50_ms:.2f} ms, p99 {floor.p99_ms:.2f} ms")
    report.results["seed"] = {
        "images": wanted,
        "seconds": seconds,
        "per_second": wanted / max(seconds, 1e-9),
        "failures": failures,
        "listed": have,
    }
    report.results["list"] = {**_load_dict(result), **meter}
    report.results["versions_floor"] = {**_load_dict(floor), **floor_meter}


def tasks_phase(
    args: argparse.Namespace, server: Server, stream: rawhttp.PatternStream, report: Report
) -> None:
    """copy-image of one uploaded image into two more stores, then GET its tasks under load."""
    image_id = create_image(server, "bench-copy")
    upload_once(server, stream, image_id, args)
    others = ["cheap", "reliable"]
    busy = quiet(args)
    with cpu_meter(server) as meter:
        try:
            copy = tasks_bench.copy_image(server, image_id, others, stream.size, log)
        except tasks_bench.CopyFailed as exc:
            raise BenchFailed(str(exc)) from exc
    server.check_alive()
    log(
        f"copy: {args.size_mib} MiB into {len(others)} stores in {copy['seconds']:.2f} s "
        f"({copy['written_mib_s']:.0f} MiB/s written, server {meter['server_cores']:.2f} cores)"
    )
    report.results["copy"] = {**copy, **meter, "busy_before": busy}
    path = f"/v2/images/{image_id}/tasks"
    result, load_meter = load_phase(args, server, path)
    log(f"tasks: {result.rps:.0f} req/s, p50 {result.p50_ms:.2f} ms, p99 {result.p99_ms:.2f} ms")
    report.results["image_tasks"] = {**_load_dict(result), **load_meter}


def _load_dict(result: loadgen.LoadResult) -> dict[str, object]:
    data = asdict(result)
    data.pop("raw")
    return data


# ------------------------------------------------------------------------------------------ report
def build_rows(args: argparse.Namespace, report: Report) -> None:
    lim = report.limits
    res = report.results
    rows = report.rows
    if "upload" in res:
        up = res["upload"]["median_mib_s"]
        single = lim["hash_single_pass"]["median_mib_s"]
        ok = up >= UPLOAD_TARGET_RATIO * single
        rows.append(
            Row(
                f"upload {args.size_mib} MiB, median of {args.repeats}",
                up,
                "MiB/s",
                "md5+sha512 one pass, one thread",
                single,
                f">= {UPLOAD_TARGET_RATIO:.2f} x limit",
                "ok" if ok else "MISSED",
            )
        )
        rows.append(
            Row(
                "",
                up,
                "MiB/s",
                "md5+sha512 one thread, just before each run",
                res["upload"]["paired_limit_median_mib_s"],
            )
        )
        rows.append(
            Row("", up, "MiB/s", "md5 | sha512 in two threads", lim["hash_two_threads"]["median_mib_s"])
        )
        rows.append(Row("", up, "MiB/s", "disk write + fsync", lim["disk_write_fsync"]["median_mib_s"]))
        rows.append(Row("", up, "MiB/s", "loopback TCP copy", lim["loopback"]["median_mib_s"]))
        rows.append(
            Row(
                "",
                up,
                "MiB/s",
                "README absolute target",
                UPLOAD_TARGET_MIB_S,
                f">= {UPLOAD_TARGET_MIB_S:.0f} MiB/s",
                "ok" if up >= UPLOAD_TARGET_MIB_S else "MISSED",
            )
        )
    if "download" in res:
        rows.append(
            Row(
                f"download {args.size_mib} MiB, median of {args.repeats}",
                res["download"]["median_mib_s"],
                "MiB/s",
                "loopback TCP copy",
                lim["loopback"]["median_mib_s"],
                "Glance's, same sitting",
            )
        )
    if "rss" in res:
        rss = res["rss"]
        flat_ok = rss["flat"] and rss["max_mib"] < RSS_TARGET_MIB
        rows.append(
            Row(
                f"server RSS max during {rss['size_mib']} MiB upload",
                rss["max_mib"],
                "MiB",
                "target",
                RSS_TARGET_MIB,
                f"flat, < {RSS_TARGET_MIB:.0f} MiB",
                ("ok" if flat_ok else "MISSED") + (" (flat)" if rss["flat"] else " (growing)"),
            )
        )
    if "rss" in res and res["rss"]["processes"] > 1:
        report.notes.append(
            f"the RSS figure is the sum over {res['rss']['processes']} server processes (--workers); "
            f"the largest one peaked at {res['rss']['largest_process_max_mib']:.1f} MiB"
        )
    if "list" in res:
        lst, floor = res["list"], res["versions_floor"]
        label = f"GET /v2/images?limit=20, {res['seed']['listed']} images, c={args.connections}"
        rows.append(
            Row(
                label,
                lst["rps"],
                "req/s",
                "GET /versions, same server and load",
                floor["rps"],
                f">= {LIST_TARGET_RPS:.0f} req/s",
                "ok" if lst["rps"] >= LIST_TARGET_RPS else "MISSED",
            )
        )
        rows.append(Row("  p50 latency", lst["p50_ms"], "ms", "GET /versions p50", floor["p50_ms"]))
        rows.append(Row("  p99 latency", lst["p99_ms"], "ms", "GET /versions p99", floor["p99_ms"]))
    if "copy" in res:
        copy = res["copy"]
        rows.append(
            Row(
                f"copy-image {args.size_mib} MiB into {len(copy['stores'])} stores, bytes written",
                copy["written_mib_s"],
                "MiB/s",
                "disk write + fsync",
                lim["disk_write_fsync"]["median_mib_s"],
            )
        )
        rows.append(Row("  wall time, POST /import to task success", copy["seconds"], "s"))
    if "image_tasks" in res:
        tasks = res["image_tasks"]
        rows.append(
            Row(
                f"GET /v2/images/{{id}}/tasks, c={args.connections}",
                tasks["rps"],
                "req/s",
                "GET /versions, same server and load",
                res["versions_floor"]["rps"],
                f">= {TASKS_TARGET_RPS:.0f} req/s",
                "ok" if tasks["rps"] >= TASKS_TARGET_RPS else "MISSED",
            )
        )
        rows.append(
            Row(
                "  p99 latency",
                tasks["p99_ms"],
                "ms",
                "",
                None,
                f"< {TASKS_TARGET_P99_MS:.0f} ms",
                "ok" if tasks["p99_ms"] < TASKS_TARGET_P99_MS else "MISSED",
            )
        )


def joined(runs: list[dict[str, float]], key: str, pattern: str) -> str:
    return ", ".join(pattern.format(run[key]) for run in runs)


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def print_report(report: Report) -> None:
    m = report.machine
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_total_mib']} MiB RAM, kernel {m['kernel']}, "
        f"Python {m['python']}"
    )
    c = report.config
    print(
        f"server: glimpse-server serve ({c['source']}), workers={c['workers'] or 'default'}, loopback; "
        f"client chunk {c['chunk_kib']} KiB, "
        f"{'chunked' if c['chunked'] else 'Content-Length'} upload; list load by {c['loadgen']}"
    )
    print()
    print("machine limits, same run (MiB/s; median and runs):")
    for item in report.limits.values():
        runs = ", ".join(f"{r:.0f}" for r in item["runs_mib_s"])  # type: ignore[attr-defined]
        print(f"  {item['name']:<40} {item['median_mib_s']:>10,.1f}   [{runs}]")
    print()
    header = ("figure", "value", "unit", "limit (same run)", "limit", "ratio", "target", "verdict")
    table = [header]
    for row in report.rows:
        table.append(
            (
                row.figure,
                fmt(row.value, 2 if row.unit == "ms" else 1),
                row.unit,
                row.limit_name,
                fmt(row.limit_value, 2 if row.unit == "ms" else 1),
                fmt(row.ratio, 2),
                row.target,
                row.verdict,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    right = {1, 4, 5}
    for index, line in enumerate(table):
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i]) for i, cell in enumerate(line)
        ]
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))
    print()
    res = report.results
    for name in ("upload", "download"):
        if name in res:
            runs = res[name]["runs"]
            print(
                f"{name} runs (MiB/s): {joined(runs, 'mib_s', '{:.1f}')}; server CPU cores: "
                f"{joined(runs, 'server_cores', '{:.2f}')}; client CPU cores: "
                f"{joined(runs, 'client_cores', '{:.2f}')}; machine busy before: "
                f"{joined(runs, 'busy_before', '{:.0f}%')}"
            )
    if "rss" in res:
        rss = res["rss"]
        quarters = ", ".join(f"{q:.1f}" for q in rss["quarter_max_mib"])
        print(
            f"rss: before {rss['before_mib']:.1f} MiB, max {rss['max_mib']:.1f} MiB over {rss['processes']} "
            f"process(es), largest process {rss['largest_process_max_mib']:.1f} MiB, after "
            f"{rss['after_mib']:.1f} MiB; max by quarter of the upload {quarters} MiB; "
            f"{rss['samples']} samples; upload {rss['upload_mib_s']:.1f} MiB/s"
        )
    if "seed" in res:
        seed = res["seed"]
        print(
            f"seeding: {seed['images']} images by POST /v2/images in {seed['seconds']:.1f} s "
            f"({seed['per_second']:.0f}/s), {seed['failures']} failures"
        )
    for name in ("list", "versions_floor"):
        if name in res:
            r = res[name]
            print(
                f"{name}: {r['requests']} requests in {r['duration']:.1f} s by {r['tool']}, server CPU cores "
                f"{r['server_cores']:.2f}, load generator cores {r['client_cores']:.2f}, machine busy before "
                f"{r['busy_before']:.0f}%"
            )
    for note in report.notes:
        print(f"note: {note}")


# -------------------------------------------------------------------------------------------- main
def choose_loadgen(args: argparse.Namespace) -> str:
    if args.loadgen == "python":
        return "python"
    if loadgen.wrk_path() is None and args.install_wrk:
        log("wrk not found: apt-get install wrk")
        if not loadgen.install_wrk():
            log("could not install wrk")
    if loadgen.wrk_path() is not None:
        return "wrk"
    if args.loadgen == "wrk":
        raise SystemExit("bench.py: wrk is not installed (try --install-wrk or --loadgen python)")
    log("wrk not found: using the asyncio load generator (--install-wrk to get wrk)")
    return "python"


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise TimeoutError("the benchmark ran longer than --max-seconds")


def run(args: argparse.Namespace, workdir: Path, report: Report) -> int:
    chunk = args.chunk_kib * 1024
    block = random.Random(args.seed).randbytes(chunk)
    stream = rawhttp.PatternStream(block, args.size_mib * MiB)

    hashes = measure_limits(args, stream)
    log(f"limits: disk write + fsync of {args.size_mib} MiB x {args.repeats}")
    disk = limits.disk_write_limit(workdir, stream, args.repeats)
    log(f"limits: loopback copy of {args.size_mib} MiB x {args.repeats}")
    loop = limits.loopback_limit(stream, args.repeats)
    for key, item in (
        ("hash_md5", hashes.md5),
        ("hash_sha512", hashes.sha512),
        ("hash_single_pass", hashes.single_pass),
        ("hash_two_threads", hashes.two_threads),
        ("disk_write_fsync", disk),
        ("loopback", loop),
    ):
        report.limits[key] = {"name": item.name, "median_mib_s": item.median, "runs_mib_s": item.runs_mib_s}
    log(
        f"limits: md5+sha512 one thread {hashes.single_pass.median:.0f} MiB/s, two threads "
        f"{hashes.two_threads.median:.0f}, disk {disk.median:.0f}, loopback {loop.median:.0f}"
    )

    server = Server(workdir / "data", args.workers, args.server_log_level)
    server.data_dir.mkdir()
    log(f"starting glimpse-server serve on {server.url}")
    try:
        server.start()
        report.results["server_rss_idle_mib"] = (
            sum(procinfo.rss_bytes(pid) for pid in procinfo.process_tree(server.pid)) / MiB
        )
        transfers(args, server, stream, hashes, report)
        if not args.skip_rss:
            rss_run(args, server, block, report)
        list_phase(args, server, report)
        tasks_phase(args, server, stream, report)
        server.check_alive()
    finally:
        status = server.stop()
        errors = server.count_log_lines(" ERROR ") + server.count_log_lines("Traceback")
        if errors:
            report.notes.append(f"the server log has {errors} ERROR/Traceback line(s)")
        if status not in (0, None, -signal.SIGTERM):
            report.notes.append(f"the server exited with status {status} when stopped")
    build_rows(args, report)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.loadgen_tool = choose_loadgen(args)
    workdir = Path(tempfile.mkdtemp(prefix="glimpse-bench-", dir=args.tmp_dir))
    report = Report(
        machine=procinfo.machine_facts(workdir),
        config={
            "size_mib": args.size_mib,
            "repeats": args.repeats,
            "images": args.images,
            "connections": args.connections,
            "duration_s": args.duration,
            "rss_size_mib": None if args.skip_rss else args.rss_size_mib,
            "workers": args.workers,
            "chunk_kib": args.chunk_kib,
            "chunked": args.chunked,
            "loadgen": args.loadgen_tool,
            "quick": args.quick,
            "source": source_version(),
            "glimpse_command": " ".join(Path(part).name for part in glimpse_command()),
        },
    )
    needed = args.size_mib * MiB * (args.repeats + 1) + (0 if args.skip_rss else args.rss_size_mib * MiB)
    free = shutil.disk_usage(workdir).free
    if free < needed:
        shutil.rmtree(workdir, ignore_errors=True)
        print(
            f"bench.py: {free // MiB} MiB free under {workdir.parent}, need {needed // MiB}", file=sys.stderr
        )
        return 2
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(args.max_seconds)
    status = 0
    try:
        run(args, workdir, report)
    except (ServerFailed, BenchFailed, rawhttp.HttpError, OSError, TimeoutError, RuntimeError) as exc:
        print(f"bench.py: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        status = 1
    except KeyboardInterrupt:
        print("bench.py: interrupted", file=sys.stderr)
        status = 130
    finally:
        signal.alarm(0)
        if args.keep_tmp:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if status:
        if report.notes:
            print("\n".join(f"note: {n}" for n in report.notes), file=sys.stderr)
        return status
    document = {
        "machine": report.machine,
        "config": report.config,
        "limits": report.limits,
        "results": report.results,
        "table": [{**asdict(row), "ratio": row.ratio} for row in report.rows],
        "notes": report.notes,
    }
    encoded = orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n"
    if args.json_file:
        Path(args.json_file).write_text(encoded)
    if args.json:
        sys.stdout.write(encoded)
    else:
        print_report(report)
    if args.check_targets and any(row.verdict.startswith("MISSED") for row in report.rows):
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
