"""Re-authentication through Link update mode: a link token for the Item, then the confirmation
that Plaid sees the Item repaired (PLAID_FACTS "Link and Items": nothing to exchange after it).

Services flush, never commit: the route's transaction decides.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.activity import audit
from plaid_bridge.connections import lifecycle, service
from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.connections.tokens import decrypt_access_token
from plaid_bridge.errors import Conflict, from_plaid
from plaid_bridge.plaid.errors import PlaidError
from plaid_bridge.plaid.types import LinkToken
from plaid_bridge.security.caller import Caller
from plaid_bridge.services import Services
from plaid_bridge.sync.requests import request_sync

logger = logging.getLogger("plaid_bridge.connections.reauth")

REAUTH_LINK_TOKEN_CREATED = "REAUTH_LINK_TOKEN_CREATED"
REAUTH_COMPLETED = "REAUTH_COMPLETED"


async def create_link_token(
    *,
    services: Services,
    session: AsyncSession,
    caller: Caller,
    connection: PlaidConnection,
    account_selection: bool,
) -> LinkToken:
    """An update-mode Link token for the connection's Item; audited.

    Account selection is offered when asked for or when Plaid announced new accounts. A revoked
    connection is 409 (Plaid does not repair those: the user connects again); a removed one
    404. A Plaid failure that reveals login-required or revoked is recorded on the connection.
    """
    audit.begin_for(caller, REAUTH_LINK_TOKEN_CREATED, connection.item_id)
    if connection.status == ConnectionStatus.REVOKED.value:
        raise Conflict(
            "Access to this bank was revoked; connect the bank again.",
            code="CONNECTION_REVOKED",
        )
    token = await decrypt_access_token(connection, cipher=services.cipher)
    selection = account_selection or connection.new_accounts_available
    try:
        link = await services.plaid.create_link_token(
            user_id=caller.user_id, access_token=token, account_selection_enabled=selection
        )
    except PlaidError as error:
        await lifecycle.record_plaid_error(services.database, connection, error)
        raise
    await audit.record_for(
        session,
        caller,
        REAUTH_LINK_TOKEN_CREATED,
        item_id=connection.item_id,
        plaid_request_id=link.request_id,
        details={"accountSelection": selection, "status": connection.status},
    )
    return link


async def complete(
    *,
    services: Services,
    session: AsyncSession,
    caller: Caller,
    connection: PlaidConnection,
) -> PlaidConnection:
    """Confirm with Plaid `/item/get` that the Item's error is gone, then make the connection
    ACTIVE (audited, `connection.repaired` event), refresh its accounts and queue a sync.

    If Plaid still reports an error: 409 carrying it (`needsReauth` for login-class codes),
    and the status the error leads to is recorded on the connection. Accounts that cannot
    be fetched for a transient reason leave `newAccountsAvailable` as it was.
    """
    audit.begin_for(caller, REAUTH_COMPLETED, connection.item_id)
    token = await decrypt_access_token(connection, cipher=services.cipher)
    try:
        item = await services.plaid.get_item(access_token=token)
    except PlaidError as error:
        await lifecycle.record_plaid_error(services.database, connection, error)
        raise
    if item.error is not None:
        still = PlaidError(
            error_type=item.error.error_type,
            error_code=item.error.error_code,
            error_message=item.error.error_message,
            display_message=item.error.display_message,
            error_code_reason=item.error.error_code_reason,
            request_id=item.request_id,
            endpoint="/item/get",
        )
        await lifecycle.record_plaid_error(services.database, connection, still, reported=True)
        mapped = from_plaid(still)
        raise Conflict(
            mapped.message, code=mapped.code, needs_reauth=mapped.needs_reauth, plaid=mapped.plaid
        )
    previous = connection.status
    await lifecycle.transition(
        session,
        connection,
        ConnectionStatus.ACTIVE,
        actor=caller.user_id,
        request_id=caller.request_id,
        plaid_request_id=item.request_id,
    )
    if item.consent_expiration_time is not None:
        connection.consent_expires_at = item.consent_expiration_time
    refreshed = await _refresh_accounts(services, session, connection, token)
    await request_sync(session, connection.item_id, reason="reauth")
    await audit.record_for(
        session,
        caller,
        REAUTH_COMPLETED,
        item_id=connection.item_id,
        plaid_request_id=item.request_id,
        details={"previousStatus": previous, "accountsRefreshed": refreshed},
    )
    await session.flush()
    return connection


async def _refresh_accounts(
    services: Services, session: AsyncSession, connection: PlaidConnection, token: str
) -> bool:
    try:
        accounts = await services.plaid.get_accounts(access_token=token)
    except PlaidError as error:
        if not error.transient:
            raise
        logger.warning(
            "plaid.reauth.accounts_not_refreshed",
            extra={"item_id": connection.item_id, "plaid_error_code": error.error_code},
        )
        return False
    await service.store_accounts(session, connection, accounts)
    connection.new_accounts_available = False
    return True
