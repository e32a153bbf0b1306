"""The `Plaid-Verification` check of incoming webhooks (PLAID_FACTS.md, "Webhooks").

The header is a compact JWT signed with ES256 by a key Plaid serves at
`/webhook_verification_key/get`; its claims are `{iat, request_body_sha256}`. The token is decoded
once, and keys are cached per `kid` (bounded) as ready `cryptography` public keys, so verifying
with a cached key is one ECDSA verification; a key's `expired_at` is checked on every use, since
keys expire while cached.

Anyone can send a header naming a made-up `kid`, so fetching keys is what a forger would make us
spend: an unknown `kid` is fetched once however many requests wait for it (single flight), and new
fetches start at most at a configured rate for the whole process (`KeyFetchBudget`). A request
whose `kid` would need a fetch beyond that rate is refused at once, like any unverifiable webhook
(Plaid redelivers what we refuse). The claims are checked before any fetch, so a stale or
mismatched header spends nothing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from plaid_bridge.plaid.client import PlaidClient
from plaid_bridge.plaid.errors import PlaidError, PlaidErrorClass

if TYPE_CHECKING:
    from plaid_bridge.config import Settings

logger = logging.getLogger("plaid_bridge.plaid.webhook_verify")

ALGORITHM = "ES256"
MAX_HEADER_LENGTH = 2048  # a Plaid header is about 400 characters
MAX_KID_LENGTH = 128
MAX_CACHED_KEYS = 100
FETCH_TIMEOUT_SECONDS = 5.0  # Plaid gives up on a webhook after 10 s
UNKNOWN_KID_TTL_SECONDS = 60.0  # a kid Plaid does not know is refused without asking again
MAX_UNKNOWN_KIDS = 1000
DEFAULT_KEY_FETCHES_PER_SECOND = 1.0
_TRANSIENT = frozenset({PlaidErrorClass.PLAID_TRANSIENT, PlaidErrorClass.RATE_LIMITED})


class WebhookVerificationError(Exception):
    """The webhook is not provably Plaid's; `reason` is a short stable code for logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VerifiedWebhook:
    """What a verified header proves: when Plaid signed it and which signed token it was.

    `token_sha256` is the SHA-256 (hex) of the token's signed part, `header.payload`: the bytes
    Plaid signed. It names the delivery for replay detection. The raw header would not do: an
    ECDSA signature can be rewritten into a second valid one ((r, s) -> (r, n - s)) without the
    key, so the same signed token can arrive under different header strings."""

    issued_at: float
    token_sha256: str


@dataclass(frozen=True, slots=True)
class _VerificationKey:
    key: ec.EllipticCurvePublicKey
    expired_at: int | None


@dataclass(frozen=True, slots=True)
class _Token:
    """A compact JWS, decoded once: its signed part, header and payload, and the signature as
    DER (what `cryptography` verifies; ES256 sends the raw 64-byte r || s)."""

    signed_part: str
    header: dict[str, Any]
    payload: bytes
    signature: bytes


