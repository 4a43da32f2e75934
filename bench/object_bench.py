"""Glimpse's object stores through the API, against the object server's own limits, in one run.

Run from the repository root: ``.venv/bin/python bench/object_bench.py [--size-mib 1024]``. It
starts (or reuses) the Swift + s3api test server of ``scripts/s3-server.sh`` and one
``glimpse-server serve`` with three stores (``fast:file``, ``big:s3``, ``obj:swift``), then, for
the same bytes (one random MiB repeated), measures:

* the limits, with the same libraries the stores use (boto3, python-swiftclient), the same part
  size and the same number of parts in flight: a plain S3 multipart PUT and GET; a plain Swift
  segmented PUT (segments + Static Large Object manifest) and GET; and both PUTs at once, which
  is what a copy into the two stores has to do;
* Glimpse: ``PUT /v2/images/{id}/file`` into the S3 store, ``GET`` of it, and copy-image of an
  image in the file store into the S3 and Swift stores at once (POST /import to task success);
* the server's resident memory during each transfer: its peak above the level before the run.

Each figure is the median of ``--repeats`` runs. Progress goes to stderr, the table to stdout
(``--json`` for one JSON document instead).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import objectserver
import procinfo
import rawhttp
import tasks_bench
from service import HOST, Server

MiB = 1024 * 1024


def log(message: str) -> None:
    print(f"[object-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchFailed(Exception):
    """A measurement could not be made (server error, wrong answer)."""


@dataclass
class Plain:
    """Plain transfers with the stores' own libraries: the limits of the object server."""

    env: dict[str, str]
    stream: rawhttp.PatternStream
    part: int
    threads: int
    bucket: str
    container: str

    def parts(self) -> Iterator[tuple[int, bytes]]:
        """(number, bytes) of each part of the stream, made one at a time."""
        block = bytes(self.stream.block)
        per_part = self.part // len(block)
        whole, rest = divmod(self.stream.size, self.part)
        for number in range(1, whole + 1):
            yield number, block * per_part
        if rest:
            yield whole + 1, (block * per_part)[:rest]

    def s3_put(self) -> None:
        client = objectserver.s3_client(self.env, self.threads)
        upload = client.create_multipart_upload(Bucket=self.bucket, Key="plain")["UploadId"]

        def send(item: tuple[int, bytes]) -> dict[str, Any]:
            number, body = item
            etag = client.upload_part(
                Bucket=self.bucket, Key="plain", UploadId=upload, PartNumber=number, Body=body
            )["ETag"]
            return {"PartNumber": number, "ETag": etag}

        sent = _bounded_map(send, self.parts(), self.threads)
        client.complete_multipart_upload(
            Bucket=self.bucket, Key="plain", UploadId=upload, MultipartUpload={"Parts": sent}
        )

    def s3_get(self) -> None:
        client = objectserver.s3_client(self.env, self.threads)
        body = client.get_object(Bucket=self.bucket, Key="plain")["Body"]
        received = 0
        while chunk := body.read(MiB):
            received += len(chunk)
        _check_size("plain S3 GET", received, self.stream.size)

    def swift_put(self) -> None:
        segments = f"{self.container}_segments"
        prefix = f"plain/{uuid.uuid4().hex}"
        local = _PerThread(lambda: objectserver.swift_connection(self.env))

        def send(item: tuple[int, bytes]) -> dict[str, Any]:
            number, body = item
            name = f"{prefix}/{number:08d}"
            etag = local.get().put_object(segments, name, body)
            return {"path": f"/{segments}/{name}", "etag": etag, "size_bytes": len(body)}

        manifest = _bounded_map(send, self.parts(), self.threads)
        local.get().put_object(
            self.container, "plain", json.dumps(manifest), query_string="multipart-manifest=put"
        )

    def swift_get(self) -> None:
        _, body = objectserver.swift_connection(self.env).get_object(
            self.container, "plain", resp_chunk_size=MiB
        )
        received = sum(len(chunk) for chunk in body)
        _check_size("plain Swift GET", received, self.stream.size)

    def both_puts(self) -> None:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            for future in [pool.submit(self.s3_put), pool.submit(self.swift_put)]:
                future.result()


