"""The outbound limiter: Plaid's per-Item and per-client windows, kept before Plaid enforces them.

`OutboundLimiter` keeps, for every call PlaidClient makes, a slot in each sliding window that
applies to it (Plaid's figures from `plaid/limits.py`, windows from `ratelimit/windows.py`): it
waits (up to a bound) for one to free, or refuses with `LimitReached`, whose `retry_after` says
when a slot frees. A storage that does not answer refuses the call (`LimiterUnavailable`): the
limiter never lets calls through unlimited and never waits longer than its bound.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio

from plaid_bridge.plaid.errors import OUR_ERROR_TYPE, PlaidError, PlaidErrorClass
from plaid_bridge.plaid.limits import EndpointLimits, default_limits, parse_rate_limits
from plaid_bridge.ratelimit.windows import (
    WINDOW_SECONDS,
    SlidingWindows,
    StorageFailure,
    Window,
    windows_from_uri,
)

if TYPE_CHECKING:
    from plaid_bridge.config import Settings

__all__ = [
    "DEFAULT_MAX_WAIT_SECONDS",
    "LimitReached",
    "LimiterEvents",
    "LimiterUnavailable",
    "OutboundLimiter",
    "item_key_for",
]

logger = logging.getLogger("plaid_bridge.plaid.ratelimit")

DEFAULT_MAX_WAIT_SECONDS = 5.0
WARN_RATIO = 0.8
Scope = Literal["item", "client"]


def item_key_for(access_token: str) -> str:
    """A stable key for an Item's windows that cannot be turned back into its access token."""
    return hashlib.sha256(access_token.encode()).hexdigest()[:24]


# Errors the limiter raises: PlaidErrors, so every caller of PlaidClient already handles them.


class LimitReached(PlaidError):
    """Our own limiter refused the call before it reached Plaid: no slot freed within the wait
    bound. `retry_after` is whole seconds until one does; `scope` names the full window."""

    def __init__(self, *, endpoint: str, scope: str, retry_after: int) -> None:
        self.scope = scope
        self.retry_after = retry_after
        super().__init__(
            error_type=OUR_ERROR_TYPE,
            error_code="RATE_LIMITED",
            endpoint=endpoint,
            error_class=PlaidErrorClass.RATE_LIMITED,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_limit_reached, (self.endpoint or "", self.scope, self.retry_after))


def _rebuild_limit_reached(endpoint: str, scope: str, retry_after: int) -> LimitReached:
    return LimitReached(endpoint=endpoint, scope=scope, retry_after=retry_after)


class LimiterUnavailable(PlaidError):
    """The limiter's storage did not answer in time, so the call was not sent (failing open would
    let every replica flood Plaid). Transient: retry once the storage is back."""

    def __init__(self, *, endpoint: str) -> None:
        super().__init__(
            error_type=OUR_ERROR_TYPE,
            error_code="RATE_LIMITER_UNAVAILABLE",
            endpoint=endpoint,
            error_class=PlaidErrorClass.PLAID_TRANSIENT,
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_unavailable, (self.endpoint or "",))


def _rebuild_unavailable(endpoint: str) -> LimiterUnavailable:
    return LimiterUnavailable(endpoint=endpoint)


# The limiter PlaidClient calls before every attempt


class LimiterEvents(Protocol):
    """Receives what the limiter does, for metrics; implemented outside plaid/."""

    def limiter_waited(self, endpoint: str, scope: str, seconds: float) -> None: ...

    def limiter_rejected(self, endpoint: str, scope: str) -> None: ...


