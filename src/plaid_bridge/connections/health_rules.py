"""Connection health (SPEC section 7): a pure verdict from a connection's stored state, optionally
with what Plaid's `/item/get` just said, and the org-wide tally of such verdicts.

Decisions the SPEC leaves open:
- A connection never synced is judged by its `created_at`: a new one is healthy while its first
  sync is pending, one created more than 3 days ago without any sync is stale like any other.
- `REMOVED` (or a status this code does not know) fits no rule: `UNKNOWN`.
- `REVOKED` is critical but not `needsReauth`: Plaid refuses update mode on a revoked Item, the
  user connects the bank again (PLAID_FACTS "Error classes").
- With a live Item, Plaid's `error` (or its absence) replaces the stored error code; the stored
  status still decides rules 1 and 4 until a repair or a webhook changes it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import datetime, timedelta

from pydantic import ConfigDict

from plaid_bridge.api.schemas import CamelModel
from plaid_bridge.config import API_PREFIX
from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.plaid.errors import PlaidErrorClass, classify_code, meaning
from plaid_bridge.plaid.types import PlaidItem

STALE_AFTER = timedelta(days=3)
"""No successful sync for more than this: a warning, nothing to do yet."""
OVERDUE_AFTER = timedelta(days=7)
"""No successful sync for more than this: a warning that asks for action."""

CRITICAL_CODES = frozenset(
    {"INSTITUTION_NOT_RESPONDING", "INSTITUTION_DOWN", "INVALID_CREDENTIALS", "ITEM_LOCKED"}
)
"""Rule 2 of SPEC section 7."""


def needs_reauth(code: str | None) -> bool:
    """Whether the user repairs an error with this code in Link update mode (`needsReauth`), as
    the table of meanings has it (`plaid.errors.MEANINGS`)."""
    return code is not None and meaning(classify_code(code), code).needs_reauth


def bank_outage(code: str | None) -> bool:
    """Whether the code says the bank is down or slow (it passes without anyone acting)."""
    return code is not None and classify_code(code) is PlaidErrorClass.INSTITUTION_TRANSIENT


KNOWN_STATUSES = frozenset(status.value for status in ConnectionStatus)


class HealthStatus(enum.StrEnum):
    HEALTHY = "HEALTHY"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"


SEVERITY = {
    HealthStatus.HEALTHY: "info",
    HealthStatus.WARNING: "warning",
    HealthStatus.CRITICAL: "error",
    HealthStatus.UNKNOWN: "warning",
}


class Health(CamelModel):
    """The SPEC section 7 object; `error` is the error's message, `errorCode` its code."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    healthy: bool
    status: HealthStatus
    severity: str
    message: str
    action_required: bool
    recommendations: list[str]
    last_sync: datetime | None
    error: str | None
    error_code: str | None
    needs_reauth: bool


class HealthSummary(CamelModel):
    """The org-wide tally; `healthPercentage` is 100.0 when there is no connection at all
    (nothing is unhealthy, and clients keep a number)."""

    total: int
    healthy: int
    needs_reauth: int
    errors: int
    health_percentage: float
    by_status: dict[str, int]


def _reauth(item_id: str) -> str:
    return (
        "Ask the user to sign in to the bank again: create an update-mode Link token with "
        f"POST {API_PREFIX}/connections/{item_id}/reauth, then confirm with "
        f"POST {API_PREFIX}/connections/{item_id}/reauth/complete."
    )


def _reconnect(item_id: str) -> list[str]:
    return [
        f"Connect the bank again with a new Link session (POST {API_PREFIX}/create-link-token).",
        f"Remove this connection (DELETE {API_PREFIX}/connections/{item_id}) so it stops billing.",
    ]


def _sync_now(item_id: str) -> str:
    return f"Trigger a sync now with POST {API_PREFIX}/connections/{item_id}/sync."


WEBHOOK_CHECK = (
    "Check the webhook configuration: PLAID_WEBHOOK_URL must be the service's public https URL "
    "and reachable by Plaid, and the worker must be running."
)


