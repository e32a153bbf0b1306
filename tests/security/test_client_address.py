"""The client address the audit log records: X-Forwarded-For counts only from a listed proxy."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from plaid_bridge.app import create_app
from plaid_bridge.logs import configure_logging
from plaid_bridge.security.auth import issue_dev_token
from plaid_bridge.services import Services

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"
PROXY = "10.0.0.1"
CLIENT = "198.51.100.9"


@asynccontextmanager
async def client_from(
    services: Services, peer: str, *, forwarded_allow_ips: str
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections come from `peer`, on an app trusting the given proxies."""
    settings = services.settings.model_copy(update={"forwarded_allow_ips": forwarded_allow_ips})
    app = create_app(services=dataclasses.replace(services, settings=settings))
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(peer, 40_000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def audited_ip(
    services: Services, peer: str, forwarded_for: str | list[str], *, forwarded_allow_ips: str
) -> str | None:
    """The IP the audit log records for a link token asked for from `peer` (a list sends one
    X-Forwarded-For line per item)."""
    member = issue_dev_token(services.settings, user="u1", org="o1", role="MEMBER")
    admin = issue_dev_token(services.settings, user="u1", org="o1", role="ADMIN")
    lines = [forwarded_for] if isinstance(forwarded_for, str) else forwarded_for
    headers = [("Authorization", f"Bearer {member}")]
    headers += [("X-Forwarded-For", line) for line in lines]
    async with client_from(services, peer, forwarded_allow_ips=forwarded_allow_ips) as client:
        created = await client.post(f"{BASE}/create-link-token", json={}, headers=headers)
        assert created.status_code == 201, created.text
        request_id = created.headers["x-request-id"]
        audit = await client.get(f"{BASE}/audit", headers={"Authorization": f"Bearer {admin}"})
    assert audit.status_code == 200, audit.text
    [entry] = [e for e in audit.json()["entries"] if e["requestId"] == request_id]
    assert entry["action"] == "LINK_TOKEN_CREATED"
    ip: str | None = entry["ip"]
    return ip


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(services: Services) -> None:
    ip = await audited_ip(services, "203.0.113.7", CLIENT, forwarded_allow_ips=PROXY)
    assert ip == "203.0.113.7"


async def test_loopback_is_not_trusted_unless_listed(services: Services) -> None:
    assert services.settings.forwarded_allow_ips == ""  # the default trusts no proxy
    assert await audited_ip(services, "127.0.0.1", CLIENT, forwarded_allow_ips="") == "127.0.0.1"
    listed = await audited_ip(services, "127.0.0.1", CLIENT, forwarded_allow_ips="127.0.0.1")
    assert listed == CLIENT


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(services: Services) -> None:
    assert await audited_ip(services, PROXY, CLIENT, forwarded_allow_ips=PROXY) == CLIENT
    # A proxy appends the address it saw; whatever the client wrote before it stays unbelieved.
    spoofed = f"6.6.6.6, {CLIENT}"
    assert await audited_ip(services, PROXY, spoofed, forwarded_allow_ips="10.0.0.0/8") == CLIENT
    # A client's own header line comes first; the line the proxy adds still decides.
    two_lines = ["6.6.6.6", CLIENT]
    assert await audited_ip(services, PROXY, two_lines, forwarded_allow_ips=PROXY) == CLIENT


async def test_log_lines_of_a_request_carry_the_believed_client_address(
    services: Services,
) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", "json", stream=stream)
    try:
        assert await audited_ip(services, PROXY, CLIENT, forwarded_allow_ips=PROXY) == CLIENT
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    in_request = [line for line in lines if line.get("request_id")]
    assert in_request, lines
    assert {line.get("client_ip") for line in in_request} == {CLIENT}