class _PerThread:
    """One object per thread, made on first use (swiftclient connections are not thread-safe)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._local = threading.local()

    def get(self) -> Any:
        value = getattr(self._local, "value", None)
        if value is None:
            value = self._local.value = self._make()
        return value


def _bounded_map(func: Callable[[Any], Any], items: Iterator[Any], threads: int) -> list[Any]:
    """``func`` over ``items`` with at most ``threads`` running and ``threads`` waiting: bounded memory."""
    results: list[Any] = []
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        pending: list[concurrent.futures.Future[Any]] = []
        for item in items:
            pending.append(pool.submit(func, item))
            if len(pending) >= threads * 2:
                results.append(pending.pop(0).result())
        results.extend(future.result() for future in pending)
    return results


def _check_size(what: str, received: int, expected: int) -> None:
    if received != expected:
        raise BenchFailed(f"{what}: received {received} bytes, expected {expected}")


@contextlib.contextmanager
def machine_busy(into: list[float]) -> Iterator[None]:
    """Append the share of all CPUs (%) busy during the block to ``into``: a transfer that keeps the
    machine busy is bound by CPU, and anything else the server does then costs throughput."""
    busy_before, total_before = procinfo.cpu_times()
    try:
        yield
    finally:
        busy_after, total_after = procinfo.cpu_times()
        into.append(round(100.0 * (busy_after - busy_before) / max(1, total_after - total_before)))


def timed(run: Callable[[], None], busy: list[float]) -> float:
    with machine_busy(busy):
        started = time.perf_counter()
        run()
        return time.perf_counter() - started


# ------------------------------------------------------------------------------------ the service
def server_settings(
    env: dict[str, str], bucket: str, container: str, part_mib: int, threads: int
) -> dict[str, str]:
    return {
        "GLIMPSE_ENABLED_BACKENDS": "fast:file,big:s3,obj:swift",
        "GLIMPSE_GLANCE_STORE__DEFAULT_BACKEND": "fast",
        "GLIMPSE_BIG__S3_STORE_HOST": env["S3_ENDPOINT_URL"],
        "GLIMPSE_BIG__S3_STORE_ACCESS_KEY": env["S3_ACCESS_KEY"],
        "GLIMPSE_BIG__S3_STORE_SECRET_KEY": env["S3_SECRET_KEY"],
        "GLIMPSE_BIG__S3_STORE_REGION_NAME": env["S3_REGION"],
        "GLIMPSE_BIG__S3_STORE_BUCKET": bucket,
        "GLIMPSE_BIG__S3_STORE_CREATE_BUCKET_ON_PUT": "true",
        "GLIMPSE_BIG__S3_STORE_LARGE_OBJECT_SIZE": str(part_mib),
        "GLIMPSE_BIG__S3_STORE_LARGE_OBJECT_CHUNK_SIZE": str(part_mib),
        "GLIMPSE_BIG__S3_STORE_THREAD_POOLS": str(threads),
        "GLIMPSE_BIG__S3_STORE_BUCKET_URL_FORMAT": "path",
        "GLIMPSE_OBJ__SWIFT_STORE_AUTH_ADDRESS": env["SWIFT_AUTH_URL"],
        "GLIMPSE_OBJ__SWIFT_STORE_USER": env["SWIFT_USER"],
        "GLIMPSE_OBJ__SWIFT_STORE_KEY": env["SWIFT_KEY"],
        "GLIMPSE_OBJ__SWIFT_STORE_CONTAINER": container,
        "GLIMPSE_OBJ__SWIFT_STORE_CREATE_CONTAINER_ON_PUT": "true",
        "GLIMPSE_OBJ__SWIFT_STORE_LARGE_OBJECT_SIZE": str(part_mib),
        "GLIMPSE_OBJ__SWIFT_STORE_LARGE_OBJECT_CHUNK_SIZE": str(part_mib),
    }


def expect(response: rawhttp.Response, status: int, what: str) -> rawhttp.Response:
    if response.status != status:
        raise BenchFailed(f"{what}: expected {status}, got {response.status}: {response.body[:300]!r}")
    return response


def create_image(server: Server) -> str:
    body = {"name": "object-bench", "disk_format": "raw", "container_format": "bare"}
    reply = expect(
        rawhttp.request(HOST, server.port, "POST", "/v2/images", json_body=body, headers=tasks_bench.ADMIN),
        201,
        "POST /v2/images",
    ).json()
    assert isinstance(reply, dict)
    return str(reply["id"])


def upload(server: Server, stream: rawhttp.PatternStream, store: str) -> tuple[str, float]:
    image_id = create_image(server)
    response = rawhttp.upload(
        HOST,
        server.port,
        f"/v2/images/{image_id}/file",
        stream,
        extra_headers={**tasks_bench.ADMIN, "X-Image-Meta-Store": store},
    )
    expect(response, 204, f"PUT /v2/images/{{id}}/file into {store}")
    return image_id, response.elapsed


def download(server: Server, image_id: str, size: int) -> float:
    response = rawhttp.request(
        HOST,
        server.port,
        "GET",
        f"/v2/images/{image_id}/file",
        headers=tasks_bench.ADMIN,
        timeout=120.0,
        keep_body=False,
    )
    expect(response, 200, "GET /v2/images/{id}/file")
    _check_size("GET /v2/images/{id}/file", response.length, size)
    return response.elapsed


class PeakRss:
    """The server's resident memory during blocks: its peak above the level just before each."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peaks: list[float] = []

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        baseline = sum(procinfo.rss_bytes(pid) for pid in procinfo.process_tree(self.server.pid))
        sampler = procinfo.RssSampler(self.server.pid, interval=0.05)
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()
        peak = max((sample.total_rss for sample in sampler.samples), default=baseline)
        self.peaks.append(round((peak - baseline) / MiB, 1))


