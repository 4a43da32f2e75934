"""The Python half of scripts/s3-server.sh, run by the Swift virtualenv's interpreter (``python -I``).

    s3_server_helper.py ports N              print N free TCP ports on 127.0.0.1
    s3_server_helper.py rings ETC PORTS...   build the account, container and object rings
                                             (one device "d1", one replica) for those 3 ports
    s3_server_helper.py serve ETC CONF NAME  run one Swift server in the foreground, logging to
                                             stderr, with swift.conf read from ETC
    s3_server_helper.py wait SECONDS PORT USER KEY BACKEND_PORTS...
                                             wait until every server answers /healthcheck, a
                                             tempauth token works and the proxy speaks S3

It only uses the standard library and Swift itself, so it runs without the project installed.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
import urllib.error
import urllib.request


def free_ports(count: int) -> list[int]:
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def build_rings(etc: str, account: int, container: int, obj: int) -> None:
    from swift.common.ring import RingBuilder

    for kind, port in (("account", account), ("container", container), ("object", obj)):
        builder = RingBuilder(6, 1, 1)  # 64 partitions, one replica, one hour between moves
        builder.add_dev(
            {"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1", "port": port, "device": "d1", "weight": 1.0}
        )
        builder.rebalance()
        builder.get_ring().save(os.path.join(etc, f"{kind}.ring.gz"))


def serve(etc: str, conf: str, name: str) -> int:
    from swift.common import utils

    utils.set_swift_dir(etc)  # swift.conf (hash suffix, policies, constraints) from ETC, not /etc/swift
    from swift.common import constraints, storage_policy

    storage_policy.reload_storage_policies()
    constraints.reload_constraints()

    # Swift logs to syslog by default; a test server logs to its stderr (its log file) instead.
    class _NoSyslog(logging.NullHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__()

    for module_name in ("swift.common.utils", "swift.common.utils.logs"):
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, "ThreadSafeSysLogHandler"):
            module.ThreadSafeSysLogHandler = _NoSyslog  # type: ignore[attr-defined]
    from swift.common.wsgi import run_wsgi

    return int(run_wsgi(conf, name, verbose=True) or 0)


def _request(
    url: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def wait(timeout: float, port: int, user: str, key: str, backends: list[int]) -> int:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            for each in [*backends, port]:
                status, _ = _request(f"http://127.0.0.1:{each}/healthcheck")
                if status != 200:
                    raise RuntimeError(f"/healthcheck on port {each} answered {status}")
            base = f"http://127.0.0.1:{port}"
            status, headers = _request(f"{base}/auth/v1.0", {"X-Auth-User": user, "X-Auth-Key": key})
            if status != 200:
                raise RuntimeError(f"tempauth answered {status}")
            status, _ = _request(headers["X-Storage-Url"], {"X-Auth-Token": headers["X-Auth-Token"]}, "HEAD")
            if status // 100 != 2:
                raise RuntimeError(f"HEAD of the Swift account answered {status}")
            # An unsigned S3 request is refused by s3api itself (403 with an S3 error document),
            # which proves the middleware is in the pipeline.
            status, headers = _request(f"{base}/", {"Authorization": "AWS nobody:nothing"})
            if status != 403 or "xml" not in headers.get("Content-Type", ""):
                raise RuntimeError(f"the S3 API answered {status} {headers.get('Content-Type')}")
            return 0
        except (OSError, RuntimeError, KeyError) as exc:
            last = exc
            time.sleep(0.2)
    print(f"the Swift servers were not ready after {timeout:g}s: {last}", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    command, args = argv[0], argv[1:]
    if command == "ports":
        print(" ".join(map(str, free_ports(int(args[0])))))
        return 0
    if command == "rings":
        build_rings(args[0], int(args[1]), int(args[2]), int(args[3]))
        return 0
    if command == "serve":
        return serve(args[0], args[1], args[2])
    if command == "wait":
        return wait(float(args[0]), int(args[1]), args[2], args[3], [int(p) for p in args[4:]])
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
