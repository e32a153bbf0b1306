"""What each Plaid webhook does to our state (SPEC section 5b), keyed by (type, code).

A handler runs inside the worker's transaction for one inbox row and only flushes: the worker
commits its effect together with marking the row DONE. Every effect is idempotent, because Plaid
retries deliveries and has no event id: status changes go through `lifecycle.transition` (a no-op
when nothing changes, notifications throttled), sync requests coalesce, and account flags emit
their event only when they actually flip.

Plaid may deliver late (retries) and out of order, so a status webhook (an error, an expiry, a
repair) signed before the connection's status last changed describes an older state and is
ignored: a late ITEM/ERROR must not undo a newer repair. A status change a webhook makes is dated
by the webhook's signing time, so a backlog processed late does not make the next webhooks look
stale; changes of our own (a sync that works, a completed re-auth) are dated when they happen.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.activity import events
from plaid_bridge.connections import lifecycle
from plaid_bridge.connections.models import ConnectionStatus, PlaidAccount, PlaidConnection
from plaid_bridge.plaid.errors import classify, meaning
from plaid_bridge.sync.requests import request_sync

__all__ = ["HANDLERS", "Handler", "Payload", "handle"]

logger = logging.getLogger("plaid_bridge.webhooks")

Payload = dict[str, Any]
Handler = Callable[[AsyncSession, PlaidConnection, Payload], Awaitable[None]]

_S = ConnectionStatus

# How bad a status is; an error or expiry webhook never moves a connection to a milder one
# (a bank outage must not hide that the user has to sign in again).
_SEVERITY: dict[str, int] = {
    _S.ACTIVE.value: 0,
    _S.ERROR.value: 1,
    _S.PENDING_EXPIRATION.value: 2,
    _S.LOGIN_REQUIRED.value: 3,
    _S.REVOKED.value: 4,
}

# Statuses LOGIN_REPAIRED brings back to ACTIVE; a revoked Item stays revoked (it needs a new one).
_REPAIRABLE = frozenset({_S.LOGIN_REQUIRED.value, _S.ERROR.value, _S.PENDING_EXPIRATION.value})

# Webhooks that set a connection's status from what Plaid saw when it signed them. Revocation is
# not among them: it is final whenever it was signed.
STATUS_WEBHOOKS = frozenset(
    {
        ("ITEM", "ERROR"),
        ("ITEM", "PENDING_EXPIRATION"),
        ("ITEM", "PENDING_DISCONNECT"),
        ("ITEM", "LOGIN_REPAIRED"),
    }
)
# Plaid's `iat` has whole seconds and its clock is not ours: a webhook counts as older than a
# status change only by more than this.
STALE_MARGIN = timedelta(seconds=2)

VERIFICATION_STATUS: dict[str, str] = {
    "AUTOMATICALLY_VERIFIED": "automatically_verified",
    "VERIFICATION_EXPIRED": "verification_expired",
}


def _live(connection: PlaidConnection | None, payload: Payload) -> PlaidConnection | None:
    """The connection when a webhook may change it; unknown and removed Items are ignored."""
    if connection is None or connection.status == _S.REMOVED.value:
        logger.info(
            "webhook.item_not_live",
            extra={
                "webhook_code": payload.get("webhook_code"),
                "status": None if connection is None else connection.status,
            },
        )
        return None
    return connection


def _milder(connection: PlaidConnection, status: ConnectionStatus) -> bool:
    return _SEVERITY.get(status.value, 0) < _SEVERITY.get(connection.status, 0)


def _timestamp(value: object) -> datetime | None:
    """Plaid's ISO 8601 date-time (trailing `Z` allowed) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


async def _account(
    session: AsyncSession, connection: PlaidConnection, payload: Payload
) -> PlaidAccount | None:
    account_id = payload.get("account_id")
    account = None
    if isinstance(account_id, str):
        account = await session.scalar(
            select(PlaidAccount).where(
                PlaidAccount.connection_id == connection.id,
                PlaidAccount.account_id == account_id,
            )
        )
    if account is None:
        logger.info(
            "webhook.unknown_account",
            extra={"webhook_code": payload.get("webhook_code"), "account_id": account_id},
        )
    return account


