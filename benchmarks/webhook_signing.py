"""What the webhook benchmarks share: Plaid-shaped bodies and a stand-in for Plaid's
`/webhook_verification_key/get` publishing the current key of the emulator's `KeyRing`, which
signs `Plaid-Verification` headers as Plaid does."""

from __future__ import annotations

import json
import threading
import uuid

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from plaid_bridge.emulator.signer import KeyRing

WEBHOOK_PATH = "/api/v1/plaid/webhook"


def body(label: str) -> bytes:
    """A SYNC_UPDATES_AVAILABLE webhook as Plaid sends it (pretty-printed), `label` its Item."""
    payload = {
        "webhook_type": "TRANSACTIONS",
        "webhook_code": "SYNC_UPDATES_AVAILABLE",
        "item_id": label,
        "initial_update_complete": True,
        "historical_update_complete": False,
        "environment": "production",
    }
    return json.dumps(payload, indent=2).encode()


def raw_request(path: str, content: bytes, header: str) -> bytes:
    """The HTTP/1.1 request bytes of one signed webhook, for raw-socket load generators."""
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Plaid-Verification: {header}\r\nContent-Length: {len(content)}\r\n\r\n"
    )
    return head.encode() + content


class KeyEndpoint:
    """Plaid's key endpoint for one published key; counts calls for other kids."""

    def __init__(self, key: KeyRing) -> None:
        self.key = key
        self.unknown = 0
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[Route("/webhook_verification_key/get", self._get, methods=["POST"])]
        )

    async def _get(self, request: Request) -> JSONResponse:
        kid = (await request.json()).get("key_id")
        published = self.key.jwk(kid) if kid == self.key.current_kid else None
        if published is not None:
            return JSONResponse({"key": published, "request_id": uuid.uuid4().hex})
        with self._lock:
            self.unknown += 1
        error = {
            "error_type": "INVALID_INPUT",
            "error_code": "INVALID_WEBHOOK_VERIFICATION_KEY_ID",
            "error_message": "invalid key id",
            "display_message": None,
            "request_id": uuid.uuid4().hex,
        }
        return JSONResponse(error, status_code=400)
