"""Upload to and download from the S3 store against the object server's own limit, in one run.

Run from the repository root: ``.venv/bin/python bench/s3_store_bench.py [--size-mib 256]``. It
starts (or reuses) the Swift + s3api test server of ``scripts/s3-server.sh``, then, for the same
bytes, with the same library (boto3), part size and parallelism:

* the limit: a plain multipart PUT (parts sent by a thread pool) and a plain GET read in 1 MiB
  blocks, with nothing else around them;
* Glimpse: ``S3Store.write`` from an async source of 1 MiB blocks and ``S3Store.open`` read to the
  end; then, in one more untimed run of each, the peak of Python's heap (tracemalloc), which must
  stay near ``(threads + 1) * part`` whatever ``--size-mib`` is.

Each figure is the best of ``--rounds`` runs. It prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import sys
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import objectserver

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from glimpse.storage.s3 import S3Store  # noqa: E402

MiB = 1024 * 1024


def best_of(rounds: int, size: int, run: Callable[[], None]) -> float:
    """The best rate of ``rounds`` runs, in MiB/s."""
    best = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        best = max(best, size / MiB / (time.perf_counter() - started))
    return round(best, 1)


def peak_heap_mib(run: Callable[[], None]) -> float:
    """The peak of Python's heap above its level at the start, during one more (untimed) run."""
    tracemalloc.start()
    try:
        run()
        return round(tracemalloc.get_traced_memory()[1] / MiB, 1)
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--part-mib", type=int, default=10)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = objectserver.start()
    size, part = args.size_mib * MiB, args.part_mib * MiB
    block = os.urandom(MiB)
    data = block * args.size_mib
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    client: Any = objectserver.s3_client(env, args.threads)
    client.create_bucket(Bucket=bucket)
    store = S3Store(
        "bench",
        endpoint_url=env["S3_ENDPOINT_URL"],
        access_key=env["S3_ACCESS_KEY"],
        secret_key=env["S3_SECRET_KEY"],
        bucket=bucket,
        region=env["S3_REGION"],
        large_object_size=part,
        chunk_size=part,
        thread_pools=args.threads,
        bucket_url_format="path",
    )

    def plain_put() -> None:
        upload = client.create_multipart_upload(Bucket=bucket, Key="plain")["UploadId"]
        view = memoryview(data)

        def send(number: int) -> dict[str, Any]:
            body = bytes(view[(number - 1) * part : number * part])
            etag = client.upload_part(
                Bucket=bucket, Key="plain", UploadId=upload, PartNumber=number, Body=body
            )["ETag"]
            return {"PartNumber": number, "ETag": etag}

        with concurrent.futures.ThreadPoolExecutor(args.threads) as pool:
            parts = list(pool.map(send, range(1, -(-size // part) + 1)))
        client.complete_multipart_upload(
            Bucket=bucket, Key="plain", UploadId=upload, MultipartUpload={"Parts": parts}
        )

    def plain_get() -> None:
        body = client.get_object(Bucket=bucket, Key="plain")["Body"]
        while body.read(MiB):
            pass

    async def source() -> AsyncIterator[bytes]:
        for _ in range(args.size_mib):
            yield block

    def store_put() -> None:
        stored = asyncio.run(store.write("glimpse", source()))
        assert stored.size == size

    def store_get() -> None:
        async def read() -> int:
            total = 0
            async for chunk in await store.open(store.location_for("glimpse")):
                total += len(chunk)
            return total

        assert asyncio.run(read()) == size

    try:
        limit_put = best_of(args.rounds, size, plain_put)
        glimpse_put = best_of(args.rounds, size, store_put)
        limit_get = best_of(args.rounds, size, plain_get)
        glimpse_get = best_of(args.rounds, size, store_get)
        memory = {"plain_put": peak_heap_mib(plain_put), "glimpse_put": peak_heap_mib(store_put)}
        memory["glimpse_get"] = peak_heap_mib(store_get)
    finally:
        for key in ("plain", "glimpse"):
            client.delete_object(Bucket=bucket, Key=key)
        client.delete_bucket(Bucket=bucket)
    report = {
        "size_mib": args.size_mib,
        "part_mib": args.part_mib,
        "threads": args.threads,
        "upload_mib_s": {
            "limit": limit_put,
            "glimpse": glimpse_put,
            "ratio": round(glimpse_put / limit_put, 2),
        },
        "download_mib_s": {
            "limit": limit_get,
            "glimpse": glimpse_get,
            "ratio": round(glimpse_get / limit_get, 2),
        },
        "peak_python_heap_mib": memory,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
