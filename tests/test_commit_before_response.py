"""A response leaves only after its request's transaction committed (SPEC section 4): a client
that reads right after a write sees it, and a commit that fails cannot follow a success."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from plaid_bridge.app import create_app
from plaid_bridge.config import API_PREFIX
from plaid_bridge.db import sync_url
from plaid_bridge.security.auth import issue_dev_token
from plaid_bridge.services import Services

pytestmark = pytest.mark.anyio


async def test_the_audit_row_is_committed_when_the_response_starts(
    services: Services, database_url: str
) -> None:
    app = create_app(services=services)
    token = issue_dev_token(services.settings, user="u1", org="o1", role="MEMBER")
    engine = create_engine(sync_url(database_url))
    committed_at_start: list[int] = []
    statuses: list[int] = []
    body = json.dumps({}).encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])
            with engine.connect() as connection:  # another connection: committed rows only
                committed_at_start.append(
                    connection.scalar(
                        text(
                            "SELECT count(*) FROM plaid_audit_logs "
                            "WHERE action = 'LINK_TOKEN_CREATED'"
                        )
                    )
                )

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": f"{API_PREFIX}/create-link-token",
        "raw_path": f"{API_PREFIX}/create-link-token".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"authorization", f"Bearer {token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    try:
        await app(scope, receive, send)
    finally:
        engine.dispose()
    assert statuses == [201]
    assert committed_at_start == [1]
