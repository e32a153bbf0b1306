"""Rate limits as the API applies and reports them (SPEC §8).

Per authenticated user: create-link-token and exchange-token 10 a minute each, every other
route 120 a minute together, as sliding windows kept where `RATE_LIMIT_STORAGE_URI` says (so
replicas sharing Redis share them). Applied by the `per_user_limit` dependency, added to the
authenticated routers only: the webhook is never limited per client.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from fastapi import Depends, Request

from plaid_bridge.dependencies import Authenticated, ServicesDep
from plaid_bridge.errors import AppError, RateLimited, from_plaid
from plaid_bridge.plaid.ratelimit import (
    LimiterUnavailable,
    SlidingWindows,
    StorageFailure,
    Window,
    windows_from_uri,
)

if TYPE_CHECKING:
    from plaid_bridge.config import Settings

__all__ = [
    "DEFAULT_LIMIT",
    "ROUTE_LIMITS",
    "UserRateLimiter",
    "per_user_limit",
]

ROUTE_LIMITS: Mapping[str, int] = {"/create-link-token": 10, "/exchange-token": 10}
"""Routes (by the end of their path template) with a window of their own, per minute."""
DEFAULT_LIMIT = 120
"""Every other authenticated route, per user per minute, in one shared window."""


def _unavailable() -> AppError:
    return from_plaid(LimiterUnavailable(endpoint="api"))


class UserRateLimiter:
    """Sliding windows per (user, limit). `check` takes a slot or raises: it never waits,
    since a client told `Retry-After` can do the waiting."""

    def __init__(
        self,
        windows: SlidingWindows,
        *,
        route_limits: Mapping[str, int] = ROUTE_LIMITS,
        default_limit: int = DEFAULT_LIMIT,
        seconds: int = 60,
    ) -> None:
        self.windows = windows
        self.route_limits = dict(route_limits)
        self.default_limit = default_limit
        self.seconds = seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> UserRateLimiter:
        return cls(windows_from_uri(settings.rate_limit_storage_uri))

    def limit_for(self, route_path: str) -> tuple[str, int]:
        """(limit name, calls per window) for a route path template."""
        for suffix, limit in self.route_limits.items():
            if route_path.endswith(suffix):
                return suffix.strip("/"), limit
        return "api", self.default_limit

    async def check(self, *, org_id: str, user_id: str, route_path: str) -> str:
        """Takes a slot for one request and returns the limit's name. Raises RateLimited (429,
        `retryAfter` = whole seconds until a slot frees) when the window is full, Unavailable
        (503) when the storage cannot answer."""
        name, limit = self.limit_for(route_path)
        # Lengths first: neither part can forge a boundary into the other.
        key = f"api/{name}/{len(org_id)}:{org_id}/{len(user_id)}:{user_id}"
        try:
            attempt = await self.windows.acquire([Window(key, limit, self.seconds)])
        except StorageFailure:
            raise _unavailable() from None
        if not attempt.granted:
            raise RateLimited(details={"limit": name}, retry_after=max(1, math.ceil(attempt.wait)))
        return name

    async def aclose(self) -> None:
        await self.windows.aclose()


async def _check_caller(request: Request, caller: Authenticated, services: ServicesDep) -> None:
    limiter: UserRateLimiter = request.app.state.user_limits
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    try:
        await limiter.check(org_id=caller.org_id, user_id=caller.user_id, route_path=path)
    except RateLimited as refused:
        services.metrics.api_limited(str(refused.details.get("limit", "api")))
        raise


per_user_limit = Depends(_check_caller)
"""Add to `include_router(..., dependencies=[per_user_limit])` for authenticated routers. It
shares the request's one authentication with the route's role dependency; the role each route
demands is checked by the route."""
