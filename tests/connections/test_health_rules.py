"""SPEC section 7's rules, one by one, on connections in memory with an injected `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from plaid_bridge.connections.health_rules import Health, assess, summarize, with_note
from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.plaid.types import PlaidErrorInfo, PlaidItem

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
SPEC_FIELDS = {
    "itemId",
    "healthy",
    "status",
    "severity",
    "message",
    "actionRequired",
    "recommendations",
    "lastSync",
    "error",
    "errorCode",
    "needsReauth",
}


def connection(
    status: str = "ACTIVE",
    *,
    error_code: str | None = None,
    synced_ago: timedelta | None = timedelta(hours=1),
    created_ago: timedelta = 30 * DAY,
    consent_expires_at: datetime | None = None,
) -> PlaidConnection:
    return PlaidConnection(
        item_id="item-1",
        org_id="o1",
        user_id="u1",
        status=status,
        error_code=error_code,
        error_message=f"{error_code} happened" if error_code else None,
        last_synced_at=None if synced_ago is None else NOW - synced_ago,
        created_at=NOW - created_ago,
        consent_expires_at=consent_expires_at,
    )


def plaid_item(error_type: str | None = None, error_code: str | None = None) -> PlaidItem:
    error = None
    if error_type and error_code:
        error = PlaidErrorInfo(error_type, error_code, "said Plaid", None, None)
    return PlaidItem(
        item_id="item-1",
        institution_id="ins_1",
        webhook=None,
        error=error,
        consent_expiration_time=None,
        available_products=(),
        billed_products=("transactions",),
        last_successful_update=None,
        request_id="req-1",
    )


def brief(health: Health) -> tuple[str, str, bool, bool]:
    return health.status.value, health.severity, health.action_required, health.needs_reauth


def test_output_has_exactly_the_spec_fields() -> None:
    body: dict[str, Any] = assess(connection(), now=NOW).model_dump(mode="json", by_alias=True)
    assert set(body) == SPEC_FIELDS
    assert body["itemId"] == "item-1"
    assert body["lastSync"] == (NOW - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    assert body["recommendations"] == []


def test_rule_1_login_required_is_critical_and_needs_reauth() -> None:
    health = assess(connection("LOGIN_REQUIRED", error_code="ITEM_LOGIN_REQUIRED"), now=NOW)
    assert brief(health) == ("CRITICAL", "error", True, True)
    assert not health.healthy
    assert health.error_code == "ITEM_LOGIN_REQUIRED"
    assert health.error == "ITEM_LOGIN_REQUIRED happened"
    assert any("/connections/item-1/reauth" in text for text in health.recommendations)


def test_rule_1_revoked_is_critical_and_asks_to_connect_again() -> None:
    health = assess(connection("REVOKED", error_code="USER_PERMISSION_REVOKED"), now=NOW)
    # Plaid does not repair a revoked Item in update mode: action, but not re-auth.
    assert brief(health) == ("CRITICAL", "error", True, False)
    assert any("create-link-token" in text for text in health.recommendations)


def test_rule_1_wins_over_stale_sync() -> None:
    stale = connection("LOGIN_REQUIRED", error_code="ITEM_LOGIN_REQUIRED", synced_ago=30 * DAY)
    assert brief(assess(stale, now=NOW)) == ("CRITICAL", "error", True, True)


@pytest.mark.parametrize(
    ("code", "action", "needs_reauth", "hint"),
    [
        ("INSTITUTION_NOT_RESPONDING", False, False, "retried later"),
        ("INSTITUTION_DOWN", False, False, "retried later"),
        ("INVALID_CREDENTIALS", True, True, "/reauth"),
        ("ITEM_LOCKED", True, False, "contact the bank"),
    ],
)
def test_rule_2_critical_error_codes(
    code: str, action: bool, needs_reauth: bool, hint: str
) -> None:
    health = assess(connection("ERROR", error_code=code, synced_ago=10 * DAY), now=NOW)
    assert brief(health) == ("CRITICAL", "error", action, needs_reauth)
    assert health.error_code == code
    assert any(hint in text for text in health.recommendations), health.recommendations


@pytest.mark.parametrize("code", ["INSTITUTION_NOT_AVAILABLE", "INTERNAL_SERVER_ERROR", "ODD"])
def test_rule_3_any_other_error_is_a_warning_with_action(code: str) -> None:
    health = assess(connection("ERROR", error_code=code), now=NOW)
    assert brief(health) == ("WARNING", "warning", True, False)
    assert health.error_code == code
    assert health.recommendations


def test_rule_3_error_status_without_a_code() -> None:
    health = assess(connection("ERROR"), now=NOW)
    assert brief(health) == ("WARNING", "warning", True, False)


def test_rule_4_pending_expiration_is_a_warning_with_action() -> None:
    expiring = connection("PENDING_EXPIRATION", consent_expires_at=NOW + 5 * DAY)
    health = assess(expiring, now=NOW)
    assert brief(health) == ("WARNING", "warning", True, False)
    assert "2026-12-01" in health.message
    assert any("/reauth" in text for text in health.recommendations)


@pytest.mark.parametrize(
    ("synced_ago", "expected"),
    [
        (3 * DAY, ("HEALTHY", "info", False, False)),
        (3 * DAY + SECOND, ("WARNING", "warning", False, False)),
        (7 * DAY, ("WARNING", "warning", False, False)),
        (7 * DAY + SECOND, ("WARNING", "warning", True, False)),
    ],
)
def test_rules_5_and_6_whole_day_boundaries(
    synced_ago: timedelta, expected: tuple[str, str, bool, bool]
) -> None:
    health = assess(connection(synced_ago=synced_ago), now=NOW)
    assert brief(health) == expected
    assert health.healthy is (expected[0] == "HEALTHY")
    if expected[0] == "WARNING":
        assert any("webhook" in text for text in health.recommendations)


def test_rule_7_recent_sync_is_healthy() -> None:
    health = assess(connection(synced_ago=SECOND), now=NOW)
    assert brief(health) == ("HEALTHY", "info", False, False)
    assert health.healthy
    assert health.error is None
    assert health.error_code is None


@pytest.mark.parametrize(
    ("created_ago", "expected"),
    [
        (DAY, "HEALTHY"),
        (3 * DAY, "HEALTHY"),
        (3 * DAY + SECOND, "WARNING"),
        (8 * DAY, "WARNING"),
    ],
)
def test_never_synced_counts_from_creation(created_ago: timedelta, expected: str) -> None:
    health = assess(connection(synced_ago=None, created_ago=created_ago), now=NOW)
    assert health.status.value == expected
    assert health.last_sync is None
    assert health.action_required is (created_ago > 7 * DAY)


@pytest.mark.parametrize("status", ["REMOVED", "SOMETHING_NEW"])
def test_states_that_fit_no_rule_are_unknown(status: str) -> None:
    health = assess(connection(status), now=NOW)
    assert brief(health) == ("UNKNOWN", "warning", False, False)
    assert not health.healthy


def test_live_login_error_counts_even_before_it_is_stored() -> None:
    item = plaid_item("ITEM_ERROR", "ITEM_LOGIN_REQUIRED")
    health = assess(connection(), now=NOW, item=item)
    assert brief(health) == ("CRITICAL", "error", True, True)
    assert health.error_code == "ITEM_LOGIN_REQUIRED"
    assert health.error == "said Plaid"


def test_live_institution_error_and_live_recovery() -> None:
    down = assess(connection(), now=NOW, item=plaid_item("INSTITUTION_ERROR", "INSTITUTION_DOWN"))
    assert brief(down) == ("CRITICAL", "error", False, False)
    recovered = assess(
        connection("ERROR", error_code="INSTITUTION_DOWN"), now=NOW, item=plaid_item()
    )
    assert brief(recovered) == ("HEALTHY", "info", False, False)


def test_note_keeps_the_verdict() -> None:
    health = assess(connection("LOGIN_REQUIRED"), now=NOW)
    noted = with_note(health, "(live check failed)")
    assert noted.message.endswith("(live check failed)")
    assert brief(noted) == brief(health)


def test_summary_tallies_and_percentage() -> None:
    verdicts = [
        assess(connection(), now=NOW),
        assess(connection(), now=NOW),
        assess(connection("LOGIN_REQUIRED", error_code="ITEM_LOGIN_REQUIRED"), now=NOW),
        assess(connection(synced_ago=4 * DAY), now=NOW),
        assess(connection("ERROR", error_code="INSTITUTION_DOWN"), now=NOW),
        assess(connection("ERROR", error_code="PRODUCT_NOT_READY"), now=NOW),
    ]
    summary = summarize(verdicts).model_dump(by_alias=True)
    assert summary == {
        "total": 6,
        "healthy": 2,
        "needsReauth": 1,
        "errors": 3,
        "healthPercentage": 33.3,
        "byStatus": {"HEALTHY": 2, "WARNING": 2, "CRITICAL": 2, "UNKNOWN": 0},
    }


def test_summary_of_nothing_is_100_percent() -> None:
    summary = summarize([])
    assert summary.total == 0
    assert summary.health_percentage == 100.0
    assert set(summary.by_status.values()) == {0}
