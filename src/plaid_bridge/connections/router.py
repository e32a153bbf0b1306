"""Routes of the connect flow and of connections and their accounts."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from plaid_bridge.connections import service
from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from plaid_bridge.connections.schemas import (
    ConnectionOut,
    ConnectionProblem,
    ExchangeRequest,
    ExchangeResponse,
    LinkTokenRequest,
    LinkTokenResponse,
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


def accounts_out(rows: list[PlaidAccount]) -> list[dict[str, Any]]:
    """Accounts as Plaid shapes them, balances as JSON numbers (fresh rows hold Decimals)."""
    return [plain_json(row.raw) for row in rows]


@router.post("/create-link-token", status_code=201, response_model=LinkTokenResponse)
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


@router.post("/exchange-token", status_code=201, response_model=ExchangeResponse)
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


@router.get("/accounts/{item_id}")
async def get_accounts(
    item_id: str,
    caller: Viewer,
    services: ServicesDep,
    session: SessionDep,
    refresh: Literal["true", "false", "balance"] = Query(default="false"),
) -> list[dict[str, Any]]:
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


@router.delete("/connections/{item_id}", response_model=ConnectionOut)
async def remove_connection(
    item_id: str,
    caller: Admin,
    services: ServicesDep,
    purge: bool = False,
) -> ConnectionOut:
    """Disconnect a bank: erase its token, then remove the Item at Plaid."""
    removed = await service.remove(services=services, caller=caller, item_id=item_id, purge=purge)
    return connection_out(removed)
