"""Webhook fixtures: test-owned ES256 keys served by a stand-in for Plaid's key endpoint, signed
webhook builders, and the app served over real HTTP (uvicorn in a thread) for the emulator."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jose import jws
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from plaid_bridge.app import create_app
from plaid_bridge.config import Settings
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.serving import BackgroundServer
from plaid_bridge.webhooks.models import WebhookEvent
from tests.conftest import Api, make_settings

WEBHOOK_PATH = "/api/v1/plaid/webhook"
INTEGRATIONS_WEBHOOK_PATH = "/api/v1/integrations/plaid/webhook"


def webhook_body(
    webhook_type: str = "TRANSACTIONS",
    webhook_code: str = "SYNC_UPDATES_AVAILABLE",
    item_id: str = "item-1",
    **fields: Any,
) -> bytes:
    """A webhook body as Plaid sends it: pretty-printed JSON."""
    payload = {
        "webhook_type": webhook_type,
        "webhook_code": webhook_code,
        "item_id": item_id,
        **fields,
        "environment": "sandbox",
    }
    return json.dumps(payload, indent=2).encode()


class SigningKey:
    """A P-256 key that signs `Plaid-Verification` headers the way Plaid does."""

    def __init__(self, kid: str | None = None) -> None:
        self.kid = kid or str(uuid.uuid4())
        self.private_key = ec.generate_private_key(ec.SECP256R1())
        self.pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def jwk(self, *, expired_at: int | None = None) -> dict[str, Any]:
        """The public key as `/webhook_verification_key/get` returns it."""
        numbers = self.private_key.public_key().public_numbers()
        return {
            "alg": "ES256",
            "crv": "P-256",
            "kid": self.kid,
            "kty": "EC",
            "use": "sig",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
            "created_at": int(time.time()) - 3600,
            "expired_at": expired_at,
        }

    def sign(self, body: bytes, *, iat: float | None = None, kid: str | None = None) -> str:
        """The header for exactly `body`, issued at `iat` (now by default)."""
        claims = {
            "iat": int(time.time()) if iat is None else iat,
            "request_body_sha256": hashlib.sha256(body).hexdigest(),
        }
        return jws.sign(claims, self.pem, headers={"kid": kid or self.kid}, algorithm="ES256")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def unsigned_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A JWT with any header and no real signature (for `alg: none` and friends)."""
    return ".".join(
        _b64url(part)
        for part in (
            json.dumps(header).encode(),
            json.dumps(claims).encode(),
            signature,
        )
    )


def _plaid_error(error_type: str, error_code: str) -> dict[str, Any]:
    return {
        "error_type": error_type,
        "error_code": error_code,
        "error_message": error_code.lower().replace("_", " "),
        "display_message": None,
        "request_id": uuid.uuid4().hex,
    }


class KeyStandIn:
    """Plaid's `/webhook_verification_key/get` for test-owned keys; counts fetches per kid.

    `failures` makes the next calls fail as a Plaid outage (500 API_ERROR); `latency` delays
    each answer (a slow Plaid, so concurrent requests overlap the fetch); `requested` is set
    once a request has arrived."""

    def __init__(self) -> None:
        self.keys: dict[str, dict[str, Any]] = {}
        self.fetches: Counter[str] = Counter()
        self.failures = 0
        self.latency = 0.0
        self.requested = threading.Event()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[Route("/webhook_verification_key/get", self._get, methods=["POST"])]
        )

    def add(self, key: SigningKey, *, expired_at: int | None = None) -> SigningKey:
        self.keys[key.kid] = key.jwk(expired_at=expired_at)
        return key

    def reset(self) -> None:
        with self._lock:
            self.keys.clear()
            self.fetches.clear()
            self.failures = 0
            self.latency = 0.0
            self.requested.clear()

    async def _get(self, request: Request) -> JSONResponse:
        kid = str((await request.json()).get("key_id"))
        with self._lock:
            self.fetches[kid] += 1
            failing = self.failures > 0
            self.failures -= failing
        self.requested.set()
        if self.latency:
            await asyncio.sleep(self.latency)
        if failing:
            return JSONResponse(_plaid_error("API_ERROR", "INTERNAL_SERVER_ERROR"), 500)
        key = self.keys.get(kid)
        if key is None:
            error = _plaid_error("INVALID_INPUT", "INVALID_WEBHOOK_VERIFICATION_KEY_ID")
            return JSONResponse(error, 400)
        return JSONResponse({"key": key, "request_id": uuid.uuid4().hex})


@pytest.fixture(scope="module")
def key_server() -> Iterator[tuple[KeyStandIn, str]]:
    stand_in = KeyStandIn()
    with BackgroundServer() as server:
        server.serve(stand_in.app)
        yield stand_in, server.url


@pytest.fixture
def keys(key_server: tuple[KeyStandIn, str]) -> Iterator[KeyStandIn]:
    """The key stand-in, emptied before and after the test."""
    stand_in, _ = key_server
    stand_in.reset()
    yield stand_in
    stand_in.reset()


@pytest.fixture
def signing_key(keys: KeyStandIn) -> SigningKey:
    """A current key, known to the stand-in."""
    return keys.add(SigningKey())


@dataclass
class Hooks:
    """The app (in-process) verifying against the key stand-in, and what its inbox holds."""

    api: Api
    keys: KeyStandIn

    async def post(
        self,
        body: bytes,
        header: str | None,
        *,
        path: str = WEBHOOK_PATH,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Content-Type": "application/json", **(headers or {})}
        if header is not None:
            sent["Plaid-Verification"] = header
        return await self.api.client.post(path, content=body, headers=sent)

    async def stored(self) -> list[WebhookEvent]:
        async with self.api.services.database.transaction() as session:
            return list(await session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


@pytest.fixture
def hooks(api: Api, key_server: tuple[KeyStandIn, str], keys: KeyStandIn) -> Hooks:
    """`api` with its Plaid client (and so the webhook verifier) pointed at the key stand-in."""
    current = api.services.settings
    api.use(
        make_settings(
            database_url=current.database_url,
            plaid_api_host=key_server[1],
            var_dir=current.var_dir,
            plaid_max_retries=0,
            # The most the setting allows: these tests fetch keys back to back on purpose.
            plaid_webhook_key_fetch_per_second=5,
        )
    )
    return Hooks(api, keys)


@dataclass(frozen=True)
class LiveApp:
    """The app served over real HTTP; Items created through `settings` send webhooks to it."""

    settings: Settings
    url: str


@pytest.fixture
def live_app(database_url: str, emulator: EmulatorServer, tmp_path: Path) -> Iterator[LiveApp]:
    """The whole app under uvicorn (its own lifespan and services), verifying with the
    emulator's real keys; its worker left external so stored rows stay as received."""
    with BackgroundServer() as server:
        settings = make_settings(
            database_url=database_url,
            plaid_api_host=emulator.url,
            var_dir=tmp_path / "var",
            plaid_webhook_url=f"{server.url}{WEBHOOK_PATH}",
            worker_mode="external",
        )
        server.serve(create_app(settings))
        yield LiveApp(settings, server.url)