def recommendations_for(code: str | None, item_id: str) -> list[str]:
    """Concrete next steps for an error code (the connection's or Plaid's live one)."""
    if needs_reauth(code):
        return [_reauth(item_id)]
    if code == "USER_PERMISSION_REVOKED":
        return _reconnect(item_id)
    if bank_outage(code):
        return [
            "The bank is temporarily unavailable; nothing to do now, syncs are retried later.",
            "If this lasts more than a day, check the bank's status with Plaid and contact "
            "the bank.",
        ]
    if code == "ITEM_LOCKED":
        return [
            "The bank locked the account: the user must contact the bank to unlock it.",
            _reauth(item_id),
        ]
    if code in ("USER_SETUP_REQUIRED", "PASSWORD_RESET_REQUIRED"):
        return [
            "The user must finish an action on the bank's own website (setup or password reset).",
            _reauth(item_id),
        ]
    if code == "ITEM_NOT_FOUND":
        return [
            "The Item no longer exists at Plaid: remove this connection "
            f"(DELETE {API_PREFIX}/connections/{item_id}) and connect the bank again."
        ]
    if code == "PRODUCT_NOT_READY":
        return ["The bank data is still being prepared; retry later or wait for the webhook."]
    if code in ("INVALID_ACCESS_TOKEN", "INVALID_API_KEYS"):
        return [
            "The service's Plaid credentials or stored token are wrong: check PLAID_CLIENT_ID, "
            "PLAID_SECRET, PLAID_ENV and the encryption keys.",
            "If the token itself is bad, reconnect the bank.",
        ]
    return [
        f"Retry later: {_sync_now(item_id)}",
        f"If the error persists, reconnect the bank ({_reauth(item_id)}).",
    ]


def _reference_time(connection: PlaidConnection) -> datetime:
    return connection.last_synced_at or connection.created_at


