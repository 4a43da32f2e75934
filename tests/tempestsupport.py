"""Tempest's image API tests (``tempest.api.image``) against a Keystone-protected Glimpse.

:func:`install_tempest` installs Tempest, pinned, into ``.tools/tempest-venv`` (``scripts/tempest-venv.sh``,
once per machine under a file lock). :func:`write_workspace` makes a Tempest workspace (``tempest init``)
and writes its ``etc/tempest.conf`` for a real Keystone (:class:`keystonesupport.KeystoneServer`) whose
catalog lists a live Glimpse (:func:`keystonesupport.protected_server`): dynamic credentials (Tempest
makes its own projects and users through Keystone's admin API), only the image service available, and
the image feature flags set to what :data:`GLIMPSE_SETTINGS` makes Glimpse do. :func:`run_tempest` runs
the tests with ``--concurrency 2`` and returns each test's status from stestr's subunit stream.

:class:`FileServer` serves the image that the web-download tests import, on loopback; Glimpse is told to
allow that one address and port (``[import_filtering_opts]``), since its address rules refuse loopback.

A Tempest that cannot be installed or run makes the test fail with the script's output, never skip.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import pytest
from filelock import FileLock

from keystonesupport import ADMIN_PASSWORD, REGION, KeystoneServer

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_SCRIPT = REPO_ROOT / "scripts" / "tempest-venv.sh"
RESULTS_SCRIPT = REPO_ROOT / "scripts" / "tempest_results.py"
INSTALL_TIMEOUT = 600  # seconds; the first install downloads Tempest and its dependencies
#: The whole ``tempest run``: a hung test is stopped by Tempest itself after TEST_TIMEOUT.
RUN_TIMEOUT = 900
TEST_TIMEOUT = 180
#: Which tests run: every image API test of Tempest.
TEST_REGEX = r"^tempest\.api\.image\."

#: The one store of the Glimpse under test. Tempest's waiter for an import
#: (``waiters.wait_for_image_imported_to_stores``) expects an import that names no store to land in
#: *every* writable store listed by ``/v2/info/stores``, and the image's ``stores`` to be those ids
#: sorted: with several stores Glimpse imports to the default store only (as Glance does) and lists
#: ``stores`` in the order the copies finished. So one store: the import tests pass, and Tempest skips
#: its multi-store tests itself ("only one store is configured").
STORE = "fast"


def glimpse_settings(web: FileServer, port: int) -> dict[str, str]:
    """Environment settings of the Glimpse under test (listening on ``port``), beyond
    :func:`keystonesupport.protected_server`'s."""
    return {
        "GLIMPSE_ENABLED_BACKENDS": f"{STORE}:file",
        "GLIMPSE_ENABLED_IMPORT_METHODS": "glance-direct,web-download,copy-image,glance-download",
        # Tempest's listing tests upload random bytes as qcow2, vhd, ami...: they run only when the
        # data need not match its disk_format (Tempest's image_format_enforcement = false, below).
        # Glimpse's own tests cover the inspection (tests/integration/test_runner_content.py...).
        "GLIMPSE_IMAGE_FORMAT__REQUIRE_IMAGE_FORMAT_MATCH": "false",
        # Tempest uses a handful of users for minutes: validate each token once, not every 2 s.
        "GLIMPSE_KEYSTONE_AUTHTOKEN__TOKEN_CACHE_TIME": "300",
        # web-download from the loopback file server, glance-download from Glimpse itself (Tempest's
        # region is the one Glimpse serves: its catalog endpoint), and nothing else on loopback.
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_HOSTS": "127.0.0.1",
        "GLIMPSE_IMPORT_FILTERING_OPTS__ALLOWED_PORTS": f"{web.port},{port}",
    }