# ----------------------------------------------------------------------------------------- report
def row(
    name: str,
    glimpse_s: list[float],
    limit_s: list[float],
    size_mib: int,
    peaks: list[float],
    busy: tuple[list[float], list[float]],
) -> dict[str, Any]:
    glimpse = size_mib / statistics.median(glimpse_s)
    limit = size_mib / statistics.median(limit_s)
    return {
        "figure": name,
        "glimpse_mib_s": round(glimpse, 1),
        "limit_mib_s": round(limit, 1),
        "ratio": round(glimpse / limit, 2),
        "glimpse_runs_s": [round(s, 2) for s in glimpse_s],
        "limit_runs_s": [round(s, 2) for s in limit_s],
        "server_rss_growth_mib": peaks,
        "machine_busy_percent": {"glimpse": statistics.median(busy[0]), "limit": statistics.median(busy[1])},
    }


def print_table(report: dict[str, Any]) -> None:
    print(f"machine: {report['machine']}")
    print(
        f"size {report['size_mib']} MiB, parts {report['part_mib']} MiB, {report['threads']} in flight, "
        f"median of {report['repeats']}; limit = the same library on the same server with nothing around it"
    )
    print()
    header = (
        f"{'figure':<40} {'Glimpse':>8} {'limit':>8} {'ratio':>6}  {'CPUs busy (G / limit)':<22} "
        "server RSS growth (MiB)"
    )
    print(header)
    print("-" * len(header))
    for item in report["rows"]:
        busy = item["machine_busy_percent"]
        print(
            f"{item['figure']:<40} {item['glimpse_mib_s']:>8.1f} {item['limit_mib_s']:>8.1f} "
            f"{item['ratio']:>6.2f}  {busy['glimpse']:>3.0f} % / {busy['limit']:>3.0f} %{'':<12} "
            f"{', '.join(f'{p:.0f}' for p in item['server_rss_growth_mib'])}"
        )
    print()
    print(
        "MiB/s; copy-image counts the image's size once per second of wall time (both stores written "
        "at once); CPUs busy: share of the whole machine (all cores) during the transfers, median"
    )


# ------------------------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="image size (default 1024)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each figure; the median is shown")
    parser.add_argument(
        "--part-mib", type=int, default=10, help="S3 part and Swift segment size (default 10)"
    )
    parser.add_argument("--threads", type=int, default=4, help="parts in flight (the stores' default, 4)")
    parser.add_argument("--workers", type=int, default=1, help="glimpse-server serve --workers")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--tmp-dir", type=Path, default=None, help="where the server's data directory goes")
    args = parser.parse_args()
    if args.size_mib < 1 or args.repeats < 1 or args.part_mib < 5 or args.threads < 1:
        parser.error(
            "--size-mib, --repeats and --threads must be at least 1, --part-mib at least 5 (S3's minimum)"
        )
    return args


