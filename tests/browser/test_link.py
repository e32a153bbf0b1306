"""Plaid Link in the emulator, driven in Chromium from a frontend on another origin: callbacks in
Plaid's shapes (checked against Plaid's spec), Items created, repaired and shared as Link says."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.emulator.errors import CATALOGUE
from tests.browser.conftest import Screenshot
from tests.browser.host_page import LinkHost
from tests.browser.link_frame import LinkFrame, link_through_success
from tests.contract.plaid_spec import PlaidSpec
from tests.emulator.plaid_http import UNREACHABLE_WEBHOOK, PlaidHTTP

PLATYPUS = {"name": "First Platypus Bank", "institution_id": "ins_109508"}


def link_token(
    plaid: PlaidHTTP,
    *,
    access_token: str | None = None,
    account_selection: bool = False,
    webhook: str | None = None,
) -> str:
    body: dict[str, Any] = {
        "client_name": "plaid-bridge tests",
        "language": "en",
        "country_codes": ["US"],
        "user": {"client_user_id": "browser-user"},
    }
    if access_token is None:
        body["products"] = ["transactions"]
    else:
        body["access_token"] = access_token
    if account_selection:
        body["update"] = {"account_selection_enabled": True}
    if webhook:
        body["webhook"] = webhook
    token: str = plaid.ok("/link/token/create", body)["link_token"]
    return token


def event_problems(spec: PlaidSpec, events: list[dict[str, Any]]) -> list[str]:
    """Each event's name is one of Plaid's, and its metadata (null fields aside: Link sends them
    as null, the spec only types the present ones) conforms to LinkEventMetadata."""
    names = set(spec.document["components"]["schemas"]["LinkEventName"]["enum"])
    problems = []
    for event in events:
        if event["name"] not in names:
            problems.append(f"{event['name']}: not a LinkEventName")
        present = {k: v for k, v in event["metadata"].items() if v is not None}
        problems += [
            f"{event['name']} {line}" for line in spec.schema_errors("LinkEventMetadata", present)
        ]
    return problems


def views(events: list[dict[str, Any]]) -> list[str]:
    """The event names, TRANSITION_VIEW events written as TRANSITION_VIEW:<view>."""
    return [
        f"{e['name']}:{e['metadata']['view_name']}" if e["name"] == "TRANSITION_VIEW" else e["name"]
        for e in events
    ]


def test_user_good_links_an_item_that_exchanges(
    page: Page,
    host: LinkHost,
    plaid: PlaidHTTP,
    plaid_spec: PlaidSpec,
    screenshot: Screenshot,
) -> None:
    token = link_token(plaid, webhook=UNREACHABLE_WEBHOOK)
    host.open(token)
    frame = LinkFrame(page)
    frame.wait_for_view("SELECT_INSTITUTION")
    expect(frame.by_id("institution-list").get_by_role("button")).to_have_count(6)
    screenshot("institutions")
    frame.search("platyp")
    expect(frame.by_id("institution-list").get_by_role("button")).to_have_count(1)
    screenshot("search")
    frame.choose_institution("ins_109508")
    expect(frame.frame.get_by_role("heading")).to_have_text("Log in to First Platypus Bank")
    screenshot("credentials")
    frame.log_in("user_good", "pass_good")
    frame.wait_for_view("CONNECTED")
    screenshot("connected")
    frame.continue_after_success()
    success = host.success()
    expect(page.get_by_test_id("outcome")).to_have_text("success (First Platypus Bank)")
    screenshot("frontend-after-success")

    metadata = success["metadata"]
    assert not plaid_spec.schema_errors("LinkSessionSuccessMetadata", metadata)
    assert metadata["institution"] == PLATYPUS
    assert metadata["transfer_status"] is None
    exchanged = plaid.ok("/item/public_token/exchange", {"public_token": success["public_token"]})
    accounts = plaid.ok("/accounts/get", {"access_token": exchanged["access_token"]})
    assert [a["id"] for a in metadata["accounts"]] == [
        a["account_id"] for a in accounts["accounts"]
    ]
    assert {a["verification_status"] for a in metadata["accounts"]} == {None}
    item = accounts["item"]
    assert item["webhook"] == UNREACHABLE_WEBHOOK
    assert item["products"] == ["transactions"]
    assert item["institution_id"] == "ins_109508"

    events = host.events()
    assert views(events) == [
        "OPEN",
        "TRANSITION_VIEW:SELECT_INSTITUTION",
        "SEARCH_INSTITUTION",
        "SELECT_INSTITUTION",
        "TRANSITION_VIEW:CREDENTIAL",
        "SUBMIT_CREDENTIALS",
        "TRANSITION_VIEW:LOADING",
        "TRANSITION_VIEW:CONNECTED",
        "HANDOFF",
    ]
    assert not event_problems(plaid_spec, events)
    assert {e["metadata"]["link_session_id"] for e in events} == {metadata["link_session_id"]}
    assert events[2]["metadata"]["institution_search_query"] == "platyp"
    assert events[3]["metadata"]["institution_id"] == "ins_109508"
    assert events[3]["metadata"]["institution_name"] == "First Platypus Bank"
    assert all(e["metadata"]["timestamp"].endswith("Z") for e in events)

    session = plaid.control("GET", f"/emulator/link/sessions/{metadata['link_session_id']}")
    assert session["outcome"] == "success"
    assert session["itemId"] == exchanged["item_id"]


def test_error_password_ends_in_that_error(
    page: Page,
    host: LinkHost,
    plaid: PlaidHTTP,
    plaid_spec: PlaidSpec,
    screenshot: Screenshot,
) -> None:
    host.open(link_token(plaid))
    frame = LinkFrame(page)
    frame.choose_institution("ins_109508")
    frame.log_in("user_good", "error_ITEM_LOCKED")
    frame.wait_for_view("ERROR")
    expect(frame.by_id("error-code")).to_have_text("ITEM_LOCKED")
    expect(frame.by_id("error-display")).to_have_text(
        CATALOGUE["ITEM_LOCKED"].display_message or ""
    )
    screenshot("error")
    frame.exit_from_error()
    exited = host.exit()
    screenshot("frontend-after-exit")

    error, metadata = exited["error"], exited["metadata"]
    assert error == {
        "error_type": "ITEM_ERROR",
        "error_code": "ITEM_LOCKED",
        "error_message": CATALOGUE["ITEM_LOCKED"].message,
        "display_message": CATALOGUE["ITEM_LOCKED"].display_message,
    }
    assert not plaid_spec.schema_errors("LinkSessionExit", exited)
    assert not plaid_spec.schema_errors("LinkSessionExitMetadata", metadata)
    assert metadata["status"] == "requires_credentials"
    assert metadata["institution"] == PLATYPUS
    assert metadata["request_id"]
    events = host.events()
    assert views(events)[-4:] == [
        "TRANSITION_VIEW:LOADING",
        "ERROR",
        "TRANSITION_VIEW:ERROR",
        "EXIT",
    ]
    assert events[-3]["metadata"]["error_code"] == "ITEM_LOCKED"
    assert events[-1]["metadata"]["exit_status"] == "requires_credentials"
    assert events[-1]["metadata"]["error_type"] == "ITEM_ERROR"
    assert not event_problems(plaid_spec, events)
    session = plaid.control("GET", f"/emulator/link/sessions/{metadata['link_session_id']}")
    assert session["outcome"] == "exit"
    assert session["errorCode"] == "ITEM_LOCKED"
    assert session["itemId"] is None


def test_wrong_password_can_be_retried(
    page: Page, host: LinkHost, plaid: PlaidHTTP, screenshot: Screenshot
) -> None:
    host.open(link_token(plaid))
    frame = LinkFrame(page)
    frame.choose_institution("ins_109509")
    frame.log_in("user_good", "not-the-password")
    expect(frame.by_id("credential-error")).to_have_text(
        CATALOGUE["INVALID_CREDENTIALS"].display_message or ""
    )
    frame.wait_for_view("CREDENTIAL")
    screenshot("invalid-credentials")
    frame.log_in("user_good", "pass_good")
    frame.continue_after_success()
    success = host.success()

    assert success["metadata"]["institution"]["institution_id"] == "ins_109509"
    names = host.event_names()
    assert names.count("ERROR") == 1
    assert names.count("SUBMIT_CREDENTIALS") == 2
    assert names[-1] == "HANDOFF"


def test_exit_from_the_institution_list(
    page: Page, host: LinkHost, plaid: PlaidHTTP, plaid_spec: PlaidSpec, screenshot: Screenshot
) -> None:
    host.open(link_token(plaid))
    frame = LinkFrame(page)
    frame.wait_for_view("SELECT_INSTITUTION")
    screenshot("institutions")
    frame.close()
    exited = host.exit()
    screenshot("frontend-after-exit")

    assert exited["error"] is None
    metadata = exited["metadata"]
    assert not plaid_spec.schema_errors("LinkSessionExit", exited)
    assert metadata["status"] == "requires_credentials"
    assert metadata["institution"] is None
    assert views(host.events()) == ["OPEN", "TRANSITION_VIEW:SELECT_INSTITUTION", "EXIT"]
    assert page.locator("iframe:visible").count() == 0


def test_exit_after_a_search_that_found_nothing(
    page: Page, host: LinkHost, plaid: PlaidHTTP, screenshot: Screenshot
) -> None:
    host.open(link_token(plaid))
    frame = LinkFrame(page)
    frame.search("no such bank")
    expect(frame.by_id("institution-empty")).to_be_visible()
    screenshot("no-results")
    frame.close()
    exited = host.exit()

    assert exited["error"] is None
    assert exited["metadata"]["status"] == "institution_not_found"
    assert host.event_names()[-2:] == ["SEARCH_INSTITUTION", "EXIT"]


def test_handler_exit_closes_link_and_the_handler_opens_again(
    page: Page, host: LinkHost, plaid: PlaidHTTP
) -> None:
    host.open(link_token(plaid))
    frame = LinkFrame(page)
    frame.choose_institution("ins_109508")
    page.evaluate("() => linkHandler.exit({force: true})")
    exited = host.exit()
    assert exited["metadata"]["status"] == "requires_credentials"
    assert exited["metadata"]["institution"] == PLATYPUS

    page.evaluate("() => { window.linkRecord.exit = null; linkHandler.open(); }")
    link_through_success(page)
    assert host.success()["metadata"]["institution"] == PLATYPUS

    page.evaluate("() => linkHandler.destroy()")
    expect(page.locator('iframe[data-testid="plaid-link-iframe"]')).to_have_count(0)


def test_open_before_onload_waits_for_link(page: Page, host: LinkHost, plaid: PlaidHTTP) -> None:
    host.load()
    page.evaluate("token => { createLink(token); linkHandler.open(); }", link_token(plaid))
    LinkFrame(page).wait_for_view("SELECT_INSTITUTION")
    assert page.evaluate("() => window.linkRecord.loaded") == 1


def test_update_mode_repairs_the_item(
    page: Page,
    host: LinkHost,
    plaid: PlaidHTTP,
    plaid_spec: PlaidSpec,
    screenshot: Screenshot,
) -> None:
    item = plaid.link_item()
    plaid.ok("/sandbox/item/reset_login", {"access_token": item.access_token})
    broken = plaid.post("/accounts/get", {"access_token": item.access_token})
    assert broken.json()["error_code"] == "ITEM_LOGIN_REQUIRED"

    host.open(link_token(plaid, access_token=item.access_token))
    frame = LinkFrame(page)
    frame.wait_for_view("CREDENTIAL")
    expect(frame.frame.get_by_role("heading")).to_have_text("Log in to First Platypus Bank")
    screenshot("update-credentials")
    frame.log_in("user_good", "pass_good")
    frame.wait_for_view("CONNECTED")
    screenshot("update-connected")
    frame.continue_after_success()
    success = host.success()

    assert not plaid_spec.schema_errors("LinkSessionSuccessMetadata", success["metadata"])
    assert success["metadata"]["institution"] == PLATYPUS
    assert success["public_token"].startswith("public-")
    accounts = plaid.ok("/accounts/get", {"access_token": item.access_token})
    assert accounts["item"]["error"] is None
    assert accounts["item"]["item_id"] == item.item_id
    assert views(host.events())[:2] == ["OPEN", "TRANSITION_VIEW:CREDENTIAL"]
    assert "SELECT_INSTITUTION" not in host.event_names()


def test_account_selection_shares_only_the_chosen_accounts(
    page: Page,
    host: LinkHost,
    plaid: PlaidHTTP,
    plaid_spec: PlaidSpec,
    screenshot: Screenshot,
) -> None:
    host.open(link_token(plaid, account_selection=True))
    frame = LinkFrame(page)
    frame.choose_institution("ins_109508")
    frame.log_in("user_good", "pass_good")
    frame.wait_for_view("SELECT_ACCOUNT")
    boxes = frame.by_id("account-list").locator("input[type=checkbox]")
    assert boxes.count() >= 2
    first_name = frame.by_id("account-list").locator("label").first.inner_text().split(" ····")[0]
    screenshot("select-accounts")
    frame.by_id("continue-accounts").click()
    expect(frame.frame.get_by_role("alert").filter(has_text="at least one")).to_be_visible()
    frame.select_accounts([first_name])
    frame.continue_after_success()
    success = host.success()

    metadata = success["metadata"]
    assert not plaid_spec.schema_errors("LinkSessionSuccessMetadata", metadata)
    assert [a["name"] for a in metadata["accounts"]] == [first_name]
    exchanged = plaid.ok("/item/public_token/exchange", {"public_token": success["public_token"]})
    every = plaid.ok("/accounts/get", {"access_token": exchanged["access_token"]})["accounts"]
    assert metadata["accounts"][0]["id"] in {a["account_id"] for a in every}
    assert "TRANSITION_VIEW:SELECT_ACCOUNT" in views(host.events())


@pytest.mark.parametrize("kind", ["unknown", "expired"])
def test_a_refused_link_token_exits_with_invalid_link_token(
    kind: str,
    host: LinkHost,
    plaid: PlaidHTTP,
    plaid_spec: PlaidSpec,
    link_emulator: EmulatorServer,
) -> None:
    if kind == "unknown":
        token = "link-sandbox-00000000-0000-4000-8000-000000000000"
    else:
        token = link_token(plaid)
        record = link_emulator.app.state.emulator.link_tokens[token]
        record.expiration = record.expiration.replace(year=2000)
    host.open(token)
    exited = host.exit()

    assert exited["error"]["error_code"] == "INVALID_LINK_TOKEN"
    assert exited["error"]["error_type"] == "INVALID_INPUT"
    assert not plaid_spec.schema_errors("LinkSessionExit", exited)
    assert exited["metadata"]["link_session_id"]
    assert host.event_names() == ["ERROR", "EXIT"]


def test_messages_from_another_origin_are_ignored(
    page: Page, host: LinkHost, plaid: PlaidHTTP
) -> None:
    host.create(link_token(plaid))
    src = page.locator('iframe[data-testid="plaid-link-iframe"]').get_attribute("src") or ""
    channel = src.split("channel=")[1]
    # The frontend's own window forges a success on the right channel; then Link really opens.
    page.evaluate(
        """channel => {
            window.postMessage({source: "plaid-emulator-link", channel: channel, type: "success",
                                public_token: "public-forged", metadata: {}}, "*");
            linkHandler.open();
        }""",
        channel,
    )
    LinkFrame(page).wait_for_view("SELECT_INSTITUTION")
    page.wait_for_function("() => window.linkRecord.events.length >= 1")
    assert page.evaluate("() => window.linkRecord.success") is None
