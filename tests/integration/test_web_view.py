"""The task page (``GET /v2/images/{id}/tasks`` with ``Accept: text/html``) in a real headless Chromium.

One live ``glimpse-server serve`` for the module with four stores: ``slow``, an S3 store on the object
test server reached through a ``TcpRelay`` that the test throttles, and three file stores. A
copy-image from ``slow`` reads its source through the throttled relay, so the bars move for seconds;
the browser (``browser``, one per module, in conftest.py) watches them move to 100 % and the stores
appear. The browser sends the no-auth identity headers on every request of its context, as an
authenticating proxy in front of Glimpse would, so the page's own ``fetch()`` of the feed carries
them too.

``GLIMPSE_SCREENSHOT_DIR=docs/media`` makes the copy test save the picture the docs show
(``web-view-copy.png``, taken while the copy is under way).
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from livesupport import PortTaken, Server, free_port
from objectsupport import ObjectServer
from tcprelay import TcpRelay

# The first test of a module starts the browser, installing Debian's chromium first on a fresh
# machine (minutes): more than the suite's per-test timeout.
pytestmark = [pytest.mark.live, pytest.mark.objects, pytest.mark.timeout(900)]

PROJECT = "proj-web"
IDENTITY = {"X-Project-Id": PROJECT, "X-User-Id": "alice", "X-Roles": "member,reader"}
#: copy-image is for administrators (Glance's default policy); this one works from another project.
OPERATOR = {"X-Project-Id": "proj-ops", "X-User-Id": "operator", "X-Roles": "admin,member,reader"}
OTHER = {"X-Project-Id": "proj-elsewhere", "X-User-Id": "bob", "X-Roles": "member,reader"}
#: What Chromium sends when it navigates to a page.
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
IMAGE_SIZE = 6 * 1024 * 1024
#: Bytes per second for the copy's reads from ``slow``: a few seconds for the whole image.
SLOW_RATE = 2 * 1024 * 1024
TARGETS = ("fast", "cheap", "reliable")


@dataclass
class ViewServer:
    server: Server
    relay: TcpRelay

    @property
    def url(self) -> str:
        return self.server.url

    def http(self, headers: dict[str, str] = IDENTITY) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def _remove_bucket(objects: ObjectServer, bucket: str) -> None:
    client: Any = boto3.session.Session().client(
        "s3",
        endpoint_url=objects.s3_endpoint_url,
        aws_access_key_id=objects.s3_access_key,
        aws_secret_access_key=objects.s3_secret_key,
        config=botocore.config.Config(region_name=objects.s3_region, s3={"addressing_style": "path"}),
    )
    try:
        for item in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
        client.delete_bucket(Bucket=bucket)
    except client.exceptions.NoSuchBucket:
        pass


@pytest.fixture(scope="module")
def view(tmp_path_factory: pytest.TempPathFactory, s3_server: ObjectServer) -> Iterator[ViewServer]:
    root = tmp_path_factory.mktemp("web-view")
    endpoint = urllib.parse.urlsplit(s3_server.s3_endpoint_url)
    assert endpoint.hostname is not None
    assert endpoint.port is not None
    relay = TcpRelay(endpoint.hostname, endpoint.port)
    relay.start()
    bucket = f"web-view-{uuid.uuid4().hex[:12]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIMPSE_", "OS_"))}
    env.update(
        {
            "GLIMPSE_DATA_DIR": str(root / "data"),
            "GLIMPSE_LOG_LEVEL": "WARNING",
            "GLIMPSE_ENABLED_BACKENDS": "slow:s3,fast:file,cheap:file,reliable:file",
            "GLIMPSE_GLANCE_STORE__DEFAULT_BACKEND": "slow",
            "GLIMPSE_SLOW__S3_STORE_HOST": f"http://127.0.0.1:{relay.port}",
            "GLIMPSE_SLOW__S3_STORE_ACCESS_KEY": s3_server.s3_access_key,
            "GLIMPSE_SLOW__S3_STORE_SECRET_KEY": s3_server.s3_secret_key,
            "GLIMPSE_SLOW__S3_STORE_BUCKET": bucket,
            "GLIMPSE_SLOW__S3_STORE_CREATE_BUCKET_ON_PUT": "true",
            "GLIMPSE_SLOW__S3_STORE_BUCKET_URL_FORMAT": "path",
            **{f"GLIMPSE_{store.upper()}__FILESYSTEM_STORE_FSYNC": "false" for store in TARGETS},
            "GLIMPSE_TASK__TASK_PROGRESS_INTERVAL": "0.1",
            "GLIMPSE_TASK__TASK_WATCH_INTERVAL": "0.1",
            "GLIMPSE_TASK__RUNNER_POLL_INTERVAL": "0.2",
        }
    )
    live: Server | None = None
    try:
        for attempt in range(3):
            live = Server(name="web-view", port=free_port(), log_path=root / f"server-{attempt}.log")
            live.start(env)
            try:
                live.wait_ready()
                break
            except PortTaken:
                continue
        else:
            pytest.fail("no free port for the web view server after 3 attempts", pytrace=False)
        yield ViewServer(live, relay)
    finally:
        if live is not None:
            live.stop()
        relay.resume()
        relay.stop()
        _remove_bucket(s3_server, bucket)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(
        extra_http_headers=IDENTITY, viewport={"width": 1000, "height": 900}, locale="en-GB"
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def _image(view: ViewServer, name: str, size: int = IMAGE_SIZE) -> str:
    with view.http() as http:
        made = http.post("/v2/images", json={"name": name, "disk_format": "raw", "container_format": "bare"})
        assert made.status_code == 201, made.text
        image_id: str = made.json()["id"]
        sent = http.put(
            f"/v2/images/{image_id}/file",
            content=os.urandom(size),
            headers={"Content-Type": "application/octet-stream"},
        )
        assert sent.status_code == 204, sent.text
    return image_id


def _bars(page: Page) -> dict[str, float | None]:
    """Each target store's bar of the (only) task on the page: its ``aria-valuenow``."""
    values: dict[str, float | None] = page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('article.task li.store-bar')].map(
            (li) => [li.dataset.store, (() => {
                const v = li.querySelector('[role=progressbar]').getAttribute('aria-valuenow');
                return v === null ? null : Number(v);
            })()]))"""
    )
    return values


def test_chromium_starts_and_renders(browser: Browser) -> None:
    """The browser the view tests use is the real Chromium, and it runs script."""
    assert browser.version.split(".")[0].isdigit(), browser.version
    page = browser.new_page()
    try:
        page.set_content("<p id=out></p><script>document.getElementById('out').textContent = 6 * 7</script>")
        assert page.inner_text("#out") == "42"
    finally:
        page.close()


def test_bars_move_live_to_100_and_the_stores_appear(view: ViewServer, page: Page) -> None:
    image_id = _image(view, "web <view> & copy")
    feeds: list[Request] = []
    page.on("request", lambda r: feeds.append(r) if r.headers.get("accept") == "text/event-stream" else None)
    page.goto(f"{view.url}/v2/images/{image_id}/tasks")
    assert page.title() == "Tasks of image web <view> & copy · Glimpse"
    assert page.inner_text("h1") == "Tasks of image web <view> & copy"  # escaped, shown as text
    expect(page.locator("#feed-status")).to_have_text(re.compile(r"^Live: no task is running"))
    assert page.inner_text(".stores-summary") == "1 of 4 stores hold a copy."
    assert page.get_attribute("#stores li[data-store=fast]", "data-has-copy") == "false"

    view.relay.rate = SLOW_RATE
    try:
        with view.http(OPERATOR) as http:
            started = http.post(
                f"/v2/images/{image_id}/import",
                json={"method": {"name": "copy-image"}, "stores": list(TARGETS)},
            )
        assert started.status_code == 202, started.text
        task_id = started.headers["OpenStack-image-import-task-id"]
        # The page was open before the task existed: the feed brings it in.
        page.wait_for_selector(f"#task-{task_id} li.store-bar[data-store=reliable]", timeout=30_000)
        seen: dict[str, list[float]] = {store: [] for store in TARGETS}
        lock_text = ""
        shot_taken = False
        deadline = time.monotonic() + 90
        while True:
            bars = _bars(page)
            for store in TARGETS:
                value = bars.get(store)
                if value is not None and (not seen[store] or seen[store][-1] != value):
                    seen[store].append(value)
            moving = [v for v in bars.values() if v is not None and 0 < v < 100]
            if moving and not lock_text:
                lock_text = page.inner_text("#lock")
            if moving and not shot_taken and min(moving) > 20 and os.environ.get("GLIMPSE_SCREENSHOT_DIR"):
                shot = Path(os.environ["GLIMPSE_SCREENSHOT_DIR"]) / "web-view-copy.png"
                page.screenshot(path=str(shot), full_page=True)
                shot_taken = True
            if all(bars.get(store) == 100 for store in TARGETS):
                break
            assert time.monotonic() < deadline, f"bars stuck at {bars}; seen {seen}"
            time.sleep(0.05)
    finally:
        view.relay.rate = None

    for store, values in seen.items():
        assert values == sorted(values), f"{store}'s bar went back: {values}"
        assert any(0 < v < 100 for v in values), f"{store}'s bar never showed a value in between: {values}"
        assert values[-1] == 100
    # The operator's project is not the viewer's: who started it is left out, as in the JSON listing.
    assert f"Held by task {task_id} (▶ processing), started by another project's request" in lock_text
    assert "The lock can be broken from" in lock_text
    assert "after 60 minutes without a heartbeat" in lock_text

    # The page loads no code it has not named (CSP), so the waits are Playwright's own, not page code.
    expect(page.locator(f"#task-{task_id} h3 .status")).to_have_attribute(
        "data-state", "success", timeout=30_000
    )
    expect(page.locator(".stores-summary")).to_have_text("4 of 4 stores hold a copy.", timeout=30_000)
    bar = page.locator(f"#task-{task_id} li.store-bar[data-store=cheap]")
    assert bar.locator("[role=progressbar]").get_attribute("aria-valuetext") == (
        "100 % · done · 6.0 MiB of 6.0 MiB"
    )
    assert bar.locator(".store-state").inner_text() == "✓ done"  # a word and a mark, not colour only
    for store in ("slow", *TARGETS):
        assert page.get_attribute(f"#stores li[data-store={store}]", "data-has-copy") == "true"
        assert page.inner_text(f"#stores li[data-store={store}]") == f"✓ {store}: holds a copy"
    assert "No import holds the lock" in page.inner_text("#lock")
    # The history section is the server's too: the finished copy is its newest entry.
    expect(page.locator("#history tbody tr").first).to_contain_text("copy", timeout=30_000)
    expect(page.locator("#history tbody tr").first).to_contain_text("✓ success")
    assert page.inner_text("#feed-status").startswith("Live: no task is running")
    # The feed is the page's own fetch() of the same URL, with the identity the page request carried.
    assert feeds, "the page never opened its feed"
    for feed in feeds:
        assert feed.url == f"{view.url}/v2/images/{image_id}/tasks"
        assert feed.all_headers()["x-project-id"] == PROJECT


def test_an_image_the_caller_cannot_see_is_a_404_page(view: ViewServer, browser: Browser) -> None:
    image_id = _image(view, "private to proj-web", size=1024)
    context = browser.new_context(extra_http_headers=OTHER)
    try:
        page = context.new_page()
        for target in (image_id, str(uuid.uuid4())):
            response = page.goto(f"{view.url}/v2/images/{target}/tasks")
            assert response is not None
            assert response.status == 404
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert page.inner_text("h1") == "404 Not Found"
            assert page.inner_text(".error-message") == f"No image found with ID {target}"
            assert page.locator("article.task").count() == 0
    finally:
        context.close()


def test_json_clients_get_the_json_listing_unchanged(view: ViewServer) -> None:
    image_id = _image(view, "json stays json", size=1024)
    url = f"/v2/images/{image_id}/tasks"
    with view.http() as http, view.http(OPERATOR) as operator:
        started = operator.post(
            f"/v2/images/{image_id}/import", json={"method": {"name": "copy-image"}, "stores": ["fast"]}
        )
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 30
        while http.get(url).json()["tasks"][0]["status"] != "success":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        plain = http.get(url, headers={"Accept": ""})
        for accept in ("*/*", "application/json", "application/json, text/html", "text/*", None):
            headers = {} if accept is None else {"Accept": accept}
            answer = http.get(url, headers=headers)
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "application/json", accept
            assert answer.content == plain.content, accept
        body = json.loads(plain.content)
        assert [task["id"] for task in body["tasks"]] == [started.headers["OpenStack-image-import-task-id"]]
        page = http.get(url, headers={"Accept": BROWSER_ACCEPT})
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        for name in ("task-view.js", "task-view.css"):
            static = httpx.get(f"{view.url}/static/{name}")  # no identity needed: no data in them
            assert static.status_code == 200
