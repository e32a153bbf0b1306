"""Outbound rate limiting: Plaid's per-Item and per-client windows, kept before Plaid enforces them.

Plaid counts calls per endpoint in one-minute windows, per Item and per client (PLAID_FACTS.md,
"Rate limits"). `OutboundLimiter` keeps the same sliding windows on our side: a call takes a slot
in every window that applies to it, waits (up to a bound) for one to free, or is refused with
`LimitReached`, whose `retry_after` says when a slot frees. Windows live in process memory
(`MemoryWindows`) or in Redis through the `limits` library (`RedisWindows`), which shares them
across replicas. A storage that does not answer refuses the call (`LimiterUnavailable`): the
limiter never lets calls through unlimited and never waits longer than its bound.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import anyio
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from plaid_bridge.plaid.errors import OUR_ERROR_TYPE, PlaidError, PlaidErrorClass

if TYPE_CHECKING:
    from plaid_bridge.config import Settings

__all__ = [
    "DEFAULT_MAX_WAIT_SECONDS",
    "PRODUCTION_LIMITS",
    "SANDBOX_LIMITS",
    "WINDOW_SECONDS",
    "Attempt",
    "EndpointLimits",
    "LimitReached",
    "LimiterEvents",
    "LimiterUnavailable",
    "MemoryWindows",
    "OutboundLimiter",
    "RedisWindows",
    "SlidingWindows",
    "StorageFailure",
    "Window",
    "default_limits",
    "item_key_for",
    "parse_rate_limits",
    "windows_from_uri",
]

logger = logging.getLogger("plaid_bridge.plaid.ratelimit")

WINDOW_SECONDS = 60
DEFAULT_MAX_WAIT_SECONDS = 5.0
WARN_RATIO = 0.8
Scope = Literal["item", "client"]


@dataclass(frozen=True, slots=True)
class EndpointLimits:
    """Calls allowed per window for one endpoint; None means that scope is not limited."""

    per_item: int | None = None
    per_client: int | None = None


PRODUCTION_LIMITS: Mapping[str, EndpointLimits] = {
    "/transactions/sync": EndpointLimits(50, 2_500),
    "/transactions/refresh": EndpointLimits(2, 100),
    "/accounts/get": EndpointLimits(15, 15_000),
    "/accounts/balance/get": EndpointLimits(5, 1_200),
    "/item/get": EndpointLimits(15, 5_000),
    "/item/remove": EndpointLimits(30, 2_000),
    "/auth/get": EndpointLimits(15, 12_000),
    "/identity/get": EndpointLimits(15, 2_000),
    "/institutions/get_by_id": EndpointLimits(None, 400),
}
"""Plaid's published Production figures per minute (PLAID_FACTS.md)."""

SANDBOX_LIMITS: Mapping[str, EndpointLimits] = {
    **PRODUCTION_LIMITS,
    "/transactions/sync": EndpointLimits(50, 1_000),
    "/accounts/get": EndpointLimits(100, 15_000),
    "/item/get": EndpointLimits(40, 5_000),
    "/item/remove": EndpointLimits(100, 2_000),
}
"""Sandbox: looser per Item, tighter per client for /transactions/sync."""


def default_limits(plaid_env: str) -> dict[str, EndpointLimits]:
    """Plaid's documented limits for the environment; the emulator stands in for Production."""
    return dict(SANDBOX_LIMITS if plaid_env == "sandbox" else PRODUCTION_LIMITS)


_PART = re.compile(r"^(?P<count>\d+)/(?P<scope>item|client)$")


