"""The in-memory outbound limiter's cost per acquire, against the `limits` library's moving window.

Workload: Plaid's /transactions/sync figures (50 per Item, 2,500 per client, per minute); every
acquire takes a slot in an Item window and the client window, as PlaidClient does.
- granted: 2,500 acquires over 100 Items on fresh windows (all granted, the client window fills);
- refused: 10,000 acquires against the full client window (all refused).
The baseline is `limits`' synchronous MovingWindowRateLimiter on its MemoryStorage, doing the
least it can for two windows (`hit` the Item, then `hit` the client; not atomic, unlike ours).
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

import anyio
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from benchmarks.scoreboard import Figure, table
from plaid_bridge.plaid.limits import EndpointLimits
from plaid_bridge.plaid.outbound import LimitReached, OutboundLimiter
from plaid_bridge.ratelimit.windows import MemoryWindows, Window

PER_ITEM, PER_CLIENT, ITEMS = 50, 2_500, 100
REFUSED_CALLS = 10_000
ENDPOINT = "/transactions/sync"


def _median(action: Callable[[], int], repeat: int = 7) -> tuple[float, int]:
    """(median seconds per acquire, acquires per run)."""
    timings, count = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        count = action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) / count, count


def _ours_granted() -> int:
    windows = MemoryWindows()
    client = Window("client", PER_CLIENT)
    items = [Window(f"item-{index}", PER_ITEM) for index in range(ITEMS)]
    granted = 0
    for call in range(PER_CLIENT):
        granted += windows.try_acquire([items[call % ITEMS], client]).granted
    assert granted == PER_CLIENT
    return PER_CLIENT


def _limits_granted() -> int:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item, client = RateLimitItemPerMinute(PER_ITEM), RateLimitItemPerMinute(PER_CLIENT)
    granted = 0
    for call in range(PER_CLIENT):
        granted += limiter.hit(item, f"item-{call % ITEMS}") and limiter.hit(client, "client")
    assert granted == PER_CLIENT
    return PER_CLIENT


def _full_ours() -> Callable[[], int]:
    windows = MemoryWindows()
    client = Window("client", PER_CLIENT)
    for call in range(PER_CLIENT):
        windows.try_acquire([Window(f"warm-{call % ITEMS}", PER_ITEM), client])

    def refused() -> int:
        item = Window("item-x", PER_ITEM)
        for _ in range(REFUSED_CALLS):
            assert not windows.try_acquire([item, client]).granted
        return REFUSED_CALLS

    return refused


def _full_limits() -> Callable[[], int]:
    limiter = MovingWindowRateLimiter(MemoryStorage())
    item, client = RateLimitItemPerMinute(PER_ITEM), RateLimitItemPerMinute(PER_CLIENT)
    for call in range(PER_CLIENT):
        limiter.hit(item, f"warm-{call % ITEMS}")
        limiter.hit(client, "client")

    def refused() -> int:
        for _ in range(REFUSED_CALLS):
            # The Item window is free: limits takes its slot, then the client refuses.
            assert not (limiter.hit(item, "item-x") and limiter.hit(client, "client"))
        return REFUSED_CALLS

    return refused


def _limiter_acquire() -> int:
    """OutboundLimiter.acquire, the path PlaidClient takes, in an event loop."""
    limits = {ENDPOINT: EndpointLimits(PER_ITEM, PER_CLIENT)}

    async def run() -> int:
        limiter = OutboundLimiter(MemoryWindows(), limits, max_wait=0)
        refused = 0
        for call in range(PER_CLIENT + 500):
            try:
                await limiter.acquire(ENDPOINT, item_key=f"item-{call % ITEMS}")
            except LimitReached:
                refused += 1
        assert refused == 500
        return PER_CLIENT + 500

    return anyio.run(run)


def run() -> list[Figure]:
    # Refusals and 80% warnings are logged; the figures are the limiter's, not logging's.
    logging.getLogger("plaid_bridge.plaid.ratelimit").setLevel(logging.ERROR)
    ours_granted, _ = _median(_ours_granted)
    base_granted, _ = _median(_limits_granted)
    ours_refused, _ = _median(_full_ours())
    base_refused, _ = _median(_full_limits())
    limiter, _ = _median(_limiter_acquire, repeat=5)
    return [
        Figure(
            "limiter_granted",
            ours_granted * 1e6,
            "us",
            base_granted * 1e6,
            note="MemoryWindows, item + client; baseline the limits moving window",
            better="lower",
        ),
        Figure(
            "limiter_refused",
            ours_refused * 1e6,
            "us",
            base_refused * 1e6,
            note="window full; baseline the limits moving window",
            better="lower",
        ),
        Figure("limiter_acquire", limiter * 1e6, "us", note="OutboundLimiter.acquire, 17% refused"),
    ]


if __name__ == "__main__":
    print(table(run()))
