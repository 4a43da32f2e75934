"""``GET /metrics`` in process: who may read it, and the counters that move with requests, uploads,
downloads, stages, import locks and watchers (the metrics of this test process, read as deltas)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from apitools import ADMIN, OCTET, OWNER, new_image, upload
from starlette.testclient import TestClient

import metricsupport
from glimpse.api.v2.task_events import watched
from glimpse.telemetry import metrics
from metricsupport import Samples, delta

NO_RUNNER = {"GLIMPSE_TASK__EMBEDDED_RUNNER": "false", "GLIMPSE_ENABLED_BACKENDS": "fast:file,cheap:file"}


def scrape(client: TestClient) -> Samples:
    return metricsupport.scrape(client, ADMIN)


@pytest.fixture
def api(make_client: Callable[..., TestClient], migrated_database_url: str) -> TestClient:
    return make_client(migrated_database_url, **NO_RUNNER)


def test_metrics_are_for_admins_by_default(api: TestClient) -> None:
    refused = api.get("/metrics", headers=OWNER)
    assert refused.status_code == 403, refused.text
    assert "glimpse_http_requests_total" in api.get("/metrics", headers=ADMIN).text


def test_the_policy_rule_can_open_metrics_to_a_monitoring_role(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text('"get_metrics": "role:monitoring"\n')
    client = make_client(GLIMPSE_OSLO_POLICY__POLICY_FILE=str(policy))
    monitor = {"X-Project-Id": "ops", "X-User-Id": "prometheus", "X-Roles": "monitoring"}
    assert client.get("/metrics", headers=monitor).status_code == 200
    assert client.get("/metrics", headers=ADMIN).status_code == 403


def test_requests_are_counted_by_route_template_and_bytes_by_store(api: TestClient) -> None:
    data = b"m" * (3 * 1024 * 1024 + 7)
    before = scrape(api)
    image_id = new_image(api)["id"]
    upload(api, image_id, data)
    assert api.get(f"/v2/images/{image_id}/file").content == data
    assert api.get(f"/v2/images/{image_id}").status_code == 200
    assert api.get("/v2/images/not-there/file").status_code == 404
    after = scrape(api)

    route = "/v2/images/{image_id}/file"
    assert delta(before, after, "glimpse_http_requests_total", method="PUT", route=route, status="204") == 1
    assert delta(before, after, "glimpse_http_requests_total", method="GET", route=route, status="200") == 1
    assert delta(before, after, "glimpse_http_requests_total", method="GET", route=route, status="404") == 1
    assert delta(before, after, "glimpse_http_request_duration_seconds_count", method="PUT", route=route) == 1
    assert delta(before, after, "glimpse_image_bytes_total", store="fast", direction="uploaded") == len(data)
    assert delta(before, after, "glimpse_image_bytes_total", store="fast", direction="downloaded") == len(
        data
    )
    # Route templates only: no series per image.
    assert not any(image_id in str(labels) for _, labels in after)


def test_staged_bytes_and_import_lock_conflicts(api: TestClient) -> None:
    data = b"s" * 4096
    image_id = new_image(api)["id"]
    before = scrape(api)
    staged = api.put(f"/v2/images/{image_id}/stage", content=data, headers={**OWNER, **OCTET})
    assert staged.status_code == 204, staged.text
    body = {"method": {"name": "glance-direct"}}
    first = api.post(f"/v2/images/{image_id}/import", json=body, headers=OWNER)
    assert first.status_code == 202, first.text
    second = api.post(f"/v2/images/{image_id}/import", json=body, headers=OWNER)
    assert second.status_code == 409, second.text  # no runner here: the first task holds the lock
    after = scrape(api)
    assert delta(before, after, "glimpse_image_bytes_total", direction="staged") == len(data)
    assert delta(before, after, "glimpse_import_lock_conflicts_total") == 1
    assert delta(before, after, "glimpse_tasks_created_total", method="glance-direct") == 1


def test_a_watcher_is_counted_while_its_stream_lasts() -> None:
    gauge = metrics().watchers

    async def events() -> AsyncIterator[bytes]:
        yield b"one"
        yield b"two"

    async def scenario() -> None:
        start = gauge._value.get()
        stream = watched(events())
        assert await anext(stream) == b"one"
        assert gauge._value.get() == start + 1
        assert [chunk async for chunk in stream] == [b"two"]
        assert gauge._value.get() == start

    asyncio.run(scenario())