class OutboundLimiter:
    """Per (endpoint, Item) and per (endpoint, client) sliding windows for calls to Plaid.

    `acquire` returns once the call may go out, after waiting at most `max_wait` seconds;
    endpoints without configured limits pass at once. A warning is logged when a call fills a
    window to 80%.
    """

    def __init__(
        self,
        windows: SlidingWindows,
        limits: Mapping[str, EndpointLimits],
        *,
        namespace: str = "plaid",
        max_wait: float = DEFAULT_MAX_WAIT_SECONDS,
        window_seconds: int = WINDOW_SECONDS,
        events: LimiterEvents | None = None,
    ) -> None:
        if max_wait < 0:
            raise ValueError("max_wait must not be negative")
        self.windows = windows
        self.limits = dict(limits)
        self.namespace = namespace
        self.max_wait = max_wait
        self.window_seconds = window_seconds
        self._events = events

    @classmethod
    def from_settings(
        cls, settings: Settings, *, events: LimiterEvents | None = None
    ) -> OutboundLimiter:
        """Plaid's figures for the environment with `PLAID_RATE_LIMITS` applied, kept where
        `RATE_LIMIT_STORAGE_URI` says; windows are namespaced by environment and client id so
        replicas of one deployment share them. Raises ValueError for invalid configuration."""
        limits = parse_rate_limits(settings.plaid_rate_limits, default_limits(settings.plaid_env))
        client_id, _ = settings.plaid_credentials
        return cls(
            windows_from_uri(settings.rate_limit_storage_uri),
            limits,
            namespace=f"plaid/{settings.plaid_env}/{client_id}",
            max_wait=settings.plaid_rate_limit_max_wait_seconds,
            events=events,
        )

    def windows_for(self, endpoint: str, item_key: str | None) -> list[tuple[Scope, Window]]:
        """The windows one call takes a slot in: the Item's (when known) and the client's."""
        figures = self.limits.get(endpoint)
        if figures is None:
            return []
        found: list[tuple[Scope, Window]] = []
        if figures.per_item is not None and item_key is not None:
            key = f"{self.namespace}{endpoint}/item/{item_key}"
            found.append(("item", Window(key, figures.per_item, self.window_seconds)))
        if figures.per_client is not None:
            key = f"{self.namespace}{endpoint}/client"
            found.append(("client", Window(key, figures.per_client, self.window_seconds)))
        return found

    async def acquire(
        self, endpoint: str, *, item_key: str | None = None, max_wait: float | None = None
    ) -> None:
        """Takes a slot for one call to `endpoint`, waiting for one at most `max_wait` seconds
        (the limiter's bound when None, never more). Raises LimitReached when no slot can free
        within the bound (at once if the wait needed is already longer), LimiterUnavailable
        when the storage does not answer."""
        scoped = self.windows_for(endpoint, item_key)
        if not scoped:
            return
        windows = [window for _, window in scoped]
        bound = self.max_wait if max_wait is None else min(max_wait, self.max_wait)
        started = time.monotonic()
        deadline = started + bound
        scope: str | None = None
        while True:
            try:
                attempt = await self.windows.acquire(windows)
            except StorageFailure as failure:
                logger.error(
                    "plaid.ratelimit.storage_unavailable",
                    extra={"endpoint": endpoint, "error": str(failure)},
                )
                raise LimiterUnavailable(endpoint=endpoint) from None
            if attempt.granted:
                if scope is not None and self._events is not None:
                    self._events.limiter_waited(endpoint, scope, time.monotonic() - started)
                self._warn_if_near(endpoint, scoped, attempt.used)
                return
            scope = scoped[attempt.blocked][0]
            now = time.monotonic()
            if now + attempt.wait > deadline:
                retry_after = max(1, math.ceil(attempt.wait))
                logger.warning(
                    "plaid.ratelimit.rejected",
                    extra={"endpoint": endpoint, "scope": scope, "retry_after": retry_after},
                )
                if self._events is not None:
                    self._events.limiter_rejected(endpoint, scope)
                raise LimitReached(endpoint=endpoint, scope=scope, retry_after=retry_after)
            # A little past the moment the slot frees, so the next try finds it free.
            await anyio.sleep(attempt.wait + 0.002)

    def _warn_if_near(
        self, endpoint: str, scoped: Sequence[tuple[Scope, Window]], used: Sequence[int]
    ) -> None:
        for (scope, window), count in zip(scoped, used, strict=True):
            threshold = math.ceil(window.limit * WARN_RATIO)
            # Once per filling: on the call that crosses the threshold.
            if count == threshold:
                logger.warning(
                    "plaid.ratelimit.near_limit",
                    extra={
                        "endpoint": endpoint,
                        "scope": scope,
                        "used": count,
                        "limit": window.limit,
                        "window_seconds": window.seconds,
                    },
                )

    async def aclose(self) -> None:
        """Releases the storage's connections."""
        await self.windows.aclose()
