"""Connecting a bank and managing the connection: link tokens, exchange, accounts, removal.

Services flush, never commit: the route's transaction decides, except for the two flows that
must know their commit succeeded before (removal) or after (exchange) calling Plaid, which open
their own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import anyio
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.activity import audit, events
from plaid_bridge.connections import lifecycle, removal
from plaid_bridge.connections.models import (
    LIVE_STATUSES,
    ConnectionStatus,
    PlaidAccount,
    PlaidConnection,
)
from plaid_bridge.connections.schemas import ExchangeRequest, LinkTokenRequest
from plaid_bridge.connections.tokens import decrypt_access_token
from plaid_bridge.db import utcnow
from plaid_bridge.errors import BadRequest, Conflict, NotFound
from plaid_bridge.logs import item_id_var
from plaid_bridge.plaid.errors import PlaidError
from plaid_bridge.plaid.types import Account, LinkToken, PlaidItem
from plaid_bridge.security.caller import Caller
from plaid_bridge.services import Services
from plaid_bridge.sync.requests import request_sync
from plaid_bridge.transactions.models import PlaidTransaction

logger = logging.getLogger("plaid_bridge.connections")

LINK_TOKEN_CREATED = "LINK_TOKEN_CREATED"
TOKEN_EXCHANGED = "TOKEN_EXCHANGED"
ACCOUNTS_FETCHED = "ACCOUNTS_FETCHED"
BALANCES_FETCHED = "BALANCES_FETCHED"
CONNECTION_REMOVED = "CONNECTION_REMOVED"


def _subset(requested: Sequence[str] | None, allowed: Sequence[str], what: str) -> list[str]:
    if requested is None:
        return list(allowed)
    outside = sorted(set(requested) - set(allowed))
    if outside:
        raise BadRequest(f"{what} not allowed here: {', '.join(outside)}", code="INVALID_" + what)
    if not requested:
        raise BadRequest(f"at least one of {what.lower()} is required", code="INVALID_" + what)
    return list(dict.fromkeys(requested))


async def create_link_token(
    *, services: Services, session: AsyncSession, caller: Caller, request: LinkTokenRequest
) -> LinkToken:
    """A Link token for the caller, within the configured products and countries; audited."""
    settings = services.settings
    audit.begin_for(caller, LINK_TOKEN_CREATED)
    fixed = {
        "webhookUrl": (request.webhook_url, settings.webhook_url),
        "redirectUri": (request.redirect_uri, settings.plaid_redirect_uri),
        "clientName": (request.client_name, settings.plaid_client_name),
    }
    for field, (given, configured) in fixed.items():
        if given is not None and given != configured:
            raise BadRequest(f"{field} is set by the service's configuration", code="INVALID_FIELD")
    products = _subset(request.products, settings.plaid_products, "PRODUCTS")
    countries = _subset(
        [code.upper() for code in request.country_codes] if request.country_codes else None,
        settings.plaid_country_codes,
        "COUNTRY_CODES",
    )
    token = await services.plaid.create_link_token(
        user_id=caller.user_id,
        products=products,
        country_codes=countries,
        language=request.language or settings.plaid_language,
        account_filters=(
            request.account_filters.as_plaid() if request.account_filters is not None else None
        ),
    )
    await audit.record_for(
        session,
        caller,
        LINK_TOKEN_CREATED,
        plaid_request_id=token.request_id,
        details={"products": products, "countryCodes": countries},
    )
    return token


async def find_connection(session: AsyncSession, caller: Caller, item_id: str) -> PlaidConnection:
    """The caller's org's connection for `item_id`; another org's is indistinguishable from none."""
    connection = await session.scalar(
        select(PlaidConnection).where(
            PlaidConnection.item_id == item_id, PlaidConnection.org_id == caller.org_id
        )
    )
    if connection is None:
        raise NotFound("No such connection.", code="CONNECTION_NOT_FOUND")
    item_id_var.set(item_id)  # every later log line of the request names the Item
    return connection


async def list_connections(session: AsyncSession, caller: Caller) -> Sequence[PlaidConnection]:
    """The org's live connections, oldest first."""
    result = await session.scalars(
        select(PlaidConnection)
        .where(
            PlaidConnection.org_id == caller.org_id,
            PlaidConnection.status != ConnectionStatus.REMOVED.value,
        )
        .order_by(PlaidConnection.created_at, PlaidConnection.id)
    )
    return result.all()


def _apply_account(row: PlaidAccount, account: Account) -> None:
    row.name = account.name
    row.official_name = account.official_name
    row.mask = account.mask
    row.type = account.type
    row.subtype = account.subtype
    row.balance_available = account.balances.available
    row.balance_current = account.balances.current
    row.balance_limit = account.balances.limit
    row.iso_currency_code = account.balances.iso_currency_code
    row.unofficial_currency_code = account.balances.unofficial_currency_code
    row.verification_status = account.verification_status
    row.raw = account.raw
    row.balances_updated_at = utcnow()


