"""A signed delivery is stored once: the same token posted again (in sequence, at the same time,
or with its signature rewritten into another valid one) is acknowledged and changes nothing; the
database's unique index on the token decides."""

from __future__ import annotations

import asyncio
import base64
import logging
import time

import pytest

from plaid_bridge.worker import Worker
from tests.conftest import make_settings
from tests.webhooks.conftest import Hooks, SigningKey, webhook_body

pytestmark = pytest.mark.anyio

# The order of P-256's group: (r, s) and (r, n - s) are both valid ECDSA signatures.
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _other_valid_signature(header: str) -> str:
    """The same signed token with its signature rewritten as (r, n - s): valid without the key."""
    signed_part, _, signature = header.rpartition(".")
    raw = _b64decode(signature)
    r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
    rewritten = r.to_bytes(32, "big") + (P256_ORDER - s).to_bytes(32, "big")
    return f"{signed_part}.{base64.urlsafe_b64encode(rewritten).decode().rstrip('=')}"


async def test_the_same_signed_delivery_posted_three_times_is_stored_once(
    hooks: Hooks, signing_key: SigningKey, caplog: pytest.LogCaptureFixture
) -> None:
    body = webhook_body("ITEM", "ERROR", "item-1", error={"error_code": "ITEM_LOGIN_REQUIRED"})
    header = signing_key.sign(body)

    with caplog.at_level(logging.INFO, logger="plaid_bridge.webhooks"):
        answers = [await hooks.post(body, header) for _ in range(3)]

    assert [(a.status_code, a.json()) for a in answers] == [(200, {"received": True})] * 3
    [event] = await hooks.stored()
    assert event.body.encode() == body
    assert event.signed_at is not None
    assert [r.msg for r in caplog.records if r.msg.startswith("webhooks.")] == [
        "webhooks.received",
        "webhooks.replay_ignored",
        "webhooks.replay_ignored",
    ]


async def test_concurrent_copies_of_one_delivery_make_one_row(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    body = webhook_body()
    header = signing_key.sign(body)

    answers = await asyncio.gather(*(hooks.post(body, header) for _ in range(12)))

    assert [answer.status_code for answer in answers] == [200] * 12
    assert len(await hooks.stored()) == 1


async def test_a_rewritten_signature_is_still_the_same_delivery(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    body = webhook_body()
    header = signing_key.sign(body)
    malleated = _other_valid_signature(header)
    assert malleated != header

    first = await hooks.post(body, header)
    second = await hooks.post(body, malleated)

    assert (first.status_code, second.status_code) == (200, 200)
    assert len(await hooks.stored()) == 1


async def test_the_same_body_signed_again_is_a_new_delivery(
    hooks: Hooks, signing_key: SigningKey
) -> None:
    """Plaid has no event id: identical bodies can be distinct events (or its re-signed retry),
    so only the signed token identifies a delivery."""
    body = webhook_body()
    now = int(time.time())

    for iat in (now - 10, now):
        assert (await hooks.post(body, signing_key.sign(body, iat=iat))).status_code == 200

    stored = await hooks.stored()
    assert len(stored) == 2
    assert len({event.token_sha256 for event in stored}) == 2


async def test_a_duplicate_has_no_second_effect(hooks: Hooks, signing_key: SigningKey) -> None:
    """Through the worker: one delivery applied, its copies never reach a handler."""
    body = webhook_body("ITEM", "NEW_ACCOUNTS_AVAILABLE", "item-new")
    header = signing_key.sign(body)
    worker = Worker(hooks.api.services, worker_id="test-worker")

    assert (await hooks.post(body, header)).status_code == 200
    assert await worker.process_inbox() == 1
    assert (await hooks.post(body, header)).status_code == 200

    assert await worker.process_inbox() == 0
    assert len(await hooks.stored()) == 1


async def test_with_verification_off_there_is_no_token_to_compare(hooks: Hooks) -> None:
    current = hooks.api.services.settings
    hooks.api.use(
        make_settings(
            database_url=current.database_url,
            plaid_api_host=current.plaid_host,
            var_dir=current.var_dir,
            plaid_webhook_verify=False,
        )
    )
    body = webhook_body()

    for _ in range(2):
        assert (await hooks.post(body, None)).status_code == 200

    assert [event.token_sha256 for event in await hooks.stored()] == [None, None]
