"""GET /metrics: Prometheus text that prometheus_client's parser reads, per app instance, with
the counters moving as a flow runs; and the JSON log lines of that flow."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from plaid_bridge.config import Settings
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import utcnow
from plaid_bridge.logs import configure_logging
from plaid_bridge.ops import heartbeats
from plaid_bridge.ops.metrics import Metrics
from plaid_bridge.sync.models import SyncRequest
from plaid_bridge.sync.requests import request_sync
from plaid_bridge.webhooks.models import WebhookEvent
from tests.conftest import ENCRYPTION_KEYS, JWT_SECRET, Api, make_settings

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(api: Api) -> Samples:
    response = await api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("INFO", "json", stream=stream)
    yield stream
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])


async def test_metrics_move_with_a_flow(
    api: Api, settings: Settings, emulator_control: httpx.AsyncClient, log_output: io.StringIO
) -> None:
    api.use(
        make_settings(
            database_url=settings.database_url,
            plaid_api_host=settings.plaid_api_host,
            var_dir=settings.var_dir,
            plaid_rate_limit_max_wait_seconds=0,
        )
    )
    before = await scrape(api)
    assert value(before, "plaid_bridge_connections", status="ACTIVE") == 0

    headers = api.auth()
    exchanged = await api.connect()
    item_id = exchanged["itemId"]
    fault = {"endpoint": "/accounts/get", "errorCode": "INTERNAL_SERVER_ERROR", "count": 1}
    await emulator_control.post("/emulator/faults", json=fault)
    refreshed = await api.client.get(f"{BASE}/accounts/{item_id}?refresh=true", headers=headers)
    assert refreshed.status_code == 200
    missing = await api.client.get(f"{BASE}/accounts/no-such-item", headers=headers)
    assert missing.status_code == 404
    for _ in range(6):  # the sixth is refused by our limiter (5 per Item per minute)
        balances = await api.client.get(
            f"{BASE}/accounts/{item_id}?refresh=balance", headers=headers
        )
    assert balances.status_code == 429
    metrics = api.services.metrics
    metrics.webhook_received("TRANSACTIONS", "SYNC_UPDATES_AVAILABLE", "accepted")
    metrics.webhook_received("<script>", "x" * 500, "rejected")
    metrics.sync_run("ok", 0.25, applied=40)

    after = await scrape(api)
    http = "plaid_bridge_http_request_duration_seconds_count"
    assert value(after, http, method="POST", route=f"{BASE}/exchange-token", status="201") == 1
    assert value(after, http, method="GET", route=f"{BASE}/accounts/{{itemId}}", status="404") == 1
    assert value(after, http, method="GET", route="/metrics", status="200") == 1
    calls = "plaid_bridge_plaid_calls_total"
    assert (
        value(after, calls, endpoint="/item/public_token/exchange", outcome="ok", error_code="")
        == 1
    )
    assert (
        value(
            after,
            calls,
            endpoint="/accounts/get",
            outcome="retry",
            error_code="INTERNAL_SERVER_ERROR",
        )
        == 1
    )
    assert (
        value(
            after,
            "plaid_bridge_plaid_call_duration_seconds_count",
            endpoint="/accounts/get",
            outcome="ok",
        )
        >= 1
    )
    assert (
        value(
            after,
            "plaid_bridge_plaid_limiter_rejections_total",
            endpoint="/accounts/balance/get",
            scope="item",
        )
        == 1
    )
    assert value(after, "plaid_bridge_connections", status="ACTIVE") == 1
    assert value(after, "plaid_bridge_connections", status="REMOVED") == 0
    webhooks = "plaid_bridge_webhooks_total"
    assert (
        value(
            after,
            webhooks,
            webhook_type="TRANSACTIONS",
            webhook_code="SYNC_UPDATES_AVAILABLE",
            outcome="accepted",
        )
        == 1
    )
    assert (
        value(after, webhooks, webhook_type="OTHER", webhook_code="OTHER", outcome="rejected") == 1
    )
    assert value(after, "plaid_bridge_sync_runs_total", outcome="ok") == 1
    assert value(after, "plaid_bridge_sync_transactions_applied_total") == 40
    assert value(after, "plaid_bridge_sync_run_duration_seconds_sum", outcome="ok") == 0.25

    async with api.services.database.transaction() as session:
        row = (await session.scalars(select(PlaidConnection))).one()
    access_token = api.services.cipher.decrypt(row.access_token_encrypted or "", item_id)
    output = log_output.getvalue()
    for secret in (access_token, ENCRYPTION_KEYS.partition(":")[2], JWT_SECRET, "emulator-secret"):
        assert secret not in output
    assert "plaid.ratelimit.rejected" in output
    lines = [json.loads(line) for line in output.splitlines()]
    plaid_lines = [line for line in lines if line.get("event") == "plaid.call"]
    assert plaid_lines
    for line in plaid_lines:
        assert line["plaid_request_id"]
    in_request = [line for line in lines if line.get("org_id") == "o1"]
    assert any(line["event"] == "plaid.exchange.stored" for line in in_request)


async def test_limiter_refusals_are_counted(api: Api) -> None:
    for _ in range(11):
        await api.client.post(f"{BASE}/create-link-token", json={}, headers=api.auth())
    samples = await scrape(api)
    assert value(samples, "plaid_bridge_api_rate_limited_total", limit="create-link-token") == 1


def test_each_metrics_object_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()
    first.sync_run("ok", 1.0, applied=3)
    assert first.registry.get_sample_value("plaid_bridge_sync_runs_total", {"outcome": "ok"}) == 1
    assert (
        second.registry.get_sample_value("plaid_bridge_sync_runs_total", {"outcome": "ok"}) is None
    )


async def test_backlog_gauges_count_the_inbox_and_the_sync_queue(api: Api) -> None:
    idle = await scrape(api)
    assert value(idle, "plaid_bridge_webhook_inbox_oldest_age_seconds") == 0
    assert value(idle, "plaid_bridge_sync_queue_requests") == 0
    assert not any(name == "plaid_bridge_worker_heartbeat_age_seconds" for name, _ in idle)
    await heartbeats.beat(api.services.database, worker_id="h:1:worker", role="worker")
    old = utcnow() - timedelta(minutes=10)
    async with api.services.database.transaction() as session:
        for status, received in (("PENDING", old), ("PENDING", utcnow()), ("FAILED", old)):
            session.add(
                WebhookEvent(
                    webhook_type="ITEM",
                    webhook_code="ERROR",
                    item_id="item-1",
                    body="{}",
                    body_sha256="0" * 64,
                    status=status,
                    received_at=received,
                )
            )
        session.add(WebhookEvent(body="{}", body_sha256="0" * 64, status="DONE", received_at=old))
        await request_sync(session, "item-1", reason="test")
        await request_sync(session, "item-2", reason="test")
        await request_sync(session, "item-3", reason="test")
    async with api.services.database.transaction() as session:
        waiting, backing_off = (
            await session.get(SyncRequest, "item-1"),
            await session.get(SyncRequest, "item-2"),
        )
        assert waiting is not None
        assert backing_off is not None
        waiting.not_before = utcnow() - timedelta(minutes=5)
        backing_off.not_before = utcnow() + timedelta(hours=1)
        backing_off.requested_at = utcnow() - timedelta(hours=2)

    samples = await scrape(api)

    rows = "plaid_bridge_webhook_inbox_rows"
    assert value(samples, rows, status="PENDING") == 2
    assert value(samples, rows, status="PROCESSING") == 0
    assert value(samples, rows, status="FAILED") == 1
    assert 600 <= value(samples, "plaid_bridge_webhook_inbox_oldest_age_seconds") < 660
    assert 0 <= value(samples, "plaid_bridge_worker_heartbeat_age_seconds", role="worker") < 60
    assert value(samples, "plaid_bridge_sync_queue_requests") == 3
    # item-1 has waited five minutes for a worker; item-2 waits out a retry backoff.
    assert 300 <= value(samples, "plaid_bridge_sync_queue_oldest_due_seconds") < 360
