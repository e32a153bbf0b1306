"""Rate limits as the API applies and reports them (SPEC §8).

Per authenticated user: create-link-token and exchange-token 10 a minute each, the change feed
`FEED_RATE_LIMIT` pages a minute (1,800 by default: at 500 transactions a page, one client reads
15,000 transactions a second, so that a consumer catching up on a large store is not held back by
the window meant for interactive calls), every other route 120 a minute together, as sliding
windows kept where `RATE_LIMIT_STORAGE_URI` says (so
replicas sharing Redis share them). Applied by `dependencies.per_user_limit`, added to the
authenticated routers only: the webhook is never limited per client. Its refusals are errors of
its own (`ApiLimitReached`, `ApiLimiterUnavailable`), never Plaid's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from plaid_bridge.errors import LIMITER_RETRY_AFTER, RateLimited, Unavailable
from plaid_bridge.ratelimit.windows import SlidingWindows, StorageFailure, Window, windows_from_uri

if TYPE_CHECKING:
    from plaid_bridge.config import Settings

__all__ = [
    "DEFAULT_LIMIT",
    "FEED_ROUTE",
    "ROUTE_LIMITS",
    "ApiLimitReached",
    "ApiLimiterUnavailable",
    "RouteLimit",
    "UserRateLimiter",
]


@dataclass(frozen=True, slots=True)
class RouteLimit:
    """A window of a route's own: its name (in the 429 body and the metric) and its calls."""

    name: str
    calls: int


ROUTE_LIMITS: Mapping[str, RouteLimit] = {
    "/create-link-token": RouteLimit("create-link-token", 10),
    "/exchange-token": RouteLimit("exchange-token", 10),
}
"""Routes (by the end of their path template) with a window of their own, per minute."""
FEED_ROUTE = "/transactions/{itemId}/sync"
"""The change feed's path template: its window (`feed`) is sized by FEED_RATE_LIMIT."""
DEFAULT_LIMIT = 120
"""Every other authenticated route, per user per minute, in one shared window."""


class ApiLimitReached(RateLimited):
    """The caller's window for `limit` is full; `retry_after` is whole seconds until a slot
    frees. The limit's name is part of the error body (`limit`)."""

    def __init__(self, *, limit: str, retry_after: int) -> None:
        self.limit = limit
        super().__init__(details={"limit": limit}, retry_after=retry_after)


class ApiLimiterUnavailable(Unavailable):
    """The windows' storage did not answer, so the request was refused: letting it through
    unlimited would lift the limit for every replica at once."""

    code = "RATE_LIMITER_UNAVAILABLE"
    message = "Rate limiting is unavailable, so the request was not processed; try again shortly."

    def __init__(self) -> None:
        super().__init__(retry_after=LIMITER_RETRY_AFTER)


class UserRateLimiter:
    """Sliding windows per (user, limit). `check` takes a slot or raises: it never waits,
    since a client told `Retry-After` can do the waiting."""

    def __init__(
        self,
        windows: SlidingWindows,
        *,
        route_limits: Mapping[str, RouteLimit] = ROUTE_LIMITS,
        default_limit: int = DEFAULT_LIMIT,
        seconds: int = 60,
    ) -> None:
        self.windows = windows
        self.route_limits = dict(route_limits)
        self.default_limit = default_limit
        self.seconds = seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> UserRateLimiter:
        feed = RouteLimit("feed", settings.feed_rate_limit)
        return cls(
            windows_from_uri(settings.rate_limit_storage_uri),
            route_limits={**ROUTE_LIMITS, FEED_ROUTE: feed},
        )

    def limit_for(self, route_path: str) -> RouteLimit:
        """The window a route path template counts in."""
        for suffix, limit in self.route_limits.items():
            if route_path.endswith(suffix):
                return limit
        return RouteLimit("api", self.default_limit)

    async def check(self, *, org_id: str, user_id: str, route_path: str) -> str:
        """Takes a slot for one request and returns the limit's name. Raises ApiLimitReached
        (429, `retryAfter` = whole seconds until a slot frees) when the window is full,
        ApiLimiterUnavailable (503) when the storage cannot answer."""
        limit = self.limit_for(route_path)
        name = limit.name
        # Lengths first: neither part can forge a boundary into the other.
        key = f"api/{name}/{len(org_id)}:{org_id}/{len(user_id)}:{user_id}"
        try:
            attempt = await self.windows.acquire([Window(key, limit.calls, self.seconds)])
        except StorageFailure:
            raise ApiLimiterUnavailable() from None
        if not attempt.granted:
            raise ApiLimitReached(limit=name, retry_after=max(1, math.ceil(attempt.wait)))
        return name

    async def aclose(self) -> None:
        await self.windows.aclose()
