"""The Link pages' own calls (/link/session/*) and files, over HTTP: each step decided as Plaid's
Link decides it (the browser tests drive the same steps through the pages)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.emulator.errors import CATALOGUE
from tests.emulator.plaid_http import UNREACHABLE_WEBHOOK, PlaidHTTP


def new_token(plaid: PlaidHTTP, **extra: Any) -> str:
    body: dict[str, Any] = {
        "client_name": "tests",
        "language": "en",
        "country_codes": ["US"],
        "user": {"client_user_id": "u1"},
        **extra,
    }
    if "access_token" not in extra:
        body.setdefault("products", ["transactions"])
    token: str = plaid.ok("/link/token/create", body)["link_token"]
    return token


def step(plaid: PlaidHTTP, name: str, body: dict[str, Any]) -> httpx.Response:
    return plaid.client.post(f"/link/session/{name}", json=body)


def started(plaid: PlaidHTTP, token: str) -> dict[str, Any]:
    response = step(plaid, "start", {"link_token": token})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def log_in(
    plaid: PlaidHTTP, session_id: str, password: str = "pass_good", username: str = "user_good"
) -> httpx.Response:
    return step(
        plaid,
        "credentials",
        {
            "link_session_id": session_id,
            "institution_id": "ins_109508",
            "username": username,
            "password": password,
        },
    )


def test_the_script_and_page_are_served_for_any_origin(plaid: PlaidHTTP) -> None:
    script = plaid.client.get("/link/v2/stable/link-initialize.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "window.Plaid" in script.text
    page = plaid.client.get("/link/v2/stable/link.html")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors *" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "x-frame-options" not in page.headers
    assert plaid.client.get("/link/v2/stable/link.js").status_code == 200
    assert plaid.client.get("/link/v2/stable/link.css").status_code == 200
    assert plaid.client.get("/link/v2/stable/state.py").status_code == 404


def test_new_mode_creates_the_item_with_the_tokens_products_and_webhook(plaid: PlaidHTTP) -> None:
    session = started(plaid, new_token(plaid, webhook=UNREACHABLE_WEBHOOK))
    assert session["mode"] == "new"
    assert session["institution"] is None
    assert {i["institution_id"] for i in session["institutions"]} >= {"ins_109508", "ins_43"}
    assert len(session["request_id"]) == 15

    logged_in = log_in(plaid, session["link_session_id"])
    assert logged_in.status_code == 200, logged_in.text
    done = step(plaid, "finish", {"link_session_id": session["link_session_id"]})
    assert done.status_code == 200, done.text
    finished = done.json()
    metadata = finished["metadata"]
    assert metadata["link_session_id"] == session["link_session_id"]
    assert metadata["institution"] == {
        "name": "First Platypus Bank",
        "institution_id": "ins_109508",
    }

    exchanged = plaid.ok("/item/public_token/exchange", {"public_token": finished["public_token"]})
    item = plaid.ok("/item/get", {"access_token": exchanged["access_token"]})["item"]
    assert item["webhook"] == UNREACHABLE_WEBHOOK
    assert item["products"] == ["transactions"]
    accounts = plaid.ok("/accounts/get", {"access_token": exchanged["access_token"]})["accounts"]
    assert [a["id"] for a in metadata["accounts"]] == [a["account_id"] for a in accounts]
    # The session is over: it cannot be finished twice.
    again = step(plaid, "finish", {"link_session_id": session["link_session_id"]})
    assert again.json()["error"]["error_code"] == "INVALID_LINK_TOKEN"


@pytest.mark.parametrize(
    ("username", "password", "code", "retryable"),
    [
        ("user_good", "wrong", "INVALID_CREDENTIALS", True),
        ("someone", "pass_good", "INVALID_CREDENTIALS", True),
        ("user_good", "error_INVALID_CREDENTIALS", "INVALID_CREDENTIALS", True),
        ("user_good", "error_ITEM_LOCKED", "ITEM_LOCKED", False),
        ("user_good", "error_INSTITUTION_DOWN", "INSTITUTION_DOWN", False),
        ("user_good", "error_NOT_A_CODE", "INVALID_CREDENTIALS", True),
        ("user_good", "error_INVALID_API_KEYS", "INVALID_CREDENTIALS", True),
    ],
)
def test_sandbox_credentials_decide_the_login(
    plaid: PlaidHTTP, username: str, password: str, code: str, retryable: bool
) -> None:
    session = started(plaid, new_token(plaid))
    failed = log_in(plaid, session["link_session_id"], password, username)
    kind = CATALOGUE[code]
    assert failed.status_code == kind.status
    body = failed.json()
    assert body["retryable"] is retryable
    assert body["link_session_id"] == session["link_session_id"]
    assert body["error"]["error_code"] == code
    assert body["error"]["error_type"] == kind.error_type
    assert body["error"]["error_message"] == kind.message
    assert body["error"]["display_message"] == kind.display_message
    assert plaid.control("GET", "/emulator/items")["items"] == []
    # Link stays usable: the right password still logs in.
    assert log_in(plaid, session["link_session_id"]).status_code == 200


def test_refused_link_tokens(plaid: PlaidHTTP, emulator: EmulatorServer) -> None:
    unknown = step(plaid, "start", {"link_token": "link-sandbox-unknown"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["error_code"] == "INVALID_LINK_TOKEN"
    assert unknown.json()["link_session_id"]

    token = new_token(plaid)
    session = started(plaid, token)
    record = emulator.app.state.emulator.link_tokens[token]
    record.expiration = datetime.now(UTC) - timedelta(seconds=1)
    expired = log_in(plaid, session["link_session_id"])
    assert expired.json()["error"]["error_code"] == "INVALID_LINK_TOKEN"
    assert step(plaid, "start", {"link_token": token}).status_code == 400

    missing = step(plaid, "start", {})
    assert missing.json()["error"]["error_code"] == "MISSING_FIELDS"
    not_json = plaid.client.post("/link/session/start", content=b"[")
    assert not_json.json()["error"]["error_code"] == "INVALID_BODY"


def test_update_mode_repairs_the_item_without_a_new_one(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    plaid.ok("/sandbox/item/reset_login", {"access_token": item.access_token})
    session = started(plaid, new_token(plaid, access_token=item.access_token))
    assert session["mode"] == "update"
    assert session["institution"]["institution_id"] == "ins_109508"

    failed = log_in(plaid, session["link_session_id"], "error_ITEM_LOCKED")
    assert failed.json()["error"]["error_code"] == "ITEM_LOCKED"
    still_broken = plaid.post("/accounts/get", {"access_token": item.access_token})
    assert still_broken.json()["error_code"] == "ITEM_LOGIN_REQUIRED"

    assert log_in(plaid, session["link_session_id"]).status_code == 200
    assert plaid.ok("/item/get", {"access_token": item.access_token})["item"]["error"] is None
    done = step(plaid, "finish", {"link_session_id": session["link_session_id"]}).json()
    assert done["public_token"].startswith("public-")
    assert len(plaid.control("GET", "/emulator/items")["items"]) == 1
    # Plaid sends no LOGIN_REPAIRED when the user repairs the Item in your own Link.
    codes = [hook["webhookCode"] for hook in plaid.webhooks()]
    assert codes == ["ERROR"]  # reset_login's; no LOGIN_REPAIRED


def test_update_mode_for_a_removed_item(plaid: PlaidHTTP) -> None:
    item = plaid.link_item()
    token = new_token(plaid, access_token=item.access_token)
    plaid.ok("/item/remove", {"access_token": item.access_token})
    refused = step(plaid, "start", {"link_token": token})
    assert refused.json()["error"]["error_code"] == "ITEM_NOT_FOUND"


def test_account_selection_shares_the_chosen_accounts_only(plaid: PlaidHTTP) -> None:
    token = new_token(plaid, update={"account_selection_enabled": True})
    session = started(plaid, token)
    assert session["account_selection_enabled"] is True
    accounts = log_in(plaid, session["link_session_id"]).json()["accounts"]
    sid = session["link_session_id"]

    none_chosen = step(plaid, "finish", {"link_session_id": sid})
    assert none_chosen.json()["error"]["error_code"] == "MISSING_FIELDS"
    unknown = step(plaid, "finish", {"link_session_id": sid, "account_ids": ["nope"]})
    assert unknown.json()["error"]["error_code"] == "INVALID_ACCOUNT_ID"
    chosen = [accounts[1]["id"]]
    done = step(plaid, "finish", {"link_session_id": sid, "account_ids": chosen})
    assert [a["id"] for a in done.json()["metadata"]["accounts"]] == chosen
    remembered = plaid.control("GET", f"/emulator/link/sessions/{sid}")
    assert remembered["accountIds"] == chosen
    assert remembered["outcome"] == "success"


def test_exit_is_remembered_once_with_its_status(plaid: PlaidHTTP) -> None:
    sid = started(plaid, new_token(plaid))["link_session_id"]
    bad = step(plaid, "exit", {"link_session_id": sid, "status": "bored"})
    assert bad.json()["error"]["error_code"] == "INVALID_FIELD"
    assert step(
        plaid, "exit", {"link_session_id": sid, "status": "institution_not_found"}
    ).is_success
    assert step(
        plaid, "exit", {"link_session_id": sid, "status": "requires_credentials"}
    ).is_success
    remembered = plaid.control("GET", f"/emulator/link/sessions/{sid}")
    assert (remembered["outcome"], remembered["exitStatus"]) == ("exit", "institution_not_found")
    assert log_in(plaid, sid).json()["error"]["error_code"] == "INVALID_LINK_TOKEN"

    plaid.control("POST", "/emulator/reset")
    forgotten = plaid.client.get(f"/emulator/link/sessions/{sid}")
    assert forgotten.status_code == 404
    assert forgotten.json()["error_code"] == "NOT_FOUND"
