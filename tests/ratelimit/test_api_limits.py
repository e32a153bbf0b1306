"""The API's per-user limits, the outbound limiter's refusals as the API reports them, and the
webhook that no limit applies to."""

from __future__ import annotations

import json

import anyio
import pytest

from plaid_bridge.config import Settings
from plaid_bridge.errors import RateLimited
from plaid_bridge.ratelimit.api import FEED_ROUTE, UserRateLimiter
from plaid_bridge.ratelimit.windows import RedisWindows
from tests.conftest import Api, make_settings

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


def like(settings: Settings, **overrides: object) -> Settings:
    return make_settings(
        database_url=settings.database_url,
        plaid_api_host=settings.plaid_api_host,
        var_dir=settings.var_dir,
        **overrides,
    )


async def test_eleventh_link_token_in_a_minute_is_refused(api: Api) -> None:
    headers = api.auth(user="u1")
    for _ in range(10):
        response = await api.client.post(f"{BASE}/create-link-token", json={}, headers=headers)
        assert response.status_code == 201, response.text
    refused = await api.client.post(f"{BASE}/create-link-token", json={}, headers=headers)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert 55 <= error["retryAfter"] <= 60
    assert refused.headers["Retry-After"] == str(error["retryAfter"])
    assert refused.headers["X-Request-ID"] == refused.json()["requestId"]
    # Other users, and other routes of the same user, have windows of their own.
    other = await api.client.post(f"{BASE}/create-link-token", json={}, headers=api.auth("u2"))
    assert other.status_code == 201
    listed = await api.client.get(f"{BASE}/connections", headers=headers)
    assert listed.status_code == 200


async def test_reads_are_limited_to_120_a_minute_per_user(api: Api) -> None:
    headers = api.auth(user="reader", role="VIEWER")
    for _ in range(120):
        response = await api.client.get(f"{BASE}/events", headers=headers)
        assert response.status_code == 200, response.text
    refused = await api.client.get(f"{BASE}/connections", headers=headers)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "RATE_LIMITED"
    assert int(refused.headers["Retry-After"]) >= 1
    same_user_other_org = await api.client.get(
        f"{BASE}/connections", headers=api.auth(user="reader", org="o2", role="VIEWER")
    )
    assert same_user_other_org.status_code == 200


async def test_the_feed_counts_in_a_window_of_its_own(api: Api, settings: Settings) -> None:
    api.use(like(settings, feed_rate_limit=125))
    item_id = (await api.connect())["itemId"]
    headers = api.auth(user="reader", role="VIEWER")
    feed = f"{BASE}/transactions/{item_id}/sync"
    for _ in range(125):  # more than the 120 the other routes share
        response = await api.client.get(feed, headers=headers)
        assert response.status_code == 200, response.text
    refused = await api.client.get(feed, headers=headers)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert (error["code"], error["limit"]) == ("RATE_LIMITED", "feed")
    assert 55 <= error["retryAfter"] <= 60
    assert refused.headers["Retry-After"] == str(error["retryAfter"])
    # The feed spent none of the shared window, and another reader has a feed window of its own.
    listed = await api.client.get(f"{BASE}/connections", headers=headers)
    assert listed.status_code == 200
    other = await api.client.get(feed, headers=api.auth(user="other", role="VIEWER"))
    assert other.status_code == 200


def test_the_default_feed_limit_lets_one_client_read_ten_thousand_transactions_a_second(
    settings: Settings,
) -> None:
    limit = UserRateLimiter.from_settings(like(settings)).limit_for(FEED_ROUTE)
    largest_page = 500  # the feed's `count` at most
    assert limit.name == "feed"
    assert limit.calls * largest_page / 60 >= 10_000


async def test_unauthenticated_requests_take_no_ones_slot(api: Api) -> None:
    for _ in range(12):
        response = await api.client.post(
            f"{BASE}/create-link-token", json={}, headers={"Authorization": "Bearer forged"}
        )
        assert response.status_code == 401
    response = await api.client.post(f"{BASE}/create-link-token", json={}, headers=api.auth())
    assert response.status_code == 201


async def test_outbound_limit_is_429_with_the_limiters_retry_after(
    api: Api, settings: Settings
) -> None:
    api.use(like(settings, plaid_rate_limit_max_wait_seconds=0))
    item_id = (await api.connect())["itemId"]
    headers = api.auth()
    statuses = []
    for _ in range(6):
        response = await api.client.get(
            f"{BASE}/accounts/{item_id}?refresh=balance", headers=headers
        )
        statuses.append(response.status_code)
    assert statuses == [200] * 5 + [429]
    error = response.json()["error"]
    assert error["code"] == "RATE_LIMITED"
    assert "plaid" not in error  # our limiter, not Plaid, refused
    assert 56 <= error["retryAfter"] <= 60
    assert response.headers["Retry-After"] == str(error["retryAfter"])


async def test_unreachable_limiter_storage_is_a_clear_503(api: Api, settings: Settings) -> None:
    item_id = (await api.connect())["itemId"]
    api.use(like(settings, rate_limit_storage_uri="redis://127.0.0.1:9/0"))
    response = await api.client.get(f"{BASE}/accounts/{item_id}?refresh=true", headers=api.auth())
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "RATE_LIMITER_UNAVAILABLE"
    assert error["retryAfter"] == 5
    await api.services.plaid.aclose()


async def test_a_thousand_webhooks_at_once_are_all_accepted(api: Api, settings: Settings) -> None:
    api.use(like(settings, plaid_webhook_verify=False))
    statuses: dict[int, int] = {}

    async def send(index: int) -> None:
        body = {
            "webhook_type": "TRANSACTIONS",
            "webhook_code": "SYNC_UPDATES_AVAILABLE",
            "item_id": f"item-{index % 7}",
            "n": index,
        }
        response = await api.client.post(f"{BASE}/webhook", content=json.dumps(body))
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    # Plaid sends in parallel; SQLite serialises writers, so there one at a time is fastest.
    width = 1 if settings.database_url.startswith("sqlite") else 10
    for batch in range(0, 1000, width):
        async with anyio.create_task_group() as group:
            for index in range(batch, batch + width):
                group.start_soon(send, index)
    assert statuses == {200: 1000}


async def test_replicas_sharing_redis_share_the_per_user_window(redis_url: str) -> None:
    replicas = [UserRateLimiter(RedisWindows(redis_url)) for _ in range(2)]
    try:
        for index in range(10):
            await replicas[index % 2].check(org_id="o1", user_id="u1", route_path="/exchange-token")
        with pytest.raises(RateLimited) as refused:
            await replicas[0].check(org_id="o1", user_id="u1", route_path="/exchange-token")
        assert refused.value.retry_after is not None
        assert 55 <= refused.value.retry_after <= 60
        # A user id cannot borrow another org's window by carrying a separator.
        await replicas[1].check(org_id="o1/u1", user_id="", route_path="/exchange-token")
    finally:
        for replica in replicas:
            await replica.aclose()


async def test_a_limited_route_verifies_the_bearer_token_once(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The per-user limit and the route's role share one authentication of the request."""
    verifier = type(api.services.verifier)
    verify = verifier.verify
    seen: list[str] = []

    def counted(self: object, token: str) -> object:
        seen.append(token)
        return verify(self, token)  # type: ignore[arg-type]

    monkeypatch.setattr(verifier, "verify", counted)
    response = await api.client.post(f"{BASE}/create-link-token", json={}, headers=api.auth())
    assert response.status_code == 201, response.text
    assert len(seen) == 1
