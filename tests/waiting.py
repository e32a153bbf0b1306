"""Waiting on a condition rather than for a time: the one polling helper of the tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(
    probe: Callable[[], Awaitable[bool]], what: str, *, within: float = 60.0
) -> None:
    """Poll `probe` until it holds; fail after `within` seconds, a bound for a hung run (not a
    speed check), naming `what` was awaited."""
    deadline = time.monotonic() + within
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
