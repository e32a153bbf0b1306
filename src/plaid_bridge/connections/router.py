"""Routes of the connect flow and of connections and their accounts."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query

from plaid_bridge.api.openapi import answers
from plaid_bridge.api.params import ItemIdPath
from plaid_bridge.connections import service
from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from plaid_bridge.connections.schemas import (
    ConnectionOut,
    ConnectionProblem,
    ExchangeRequest,
    ExchangeResponse,
    LinkTokenRequest,
    LinkTokenResponse,
    PlaidAccountOut,
)
from plaid_bridge.db import plain_json
from plaid_bridge.dependencies import (
    Admin,
    Member,
    ServicesDep,
    SessionDep,
    Viewer,
    check_user_id,
)

router = APIRouter(tags=["connections"])


def connection_out(connection: PlaidConnection) -> ConnectionOut:
    error = None
    if connection.error_code:
        error = ConnectionProblem(code=connection.error_code, message=connection.error_message)
    return ConnectionOut(
        item_id=connection.item_id,
        institution_id=connection.institution_id,
        institution_name=connection.institution_name,
        status=connection.status,
        last_synced_at=connection.last_synced_at,
        created_at=connection.created_at,
        error=error,
        consent_expires_at=connection.consent_expires_at,
        new_accounts_available=connection.new_accounts_available,
    )


def accounts_out(rows: list[PlaidAccount]) -> list[PlaidAccountOut]:
    """Accounts as Plaid shapes them, balances as JSON numbers (fresh rows hold Decimals)."""
    return [PlaidAccountOut.model_validate(plain_json(row.raw)) for row in rows]


# Every Plaid call may end in Plaid's errors as SPEC §5 maps them.
PLAID_ANSWERS = (400, 404, 409, 429, 502, 503)


@router.post(
    "/create-link-token",
    status_code=201,
    response_model=LinkTokenResponse,
    responses=answers(403, *PLAID_ANSWERS),
)
async def create_link_token(
    body: LinkTokenRequest, caller: Member, services: ServicesDep, session: SessionDep
) -> LinkTokenResponse:
    """Create a Plaid Link token for the caller."""
    check_user_id(caller, body.user_id)
    token = await service.create_link_token(
        services=services, session=session, caller=caller, request=body
    )
    return LinkTokenResponse(
        link_token=token.link_token, expiration=token.expiration, request_id=token.request_id
    )


@router.post(
    "/exchange-token",
    status_code=201,
    response_model=ExchangeResponse,
    responses=answers(403, *PLAID_ANSWERS),
)
async def exchange_token(
    body: ExchangeRequest, caller: Member, services: ServicesDep
) -> ExchangeResponse:
    """Exchange a Link public token and store the new connection."""
    check_user_id(caller, body.user_id)
    connection, accounts = await service.exchange(services=services, caller=caller, request=body)
    return ExchangeResponse(
        item_id=connection.item_id,
        institution_id=connection.institution_id,
        institution_name=connection.institution_name,
        status=connection.status,
        accounts=accounts_out(accounts),
    )


@router.get("/connections", response_model=list[ConnectionOut])
async def list_connections(caller: Viewer, session: SessionDep) -> list[ConnectionOut]:
    """List the org's connections."""
    return [connection_out(row) for row in await service.list_connections(session, caller)]


@router.get(
    "/accounts/{itemId}",
    response_model=list[PlaidAccountOut],
    responses=answers(*PLAID_ANSWERS),
)
async def get_accounts(
    item_id: ItemIdPath,
    caller: Viewer,
    services: ServicesDep,
    session: SessionDep,
    refresh: Literal["true", "false", "balance"] = Query(default="false"),
) -> list[PlaidAccountOut]:
    """List a connection's accounts, optionally refreshed from Plaid."""
    connection = await service.find_connection(session, caller, item_id)
    if refresh == "false":
        return accounts_out(await service.stored_accounts(session, connection))
    rows = await service.refresh_accounts(
        services=services,
        session=session,
        caller=caller,
        connection=connection,
        balances=refresh == "balance",
    )
    return accounts_out(rows)


@router.delete(
    "/connections/{itemId}",
    response_model=ConnectionOut,
    responses=answers(403, *PLAID_ANSWERS),
)
async def remove_connection(
    item_id: ItemIdPath,
    caller: Admin,
    services: ServicesDep,
    purge: bool = False,
) -> ConnectionOut:
    """Disconnect a bank: erase its token, then remove the Item at Plaid."""
    removed = await service.remove(services=services, caller=caller, item_id=item_id, purge=purge)
    return connection_out(removed)
