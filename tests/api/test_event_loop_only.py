"""The API path stays on the event loop: only Plaid calls (the blocking SDK) use worker threads.

FastAPI runs a plain `def` dependency, route or exception handler on the thread pool, a hop there
and back per request; every one of ours is a coroutine, so a request that calls no Plaid endpoint
takes no thread at all, and one that does takes exactly one per call (and one more, the first
time a client calls, to load the SDK).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.to_thread
import pytest

from tests.conftest import Api

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"


@pytest.fixture
def thread_hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions sent to a worker thread while the test runs."""
    hops: list[str] = []
    run_sync = anyio.to_thread.run_sync

    async def counted(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__qualname__", repr(func)))
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counted)
    return hops


async def test_requests_without_plaid_calls_take_no_thread(
    api: Api, thread_hops: list[str]
) -> None:
    for path in ("/connections", "/events", "/audit", "/transactions", "/health/summary"):
        response = await api.client.get(f"{BASE}{path}", headers=api.auth())
        assert response.status_code == 200, (path, response.text)
    refused = await api.client.get(f"{BASE}/connections")
    assert refused.status_code == 401
    invalid = await api.client.get(f"{BASE}/events?after=-1", headers=api.auth())
    assert invalid.status_code == 400
    missing = await api.client.get(f"{BASE}/accounts/no-such-item", headers=api.auth())
    assert missing.status_code == 404
    assert (await api.client.get("/healthz")).status_code == 200
    assert thread_hops == []


async def test_a_plaid_call_takes_one_thread(api: Api, thread_hops: list[str]) -> None:
    for user in ("u1", "u2"):
        response = await api.client.post(
            f"{BASE}/create-link-token", json={}, headers=api.auth(user=user, role="MEMBER")
        )
        assert response.status_code == 201, response.text
    # The client's first call loads the SDK's endpoint module first, on a thread of its own.
    assert thread_hops == ["PlaidClient._load_sdk", "PlaidClient._attempt", "PlaidClient._attempt"]