class KeyFetchBudget:
    """A token bucket: new key fetches start at most `per_second` per second on average, and
    at most `burst` at once (default: the whole-second part of the rate, at least one).
    `take` never waits; it answers whether a fetch may start now."""

    def __init__(
        self,
        per_second: float,
        *,
        burst: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not per_second > 0:
            raise ValueError("per_second must be positive")
        self.per_second = per_second
        self.burst = burst if burst is not None else max(1, int(per_second))
        if self.burst < 1:
            raise ValueError("burst must be at least 1")
        self._clock = clock
        self._tokens = float(self.burst)
        self._updated = clock()

    def take(self) -> bool:
        now = self._clock()
        elapsed = max(0.0, now - self._updated)
        self._updated = now
        self._tokens = min(float(self.burst), self._tokens + elapsed * self.per_second)
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class WebhookVerifier:
    """Verifies `Plaid-Verification` headers against the raw body; safe for concurrent use on
    one event loop."""

    def __init__(
        self,
        plaid: PlaidClient,
        *,
        max_age: float = 300.0,
        future_skew: float = 60.0,
        clock: Callable[[], float] = time.time,
        max_keys: int = MAX_CACHED_KEYS,
        fetch_timeout: float = FETCH_TIMEOUT_SECONDS,
        unknown_kid_ttl: float = UNKNOWN_KID_TTL_SECONDS,
        fetch_budget: KeyFetchBudget | None = None,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._plaid = plaid
        self._max_age = max_age
        self._future_skew = future_skew
        self._clock = clock
        self._max_keys = max_keys
        self._fetch_timeout = fetch_timeout
        self._keys: OrderedDict[str, _VerificationKey] = OrderedDict()
        self._fetches: dict[str, asyncio.Task[_VerificationKey | str]] = {}
        # Kids Plaid said it does not know, until when: made-up kids cost one fetch, not one each.
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._unknown_kid_ttl = unknown_kid_ttl
        self._budget = fetch_budget or KeyFetchBudget(DEFAULT_KEY_FETCHES_PER_SECOND)

    @classmethod
    def from_settings(cls, plaid: PlaidClient, settings: Settings) -> WebhookVerifier:
        """A verifier fetching at most `PLAID_WEBHOOK_KEY_FETCH_PER_SECOND` new keys a second."""
        return cls(plaid, fetch_budget=KeyFetchBudget(settings.plaid_webhook_key_fetch_per_second))

    async def verify(self, header: str | None, body: bytes) -> VerifiedWebhook:
        """What `header` proves, if it is Plaid's valid signature of exactly `body`.

        The header's shape, algorithm, time window and body hash are checked before any network
        call; then the key, possibly fetched from Plaid (single flight, rate-bounded), verifies
        the signature. Raises `WebhookVerificationError` for every failure, a key that cannot
        be fetched (now) included."""
        token, kid = _parse_header(header)
        issued_at = self._check_claims(_claims(token.payload), body)
        verification_key = await self._key(kid)
        if verification_key.expired_at is not None and verification_key.expired_at <= self._clock():
            raise WebhookVerificationError("key_expired")
        signed_part = token.signed_part.encode()
        try:
            # The claims checked above are this token's payload, now proven Plaid's.
            verification_key.key.verify(token.signature, signed_part, ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise WebhookVerificationError("bad_signature") from None
        return VerifiedWebhook(
            issued_at=issued_at, token_sha256=hashlib.sha256(signed_part).hexdigest()
        )

    def _check_claims(self, claims: dict[str, Any], body: bytes) -> float:
        """The claims' `iat`, if it is in the window and the body hash matches `body`."""
        now = self._clock()
        issued_at = claims.get("iat")
        if (
            isinstance(issued_at, bool)
            or not isinstance(issued_at, int | float)
            or not math.isfinite(issued_at)
        ):
            raise WebhookVerificationError("iat_missing")
        if now - issued_at > self._max_age:
            raise WebhookVerificationError("iat_too_old")
        if issued_at - now > self._future_skew:
            raise WebhookVerificationError("iat_in_future")
        claimed = claims.get("request_body_sha256")
        if not isinstance(claimed, str):
            raise WebhookVerificationError("body_hash_missing")
        actual = hashlib.sha256(body).hexdigest()
        if not hmac.compare_digest(claimed.encode(), actual.encode()):
            raise WebhookVerificationError("body_hash_mismatch")
        return float(issued_at)

    async def _key(self, kid: str) -> _VerificationKey:
        cached = self._keys.get(kid)
        if cached is not None:
            self._keys.move_to_end(kid)
            return cached
        refused_until = self._unknown.get(kid)
        if refused_until is not None:
            if self._clock() < refused_until:
                raise WebhookVerificationError("unknown_key")
            del self._unknown[kid]
        loop = asyncio.get_running_loop()
        fetch = self._fetches.get(kid)
        if fetch is None or fetch.get_loop() is not loop:
            if not self._budget.take():
                raise WebhookVerificationError("key_fetch_throttled")
            fetch = loop.create_task(self._fetch(kid))
            self._fetches[kid] = fetch
            fetch.add_done_callback(lambda done: self._forget_fetch(kid, done))
        # Shielded: one caller giving up (a client disconnect) must not cancel the others' fetch.
        outcome = await asyncio.shield(fetch)
        if isinstance(outcome, str):
            raise WebhookVerificationError(outcome)
        return outcome

    def _forget_fetch(self, kid: str, done: asyncio.Task[_VerificationKey | str]) -> None:
        if self._fetches.get(kid) is done:
            del self._fetches[kid]

    async def _fetch(self, kid: str) -> _VerificationKey | str:
        """The key for `kid`, cached; or the reason it is unusable (never raised here, so a
        fetch nobody awaits any more ends quietly). Failures are not cached."""
        try:
            async with asyncio.timeout(self._fetch_timeout):
                found = await self._plaid.get_webhook_verification_key(key_id=kid, retry=False)
        except TimeoutError:
            logger.warning("webhooks.key_fetch_timeout", extra={"kid": kid})
            return "key_fetch_failed"
        except PlaidError as error:
            transient = error.error_class in _TRANSIENT
            logger.warning(
                "webhooks.key_fetch_failed",
                extra={"kid": kid, "plaid_error_code": error.error_code, "transient": transient},
            )
            if transient:
                return "key_fetch_failed"
            self._unknown[kid] = self._clock() + self._unknown_kid_ttl
            while len(self._unknown) > MAX_UNKNOWN_KIDS:
                self._unknown.popitem(last=False)
            return "unknown_key"
        if (found.kid, found.alg, found.kty, found.crv) != (kid, ALGORITHM, "EC", "P-256"):
            logger.warning("webhooks.key_unusable", extra={"kid": kid})
            return "key_unusable"
        try:
            key = _public_key(found.jwk)
        except ValueError:
            logger.warning("webhooks.key_unusable", extra={"kid": kid})
            return "key_unusable"
        entry = _VerificationKey(key=key, expired_at=found.expired_at)
        self._keys[kid] = entry
        self._keys.move_to_end(kid)
        while len(self._keys) > self._max_keys:
            self._keys.popitem(last=False)
        return entry


def _b64decode(part: str) -> bytes:
    """Base64url without padding; a character outside the alphabet is refused, not skipped."""
    if not part.isascii():
        raise ValueError("not base64url")
    try:
        return base64.b64decode(part + "=" * (-len(part) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise ValueError("not base64url") from None


def _parse_header(header: str | None) -> tuple[_Token, str]:
    """The decoded token and its kid, if it is a well-shaped ES256 JWS, checked without any key
    (cheap rejection)."""
    if not header:
        raise WebhookVerificationError("missing_header")
    if len(header) > MAX_HEADER_LENGTH or header.count(".") != 2:
        raise WebhookVerificationError("malformed_header")
    encoded_header, encoded_payload, encoded_signature = header.split(".")
    try:
        fields = json.loads(_b64decode(encoded_header))
        payload = _b64decode(encoded_payload)
        signature = _b64decode(encoded_signature)
    except (ValueError, RecursionError):
        raise WebhookVerificationError("malformed_header") from None
    if not isinstance(fields, dict):
        raise WebhookVerificationError("malformed_header")
    if fields.get("alg") != ALGORITHM:
        raise WebhookVerificationError("algorithm_refused")
    kid = fields.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH:
        raise WebhookVerificationError("kid_missing")
    if len(signature) != 64:  # ES256: r || s, 32 bytes each
        raise WebhookVerificationError("malformed_header")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    token = _Token(
        signed_part=f"{encoded_header}.{encoded_payload}",
        header=fields,
        payload=payload,
        signature=der,
    )
    return token, kid


def _public_key(fields: dict[str, Any]) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a JWK's `x` and `y`; ValueError if they are not one."""
    try:
        x = int.from_bytes(_b64decode(str(fields["x"])), "big")
        y = int.from_bytes(_b64decode(str(fields["y"])), "big")
    except KeyError:
        raise ValueError("x and y are required") from None
    return ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()


def _claims(payload: bytes) -> dict[str, Any]:
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        raise WebhookVerificationError("malformed_claims") from None
    if not isinstance(claims, dict):
        raise WebhookVerificationError("malformed_claims")
    return claims