def assess(connection: PlaidConnection, *, now: datetime, item: PlaidItem | None = None) -> Health:
    """SPEC section 7's verdict on `connection` at `now`; the first matching rule wins.

    `item` is Plaid's live `/item/get` answer when the caller asked for one: its `error` then
    stands for the connection's error. Pure: reads the row and the item, changes nothing.
    """
    item_id = connection.item_id
    code, message = connection.error_code, connection.error_message
    live_class: PlaidErrorClass | None = None
    if item is not None:
        live = item.error
        code = live.error_code if live else None
        message = (live.display_message or live.error_message or live.error_code) if live else None
        live_class = live.error_class if live else None
    status = connection.status

    def verdict(
        health: HealthStatus,
        text: str,
        *,
        action: bool,
        recommendations: list[str] | None = None,
        needs_reauth: bool = False,
    ) -> Health:
        return Health(
            item_id=item_id,
            healthy=health is HealthStatus.HEALTHY,
            status=health,
            severity=SEVERITY[health],
            message=text,
            action_required=action,
            recommendations=recommendations or [],
            last_sync=connection.last_synced_at,
            error=message if code else None,
            error_code=code,
            needs_reauth=needs_reauth,
        )

    if status == ConnectionStatus.REMOVED or status not in KNOWN_STATUSES:
        return verdict(
            HealthStatus.UNKNOWN,
            "This connection was removed; its health is not tracked."
            if status == ConnectionStatus.REMOVED
            else f"Unrecognised connection status {status}.",
            action=False,
        )

    # Rule 1: the user must repair (update mode) or reconnect (revoked).
    revoked = status == ConnectionStatus.REVOKED or live_class is PlaidErrorClass.REVOKED
    login = status == ConnectionStatus.LOGIN_REQUIRED or live_class is PlaidErrorClass.NEEDS_USER
    if revoked:
        code = code or "USER_PERMISSION_REVOKED"
        return verdict(
            HealthStatus.CRITICAL,
            "Access to this bank was revoked; the bank must be connected again.",
            action=True,
            recommendations=recommendations_for("USER_PERMISSION_REVOKED", item_id),
        )
    if login:
        code = code or "ITEM_LOGIN_REQUIRED"
        return verdict(
            HealthStatus.CRITICAL,
            "The bank needs the user to sign in again.",
            action=True,
            recommendations=recommendations_for(code, item_id),
            needs_reauth=True,
        )

    # Rules 2 and 3: an error the user does not repair in Link (or not only there). A stored
    # ERROR without a code is still an error, unless Plaid just said the Item has none.
    if code is None and item is None and status == ConnectionStatus.ERROR:
        return verdict(
            HealthStatus.WARNING,
            "The last request to the bank failed.",
            action=True,
            recommendations=recommendations_for(None, item_id),
        )
    if code:
        if code in CRITICAL_CODES:
            return verdict(
                HealthStatus.CRITICAL,
                _critical_message(code),
                action=not bank_outage(code),
                recommendations=recommendations_for(code, item_id),
                needs_reauth=needs_reauth(code),
            )
        return verdict(
            HealthStatus.WARNING,
            f"The last request to the bank failed with {code}.",
            action=True,
            recommendations=recommendations_for(code, item_id),
            needs_reauth=needs_reauth(code),
        )

    # Rule 4: consent runs out soon.
    if status == ConnectionStatus.PENDING_EXPIRATION:
        expires = connection.consent_expires_at
        when = f" on {expires.date().isoformat()}" if expires else " soon"
        return verdict(
            HealthStatus.WARNING,
            f"The user's consent for this connection expires{when}.",
            action=True,
            recommendations=[
                f"Ask the user to renew consent before it expires: {_reauth(item_id)}"
            ],
        )

    # Rules 5 and 6: data gone stale.
    age = now - _reference_time(connection)
    never = connection.last_synced_at is None
    if age > OVERDUE_AFTER:
        return verdict(
            HealthStatus.WARNING,
            _stale_message(never, "7"),
            action=True,
            recommendations=[
                _sync_now(item_id),
                WEBHOOK_CHECK,
                f"If syncs keep failing, reconnect the bank ({_reauth(item_id)}).",
            ],
        )
    if age > STALE_AFTER:
        return verdict(
            HealthStatus.WARNING,
            _stale_message(never, "3"),
            action=False,
            recommendations=[WEBHOOK_CHECK, _sync_now(item_id)],
        )

    # Rule 7.
    return verdict(
        HealthStatus.HEALTHY,
        "The connection is working." if not never else "Connected; the first sync is pending.",
        action=False,
    )


def _critical_message(code: str) -> str:
    if bank_outage(code):
        return "The bank is not responding; data may be out of date until it recovers."
    if code == "ITEM_LOCKED":
        return "The bank has locked the account; the user must contact the bank."
    return "The bank did not accept the credentials; the user must sign in again."


def _stale_message(never: bool, days: str) -> str:
    if never:
        return f"The connection has not completed a sync since it was created over {days} days ago."
    return f"No successful sync for more than {days} days."


def with_note(health: Health, note: str) -> Health:
    """The same verdict with `note` appended to its message (e.g. a live check that failed)."""
    return health.model_copy(update={"message": f"{health.message} {note}"})


def summarize(verdicts: Iterable[Health]) -> HealthSummary:
    """The tally of an org's live connections: `errors` counts verdicts carrying an error code,
    `byStatus` every health status (zeros included) by its count."""
    by_status = {status.value: 0 for status in HealthStatus}
    total = healthy = needs_reauth = errors = 0
    for health in verdicts:
        total += 1
        healthy += health.healthy
        needs_reauth += health.needs_reauth
        errors += health.error_code is not None
        by_status[health.status.value] += 1
    percentage = round(100.0 * healthy / total, 1) if total else 100.0
    return HealthSummary(
        total=total,
        healthy=healthy,
        needs_reauth=needs_reauth,
        errors=errors,
        health_percentage=percentage,
        by_status=by_status,
    )