def install_tempest() -> Path:
    """The virtualenv holding Tempest (installed when missing); fails the test if it cannot be had."""
    lock_dir = REPO_ROOT / ".tools"
    lock_dir.mkdir(exist_ok=True)
    with FileLock(str(lock_dir / "tempest-venv.lock"), timeout=INSTALL_TIMEOUT + 60):
        try:
            done = subprocess.run(
                ["bash", str(VENV_SCRIPT)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.fail(f"could not run `scripts/tempest-venv.sh`: {exc}", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"`scripts/tempest-venv.sh` failed with exit code {done.returncode}; the Tempest test needs it.\n"
            f"--- stdout ---\n{done.stdout}\n--- stderr ---\n{done.stderr}",
            pytrace=False,
        )
    return Path(done.stdout.strip().splitlines()[-1])


class _Files(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


class FileServer:
    """A plain HTTP server on 127.0.0.1 serving ``{path: bytes}``, in a thread of the test process."""

    def __init__(self, files: dict[str, bytes]) -> None:
        handler = type("Handler", (_Files,), {"files": dict(files)})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._httpd.server_address[1]
        return port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def tempest_conf(keystone: KeystoneServer, image_url: str, workspace: Path) -> str:
    """``tempest.conf`` for the image API tests against ``keystone``'s catalog."""
    sections: dict[str, dict[str, str]] = {
        "DEFAULT": {"log_dir": str(workspace / "logs"), "log_file": "tempest.log", "debug": "false"},
        "oslo_concurrency": {"lock_path": str(workspace / "locks")},
        "auth": {
            "use_dynamic_credentials": "true",
            "create_isolated_networks": "false",
            "admin_username": "admin",
            "admin_password": ADMIN_PASSWORD,
            "admin_project_name": "admin",
            "admin_domain_name": "Default",
            "default_credentials_domain_name": "Default",
        },
        "identity": {
            "uri_v3": f"{keystone.url}/v3",
            "auth_version": "v3",
            "region": REGION,
            "v3_endpoint_type": "public",
        },
        "identity-feature-enabled": {"api_v2": "false"},
        "service_available": {
            "glance": "true",
            "nova": "false",
            "cinder": "false",
            "neutron": "false",
            "swift": "false",
        },
        # Glimpse enforces Glance's secure-RBAC defaults with scope checks: Tempest then reads
        # through a project-reader user.
        "enforce_scope": {"glance": "true"},
        "image": {
            "region": REGION,
            "endpoint_type": "public",
            "http_image": image_url,
            "http_qcow2_image": image_url,
            "container_formats": "bare,ami,ari,aki,ovf,ova",
            "disk_formats": "qcow2,raw,ami,ari,aki,vhd,vmdk,vdi,iso,vhdx",
            "hashing_algorithm": "sha512",
            "build_timeout": "30",
            "build_interval": "1",
        },
        "image-feature-enabled": {
            "import_image": "true",
            "os_glance_reserved": "true",
            # Not offered: the locations API (show_multiple_locations), image conversion on import,
            # the http store, store weights.
            "manage_locations": "false",
            "image_conversion": "false",
            "http_store_enabled": "false",
            "store_weight_enabled": "false",
            # require_image_format_match is off in glimpse_settings(): the listing tests run.
            "image_format_enforcement": "false",
            "do_secure_hash": "true",
        },
    }
    lines: list[str] = []
    for name, options in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
        lines.append("")
    return "\n".join(lines)


@dataclass(frozen=True)
class Workspace:
    path: Path
    config: Path


def write_workspace(venv: Path, root: Path, keystone: KeystoneServer, image_url: str) -> Workspace:
    """A Tempest workspace under ``root`` (``tempest init``, registered in a file of its own)."""
    path = root / "workspace"
    done = subprocess.run(
        [
            str(venv / "bin" / "tempest"),
            "init",
            "--workspace-path",
            str(root / "workspaces.yaml"),
            "--name",
            "glimpse",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(f"`tempest init` failed ({done.returncode}):\n{done.stdout}{done.stderr}", pytrace=False)
    (path / "logs").mkdir(exist_ok=True)
    (path / "locks").mkdir(exist_ok=True)
    config = path / "etc" / "tempest.conf"
    config.write_text(tempest_conf(keystone, image_url, path))
    return Workspace(path, config)


@dataclass(frozen=True)
class Run:
    """What ``tempest run`` said, and each test's ``{"status", "reason"}`` keyed by its plain id
    (:func:`per_test`)."""

    returncode: int
    output: str
    results: dict[str, dict[str, str]]


def plain_id(test_id: str) -> str:
    """A test id without Tempest's attributes: ``a.b.C.test_x[id-...,smoke]`` -> ``a.b.C.test_x``."""
    return re.sub(r"\[[^\]]*\]$", "", test_id)


_CLASS_LEVEL = re.compile(r"(setUpClass|tearDownClass) \((.+)\)")


def per_test(raw: dict[str, dict[str, str]], listed: list[str]) -> dict[str, dict[str, str]]:
    """Each listed test's outcome, keyed by its plain id.

    A class whose ``setUpClass`` raised (Tempest's class-level skips, or a failure) is reported once, as
    ``setUpClass (module.Class)``: that outcome is given to each of the class's tests. A listed test with
    no outcome is ``missing``; a failed ``tearDownClass`` is reported as ``module.Class.tearDownClass``.
    """
    results: dict[str, dict[str, str]] = {}
    set_up: dict[str, dict[str, str]] = {}
    for test_id, outcome in raw.items():
        level = _CLASS_LEVEL.fullmatch(test_id)
        if level is None:
            results[plain_id(test_id)] = outcome
        elif level[1] == "setUpClass":
            set_up[level[2]] = outcome
        else:
            results[f"{level[2]}.tearDownClass"] = outcome
    for test_id in map(plain_id, listed):
        if test_id not in results:
            results[test_id] = set_up.get(
                test_id.rpartition(".")[0],
                {"status": "missing", "reason": "listed by `stestr list`, but no outcome was reported"},
            )
    return results


def run_tempest(venv: Path, workspace: Workspace) -> Run:
    env = {
        "PATH": f"{venv / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(workspace.path),
        "LANG": "C.UTF-8",
        "OS_TEST_TIMEOUT": str(TEST_TIMEOUT),
        "TEMPEST_CONFIG_DIR": str(workspace.config.parent),
        "TEMPEST_CONFIG": workspace.config.name,
    }
    try:
        done = subprocess.run(
            [
                str(venv / "bin" / "tempest"),
                "run",
                "--config-file",
                str(workspace.config),
                "--regex",
                TEST_REGEX,
                "--concurrency",
                "2",
            ],
            cwd=workspace.path,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`tempest run` did not finish within {RUN_TIMEOUT}s:\n{exc.stdout!r}", pytrace=False)
    listing = subprocess.run(
        [str(venv / "bin" / "stestr"), "list", TEST_REGEX],
        cwd=workspace.path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    listed = [line.strip() for line in listing.stdout.splitlines() if re.match(TEST_REGEX, line.strip())]
    stream = subprocess.run(
        [str(venv / "bin" / "stestr"), "last", "--subunit"],
        cwd=workspace.path,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    parsed = subprocess.run(
        [str(venv / "bin" / "python"), "-I", str(RESULTS_SCRIPT)],
        input=stream.stdout,
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    if parsed.returncode != 0 or not stream.stdout or not listed:
        pytest.fail(
            "could not read the results of `tempest run` (exit code "
            f"{done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}\n"
            f"{listing.stderr}\n{stream.stderr.decode(errors='replace')}\n{parsed.stderr.decode(errors='replace')}",
            pytrace=False,
        )
    raw: dict[str, dict[str, str]] = json.loads(parsed.stdout)
    return Run(done.returncode, done.stdout + done.stderr, per_test(raw, listed))


def read_list(path: Path) -> list[tuple[str, str]]:
    """``(pattern, reason)`` for each line ``PATTERN  # reason`` of a list in ``tests/data`` (stestr's
    exclude-list format: a regular expression, then the reason as a comment). Comment-only and blank
    lines are skipped; a pattern without a reason is an error."""
    entries: list[tuple[str, str]] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pattern, _, reason = line.partition("#")
        if not pattern.strip() or not reason.strip():
            raise ValueError(f"{path.name}:{number}: want 'PATTERN  # reason', got {line!r}")
        re.compile(pattern.strip())
        entries.append((pattern.strip(), reason.strip()))
    return entries


@dataclass
class Verdict:
    """A run's results held against the two lists: what passed, was skipped (with Tempest's reason),
    failed as listed, and every way the run differs from the lists."""

    passed: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    known_failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{len(self.passed)} passed, {len(self.skipped)} skipped, "
            f"{len(self.known_failures)} excluded (run, and failing as listed)"
        )


def _first(patterns: list[tuple[str, str]], test_id: str) -> str | None:
    """The first pattern matching ``test_id`` (``re.search``, as stestr matches its lists)."""
    return next((pattern for pattern, _ in patterns if re.search(pattern, test_id)), None)


def judge(
    results: dict[str, dict[str, str]],
    excluded: list[tuple[str, str]],
    expected_skips: list[tuple[str, str]],
) -> Verdict:
    """Hold ``results`` (plain test id -> ``{"status", "reason"}``) against the exclude and skip lists.

    A listed exclusion must not pass (then its line is out of date); every skip must be listed; every
    other test must pass; and every line of both lists must still match a test.
    """
    verdict = Verdict()
    used: set[str] = set()
    for test_id, outcome in sorted(results.items()):
        status, reason = outcome["status"], outcome["reason"]
        exclusion = _first(excluded, test_id)
        if exclusion is not None:
            used.add(exclusion)
            if status == "success":
                verdict.problems.append(f"{test_id} passes now: remove {exclusion!r} from the exclude list")
            else:
                verdict.known_failures.append(test_id)
        elif status == "skip":
            verdict.skipped[test_id] = reason
            expected = _first(expected_skips, test_id)
            if expected is None:
                verdict.problems.append(
                    f"{test_id} was skipped ({reason}), and the skip list does not name it"
                )
            else:
                used.add(expected)
        elif status == "success":
            verdict.passed.append(test_id)
        else:
            verdict.problems.append(f"{test_id}: {status}\n{reason}")
    verdict.problems += [f"{p!r} (exclude list) matches no test" for p, _ in excluded if p not in used]
    verdict.problems += [
        f"{p!r} (skip list) matches no skipped test" for p, _ in expected_skips if p not in used
    ]
    return verdict
