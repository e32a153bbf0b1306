"""What the webhook benchmarks share: a signing key that signs `Plaid-Verification` headers as
Plaid does, Plaid-shaped bodies, and a stand-in for Plaid's `/webhook_verification_key/get`."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
import uuid
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

WEBHOOK_PATH = "/api/v1/plaid/webhook"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class SigningKey:
    """A P-256 key; `sign` writes the compact ES256 JWT Plaid sends (claims `iat` and the
    body's SHA-256), directly with `cryptography`, so pre-signing thousands is quick."""

    def __init__(self) -> None:
        self.kid = str(uuid.uuid4())
        self.private = ec.generate_private_key(ec.SECP256R1())
        self.pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def jwk(self) -> dict[str, Any]:
        numbers = self.private.public_key().public_numbers()
        return {
            "alg": "ES256",
            "crv": "P-256",
            "kid": self.kid,
            "kty": "EC",
            "use": "sig",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
            "created_at": int(time.time()) - 60,
            "expired_at": None,
        }

    def sign(self, body: bytes, *, kid: str | None = None) -> str:
        header = {"alg": "ES256", "kid": kid or self.kid, "typ": "JWT"}
        claims = {"iat": int(time.time()), "request_body_sha256": hashlib.sha256(body).hexdigest()}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        r, s = decode_dss_signature(
            self.private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        )
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(signature)}"


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

    def __init__(self, key: SigningKey) -> None:
        self.key = key
        self.unknown = 0
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[Route("/webhook_verification_key/get", self._get, methods=["POST"])]
        )

    async def _get(self, request: Request) -> JSONResponse:
        kid = (await request.json()).get("key_id")
        if kid == self.key.kid:
            return JSONResponse({"key": self.key.jwk(), "request_id": uuid.uuid4().hex})
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