def parse_rate_limits(
    text: str | None, base: Mapping[str, EndpointLimits] | None = None
) -> dict[str, EndpointLimits]:
    """`base` with the overrides of `PLAID_RATE_LIMITS` applied.

    Syntax: `/endpoint=N/item,M/client`, several endpoints separated by `;` or `,`
    (e.g. `/accounts/balance/get=5/item,1200/client;/item/get=15/item`). A scope not named keeps
    its figure from `base`; `/endpoint=off` removes the endpoint's limits. Raises ValueError with
    a message naming the first part it cannot read.
    """
    limits = dict(base or {})
    if not text or not text.strip():
        return limits
    endpoint: str | None = None
    for raw in re.split(r"[;,\s]+", text.strip()):
        if not raw:
            continue
        part = raw
        if "=" in raw:
            endpoint, _, part = raw.partition("=")
            if not endpoint.startswith("/") or len(endpoint) < 2:
                raise ValueError(f"PLAID_RATE_LIMITS: {raw!r} must start with a /endpoint")
            if part == "off":
                limits.pop(endpoint, None)
                endpoint = None
                continue
            limits.setdefault(endpoint, EndpointLimits())
        if endpoint is None:
            raise ValueError(f"PLAID_RATE_LIMITS: {raw!r} does not follow an /endpoint=")
        match = _PART.match(part)
        if match is None:
            raise ValueError(f"PLAID_RATE_LIMITS: {raw!r} is not N/item or N/client")
        count = int(match["count"])
        if count < 1:
            raise ValueError(f"PLAID_RATE_LIMITS: {raw!r} must allow at least 1 call")
        current = limits[endpoint]
        if match["scope"] == "item":
            limits[endpoint] = EndpointLimits(count, current.per_client)
        else:
            limits[endpoint] = EndpointLimits(current.per_item, count)
    return limits


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


class StorageFailure(Exception):
    """A window storage could not answer (unreachable, timed out, refused)."""


# Window storages


@dataclass(frozen=True, slots=True)
class Window:
    """One sliding window: at most `limit` slots taken in any `seconds`-long span."""

    key: str
    limit: int
    seconds: int = WINDOW_SECONDS


@dataclass(frozen=True, slots=True)
class Attempt:
    """The answer to one try: either every window gave a slot (`used` holds each window's
    count including the new one), or none did and `wait` is the seconds until the window at
    `blocked` (an index into the windows) frees one."""

    granted: bool
    used: tuple[int, ...] = ()
    wait: float = 0.0
    blocked: int = -1


class SlidingWindows(Protocol):
    """Where windows are kept. `acquire` takes a slot in every window or in none (a slot taken
    in one window and then refused in a later one may stay taken under concurrency across
    replicas: that errs towards fewer calls, never more)."""

    async def acquire(self, windows: Sequence[Window]) -> Attempt:
        """Raises StorageFailure when the storage cannot answer."""
        ...

    async def aclose(self) -> None: ...


class MemoryWindows:
    """Windows in this process: a deque of slot times per key, under a lock (safe from several
    threads and event loops). Keys whose slots have all expired are swept now and then, so
    memory follows the Items seen in the last window, not all Items ever seen."""

    _SWEEP_EVERY = 4096

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._slots: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._longest = 0
        self._since_sweep = 0

    def try_acquire(self, windows: Sequence[Window]) -> Attempt:
        """The synchronous core of `acquire`: never blocks beyond the lock."""
        with self._lock:
            now = self._clock()
            self._since_sweep += 1
            if self._since_sweep >= self._SWEEP_EVERY:
                self._sweep(now)
            queues: list[deque[float]] = []
            wait = 0.0
            blocked = -1
            for index, window in enumerate(windows):
                queue = self._slots.get(window.key)
                if queue is None:
                    queue = self._slots[window.key] = deque()
                    self._longest = max(self._longest, window.seconds)
                horizon = now - window.seconds
                while queue and queue[0] <= horizon:
                    queue.popleft()
                if len(queue) >= window.limit:
                    frees_in = queue[len(queue) - window.limit] + window.seconds - now
                    if frees_in > wait:
                        wait, blocked = frees_in, index
                queues.append(queue)
            if blocked >= 0:
                return Attempt(granted=False, wait=wait, blocked=blocked)
            for queue in queues:
                queue.append(now)
            return Attempt(granted=True, used=tuple(len(queue) for queue in queues))

    async def acquire(self, windows: Sequence[Window]) -> Attempt:
        return self.try_acquire(windows)

    async def aclose(self) -> None:
        with self._lock:
            self._slots.clear()

    def _sweep(self, now: float) -> None:
        self._since_sweep = 0
        horizon = now - self._longest
        for key in [key for key, queue in self._slots.items() if not queue or queue[-1] <= horizon]:
            del self._slots[key]