def main() -> int:
    args = parse_args()
    env = objectserver.start()
    stream = rawhttp.PatternStream(os.urandom(MiB), args.size_mib * MiB)
    suffix = uuid.uuid4().hex[:12]
    # s3api keeps buckets as containers of the same account: the names must differ.
    bucket, container = f"bench-s3-{suffix}", f"bench-swift-{suffix}"
    plain = Plain(
        env, stream, args.part_mib * MiB, args.threads, f"plain-s3-{suffix}", f"plain-swift-{suffix}"
    )
    s3 = objectserver.s3_client(env, args.threads)
    swift = objectserver.swift_connection(env)
    s3.create_bucket(Bucket=plain.bucket)
    swift.put_container(plain.container)
    swift.put_container(f"{plain.container}_segments")
    workdir = Path(tempfile.mkdtemp(prefix="glimpse-object-bench-", dir=args.tmp_dir))
    os.environ.update(server_settings(env, bucket, container, args.part_mib, args.threads))
    server = Server(workdir, args.workers, None)
    limits: dict[str, list[float]] = {
        "s3_put": [],
        "s3_get": [],
        "swift_put": [],
        "swift_get": [],
        "both": [],
    }
    runs: dict[str, list[float]] = {"upload": [], "download": [], "copy": []}
    rss = {name: PeakRss(server) for name in runs}
    busy: dict[str, list[float]] = {name: [] for name in (*limits, *runs)}
    try:
        log(f"limits: plain S3 and Swift PUT/GET of {args.size_mib} MiB x {args.repeats}")
        for _ in range(args.repeats):
            limits["s3_put"].append(timed(plain.s3_put, busy["s3_put"]))
            limits["s3_get"].append(timed(plain.s3_get, busy["s3_get"]))
            limits["swift_put"].append(timed(plain.swift_put, busy["swift_put"]))
            limits["swift_get"].append(timed(plain.swift_get, busy["swift_get"]))
            limits["both"].append(timed(plain.both_puts, busy["both"]))
        server.start()
        for attempt in range(args.repeats):
            log(f"run {attempt + 1}/{args.repeats}: upload into s3, download, copy-image file -> s3 + swift")
            with rss["upload"].sampling(), machine_busy(busy["upload"]):
                image_id, seconds = upload(server, stream, "big")
            runs["upload"].append(seconds)
            with rss["download"].sampling(), machine_busy(busy["download"]):
                runs["download"].append(download(server, image_id, stream.size))
            source, _ = upload(server, stream, "fast")
            with rss["copy"].sampling(), machine_busy(busy["copy"]):
                copied = tasks_bench.copy_image(server, source, ["big", "obj"], stream.size, log)
            runs["copy"].append(float(copied["seconds"]))
            for each in (image_id, source):
                expect(
                    rawhttp.request(
                        HOST, server.port, "DELETE", f"/v2/images/{each}", headers=tasks_bench.ADMIN
                    ),
                    204,
                    "DELETE /v2/images/{id}",
                )
            server.check_alive()
    except (BenchFailed, tasks_bench.CopyFailed, rawhttp.HttpError) as exc:
        log(f"failed: {exc}")
        print(server.log_tail(), file=sys.stderr)
        return 1
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for each_bucket, each_container in ((plain.bucket, plain.container), (bucket, container)):
            _remove(s3, swift, each_bucket, each_container)
    size = args.size_mib
    report = {
        "machine": procinfo.machine_facts(Path(tempfile.gettempdir())),
        "size_mib": size,
        "part_mib": args.part_mib,
        "threads": args.threads,
        "repeats": args.repeats,
        "rows": [
            row(
                "upload into the S3 store (PUT /file)",
                runs["upload"],
                limits["s3_put"],
                size,
                rss["upload"].peaks,
                (busy["upload"], busy["s3_put"]),
            ),
            row(
                "download from the S3 store (GET /file)",
                runs["download"],
                limits["s3_get"],
                size,
                rss["download"].peaks,
                (busy["download"], busy["s3_get"]),
            ),
            row(
                "copy-image file -> S3 + Swift",
                runs["copy"],
                limits["both"],
                size,
                rss["copy"].peaks,
                (busy["copy"], busy["both"]),
            ),
        ],
        "limits_mib_s": {name: round(size / statistics.median(values), 1) for name, values in limits.items()},
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
        print(f"plain limits (MiB/s): {report['limits_mib_s']}")
    return 0


def _remove(s3: Any, swift: Any, bucket: str, container: str) -> None:
    """Remove a bucket and a container (with its segments container) and what is in them (best effort)."""
    try:
        for item in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
        s3.delete_bucket(Bucket=bucket)
    except Exception as exc:  # clean-up only: report and go on
        log(f"could not remove bucket {bucket}: {exc}")
    for name in (container, f"{container}_segments"):
        try:
            for item in swift.get_container(name, full_listing=True)[1]:
                swift.delete_object(name, item["name"])
            swift.delete_container(name)
        except Exception as exc:  # clean-up only: report and go on
            log(f"could not remove container {name}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
