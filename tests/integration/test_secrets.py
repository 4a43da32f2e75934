"""Secrets stay secret: credentials in web-download URLs never reach a task message, an API answer or
the server's log, against a live ``glimpse-server serve`` logging at DEBUG.

The URLs carry the test secrets of ``secretcheck`` (a password in the user information, a presigned
URL's ``X-Amz-Signature``); the plugin fails any test whose logs show them, and these tests check
the answers and the log lines themselves, including that the redacted form is what was written.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_runner_support import WebServer, payload, serve

import secretcheck
from livesupport import Server, free_port, wait_until
from secretcheck import URL_PASSWORD, URL_SIGNATURE, leaks_in

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

MEMBER = {
    "X-Project-Id": "secret-project",
    "X-User-Id": "secret-user",
    "X-Roles": "member,reader",
    "Accept": "application/json",
}
ADMIN = {**MEMBER, "X-Roles": "admin,member,reader"}
DATA = payload(96 * 1024)
PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261206%2Fus-east-1%2Fs3%2Faws4_request"
    f"&X-Amz-Date=20261206T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={URL_SIGNATURE}"
)
SIGNED_PATH = f"/bucket/signed.raw?{PRESIGNED_QUERY}"


@pytest.fixture(scope="module")
def web() -> Iterator[WebServer]:
    yield from serve({SIGNED_PATH: DATA})


@pytest.fixture(scope="module")
def live(web: WebServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("secrets")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GLIMPSE_")}
    env.update({"GLIMPSE_DATA_DIR": str(root / "data"), "GLIMPSE_LOG_LEVEL": "DEBUG", **web.filter_environ})
    server = Server(name="secrets", port=free_port(), log_path=root / "server.log")
    server.start(env)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def new_image(live: Server) -> str:
    body = {"name": "secret", "disk_format": "raw", "container_format": "bare"}
    response = httpx.post(f"{live.url}/v2/images", json=body, headers=MEMBER)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def web_download(live: Server, image_id: str, uri: str) -> httpx.Response:
    body = {"method": {"name": "web-download", "uri": uri}}
    return httpx.post(f"{live.url}/v2/images/{image_id}/import", json=body, headers=MEMBER)


def finished_task(live: Server, image_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def done() -> bool:
        tasks = httpx.get(f"{live.url}/v2/images/{image_id}/tasks", headers=MEMBER).json()["tasks"]
        found.update(tasks[0] if tasks else {})
        return found.get("status") in ("success", "failure")

    wait_until(done, lambda: f"the task did not end: {found}\n{live.log()}", within=30)
    return found


def test_the_server_log_is_watched_by_the_secret_check(live: Server) -> None:
    assert live.log_path in secretcheck._REGISTRY.logs


def test_a_password_in_the_url_is_refused_without_being_repeated(live: Server, web: WebServer) -> None:
    image_id = new_image(live)
    uri = f"http://importer:{URL_PASSWORD}@127.0.0.1:{web.port}/image.raw"
    refused = web_download(live, image_id, uri)
    assert refused.status_code == 400, refused.text
    assert leaks_in(refused.text) == []
    assert "user names and passwords in the URI are not accepted" in refused.text
    assert f"http://***@127.0.0.1:{web.port}/image.raw" in refused.json()["message"]
    image = httpx.get(f"{live.url}/v2/images/{image_id}", headers=MEMBER).json()
    assert image["status"] == "queued"


def test_a_presigned_url_is_imported_and_shown_redacted(live: Server, web: WebServer) -> None:
    image_id = new_image(live)
    accepted = web_download(live, image_id, web.url(SIGNED_PATH))
    assert accepted.status_code == 202, accepted.text
    task = finished_task(live, image_id)
    assert task["status"] == "success", task
    image = httpx.get(f"{live.url}/v2/images/{image_id}", headers=MEMBER).json()
    assert image["size"] == len(DATA)

    shown = task["input"]["import_req"]["method"]["uri"]
    assert "X-Amz-Signature=***" in shown
    assert "X-Amz-Credential=***" in shown
    assert "X-Amz-Date=20261206T000000Z" in shown  # what is no credential stays, to say where it points
    admin_view = httpx.get(f"{live.url}/v2/tasks/{task['id']}", headers=ADMIN)
    assert admin_view.status_code == 200
    for answer in (admin_view.text, str(task), image):
        assert leaks_in(str(answer)) == []

    # httpx logs each request's URL at INFO: the server's log has it, redacted.
    redacted_line = f"GET http://127.0.0.1:{web.port}/bucket/signed.raw?X-Amz-Algorithm"
    wait_until(lambda: redacted_line in live.log(), live.log)
    assert "X-Amz-Signature=***" in live.log()
    assert leaks_in(live.log()) == []


def test_a_failed_presigned_download_names_the_url_redacted(live: Server, web: WebServer) -> None:
    image_id = new_image(live)
    missing = web.url(f"/bucket/missing.raw?{PRESIGNED_QUERY}")
    accepted = web_download(live, image_id, missing)
    assert accepted.status_code == 202, accepted.text
    task = finished_task(live, image_id)
    assert task["status"] == "failure", task
    assert "answered 404" in task["message"]
    assert "X-Amz-Signature=***" in task["message"]
    assert leaks_in(task["message"]) == []
    wait_until(lambda: "missing.raw" in live.log(), live.log)
    assert leaks_in(live.log()) == []


def test_a_secret_in_a_watched_log_is_found(tmp_path: Path) -> None:
    """The check itself: a secret written to a watched file or logged in-process is reported by its
    name only, and the redaction of URLs in log records is what it looks through."""
    log = tmp_path / "leaky.log"
    log.write_text(f"first line\nGET http://h/x?token={URL_SIGNATURE}\n")  # a file: nothing redacts it
    secretcheck.watch_log(log)
    logging.getLogger("glimpse.test").warning("password is %s", URL_PASSWORD)
    logging.getLogger("glimpse.test").warning("fetching http://u:%s@h/x", URL_PASSWORD)  # redacted
    leaks = secretcheck._take_leaks()
    assert leaks == [
        "log record of glimpse.test (WARNING): the password of a web-download URL",
        "leaky.log, byte 11: the signature of a presigned URL",
    ]
    with log.open("a") as more:
        more.write("a line without secrets\n")
    assert secretcheck._take_leaks() == []  # what was reported once is not reported again
    assert not any(URL_PASSWORD in leak or URL_SIGNATURE in leak for leak in leaks)