async def store_accounts(
    session: AsyncSession, connection: PlaidConnection, accounts: Iterable[Account]
) -> list[PlaidAccount]:
    """Insert or update the connection's accounts from Plaid's answer."""
    existing = {
        row.account_id: row
        for row in await session.scalars(
            select(PlaidAccount).where(PlaidAccount.connection_id == connection.id)
        )
    }
    rows = []
    for account in accounts:
        row = existing.get(account.account_id)
        if row is None:
            row = PlaidAccount(connection_id=connection.id, account_id=account.account_id)
            session.add(row)
        _apply_account(row, account)
        rows.append(row)
    await session.flush()
    return rows


async def stored_accounts(session: AsyncSession, connection: PlaidConnection) -> list[PlaidAccount]:
    result = await session.scalars(
        select(PlaidAccount)
        .where(PlaidAccount.connection_id == connection.id)
        .order_by(PlaidAccount.name, PlaidAccount.account_id)
    )
    return list(result.all())


async def _duplicate(
    session: AsyncSession, caller: Caller, institution_id: str
) -> PlaidConnection | None:
    return await session.scalar(
        select(PlaidConnection)
        .where(
            PlaidConnection.org_id == caller.org_id,
            PlaidConnection.user_id == caller.user_id,
            PlaidConnection.institution_id == institution_id,
            PlaidConnection.status.in_([status.value for status in LIVE_STATUSES]),
        )
        .limit(1)
    )


async def exchange(
    *, services: Services, caller: Caller, request: ExchangeRequest
) -> tuple[PlaidConnection, list[PlaidAccount]]:
    """Exchange a public token and store the new connection with its accounts, all or nothing.

    A duplicate institution for the same user is refused (409) before Plaid is called. An item
    id that a stored connection already holds (any org's) is 409 ITEM_ALREADY_CONNECTED, with or
    without `allowDuplicate`. If anything fails after Plaid created the Item (accounts fetch,
    database), the Item is removed at Plaid again so that no orphan keeps billing, unless a
    stored connection holds its id.
    """
    audit.begin_for(caller, TOKEN_EXCHANGED)
    if request.institution_id and not request.allow_duplicate:
        async with services.database.transaction() as session:
            existing = await _duplicate(session, caller, request.institution_id)
        if existing is not None:
            raise Conflict(
                "You already have a connection to this bank.",
                code="DUPLICATE_ITEM",
                details={"itemId": existing.item_id},
            )
    plaid = services.plaid
    exchanged = await plaid.exchange_public_token(public_token=request.public_token)
    audit.begin_for(caller, TOKEN_EXCHANGED, exchanged.item_id)
    try:
        return await _store_new_connection(
            services,
            caller,
            request,
            exchanged.access_token,
            exchanged.item_id,
            exchanged.request_id,
        )
    except BaseException:
        with anyio.CancelScope(shield=True):
            await _remove_orphan(services, exchanged.access_token, exchanged.item_id)
        raise


async def _holder(services: Services, item_id: str) -> PlaidConnection | None:
    """The stored connection that holds `item_id`, whatever its org, user or status."""
    async with services.database.transaction() as session:
        return await session.scalar(
            select(PlaidConnection).where(PlaidConnection.item_id == item_id)
        )


async def _store_new_connection(
    services: Services,
    caller: Caller,
    request: ExchangeRequest,
    token: str,
    item_id: str,
    exchange_request_id: str,
) -> tuple[PlaidConnection, list[PlaidAccount]]:
    plaid, settings = services.plaid, services.settings
    item = await plaid.get_item(access_token=token)
    if settings.webhook_url and item.webhook != settings.webhook_url:
        item = await plaid.update_item_webhook(access_token=token, webhook=settings.webhook_url)
    institution_id = item.institution_id or request.institution_id
    institution_name = request.institution_name
    if institution_name is None and institution_id is not None:
        institution_name = (await plaid.get_institution(institution_id=institution_id)).name
    accounts = await plaid.get_accounts(access_token=token)
    try:
        return await _insert_connection(
            services,
            caller,
            _NewItem(item_id, token, exchange_request_id, institution_id, institution_name),
            item,
            accounts,
        )
    except IntegrityError:
        holder = await _holder(services, item_id)
        if holder is None:
            raise
        logger.error("plaid.exchange.item_already_stored", extra={"item_id": item_id})
        raise Conflict(
            "This bank connection is already stored; it was left as it is.",
            code="ITEM_ALREADY_CONNECTED",
            details={"itemId": item_id} if holder.org_id == caller.org_id else None,
        ) from None


@dataclass(frozen=True, slots=True)
class _NewItem:
    item_id: str
    token: str
    exchange_request_id: str
    institution_id: str | None
    institution_name: str | None


