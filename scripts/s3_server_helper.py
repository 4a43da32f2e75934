"""The Python half of scripts/s3-server.sh, run by the Swift virtualenv's interpreter (``python -I``).

    s3_server_helper.py ports N              print N free TCP ports on 127.0.0.1
    s3_server_helper.py rings ETC PORTS...   build the account, container and object rings
                                             (one device "d1", one replica) for those 3 ports
    s3_server_helper.py serve ETC CONF NAME  run one Swift server in the foreground, logging to
                                             stderr, with swift.conf read from ETC
    s3_server_helper.py wait SECONDS PORT USER KEY BACKEND_PORTS...
                                             wait until every server answers /healthcheck, a
                                             tempauth token works and the proxy speaks S3
    s3_server_helper.py proxy-config AUTH ETC PORT MEMCACHE RUN_AS NAME=VALUE...
                                             print a proxy server's configuration, AUTH being
                                             tempauth (with S3; NAME: account, user, key) or
                                             keystone (NAME: keystone_url, password,
                                             token_cache_time); tests/objectsupport.py writes its
                                             Keystone-validating proxy's with it

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


#: The proxy's pipeline around its authentication middlewares, the same for both kinds of proxy.
_PIPELINE_HEAD = ("catch_errors", "gatekeeper", "healthcheck", "proxy-logging", "cache", "listing_formats")
_PIPELINE_TAIL = ("copy", "slo", "dlo", "proxy-logging", "proxy-server")


def _tempauth(options: dict[str, str]) -> tuple[tuple[str, ...], str, str]:
    # s3api before tempauth: S3 access key "<account>:<user>", secret = the tempauth key.
    sections = f"""[filter:s3api]
use = egg:swift#s3api
location = us-east-1
dns_compliant_bucket_names = true
allow_multipart_uploads = true
max_upload_part_num = 10000
min_segment_size = 1048576
s3_acl = false

[filter:tempauth]
use = egg:swift#tempauth
reseller_prefix = AUTH
user_{options["account"]}_{options["user"]} = {options["key"]} .admin
"""
    return ("bulk", "s3api", "tempauth"), "allow_account_management = true\n", sections


def _keystone(options: dict[str, str]) -> tuple[tuple[str, ...], str, str]:
    # authtoken validates the token and sets the identity headers; keystoneauth lets a user with an
    # operator role on a project into the account AUTH_<project id>.
    url = options["keystone_url"]
    sections = f"""[filter:authtoken]
paste.filter_factory = keystonemiddleware.auth_token:filter_factory
www_authenticate_uri = {url}/v3
auth_url = {url}/v3
auth_type = password
username = swift
password = {options["password"]}
project_name = service
user_domain_id = default
project_domain_id = default
delay_auth_decision = true
include_service_catalog = false
http_connect_timeout = 5
# Validations are believed for a few seconds only, so that a revoked token is refused soon after.
token_cache_time = {options["token_cache_time"]}

[filter:keystoneauth]
use = egg:swift#keystoneauth
reseller_prefix = AUTH
operator_roles = admin, member
"""
    return ("authtoken", "keystoneauth"), "", sections


_AUTH = {"tempauth": (_tempauth, "proxy-server"), "keystone": (_keystone, "proxy-keystone")}

#: The sections of the middlewares both kinds of proxy may have, in the order they are written.
_FILTERS = {
    "catch_errors": "use = egg:swift#catch_errors\n",
    "gatekeeper": "use = egg:swift#gatekeeper\n",
    "healthcheck": "use = egg:swift#healthcheck\n",
    "proxy-logging": "use = egg:swift#proxy_logging\n",
    "listing_formats": "use = egg:swift#listing_formats\n",
    "bulk": "use = egg:swift#bulk\n",
    "copy": "use = egg:swift#copy\n",
    "slo": "use = egg:swift#slo\nmax_manifest_segments = 10000\n",
    "dlo": "use = egg:swift#dlo\n",
}


def proxy_config(auth: str, etc: str, port: int, memcache: str, run_as: str, options: dict[str, str]) -> str:
    """A Swift proxy's configuration: tempauth with S3 (scripts/s3-server.sh's proxy) or Keystone
    tokens (tests/objectsupport.py's), on the account, container and object servers of ``etc``."""
    build, log_name = _AUTH[auth]
    middlewares, app_extra, auth_sections = build(options)
    pipeline = (*_PIPELINE_HEAD, *middlewares, *_PIPELINE_TAIL)
    filters = "".join(f"\n[filter:{name}]\n{body}" for name, body in _FILTERS.items() if name in pipeline)
    return f"""[DEFAULT]
bind_ip = 127.0.0.1
bind_port = {port}
workers = 1
user = {run_as}
swift_dir = {etc}
log_name = {log_name}

[pipeline:main]
pipeline = {" ".join(pipeline)}

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true
{app_extra}
{auth_sections}
[filter:cache]
use = egg:swift#memcache
memcache_servers = {memcache}
{filters}"""


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
    if command == "proxy-config":
        options = dict(arg.split("=", 1) for arg in args[5:])
        print(proxy_config(args[0], args[1], int(args[2]), args[3], args[4], options), end="")
        return 0
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
