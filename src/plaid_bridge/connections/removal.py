"""Removing Items at Plaid, owed durably: the local removal commits first, Plaid is asked after.

`record` writes the owed removal (`ItemRemoval`) in the transaction that marks the connection
REMOVED and erases its token, so nothing is asked of Plaid for a removal that did not commit, and
a removal that committed is never forgotten. `remove_at_plaid` asks Plaid and settles the row:
deleted once Plaid confirms or says the Item is already gone (ITEM_NOT_FOUND), else postponed
with a backoff. The worker (`process_due`) retries what is still owed, the row's `not_before`
serving as its lease, so a process that dies after the commit leaves the call to another.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from plaid_bridge.connections.models import ItemRemoval
from plaid_bridge.db import utcnow
from plaid_bridge.plaid.errors import PlaidError, PlaidErrorClass
from plaid_bridge.services import Services

__all__ = ["lease", "process_due", "record", "remove_at_plaid"]

logger = logging.getLogger("plaid_bridge.connections.removal")

_BACKOFF_BASE = timedelta(seconds=30)
_MAX_BACKOFF = timedelta(hours=6)
UNREADABLE_TOKEN = "TOKEN_UNREADABLE"


def lease(services: Services) -> timedelta:
    """How long one attempt may hold a row: one Plaid call's whole budget, and some room."""
    return timedelta(seconds=services.settings.plaid_timeout_seconds + 30)


async def record(
    session: AsyncSession, *, item_id: str, access_token_encrypted: str, held_for: timedelta
) -> None:
    """Owe the Item's removal at Plaid, in the caller's transaction. The row is held for
    `held_for` (the caller is about to ask Plaid itself); after that the worker may."""
    await session.merge(
        ItemRemoval(
            item_id=item_id,
            access_token_encrypted=access_token_encrypted,
            attempts=0,
            last_error=None,
            not_before=utcnow() + held_for,
            requested_at=utcnow(),
        )
    )


async def remove_at_plaid(services: Services, *, item_id: str, access_token: str) -> bool:
    """Ask Plaid to remove the Item and settle the owed row; returns whether Plaid confirmed.

    Never raises for Plaid's or the database's failures: the row stays owed (postponed, or
    untouched if the database failed) and the worker tries again.
    """
    request_id: str | None
    try:
        request_id = await services.plaid.remove_item(access_token=access_token)
    except PlaidError as error:
        if error.error_class is not PlaidErrorClass.GONE:
            logger.warning(
                "plaid.item_removal.postponed",
                extra={"item_id": item_id, "plaid_error_code": error.error_code},
            )
            await _settle(services, item_id, error_code=error.error_code)
            return False
        request_id = error.request_id
    logger.info("plaid.item_removed", extra={"item_id": item_id, "plaid_request_id": request_id})
    await _settle(services, item_id, error_code=None)
    return True


async def _settle(services: Services, item_id: str, *, error_code: str | None) -> None:
    """Done (`error_code` None): the row goes. Failed: tried again after a doubling backoff."""
    row = ItemRemoval
    try:
        async with services.database.transaction() as session:
            if error_code is None:
                await session.execute(delete(row).where(row.item_id == item_id))
                return
            attempts = await session.scalar(
                update(row)
                .where(row.item_id == item_id)
                .values(attempts=row.attempts + 1, last_error=error_code[:64])
                .returning(row.attempts)
            )
            if attempts is not None:
                backoff = min(_BACKOFF_BASE * 2 ** (attempts - 1), _MAX_BACKOFF)
                await session.execute(
                    update(row).where(row.item_id == item_id).values(not_before=utcnow() + backoff)
                )
    except sa_exc.SQLAlchemyError as error:
        # The row is still owed as it was; its lease runs out and the worker asks Plaid again
        # (an Item already removed answers ITEM_NOT_FOUND, which settles it).
        logger.warning(
            "plaid.item_removal.unsettled",
            extra={"item_id": item_id, "error_type": type(error).__name__},
        )


async def process_due(services: Services, *, limit: int = 20) -> int:
    """Take up to `limit` owed removals that are due, holding each for one attempt's lease, and
    ask Plaid for each; returns how many were tried."""
    now = utcnow()
    row = ItemRemoval
    due = (
        select(row.item_id)
        .where(row.not_before <= now)
        .order_by(row.not_before)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    async with services.database.transaction() as session:
        taken = (
            await session.execute(
                update(row)
                .where(row.item_id.in_(due), row.not_before <= now)
                .values(not_before=now + lease(services))
                .returning(row.item_id, row.access_token_encrypted)
                .execution_options(synchronize_session=False)
            )
        ).all()
    for item_id, stored in taken:
        try:
            token = services.cipher.decrypt(stored, item_id)
        except Exception:
            logger.exception("plaid.item_removal.token_unreadable", extra={"item_id": item_id})
            await _settle(services, item_id, error_code=UNREADABLE_TOKEN)
            continue
        await remove_at_plaid(services, item_id=item_id, access_token=token)
    return len(taken)