async def _insert_connection(
    services: Services,
    caller: Caller,
    new: _NewItem,
    item: PlaidItem,
    accounts: Sequence[Account],
) -> tuple[PlaidConnection, list[PlaidAccount]]:
    """The new connection, its accounts, audit, event and initial sync, in one transaction."""
    item_id, institution_id = new.item_id, new.institution_id
    institution_name = new.institution_name
    async with services.database.transaction() as session:
        connection = PlaidConnection(
            org_id=caller.org_id,
            user_id=caller.user_id,
            item_id=item_id,
            institution_id=institution_id,
            institution_name=institution_name,
            status=ConnectionStatus.ACTIVE.value,
            consent_expires_at=item.consent_expiration_time,
        )
        connection.access_token_encrypted = services.cipher.encrypt(new.token, item_id)
        session.add(connection)
        await session.flush()
        rows = await store_accounts(session, connection, accounts)
        await audit.record_for(
            session,
            caller,
            TOKEN_EXCHANGED,
            item_id=item_id,
            plaid_request_id=new.exchange_request_id,
            details={"institutionId": institution_id, "accounts": len(rows)},
        )
        await audit.record_for(session, caller, ACCOUNTS_FETCHED, item_id=item_id)
        await events.emit(
            session,
            org_id=caller.org_id,
            type="connection.created",
            item_id=item_id,
            data={"institutionId": institution_id, "institutionName": institution_name},
        )
        await request_sync(session, item_id, reason="initial")
    logger.info("plaid.exchange.stored", extra={"item_id": item_id, "accounts": len(rows)})
    return connection, rows


async def _remove_orphan(services: Services, token: str, item_id: str) -> None:
    """Remove at Plaid the Item an exchange could not store, unless a stored connection holds
    its id: that connection (perhaps another org's) is the Item's, and must keep working. If the
    database cannot tell, the Item is kept (an orphan bills; a wrong removal breaks a user)."""
    try:
        holder = await _holder(services, item_id)
    except Exception:
        logger.error("plaid.exchange.orphan_item_kept", extra={"item_id": item_id})
        return
    if holder is not None:
        logger.warning("plaid.exchange.item_kept_for_its_connection", extra={"item_id": item_id})
        return
    try:
        await services.plaid.remove_item(access_token=token)
        logger.warning("plaid.exchange.rolled_back", extra={"item_id": item_id})
    except PlaidError as error:
        logger.error(
            "plaid.exchange.orphan_item",
            extra={"item_id": item_id, "plaid_error_code": error.error_code},
        )


async def refresh_accounts(
    *,
    services: Services,
    session: AsyncSession,
    caller: Caller,
    connection: PlaidConnection,
    balances: bool,
) -> list[PlaidAccount]:
    """Fetch accounts (or real-time balances) from Plaid and store them; audited. A clean answer
    repairs a LOGIN_REQUIRED or ERROR connection (`lifecycle.repair`): Plaid just served it."""
    action = BALANCES_FETCHED if balances else ACCOUNTS_FETCHED
    audit.begin_for(caller, action, connection.item_id)
    token = await decrypt_access_token(connection, cipher=services.cipher)
    try:
        if balances:
            accounts = await services.plaid.get_balances(access_token=token)
        else:
            accounts = await services.plaid.get_accounts(access_token=token)
    except PlaidError as error:
        await lifecycle.record_plaid_error(services.database, connection, error)
        raise
    rows = await store_accounts(session, connection, accounts)
    await lifecycle.repair(
        session,
        connection,
        actor=caller.user_id,
        request_id=caller.request_id,
        reason="accounts:refresh",
    )
    await audit.record_for(session, caller, action, item_id=connection.item_id)
    return rows


async def remove(
    *, services: Services, caller: Caller, item_id: str, purge: bool
) -> PlaidConnection:
    """Disconnect a bank: the token erased and the connection REMOVED, durably, then the Item
    removed at Plaid (already gone is fine).

    Opens its own transaction (like the exchange), because Plaid must be asked only after the
    local removal committed: the removal at Plaid is owed in that same transaction
    (`removal.record`), so a failed commit never reaches Plaid, and a Plaid failure after it
    leaves the owed removal to the worker, which retries until Plaid confirms. The answer is
    REMOVED either way. Raises NotFound for another org's or an unknown Item.
    """
    token: str | None = None
    async with services.database.transaction() as session:
        connection = await find_connection(session, caller, item_id)
        audit.begin_for(caller, CONNECTION_REMOVED, item_id)
        if connection.access_token_encrypted is not None:
            token = await decrypt_access_token(connection, cipher=services.cipher)
            await removal.record(
                session,
                item_id=item_id,
                access_token_encrypted=connection.access_token_encrypted,
                held_for=removal.lease(services),
            )
        connection.access_token_encrypted = None
        connection.cursor = None
        if purge:
            # The transactions are also the change feed's rows: nothing of the Item is served
            # after.
            await session.execute(
                delete(PlaidTransaction).where(PlaidTransaction.connection_id == connection.id)
            )
            await session.execute(
                delete(PlaidAccount).where(PlaidAccount.connection_id == connection.id)
            )
        await audit.record_for(
            session, caller, CONNECTION_REMOVED, item_id=item_id, details={"purge": purge}
        )
        await lifecycle.transition(
            session,
            connection,
            ConnectionStatus.REMOVED,
            actor=caller.user_id,
            request_id=caller.request_id,
        )
        connection.removed_at = utcnow()
        await session.flush()
    if token is not None:
        await removal.remove_at_plaid(services, item_id=item_id, access_token=token)
    return connection