class RedisWindows:
    """Windows in Redis, shared by every replica using the same URI and prefix: the `limits`
    library's moving window (a Lua script per operation, so each window stays exact).

    Every operation is bounded by `timeout` seconds; any failure becomes StorageFailure.
    Slot times come from each replica's wall clock, so replicas need synchronised clocks.
    """

    def __init__(self, uri: str, *, timeout: float = 2.0, prefix: str = "plaid_bridge") -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._timeout = timeout
        self._storage = RedisStorage(
            "async+" + uri.removeprefix("async+"),
            implementation="redispy",
            key_prefix=prefix,
            wrap_exceptions=True,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
        )
        self._limiter = MovingWindowRateLimiter(self._storage)

    async def acquire(self, windows: Sequence[Window]) -> Attempt:
        items = [RateLimitItemPerSecond(w.limit, w.seconds, namespace="window") for w in windows]
        try:
            with anyio.fail_after(self._timeout):
                return await self._acquire(windows, items)
        except Exception as error:
            # Redis errors, timeouts and broken connections alike: the call must not go out.
            raise StorageFailure(type(error).__name__) from None

    async def _acquire(
        self, windows: Sequence[Window], items: Sequence[RateLimitItemPerSecond]
    ) -> Attempt:
        remaining: list[int] = []
        wait = 0.0
        blocked = -1
        for index, (window, item) in enumerate(zip(windows, items, strict=True)):
            stats = await self._limiter.get_window_stats(item, window.key)
            remaining.append(stats.remaining)
            if stats.remaining <= 0:
                frees_in = stats.reset_time - time.time()
                if blocked < 0 or frees_in > wait:
                    wait, blocked = max(frees_in, 0.001), index
        if blocked >= 0:
            return Attempt(granted=False, wait=wait, blocked=blocked)
        # The widest windows first: a slot lost to a race there costs least.
        order = sorted(range(len(windows)), key=lambda i: -windows[i].limit)
        for index in order:
            if not await self._limiter.hit(items[index], windows[index].key):
                stats = await self._limiter.get_window_stats(items[index], windows[index].key)
                frees_in = max(stats.reset_time - time.time(), 0.001)
                return Attempt(granted=False, wait=frees_in, blocked=index)
        used = tuple(w.limit - left + 1 for w, left in zip(windows, remaining, strict=True))
        return Attempt(granted=True, used=used)

    async def aclose(self) -> None:
        bridge: Any = self._storage.bridge
        try:
            await bridge.get_connection().aclose()
        except Exception:  # closing a client that never connected, or whose server is gone
            logger.debug("ratelimit.redis.close_failed")


def windows_from_uri(uri: str, *, timeout: float = 2.0) -> SlidingWindows:
    """The storage named by `RATE_LIMIT_STORAGE_URI`: `memory://` or `redis://host:port/db`
    (also `rediss://`). Raises ValueError for any other scheme."""
    scheme = uri.partition("://")[0].lower().removeprefix("async+")
    if scheme == "memory":
        return MemoryWindows()
    if scheme in ("redis", "rediss", "redis+unix"):
        return RedisWindows(uri, timeout=timeout)
    raise ValueError(f"RATE_LIMIT_STORAGE_URI: unsupported scheme {scheme!r} (memory or redis)")


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
