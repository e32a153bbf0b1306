"""Sliding windows: at most N slots in any span of S seconds, kept in process memory or in Redis.

The one mechanism behind both rate limits: the outbound limiter in front of Plaid
(`plaid/outbound.py`) and the per-user API limits (`ratelimit/api.py`). `MemoryWindows` keeps
windows in this process; `RedisWindows` keeps them in Redis through the `limits` library, shared
by every replica. A storage that does not answer raises `StorageFailure`; what that means is the
caller's decision (both limiters refuse rather than let calls through unlimited).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

__all__ = [
    "WINDOW_SECONDS",
    "Attempt",
    "MemoryWindows",
    "RedisWindows",
    "SlidingWindows",
    "StorageFailure",
    "Window",
    "windows_from_uri",
]

logger = logging.getLogger("plaid_bridge.ratelimit")

WINDOW_SECONDS = 60


class StorageFailure(Exception):
    """A window storage could not answer (unreachable, timed out, refused)."""


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
