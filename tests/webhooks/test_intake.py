"""The webhook endpoint: only Plaid's signature of exactly the received bytes gets a webhook
stored; everything verified is stored and acknowledged, whatever it says."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator

import pytest
from jose import jws

from plaid_bridge.webhooks.models import InboxStatus
from tests.conftest import make_settings
from tests.webhooks.conftest import (
    INTEGRATIONS_WEBHOOK_PATH,
    Hooks,
    KeyStandIn,
    SigningKey,
    unsigned_token,
    webhook_body,
)

pytestmark = pytest.mark.anyio

LIMIT = 64 * 1024


def _claims(body: bytes) -> dict[str, object]:
    return {"iat": int(time.time()), "request_body_sha256": hashlib.sha256(body).hexdigest()}


def _forged(case: str, key: SigningKey, keys: KeyStandIn) -> tuple[bytes, str | None]:
    """(body sent, Plaid-Verification sent) for each way a webhook must be refused."""
    body = webhook_body()
    now = int(time.time())
    if case == "no header":
        return body, None
    if case == "garbage header":
        return body, "garbage"
    if case == "alg none":
        return body, unsigned_token({"alg": "none", "kid": key.kid, "typ": "JWT"}, _claims(body))
    if case == "HS256":
        hs256 = jws.sign(
            _claims(body), "shared-secret", headers={"kid": key.kid}, algorithm="HS256"
        )
        return body, hs256
    if case == "another key under the same kid":
        return body, SigningKey(kid=key.kid).sign(body)
    if case == "unknown kid":
        return body, SigningKey().sign(body)
    if case == "expired key":
        return body, keys.add(SigningKey(), expired_at=now - 60).sign(body)
    if case == "iat 6 minutes old":
        return body, key.sign(body, iat=now - 360)
    if case == "iat 10 minutes in the future":
        return body, key.sign(body, iat=now + 600)
    if case == "body changed by one byte":
        return body.replace(b"item-1", b"item-2"), key.sign(body)
    if case == "body re-serialised without whitespace":
        compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
        return compact, key.sign(body)
    if case == "valid JWT of another body":
        return body, key.sign(webhook_body(item_id="item-other"))
    raise AssertionError(case)


REFUSALS = {
    "no header": "missing_header",
    "garbage header": "malformed_header",
    "alg none": "algorithm_refused",
    "HS256": "algorithm_refused",
    "another key under the same kid": "bad_signature",
    "unknown kid": "unknown_key",
    "expired key": "key_expired",
    "iat 6 minutes old": "iat_too_old",
    "iat 10 minutes in the future": "iat_in_future",
    "body changed by one byte": "body_hash_mismatch",
    "body re-serialised without whitespace": "body_hash_mismatch",
    "valid JWT of another body": "body_hash_mismatch",
}


@pytest.mark.parametrize(("case", "reason"), REFUSALS.items(), ids=list(REFUSALS))
async def test_unverified_webhooks_get_401_and_nothing_is_stored(
    hooks: Hooks,
    signing_key: SigningKey,
    caplog: pytest.LogCaptureFixture,
    case: str,
    reason: str,
) -> None:
    body, header = _forged(case, signing_key, hooks.keys)

    with caplog.at_level(logging.WARNING, logger="plaid_bridge.webhooks"):
        response = await hooks.post(body, header)

    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "WEBHOOK_VERIFICATION_FAILED"
    assert response.json()["requestId"] == response.headers["x-request-id"]
    assert [r.__dict__.get("reason") for r in caplog.records if r.msg == "webhooks.rejected"] == [
        reason
    ]
    assert await hooks.stored() == []


@pytest.mark.parametrize("path", ["/api/v1/plaid/webhook", INTEGRATIONS_WEBHOOK_PATH])
async def test_verified_webhook_is_stored_exactly_as_received(
    hooks: Hooks, signing_key: SigningKey, path: str
) -> None:
    body = webhook_body("ITEM", "ERROR", "item-42", error={"error_code": "ITEM_LOGIN_REQUIRED"})

    response = await hooks.post(body, signing_key.sign(body), path=path)

    assert response.status_code == 200, response.text
    assert response.json() == {"received": True}
    [event] = await hooks.stored()
    assert event.body.encode() == body
    assert event.body_sha256 == hashlib.sha256(body).hexdigest()
    assert (event.webhook_type, event.webhook_code, event.item_id) == ("ITEM", "ERROR", "item-42")
    assert (event.status, event.attempts, event.claimed_by) == (InboxStatus.PENDING, 0, None)


async def _chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def _json_of_size(size: int) -> bytes:
    head = webhook_body()[:-2] + b',\n  "padding": "'
    tail = b'"\n}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.mark.parametrize("content_length", ["truthful", "absent", "lying"])
async def test_a_body_over_64_kib_gets_413_and_nothing_is_stored(
    hooks: Hooks, signing_key: SigningKey, content_length: str
) -> None:
    body = _json_of_size(65 * 1024)
    header = signing_key.sign(body)

    if content_length == "truthful":
        response = await hooks.post(body, header)
    else:
        headers = {"Plaid-Verification": header, "Content-Type": "application/json"}
        if content_length == "lying":
            headers["Content-Length"] = "100"
        response = await hooks.api.client.post(
            "/api/v1/plaid/webhook", content=_chunks(body), headers=headers
        )

    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "PAYLOAD_TOO_LARGE"
    assert await hooks.stored() == []
    assert hooks.keys.fetches.total() == 0  # refused before any key was fetched


async def test_a_body_of_exactly_64_kib_is_accepted(hooks: Hooks, signing_key: SigningKey) -> None:
    body = _json_of_size(LIMIT)
    assert len(body) == LIMIT

    response = await hooks.post(body, signing_key.sign(body))

    assert response.status_code == 200, response.text
    assert len(await hooks.stored()) == 1


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'"text"', b"\xff\xfe{}", b"[" * 5000])
async def test_signed_body_that_is_not_a_json_object_gets_400(
    hooks: Hooks, signing_key: SigningKey, body: bytes
) -> None:
    response = await hooks.post(body, signing_key.sign(body))

    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_WEBHOOK_BODY"
    assert await hooks.stored() == []


async def test_unknown_types_codes_and_items_are_stored(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    bodies = [
        webhook_body("BRAND_NEW_TYPE", "SOMETHING_NEW", "item-nobody-knows"),
        webhook_body("TRANSACTIONS", "NEVER_HEARD_OF_IT", "item-1"),
        json.dumps({"webhook_type": 7, "item_id": "x" * 500, "note": "odd"}, indent=2).encode(),
    ]
    for body in bodies:
        response = await hooks.post(body, signing_key.sign(body))
        assert response.status_code == 200, response.text

    stored = await hooks.stored()
    assert [event.body.encode() for event in stored] == bodies
    assert [(e.webhook_type, e.webhook_code, e.item_id) for e in stored] == [
        ("BRAND_NEW_TYPE", "SOMETHING_NEW", "item-nobody-knows"),
        ("TRANSACTIONS", "NEVER_HEARD_OF_IT", "item-1"),
        (None, None, None),  # not usable as routing fields; the body keeps them
    ]


async def test_concurrent_webhooks_with_a_new_kid_fetch_the_key_once(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    hooks.keys.latency = 0.3  # a slow Plaid: every request arrives while the key is fetched
    bodies = [webhook_body(item_id=f"item-{n}") for n in range(100)]

    responses = await asyncio.gather(*(hooks.post(body, signing_key.sign(body)) for body in bodies))

    assert [response.status_code for response in responses] == [200] * 100
    assert hooks.keys.fetches == {signing_key.kid: 1}
    assert sorted(event.item_id or "" for event in await hooks.stored()) == sorted(
        f"item-{n}" for n in range(100)
    )


async def test_a_cached_key_is_not_fetched_again(hooks: Hooks, signing_key: SigningKey) -> None:
    for n in range(3):
        body = webhook_body(item_id=f"item-{n}")
        assert (await hooks.post(body, signing_key.sign(body))).status_code == 200

    assert hooks.keys.fetches == {signing_key.kid: 1}


async def test_a_transient_key_fetch_failure_refuses_only_that_request(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    hooks.keys.failures = 1
    body = webhook_body()

    assert (await hooks.post(body, signing_key.sign(body))).status_code == 401
    assert (await hooks.post(body, signing_key.sign(body))).status_code == 200
    assert hooks.keys.fetches == {signing_key.kid: 2}


async def test_the_worker_is_woken_after_the_webhook_is_stored(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    wakeup = asyncio.Event()
    hooks.api.app.state.worker_wakeup = wakeup
    body = webhook_body()

    response = await hooks.post(body, signing_key.sign(body))

    assert response.status_code == 200
    assert wakeup.is_set()


async def test_a_broken_worker_wakeup_never_fails_the_webhook(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    class Broken:
        def set(self) -> None:
            raise RuntimeError("worker gone")

    hooks.api.app.state.worker_wakeup = Broken()
    body = webhook_body()

    response = await hooks.post(body, signing_key.sign(body))

    assert response.status_code == 200
    assert len(await hooks.stored()) == 1


async def test_with_verification_off_unsigned_webhooks_are_stored(hooks: Hooks) -> None:
    current = hooks.api.services.settings
    hooks.api.use(
        make_settings(
            database_url=current.database_url,
            plaid_api_host=current.plaid_host,
            var_dir=current.var_dir,
            plaid_webhook_verify=False,
        )
    )

    response = await hooks.post(webhook_body(), None)

    assert response.status_code == 200, response.text
    assert len(await hooks.stored()) == 1
    assert hooks.keys.fetches.total() == 0