async def _transactions(
    session: AsyncSession,
    live: PlaidConnection,
    payload: Payload,
) -> None:
    """Queue a (coalesced) sync; remember how far Plaid's initial and historical pulls got."""
    code = str(payload.get("webhook_code"))
    # Flags only ever turn on: a late legacy webhook must not undo a newer SYNC_UPDATES one.
    if payload.get("initial_update_complete") is True or code in (
        "INITIAL_UPDATE",
        "HISTORICAL_UPDATE",
    ):
        live.initial_update_complete = True
    if payload.get("historical_update_complete") is True or code == "HISTORICAL_UPDATE":
        live.historical_update_complete = True
    await request_sync(session, live.item_id, reason=f"webhook:{code}")


async def _item_error(
    session: AsyncSession,
    live: PlaidConnection,
    payload: Payload,
) -> None:
    """Plaid reports the Item's error: the status the table of meanings gives the code
    (`plaid.errors.MEANINGS`: login-class codes need the user, revocation revokes, a bank
    outage is a transient ERROR), carrying Plaid's code; a code that leads to no status (Plaid's
    own trouble) changes nothing."""
    error = payload.get("error")
    code = error.get("error_code") if isinstance(error, dict) else None
    if not isinstance(error, dict) or not isinstance(code, str):
        logger.warning("webhook.error_without_code")
        return
    error_type = error.get("error_type")
    error_class = classify(error_type if isinstance(error_type, str) else None, code)
    status = lifecycle.status_for_error(meaning(error_class, code), reported=True)
    if status is None:
        logger.info("webhook.error_status_unchanged", extra={"plaid_error_code": code})
        return
    if _milder(live, status):
        logger.info("webhook.error_kept_worse_status", extra={"status": live.status})
        return
    display, request_id = error.get("display_message"), error.get("request_id")
    await lifecycle.transition(
        session,
        live,
        status,
        error_code=code,
        error_message=display if isinstance(display, str) and display else code,
        plaid_request_id=request_id if isinstance(request_id, str) else None,
    )


async def _pending_expiration(
    session: AsyncSession,
    live: PlaidConnection,
    payload: Payload,
) -> None:
    """PENDING_EXPIRATION with the consent deadline (PENDING_DISCONNECT: the disconnect time)."""
    disconnect = payload.get("webhook_code") == "PENDING_DISCONNECT"
    field = "disconnect_time" if disconnect else "consent_expiration_time"
    deadline = _timestamp(payload.get(field))
    if _milder(live, _S.PENDING_EXPIRATION):
        # The deadline is still worth knowing; the worse status stays.
        if deadline is not None:
            live.consent_expires_at = deadline
        return
    data: dict[str, Any] = {}
    if disconnect and isinstance(payload.get("reason"), str):
        data["reason"] = payload["reason"]
    await lifecycle.transition(
        session, live, _S.PENDING_EXPIRATION, consent_expires_at=deadline, event_data=data
    )


async def _permission_revoked(
    session: AsyncSession,
    live: PlaidConnection,
    payload: Payload,
) -> None:
    error = payload.get("error")
    code = error.get("error_code") if isinstance(error, dict) else None
    await lifecycle.transition(
        session,
        live,
        _S.REVOKED,
        error_code=code if isinstance(code, str) else "USER_PERMISSION_REVOKED",
        error_message="The user revoked access; connect the bank again.",
    )


async def _account_revoked(
    session: AsyncSession,
    live: PlaidConnection,
    payload: Payload,
) -> None:
    """Mark the named account revoked; the event goes out only when it was not already."""
    account = await _account(session, live, payload)
    if account is None or account.revoked:
        return
    account.revoked = True
    await events.emit(
        session,
        org_id=live.org_id,
        type="account.revoked",
        item_id=live.item_id,
        data={"accountId": account.account_id},
    )


async def _login_repaired(
    session: AsyncSession,
    live: PlaidConnection,
    _payload: Payload,
) -> None:
    """Back to ACTIVE with the error cleared (emits connection.repaired), then catch up."""
    if live.status not in _REPAIRABLE:
        return
    if await lifecycle.transition(session, live, _S.ACTIVE):
        await request_sync(session, live.item_id, reason="webhook:LOGIN_REPAIRED")


