"""The redaction rule masks tokens and never the words around them."""

from __future__ import annotations

import time

import pytest
from jose import jwt

from plaid_bridge.redaction import REDACTED, redact, redact_text

JWT = jwt.encode(
    {"sub": "u1", "org_id": "o1", "role": "OWNER", "exp": int(time.time()) + 600},
    "a-secret-used-only-by-this-test-0123456789",
    algorithm="HS256",
)
OPAQUE = "2YotnFZFEjr1zCsicMWpAA"  # RFC 6749's example access token: 22 token characters


@pytest.mark.parametrize(
    "sentence",
    [
        "A valid bearer token is required.",
        "Authentication is required: send Authorization: Bearer <token>.",
        "The Authorization header must use the Bearer scheme: Bearer <token>.",
        "The Authorization header has no token after Bearer.",
        "Bearer tokens expire; ask for a new bearer token when yours has.",
        "BEARER AUTHENTICATION FAILED for the caller",
    ],
)
def test_sentences_about_bearer_tokens_are_left_alone(sentence: str) -> None:
    assert redact_text(sentence) == sentence


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_a_jwt_after_the_bearer_scheme_is_masked_and_the_scheme_kept(scheme: str) -> None:
    line = f"request failed: Authorization: {scheme} {JWT} (after 3 retries)"
    assert redact_text(line) == (
        f"request failed: Authorization: {scheme} {REDACTED} (after 3 retries)"
    )


def test_an_opaque_bearer_token_is_masked() -> None:
    assert redact_text(f"header was 'Bearer {OPAQUE}'") == f"header was 'Bearer {REDACTED}'"
    padded = "mF_9.B5f-4.1JqM+token/with=="
    assert redact_text(f"Bearer {padded}, then") == f"Bearer {REDACTED}, then"


def test_a_jwt_alone_is_masked_wherever_it_appears() -> None:
    assert redact_text(f"cookie access_token={JWT}; path=/") == (
        f"cookie access_token={REDACTED}; path=/"
    )
    assert JWT not in redact_text(f"token {JWT} refused")
    for part in JWT.split("."):
        assert part not in redact_text(f"the token was {JWT}.")


def test_structured_values_are_masked_by_key_and_by_shape() -> None:
    masked = redact(
        {
            "authorization": f"Bearer {JWT}",
            "note": f"Bearer {JWT} was sent",
            "message": "A valid bearer token is required.",
        }
    )
    assert masked == {
        "authorization": REDACTED,
        "note": f"Bearer {REDACTED} was sent",
        "message": "A valid bearer token is required.",
    }
