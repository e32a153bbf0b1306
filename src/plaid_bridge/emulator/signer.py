"""ES256 webhook signing as Plaid does it, and the JWKs `/webhook_verification_key/get` serves.

The `Plaid-Verification` header is a compact JWT: header `{alg: ES256, kid, typ: JWT}`, claims
`{iat, request_body_sha256}` where the hash is the hex SHA-256 of the exact body bytes sent.
Keys are P-256 and generated per emulator instance; rotation expires the old key (it stays
retrievable, with `expired_at` set) so clients can be tested against expired keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


@dataclass(slots=True)
class _Key:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    created_at: int
    expired_at: int | None = None


class KeyRing:
    """The emulator's signing keys: one current key, older ones kept with `expired_at` set."""

    def __init__(self) -> None:
        self._keys: dict[str, _Key] = {}
        self._current = self._new_key()

    def _new_key(self) -> _Key:
        key = _Key(str(uuid.uuid4()), ec.generate_private_key(ec.SECP256R1()), int(time.time()))
        self._keys[key.kid] = key
        return key

    def to_dict(self) -> dict[str, Any]:
        """The keys (private ones included: this is a test double's own signing key)."""
        return {
            "current": self._current.kid,
            "keys": [
                {
                    "kid": key.kid,
                    "pem": key.private_key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    ).decode(),
                    "createdAt": key.created_at,
                    "expiredAt": key.expired_at,
                }
                for key in self._keys.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KeyRing:
        """The ring `to_dict` described; ValueError if a key is not a P-256 private key."""
        ring = cls.__new__(cls)
        ring._keys = {}
        for entry in data["keys"]:
            private_key = serialization.load_pem_private_key(entry["pem"].encode(), password=None)
            if not isinstance(private_key, ec.EllipticCurvePrivateKey):
                raise ValueError(f"webhook key {entry['kid']} is not an EC key")
            ring._keys[entry["kid"]] = _Key(
                entry["kid"], private_key, entry["createdAt"], entry["expiredAt"]
            )
        ring._current = ring._keys[data["current"]]
        return ring

    @property
    def current_kid(self) -> str:
        return self._current.kid

    def rotate(self) -> tuple[str, str]:
        """Make a new current key and expire the previous one now; returns (new kid, old kid)."""
        old = self._current
        old.expired_at = int(time.time())
        self._current = self._new_key()
        return self._current.kid, old.kid

    def sign(self, body: bytes, *, issued_at: int | None = None) -> str:
        """The `Plaid-Verification` JWT for exactly these body bytes, by the current key."""
        header = {"alg": "ES256", "kid": self._current.kid, "typ": "JWT"}
        claims = {
            "iat": int(time.time()) if issued_at is None else issued_at,
            "request_body_sha256": hashlib.sha256(body).hexdigest(),
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        der = self._current.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input}.{_b64url(signature)}"

    def jwk(self, kid: str) -> dict[str, Any] | None:
        """The public key `kid` as Plaid's JWKPublicKey, or None if this ring never had it."""
        key = self._keys.get(kid)
        if key is None:
            return None
        numbers = key.private_key.public_key().public_numbers()
        return {
            "alg": "ES256",
            "crv": "P-256",
            "kid": key.kid,
            "kty": "EC",
            "use": "sig",
            "x": _b64url(numbers.x.to_bytes(32, "big")),
            "y": _b64url(numbers.y.to_bytes(32, "big")),
            "created_at": key.created_at,
            "expired_at": key.expired_at,
        }