async def _new_accounts(
    session: AsyncSession,
    live: PlaidConnection,
    _payload: Payload,
) -> None:
    live.new_accounts_available = True
    await events.emit(
        session,
        org_id=live.org_id,
        type="connection.new_accounts",
        item_id=live.item_id,
        data={"newAccountsAvailable": True},
        throttle=True,
    )


async def _acknowledged(
    _session: AsyncSession,
    _connection: PlaidConnection,
    payload: Payload,
) -> None:
    """Nothing to change: the inbox row is the record."""
    logger.info(
        "webhook.webhook_update_acknowledged",
        extra={"new_webhook_url": payload.get("new_webhook_url")},
    )


async def _verification(
    session: AsyncSession,
    live: PlaidConnection,
    payload: Payload,
) -> None:
    """The account's Auth verification status, as Plaid reports it on /accounts/get."""
    account = await _account(session, live, payload)
    status = VERIFICATION_STATUS[str(payload.get("webhook_code"))]
    if account is None or account.verification_status == status:
        return
    account.verification_status = status
    account.raw = {**account.raw, "verification_status": status}
    if status == "verification_expired":
        await events.emit(
            session,
            org_id=live.org_id,
            type="account.verification_expired",
            item_id=live.item_id,
            data={"accountId": account.account_id},
        )


HANDLERS: dict[tuple[str, str], Handler] = {
    **{
        ("TRANSACTIONS", code): _transactions
        for code in (
            "SYNC_UPDATES_AVAILABLE",
            "INITIAL_UPDATE",
            "HISTORICAL_UPDATE",
            "DEFAULT_UPDATE",
            "TRANSACTIONS_REMOVED",
        )
    },
    ("ITEM", "ERROR"): _item_error,
    ("ITEM", "PENDING_EXPIRATION"): _pending_expiration,
    ("ITEM", "PENDING_DISCONNECT"): _pending_expiration,
    ("ITEM", "USER_PERMISSION_REVOKED"): _permission_revoked,
    ("ITEM", "USER_ACCOUNT_REVOKED"): _account_revoked,
    ("ITEM", "LOGIN_REPAIRED"): _login_repaired,
    ("ITEM", "NEW_ACCOUNTS_AVAILABLE"): _new_accounts,
    ("ITEM", "WEBHOOK_UPDATE_ACKNOWLEDGED"): _acknowledged,
    ("AUTH", "AUTOMATICALLY_VERIFIED"): _verification,
    ("AUTH", "VERIFICATION_EXPIRED"): _verification,
}


def _stale(live: PlaidConnection, signed_at: datetime | None) -> bool:
    changed_at = live.status_changed_at
    if signed_at is None or changed_at is None:
        return False
    return signed_at < changed_at - STALE_MARGIN


async def handle(
    session: AsyncSession,
    connection: PlaidConnection | None,
    payload: Payload,
    *,
    signed_at: datetime | None,
) -> bool:
    """Apply the webhook's effect in `session`; False (and logged) when its type/code is not one
    we act on, its Item is unknown or removed, or it is a status webhook older than the
    connection's last status change (`signed_at`: when Plaid signed it, else when we received
    it). None of that is an error: Plaid adds codes, and such webhooks are stored all the same."""
    key = (str(payload.get("webhook_type")), str(payload.get("webhook_code")))
    handler = HANDLERS.get(key)
    if handler is None:
        logger.info("webhook.unhandled", extra={"webhook_type": key[0], "webhook_code": key[1]})
        return False
    live = _live(connection, payload)
    if live is None:
        return False
    if key in STATUS_WEBHOOKS and _stale(live, signed_at):
        logger.info(
            "webhook.stale_ignored",
            extra={
                "webhook_code": key[1],
                "signed_at": signed_at.isoformat() if signed_at else None,
                "status": live.status,
                "status_changed_at": live.status_changed_at.isoformat()
                if live.status_changed_at
                else None,
            },
        )
        return False
    changed_before = live.status_changed_at
    await handler(session, live, payload)
    if signed_at is not None and live.status_changed_at != changed_before:
        # Dated by what Plaid saw, not by when we got round to it (see the module docstring).
        live.status_changed_at = (
            signed_at if changed_before is None else max(changed_before, signed_at)
        )
    return True
