"""`stop_within`: a stopping process never waits past its grace, whatever its worker does."""

from __future__ import annotations

import asyncio
import time

import pytest

from plaid_bridge.worker import stop_within

pytestmark = pytest.mark.anyio


async def test_work_that_ignores_stop_is_cancelled_when_the_grace_ends() -> None:
    stop = asyncio.Event()
    deaf = asyncio.create_task(asyncio.sleep(3600))  # work that never looks at `stop`

    started = time.monotonic()
    await stop_within(deaf, stop, grace=0.3)

    assert stop.is_set()
    assert deaf.cancelled()
    assert 0.3 <= time.monotonic() - started < 2.0


async def test_work_that_stops_is_waited_for() -> None:
    stop = asyncio.Event()

    async def polite() -> None:
        await stop.wait()
        await asyncio.sleep(0.1)  # finishing the row in progress

    task = asyncio.create_task(polite())
    await stop_within(task, stop, grace=5.0)

    assert task.done()
    assert not task.cancelled()
