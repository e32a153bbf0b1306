"""Health checks against the database and, on request, Plaid: one connection, one org, every org.

Services flush, never commit: the route's transaction decides (the CLI opens its own).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.connections import lifecycle
from plaid_bridge.connections.health_rules import (
    Health,
    HealthSummary,
    assess,
    summarize,
    with_note,
)
from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.connections.tokens import decrypt_access_token
from plaid_bridge.db import Database, utcnow
from plaid_bridge.plaid.errors import PlaidError, meaning
from plaid_bridge.security.caller import Caller
from plaid_bridge.services import Services

logger = logging.getLogger("plaid_bridge.connections.health")

LIVE_CHECK_FAILED = (
    "(Plaid could not be reached for a live check; this is the last known state. Try again later.)"
)


async def check(
    *,
    services: Services,
    session: AsyncSession,
    caller: Caller,
    connection: PlaidConnection,
    live: bool,
    now: datetime | None = None,
) -> Health:
    """The connection's health; with `live`, after asking Plaid `/item/get`.

    What Plaid says live is recorded through the lifecycle (audited, with its event) in the
    caller's transaction: the Item's `error` leads to the status the table of meanings gives it
    (`plaid.errors.MEANINGS`), and no error repairs a LOGIN_REQUIRED or ERROR connection
    (`connection.repaired`, a sync queued). A transient failure of the live call answers from
    the stored state with a note, so it never invents `needsReauth`; a failure that tells a
    lasting status records it; other failures raise PlaidError. A removed connection (no token)
    is never asked about.
    """
    now = now or utcnow()
    if not live or connection.access_token_encrypted is None:
        return assess(connection, now=now)
    token = await decrypt_access_token(connection, cipher=services.cipher)
    try:
        item = await services.plaid.get_item(access_token=token)
    except PlaidError as error:
        if error.transient:
            logger.warning(
                "plaid.health.live_check_failed",
                extra={"item_id": connection.item_id, "plaid_error_code": error.error_code},
            )
            return with_note(assess(connection, now=now), LIVE_CHECK_FAILED)
        status = lifecycle.status_for_error(error.meaning, reported=False)
        if status is None:
            raise
        await _record(session, caller, connection, status, error.error_code, error.request_id)
        return assess(connection, now=now)
    if item.error is None:
        await lifecycle.repair(
            session,
            connection,
            actor=caller.user_id,
            request_id=caller.request_id,
            plaid_request_id=item.request_id,
            reason="health:live",
        )
    else:
        live_error = item.error
        status = lifecycle.status_for_error(
            meaning(live_error.error_class, live_error.error_code), reported=True
        )
        if status is not None:
            await _record(
                session,
                caller,
                connection,
                status,
                live_error.error_code,
                item.request_id,
                live_error.display_message,
            )
    return assess(connection, now=now, item=item)


async def _record(
    session: AsyncSession,
    caller: Caller,
    connection: PlaidConnection,
    status: ConnectionStatus,
    error_code: str,
    plaid_request_id: str | None,
    display_message: str | None = None,
) -> None:
    await lifecycle.transition(
        session,
        connection,
        status,
        error_code=error_code,
        error_message=display_message or error_code,
        request_id=caller.request_id,
        plaid_request_id=plaid_request_id,
    )


async def _live_connections(
    session: AsyncSession, org_id: str | None = None
) -> Sequence[PlaidConnection]:
    query = select(PlaidConnection).where(PlaidConnection.status != ConnectionStatus.REMOVED.value)
    if org_id is not None:
        query = query.where(PlaidConnection.org_id == org_id)
    result = await session.scalars(query.order_by(PlaidConnection.org_id, PlaidConnection.id))
    return result.all()


async def org_summary(
    session: AsyncSession, org_id: str, *, now: datetime | None = None
) -> HealthSummary:
    """The tally of the org's live connections from stored state (Plaid is not asked)."""
    now = now or utcnow()
    return summarize(assess(row, now=now) for row in await _live_connections(session, org_id))


async def summaries_by_org(
    database: Database, *, now: datetime | None = None
) -> list[tuple[str, HealthSummary]]:
    """Every org with a connection (removed ones included, so an org left with none shows a
    zero total), each with its summary, ordered by org id; one read transaction."""
    now = now or utcnow()
    async with database.transaction() as session:
        orgs = (
            await session.scalars(
                select(PlaidConnection.org_id).distinct().order_by(PlaidConnection.org_id)
            )
        ).all()
        by_org: dict[str, list[Health]] = {org_id: [] for org_id in orgs}
        for row in await _live_connections(session):
            by_org[row.org_id].append(assess(row, now=now))
    return [(org_id, summarize(verdicts)) for org_id, verdicts in by_org.items()]


async def summary_lines(database: Database, *, now: datetime | None = None) -> list[str]:
    """`plaid-bridge health-summary`'s output: one JSON object per org, `orgId` first."""
    return [
        json.dumps({"orgId": org_id, **summary.model_dump(mode="json", by_alias=True)})
        for org_id, summary in await summaries_by_org(database, now=now)
    ]
