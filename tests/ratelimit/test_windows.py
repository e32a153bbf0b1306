"""Sliding windows, configuration of Plaid's limits, and the outbound limiter on its own."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import anyio
import pytest
from prometheus_client import CollectorRegistry

from plaid_bridge.ops.metrics import Metrics
from plaid_bridge.plaid import PlaidError, PlaidErrorClass
from plaid_bridge.plaid.limits import (
    PRODUCTION_LIMITS,
    EndpointLimits,
    default_limits,
    parse_rate_limits,
)
from plaid_bridge.plaid.outbound import (
    LimiterUnavailable,
    LimitReached,
    OutboundLimiter,
    item_key_for,
)
from plaid_bridge.ratelimit.windows import MemoryWindows, RedisWindows, Window, windows_from_uri
from tests.conftest import make_settings

pytestmark = pytest.mark.anyio


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


# Configuration


def test_defaults_are_plaids_figures_for_the_environment() -> None:
    production = default_limits("production")
    assert production["/accounts/balance/get"] == EndpointLimits(5, 1200)
    assert production["/transactions/sync"] == EndpointLimits(50, 2500)
    assert production["/institutions/get_by_id"] == EndpointLimits(None, 400)
    assert default_limits("emulator") == production
    sandbox = default_limits("sandbox")
    assert sandbox["/transactions/sync"] == EndpointLimits(50, 1000)
    assert sandbox["/accounts/get"] == EndpointLimits(100, 15000)
    assert sandbox["/accounts/balance/get"] == production["/accounts/balance/get"]


def test_overrides_replace_the_scopes_they_name() -> None:
    limits = parse_rate_limits(
        "/accounts/balance/get=2/item,300/client; /item/get=7/item,"
        " /auth/get=off /new/thing=3/client",
        PRODUCTION_LIMITS,
    )
    assert limits["/accounts/balance/get"] == EndpointLimits(2, 300)
    assert limits["/item/get"] == EndpointLimits(7, 5000)
    assert "/auth/get" not in limits
    assert limits["/new/thing"] == EndpointLimits(None, 3)
    assert limits["/accounts/get"] == PRODUCTION_LIMITS["/accounts/get"]
    assert parse_rate_limits("", PRODUCTION_LIMITS) == dict(PRODUCTION_LIMITS)


@pytest.mark.parametrize(
    "text",
    ["accounts/get=5/item", "5/item", "/accounts/get=5/day", "/accounts/get=0/item", "/x=abc"],
)
def test_unreadable_overrides_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="PLAID_RATE_LIMITS"):
        parse_rate_limits(text)


def test_storage_uri_schemes() -> None:
    assert isinstance(windows_from_uri("memory://"), MemoryWindows)
    assert isinstance(windows_from_uri("redis://127.0.0.1:6379/15"), RedisWindows)
    with pytest.raises(ValueError, match="unsupported scheme"):
        windows_from_uri("memcached://127.0.0.1:11211")


def test_item_key_does_not_reveal_the_token() -> None:
    token = "access-emulator-0123abcd-4567-89ef-0123-456789abcdef"
    key = item_key_for(token)
    assert key == item_key_for(token)
    assert token not in key
    assert key != item_key_for(token + "0")


# Memory windows


async def test_memory_window_slides_rather_than_resetting() -> None:
    clock = Clock()
    windows = MemoryWindows(clock)
    window = [Window("k", 3, 60)]
    for _ in range(3):
        assert (await windows.acquire(window)).granted
        clock.now += 10
    refused = await windows.acquire(window)
    assert not refused.granted
    assert refused.wait == pytest.approx(30.0)  # the first slot was taken 30 s ago
    clock.now += 30
    granted = await windows.acquire(window)
    assert granted.granted
    assert granted.used == (3,)
    assert not (await windows.acquire(window)).granted


async def test_memory_windows_take_a_slot_in_all_or_none() -> None:
    clock = Clock()
    windows = MemoryWindows(clock)
    item_a, item_b, client = Window("a", 1, 60), Window("b", 1, 60), Window("c", 2, 60)
    assert (await windows.acquire([item_a, client])).granted
    refused = await windows.acquire([item_a, client])
    assert (refused.granted, refused.blocked) == (False, 0)
    # The refusal above took no client slot: another Item still gets the second one.
    assert (await windows.acquire([item_b, client])).granted
    assert (await windows.acquire([Window("d", 1, 60), client])).blocked == 1


def test_memory_windows_forget_idle_keys() -> None:
    clock = Clock()
    windows = MemoryWindows(clock)
    for index in range(5000):
        windows.try_acquire([Window(f"item-{index}", 5, 60)])
    clock.now += 61
    for _ in range(MemoryWindows._SWEEP_EVERY):
        windows.try_acquire([Window("busy", 10**6, 60)])
    assert len(windows._slots) == 1


# The outbound limiter


async def test_limiter_waits_for_a_slot_within_its_bound() -> None:
    metrics = Metrics()
    limits = {"/accounts/get": EndpointLimits(2, None)}
    limiter = OutboundLimiter(MemoryWindows(), limits, max_wait=3, window_seconds=1, events=metrics)
    for _ in range(3):
        await limiter.acquire("/accounts/get", item_key="item")
    registry = metrics.registry
    assert (
        sample(
            registry,
            "plaid_bridge_plaid_limiter_waits_total",
            endpoint="/accounts/get",
            scope="item",
        )
        == 1
    )
    # The wait was the rest of the window (computed from its slots), never past the bound.
    waited = sample(
        registry, "plaid_bridge_plaid_limiter_wait_seconds_sum", endpoint="/accounts/get"
    )
    assert 0 < waited < 1.1  # a 1 s window, plus the margin the limiter adds to a wait
    # Other Items and unlimited endpoints are not held up by this one.
    await limiter.acquire("/accounts/get", item_key="other")
    await limiter.acquire("/link/token/create")


async def test_limiter_refuses_at_once_when_the_wait_exceeds_its_bound() -> None:
    metrics = Metrics()
    limits = {"/accounts/balance/get": EndpointLimits(5, 1200)}
    limiter = OutboundLimiter(MemoryWindows(), limits, max_wait=5, events=metrics)
    for _ in range(5):
        await limiter.acquire("/accounts/balance/get", item_key="item")
    with pytest.raises(LimitReached) as refused:
        await limiter.acquire("/accounts/balance/get", item_key="item")
    assert sample(metrics.registry, "plaid_bridge_plaid_limiter_waits_total") == 0  # no wait first
    error = refused.value
    assert isinstance(error, PlaidError)
    assert error.error_class is PlaidErrorClass.RATE_LIMITED
    assert (error.error_code, error.scope, error.endpoint) == (
        "RATE_LIMITED",
        "item",
        "/accounts/balance/get",
    )
    assert 58 <= error.retry_after <= 60
    assert not error.from_plaid  # ours, not Plaid's
    assert (
        sample(
            metrics.registry,
            "plaid_bridge_plaid_limiter_rejections_total",
            endpoint="/accounts/balance/get",
            scope="item",
        )
        == 1
    )


async def test_client_window_applies_across_items() -> None:
    limits = {"/item/get": EndpointLimits(15, 3)}
    limiter = OutboundLimiter(MemoryWindows(), limits, max_wait=0)
    for index in range(3):
        await limiter.acquire("/item/get", item_key=f"item-{index}")
    with pytest.raises(LimitReached) as refused:
        await limiter.acquire("/item/get", item_key="item-9")
    assert refused.value.scope == "client"


async def test_warning_once_when_a_window_reaches_80_percent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="plaid_bridge.plaid.ratelimit")
    limits = {"/accounts/balance/get": EndpointLimits(5, 1200)}
    limiter = OutboundLimiter(MemoryWindows(), limits, max_wait=0)
    for _ in range(5):
        await limiter.acquire("/accounts/balance/get", item_key="item")
    warnings = [r for r in caplog.records if r.getMessage() == "plaid.ratelimit.near_limit"]
    assert len(warnings) == 1
    record = warnings[0].__dict__
    assert (record["scope"], record["used"], record["limit"]) == ("item", 4, 5)


def test_limiter_from_settings_uses_the_configured_overrides() -> None:
    settings = make_settings(
        plaid_rate_limits="/accounts/balance/get=2/item", plaid_rate_limit_max_wait_seconds=1.5
    )
    limiter = OutboundLimiter.from_settings(settings)
    assert limiter.limits["/accounts/balance/get"] == EndpointLimits(2, 1200)
    assert limiter.max_wait == 1.5
    assert isinstance(limiter.windows, MemoryWindows)


def test_limit_errors_survive_pickling() -> None:
    import pickle

    error = pickle.loads(
        pickle.dumps(LimitReached(endpoint="/item/get", scope="item", retry_after=12))
    )
    assert (type(error), error.retry_after, error.scope) == (LimitReached, 12, "item")
    gone = pickle.loads(pickle.dumps(LimiterUnavailable(endpoint="/item/get")))
    assert type(gone) is LimiterUnavailable


# Redis that cannot answer: refused quickly, never unlimited, never a hang


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections (into the backlog) and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()


@pytest.fixture
def closed_port() -> int:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.parametrize("kind", ["refused", "silent"])
async def test_unreachable_redis_refuses_calls_within_the_timeout(
    kind: str, silent_port: int, closed_port: int
) -> None:
    port = silent_port if kind == "silent" else closed_port
    windows = RedisWindows(f"redis://127.0.0.1:{port}/0", timeout=0.5)
    limiter = OutboundLimiter(windows, {"/item/get": EndpointLimits(15, 5000)}, max_wait=5)
    # A failure bound, not a speed check: a silent server without the timeout never answers.
    with anyio.fail_after(10):
        for _ in range(3):
            with pytest.raises(LimiterUnavailable) as refused:
                await limiter.acquire("/item/get", item_key="item")
            assert refused.value.error_code == "RATE_LIMITER_UNAVAILABLE"
            assert refused.value.transient
    with anyio.fail_after(2):
        await limiter.aclose()


# Redis windows


async def test_redis_windows_match_memory_windows(redis_url: str) -> None:
    windows = RedisWindows(redis_url)
    try:
        item, client = Window("item", 2, 60), Window("client", 3, 60)
        first = await windows.acquire([item, client])
        assert (first.granted, first.used) == (True, (1, 1))
        assert (await windows.acquire([item, client])).granted
        refused = await windows.acquire([item, client])
        assert (refused.granted, refused.blocked) == (False, 0)
        assert 58 < refused.wait <= 60
        # Nothing was taken by the refusal: one client slot is left for another Item.
        assert (await windows.acquire([Window("other", 2, 60), client])).granted
        assert (await windows.acquire([Window("third", 2, 60), client])).blocked == 1
    finally:
        await windows.aclose()


async def test_limiters_sharing_redis_share_the_window(redis_url: str) -> None:
    limits = {"/accounts/balance/get": EndpointLimits(5, 1200)}
    first = OutboundLimiter(RedisWindows(redis_url), limits, max_wait=0)
    second = OutboundLimiter(RedisWindows(redis_url), limits, max_wait=0)
    outcomes: list[int] = []
    try:
        for index in range(10):
            limiter = first if index % 2 else second
            try:
                await limiter.acquire("/accounts/balance/get", item_key="item")
                outcomes.append(0)
            except LimitReached as error:
                outcomes.append(error.retry_after)
    finally:
        await first.aclose()
        await second.aclose()
    assert outcomes[:5] == [0] * 5
    assert all(55 <= retry_after <= 60 for retry_after in outcomes[5:])
