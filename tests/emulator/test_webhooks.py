"""Webhooks: signed as Plaid signs them, delivered to the Item's URL, with the state they report."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from jose import jwt
from jose.exceptions import JOSEError

from tests.emulator.plaid_http import PlaidHTTP
from tests.emulator.receiver import Delivery, WebhookReceiver

KeyFetcher = Callable[[str], dict[str, Any]]


def verify_plaid_webhook(body: bytes, token: str, fetch_key: KeyFetcher) -> bool:
    """Plaid's published verification, written out independently of the emulator's code."""
    try:
        header = jwt.get_unverified_header(token)
    except JOSEError:
        return False
    if header.get("alg") != "ES256":
        return False
    key = fetch_key(header["kid"])
    if key["expired_at"] is not None and key["expired_at"] <= time.time():
        return False
    try:
        claims = jwt.decode(token, key, algorithms=["ES256"])
    except JOSEError:
        return False
    if claims["iat"] < time.time() - 5 * 60:
        return False
    digest = hashlib.sha256(body).hexdigest()
    return hmac.compare_digest(digest, claims["request_body_sha256"])


def key_fetcher(plaid: PlaidHTTP) -> KeyFetcher:
    def fetch(kid: str) -> dict[str, Any]:
        key: dict[str, Any] = plaid.ok("/webhook_verification_key/get", {"key_id": kid})["key"]
        return key

    return fetch


def payload(delivery: Delivery) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(delivery.body)
    return parsed


def fire(plaid: PlaidHTTP, access_token: str, code: str, webhook_type: str | None = None) -> None:
    body = {"access_token": access_token, "webhook_code": code}
    if webhook_type:
        body["webhook_type"] = webhook_type
    assert plaid.ok("/sandbox/item/fire_webhook", body)["webhook_fired"] is True


def test_signature_verifies_and_fails_after_one_changed_byte(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    item = plaid.link_item(webhook=receiver.url)
    fire(plaid, item.access_token, "SYNC_UPDATES_AVAILABLE")

    [delivery] = receiver.deliveries
    token = delivery.headers["Plaid-Verification"]
    assert jwt.get_unverified_header(token)["typ"] == "JWT"
    assert verify_plaid_webhook(delivery.body, token, key_fetcher(plaid))
    tampered = delivery.body.replace(b'"item_id"', b'"item_iD"')
    assert tampered != delivery.body
    assert not verify_plaid_webhook(tampered, token, key_fetcher(plaid))

    assert delivery.body.decode() == json.dumps(payload(delivery), indent=2)
    assert payload(delivery) == {
        "webhook_type": "TRANSACTIONS",
        "webhook_code": "SYNC_UPDATES_AVAILABLE",
        "item_id": item.item_id,
        "initial_update_complete": True,
        "historical_update_complete": True,
        "environment": "sandbox",
    }
    [record] = plaid.webhooks()
    assert record["body"].encode() == delivery.body
    assert (record["statusCode"], record["error"], record["url"]) == (200, None, receiver.url)
    assert (record["webhookType"], record["webhookCode"], record["itemId"]) == (
        "TRANSACTIONS",
        "SYNC_UPDATES_AVAILABLE",
        item.item_id,
    )


def test_rotated_key_is_expired_and_the_new_one_signs(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    item = plaid.link_item(webhook=receiver.url)
    fire(plaid, item.access_token, "DEFAULT_UPDATE")
    old_token = receiver.deliveries[0].headers["Plaid-Verification"]
    old_kid = jwt.get_unverified_header(old_token)["kid"]

    rotated = plaid.control("POST", "/emulator/webhook-keys/rotate")
    assert rotated["expiredKeyId"] == old_kid
    old_key = key_fetcher(plaid)(old_kid)
    assert old_key["expired_at"] is not None
    assert not verify_plaid_webhook(receiver.deliveries[0].body, old_token, key_fetcher(plaid))

    fire(plaid, item.access_token, "DEFAULT_UPDATE")
    new = receiver.deliveries[1]
    assert jwt.get_unverified_header(new.headers["Plaid-Verification"])["kid"] == rotated["keyId"]
    assert verify_plaid_webhook(new.body, new.headers["Plaid-Verification"], key_fetcher(plaid))


def test_verification_key_is_a_p256_jwk_and_unknown_ids_fail(plaid: PlaidHTTP) -> None:
    kid = plaid.control("POST", "/emulator/webhook-keys/rotate")["keyId"]
    key = key_fetcher(plaid)(kid)
    assert {k: key[k] for k in ("alg", "crv", "kid", "kty", "use", "expired_at")} == {
        "alg": "ES256",
        "crv": "P-256",
        "kid": kid,
        "kty": "EC",
        "use": "sig",
        "expired_at": None,
    }
    assert isinstance(key["created_at"], int)
    unknown = plaid.post("/webhook_verification_key/get", {"key_id": "no-such-key"})
    assert unknown.status_code == 400
    assert unknown.json()["error_code"] == "INVALID_WEBHOOK_VERIFICATION_KEY_ID"


def test_initial_readiness_webhook_is_sent_in_the_background(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    item = plaid.link_item(webhook=receiver.url)
    first = plaid.ok("/transactions/sync", {"access_token": item.access_token})
    assert first["transactions_update_status"] == "NOT_READY"

    [record] = plaid.webhooks(wait=True)
    assert record["webhookCode"] == "SYNC_UPDATES_AVAILABLE"
    assert record["statusCode"] == 200
    assert json.loads(record["body"])["initial_update_complete"] is True
    assert len(receiver.deliveries) == 1


def test_sync_updates_fire_only_for_items_synced_once(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    item = plaid.link_item(webhook=receiver.url)
    plaid.control("POST", "/emulator/advance", json={"add": 2})
    assert plaid.webhooks() == []

    plaid.sync_until_ready(item.access_token)
    plaid.webhooks(wait=True)  # the readiness webhook
    receiver.deliveries.clear()
    plaid.control("POST", "/emulator/advance", json={"add": 2})
    assert [payload(d)["webhook_code"] for d in receiver.deliveries] == ["SYNC_UPDATES_AVAILABLE"]

    plaid.ok("/transactions/refresh", {"access_token": item.access_token})
    assert len(receiver.deliveries) == 2


def test_reset_login_fails_data_calls_until_repaired(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    item = plaid.link_item(webhook=receiver.url)
    reset = plaid.ok("/sandbox/item/reset_login", {"access_token": item.access_token})
    assert reset["reset_login"] is True
    [error_hook] = receiver.deliveries
    body = payload(error_hook)
    assert (body["webhook_type"], body["webhook_code"]) == ("ITEM", "ERROR")
    assert body["error"]["error_code"] == "ITEM_LOGIN_REQUIRED"

    for path in (
        "/accounts/get",
        "/accounts/balance/get",
        "/transactions/sync",
        "/transactions/refresh",
    ):
        response = plaid.post(path, {"access_token": item.access_token})
        assert response.status_code == 400, path
        assert (response.json()["error_type"], response.json()["error_code"]) == (
            "ITEM_ERROR",
            "ITEM_LOGIN_REQUIRED",
        )
    broken = plaid.ok("/item/get", {"access_token": item.access_token})["item"]
    assert broken["error"]["error_code"] == "ITEM_LOGIN_REQUIRED"

    repaired = plaid.control("POST", f"/emulator/items/{item.item_id}/repair")
    assert repaired == {"itemId": item.item_id, "repaired": True}
    assert payload(receiver.deliveries[-1])["webhook_code"] == "LOGIN_REPAIRED"
    assert plaid.ok("/item/get", {"access_token": item.access_token})["item"]["error"] is None
    plaid.ok("/accounts/get", {"access_token": item.access_token})


def test_update_mode_link_repairs_without_a_webhook(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    item = plaid.link_item(webhook=receiver.url)
    plaid.ok("/sandbox/item/reset_login", {"access_token": item.access_token})
    link = plaid.ok(
        "/link/token/create",
        {
            "client_name": "Operate",
            "language": "en",
            "country_codes": ["US"],
            "user": {"client_user_id": "user-1"},
            "access_token": item.access_token,
            "update": {"account_selection_enabled": True},
        },
    )
    done = plaid.control("POST", "/emulator/link/complete", json={"linkToken": link["link_token"]})
    assert done == {"itemId": item.item_id}
    assert len(receiver.deliveries) == 1  # only the ITEM/ERROR of reset_login
    plaid.ok("/accounts/get", {"access_token": item.access_token})


def test_new_mode_link_completion_gives_an_exchangeable_public_token(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    link = plaid.ok(
        "/link/token/create",
        {
            "client_name": "Operate",
            "language": "en",
            "country_codes": ["US", "CA"],
            "user": {"client_user_id": "user-1"},
            "products": ["transactions"],
            "webhook": receiver.url,
        },
    )
    assert link["link_token"].startswith("link-sandbox-")
    done = plaid.control(
        "POST",
        "/emulator/link/complete",
        json={"linkToken": link["link_token"], "institutionId": "ins_109511"},
    )
    exchanged = plaid.ok("/item/public_token/exchange", {"public_token": done["publicToken"]})
    item = plaid.ok("/item/get", {"access_token": exchanged["access_token"]})["item"]
    assert (item["institution_id"], item["webhook"]) == ("ins_109511", receiver.url)
    assert item["billed_products"] == ["transactions"]
    assert done["institution"]["institutionId"] == "ins_109511"
    assert {a["id"] for a in done["accounts"]} == {
        a["account_id"]
        for a in plaid.ok("/accounts/get", {"access_token": exchanged["access_token"]})["accounts"]
    }


def test_webhook_update_acknowledges_to_the_new_url(
    plaid: PlaidHTTP, receiver: WebhookReceiver
) -> None:
    item = plaid.link_item()
    updated = plaid.ok(
        "/item/webhook/update", {"access_token": item.access_token, "webhook": receiver.url}
    )
    assert updated["item"]["webhook"] == receiver.url
    [ack] = receiver.deliveries
    assert payload(ack)["webhook_code"] == "WEBHOOK_UPDATE_ACKNOWLEDGED"
    assert payload(ack)["new_webhook_url"] == receiver.url


@pytest.mark.parametrize(
    ("code", "webhook_type", "fields"),
    [
        ("DEFAULT_UPDATE", "TRANSACTIONS", {"new_transactions", "error"}),
        ("NEW_ACCOUNTS_AVAILABLE", "ITEM", {"error"}),
        ("LOGIN_REPAIRED", "ITEM", set()),
        ("PENDING_EXPIRATION", "ITEM", {"consent_expiration_time"}),
        ("PENDING_DISCONNECT", "ITEM", {"reason", "disconnect_time"}),
        ("USER_PERMISSION_REVOKED", "ITEM", {"error"}),
        ("USER_ACCOUNT_REVOKED", "ITEM", {"account_id"}),
        ("ERROR", "ITEM", {"error"}),
    ],
)
def test_sandbox_fire_webhook_codes(
    plaid: PlaidHTTP, receiver: WebhookReceiver, code: str, webhook_type: str, fields: set[str]
) -> None:
    item = plaid.link_item(webhook=receiver.url)
    fire(plaid, item.access_token, code, webhook_type)
    body = payload(receiver.deliveries[-1])
    common = {"webhook_type", "webhook_code", "item_id", "environment"}
    assert set(body) == common | fields
    assert (body["webhook_type"], body["webhook_code"], body["item_id"]) == (
        webhook_type,
        code,
        item.item_id,
    )


def test_fired_webhooks_change_the_item(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    before = plaid.ok("/accounts/get", {"access_token": item.access_token})["accounts"]
    fire(plaid, item.access_token, "NEW_ACCOUNTS_AVAILABLE")
    after = plaid.ok("/accounts/get", {"access_token": item.access_token})["accounts"]
    assert len(after) == len(before) + 1

    fire(plaid, item.access_token, "PENDING_EXPIRATION")
    got = plaid.ok("/item/get", {"access_token": item.access_token})["item"]
    assert got["consent_expiration_time"] is not None

    fire(plaid, item.access_token, "USER_PERMISSION_REVOKED")
    revoked = plaid.post("/accounts/get", {"access_token": item.access_token})
    assert revoked.json()["error_code"] == "USER_PERMISSION_REVOKED"

    wrong_type = plaid.post(
        "/sandbox/item/fire_webhook",
        {"access_token": item.access_token, "webhook_code": "ERROR", "webhook_type": "AUTH"},
    )
    assert wrong_type.json()["error_code"] == "INVALID_FIELD"


def test_failed_deliveries_are_recorded(plaid: PlaidHTTP) -> None:
    with WebhookReceiver(status=500) as failing:
        item = plaid.link_item(webhook=failing.url)
        fire(plaid, item.access_token, "DEFAULT_UPDATE")
    unreachable = plaid.link_item()
    fire(plaid, unreachable.access_token, "DEFAULT_UPDATE")
    refused, down = plaid.webhooks()
    assert (refused["statusCode"], refused["error"]) == (500, None)
    assert down["statusCode"] is None
    assert down["error"]
