"""The request-body cap (MAX_REQUEST_BYTES): refused before parsing or authentication, whether the
size is declared or streamed, and without the process ever holding the body."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from plaid_bridge.app import create_app
from plaid_bridge.services import build_services
from plaid_bridge.serving import BackgroundServer
from tests.conftest import make_settings

LINK_TOKEN = "/api/v1/plaid/create-link-token"
EXCHANGE = "/api/v1/plaid/exchange-token"
MIB = 1024 * 1024


@asynccontextmanager
async def _app_client(tmp_path: Path, **overrides: object) -> AsyncIterator[httpx.AsyncClient]:
    """The app over an empty database file: nothing here may get as far as using it."""
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        var_dir=tmp_path / "var",
        worker_mode="external",
        **overrides,
    )
    services = build_services(settings)
    transport = httpx.ASGITransport(app=create_app(services=services), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        services.plaid.close()
        await services.database.dispose()


async def _chunks(total: int, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    chunk = b"x" * size
    for _ in range(total // size):
        yield chunk


def _assert_too_large(response: httpx.Response, limit: int) -> None:
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert str(limit) in body["error"]["message"]
    assert body["requestId"] == response.headers["x-request-id"]


@pytest.mark.anyio
async def test_a_declared_length_over_the_cap_is_refused_before_authentication(
    tmp_path: Path,
) -> None:
    async with _app_client(tmp_path) as client:
        response = await client.post(
            LINK_TOKEN,
            content=_chunks(1 * MIB),
            headers={"Content-Length": str(1 * MIB), "Content-Type": "application/json"},
        )
    _assert_too_large(response, 65536)


@pytest.mark.anyio
async def test_a_streamed_body_is_cut_off_at_the_cap(tmp_path: Path) -> None:
    async with _app_client(tmp_path) as client:
        response = await client.post(
            EXCHANGE, content=_chunks(1 * MIB), headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    _assert_too_large(response, 65536)


@pytest.mark.anyio
async def test_the_cap_is_configurable_and_a_body_under_it_goes_on_to_authentication(
    tmp_path: Path,
) -> None:
    padding = "p" * 1500
    async with _app_client(tmp_path, max_request_bytes=2048) as client:
        small = await client.post(EXCHANGE, json={"publicToken": "x", "padding": padding})
        large = await client.post(EXCHANGE, json={"publicToken": "x", "padding": padding * 2})
    assert small.status_code == 401  # read, parsed, then refused for want of a token
    _assert_too_large(large, 2048)


@pytest.mark.anyio
async def test_a_malformed_content_length_is_a_400(tmp_path: Path) -> None:
    async with _app_client(tmp_path) as client:
        response = await client.post(EXCHANGE, content=b"{}", headers={"Content-Length": "2, 2"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "INVALID_REQUEST"


def _peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def _reset_peak_rss() -> None:
    """Make VmHWM start again from the current RSS (Linux: `5` to clear_refs)."""
    Path("/proc/self/clear_refs").write_text("5")


@pytest.fixture
def live_api(tmp_path: Path) -> Iterator[str]:
    settings = make_settings(
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        var_dir=tmp_path / "var",
        worker_mode="external",
    )
    with BackgroundServer() as server:
        server.serve(create_app(settings), name="api")
        yield server.url


@pytest.mark.slow
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_200_mb_without_a_token_is_refused_and_memory_stays_flat(
    live_api: str, declared: bool
) -> None:
    total, chunk = 200 * MIB, b"x" * MIB

    def body() -> Iterator[bytes]:
        for _ in range(total // len(chunk)):
            yield chunk

    headers = {"Content-Type": "application/json"}
    if declared:
        headers["Content-Length"] = str(total)
    with httpx.Client(base_url=live_api, timeout=60) as client:
        client.get("/healthz")  # the server's first request settles its own allocations
        _reset_peak_rss()
        baseline = _peak_rss_bytes()
        started = time.monotonic()
        try:
            response = client.post(LINK_TOKEN, content=body(), headers=headers)
        except httpx.TransportError:
            # The server may close the connection once it has answered; then the answer is
            # read from a fresh request below. Either way the body was not held.
            response = client.post(LINK_TOKEN, content=body(), headers=headers)
        elapsed = time.monotonic() - started
        growth = _peak_rss_bytes() - baseline
    assert growth < 20 * MIB, f"peak RSS grew by {growth / MIB:.1f} MiB"
    _assert_too_large(response, 65536)
    assert elapsed < 30
