"""`plaid-bridge import-legacy`: the old NestJS module's connections, brought over.

Each old row (`legacy_schema.LEGACY_CONNECTIONS`) becomes a connection here, its token decrypted
with the old recipe (`PLAID_LEGACY_ENCRYPTION_KEY`) and stored under the current key. An Item
Plaid still serves (every status but REVOKED) is checked with `/item/get`, pointed at this
service's webhook URL, and, when it can sync, queued for a full sync from an empty cursor: the
old module's cursors were per account and could skip pages, so none is carried over.

Rows are independent: each is imported in one transaction of its own, or not at all, and its
outcome is reported. Idempotent: an Item already here is skipped, so a second run changes
nothing. The old database is only read.
"""

from __future__ import annotations

import enum
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import anyio
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from plaid_bridge.activity import audit
from plaid_bridge.connections.legacy_schema import (
    LEGACY_CONNECTIONS,
    LEGACY_STATUS_MAP,
    LegacyStatus,
    aware,
)
from plaid_bridge.connections.lifecycle import status_for_error
from plaid_bridge.connections.models import ConnectionStatus, PlaidConnection
from plaid_bridge.db import Database
from plaid_bridge.plaid.errors import PlaidError, PlaidErrorClass, meaning
from plaid_bridge.plaid.types import PlaidItem
from plaid_bridge.security.crypto import TokenDecryptError
from plaid_bridge.services import Services
from plaid_bridge.sync.requests import SYNCABLE, request_sync

__all__ = [
    "CONNECTION_IMPORTED",
    "ImportReport",
    "LegacyRow",
    "Outcome",
    "RowResult",
    "import_legacy",
    "read_legacy_rows",
]

logger = logging.getLogger("plaid_bridge.connections.legacy_import")

CONNECTION_IMPORTED = "CONNECTION_IMPORTED"
SYNC_REASON = "import"


class Outcome(enum.StrEnum):
    IMPORTED = "imported"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class LegacyRow:
    """One row of the old table, as read."""

    id: str
    user_id: str | None
    org_id: str | None
    item_id: str | None
    access_token: str | None
    institution_id: str | None
    institution_name: str | None
    status: str | None
    last_synced_at: datetime | None


@dataclass(frozen=True, slots=True)
class RowResult:
    """What became of one old row; `detail` is safe to print (never a token)."""

    legacy_id: str
    item_id: str | None
    outcome: Outcome
    detail: str

    def line(self) -> str:
        item = self.item_id or "-"
        return f"{self.outcome.value:<8} {self.legacy_id}  item {item}  {self.detail}"


@dataclass(frozen=True, slots=True)
class ImportReport:
    """Every row's outcome, in the old table's id order."""

    results: tuple[RowResult, ...]
    dry_run: bool

    def count(self, outcome: Outcome) -> int:
        return sum(1 for result in self.results if result.outcome is outcome)

    def lines(self) -> list[str]:
        """One line per row, then the totals."""
        totals = Counter(result.outcome for result in self.results)
        summary = ", ".join(f"{outcome.value} {totals[outcome]}" for outcome in Outcome)
        suffix = " (dry run: nothing was written, no Item was changed)" if self.dry_run else ""
        return [result.line() for result in self.results] + [f"{summary}{suffix}"]


async def read_legacy_rows(source_url: str) -> list[LegacyRow]:
    """Every row of the old table, in id order. Raises SQLAlchemy's errors when the database
    cannot be read or lacks the table or one of its columns."""
    database = Database.from_url(source_url)
    table = LEGACY_CONNECTIONS.c
    try:
        async with database.engine.connect() as connection:
            rows = (await connection.execute(select(LEGACY_CONNECTIONS).order_by(table.id))).all()
    finally:
        await database.dispose()
    return [
        LegacyRow(
            id=str(row.id),
            user_id=_text(row.userId),
            org_id=_text(row.orgId),
            item_id=_text(row.itemId),
            access_token=_text(row.accessToken),
            institution_id=_text(row.institutionId),
            institution_name=_text(row.institutionName),
            status=_text(row.status),
            last_synced_at=aware(row.lastSyncedAt),
        )
        for row in rows
    ]


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


async def import_legacy(
    services: Services,
    *,
    source_url: str,
    default_org: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Import every row of the old table at `source_url` (see the module's description).

    With `dry_run`, rows are read, decrypted and checked with `/item/get` exactly as for a real
    run, but nothing is written here and no Item's webhook is changed. Raises ValueError when
    the legacy key is not configured, and SQLAlchemy's errors when the old table cannot be read.
    """
    if not services.cipher.reads_legacy:
        raise ValueError("PLAID_LEGACY_ENCRYPTION_KEY is not set: old tokens cannot be read")
    rows = await read_legacy_rows(source_url)
    results: list[RowResult] = []
    for row in rows:
        result = await _import_row(services, row, default_org=default_org, dry_run=dry_run)
        logger.info(
            "legacy_import.row",
            extra={"legacy_id": row.id, "item_id": row.item_id, "outcome": result.outcome.value},
        )
        results.append(result)
    return ImportReport(tuple(results), dry_run)


@dataclass(frozen=True, slots=True)
class _Target:
    """The connection an old row becomes."""

    org_id: str
    user_id: str
    item_id: str
    token: str
    status: ConnectionStatus
    error_code: str | None
    item: PlaidItem | None


async def _import_row(
    services: Services, row: LegacyRow, *, default_org: str | None, dry_run: bool
) -> RowResult:
    def result(outcome: Outcome, detail: str) -> RowResult:
        return RowResult(row.id, row.item_id, outcome, detail)

    if row.item_id is None:
        return result(Outcome.FAILED, "the row has no item id")
    if row.user_id is None:
        return result(Outcome.FAILED, "the row has no user id")
    org_id = row.org_id or default_org
    if org_id is None:
        return result(Outcome.SKIPPED, "the row has no organisation; pass --default-org ORG")
    try:
        legacy_status = LegacyStatus(row.status or "")
    except ValueError:
        return result(Outcome.FAILED, f"unknown old status {_shown(row.status)}")
    present = await _present(services.database, row.item_id)
    if present is not None:
        if present != org_id:
            return result(Outcome.FAILED, "the Item is already here under another organisation")
        return result(Outcome.SKIPPED, "already imported (the Item is here)")
    if row.access_token is None:
        return result(Outcome.FAILED, "the row has no access token")
    try:
        # 100,000 PBKDF2 rounds per token: off the event loop.
        token = await anyio.to_thread.run_sync(
            services.cipher.decrypt, row.access_token, row.item_id
        )
    except TokenDecryptError as error:
        return result(Outcome.FAILED, f"the access token does not decrypt: {error}")

    status = LEGACY_STATUS_MAP[legacy_status]
    target = _Target(org_id, row.user_id, row.item_id, token, status, None, None)
    if status is not ConnectionStatus.REVOKED:
        try:
            target = await _check_with_plaid(services, target, dry_run=dry_run)
        except PlaidError as error:
            if error.error_class is PlaidErrorClass.GONE:
                return result(Outcome.FAILED, "the Item no longer exists at Plaid (ITEM_NOT_FOUND)")
            return result(Outcome.FAILED, f"Plaid answered {error.error_code}; run again later")
    described = f"org {org_id}  {legacy_status.value} -> {target.status.value}"
    if target.status in SYNCABLE:
        described += ", full sync queued"
    if dry_run:
        return result(Outcome.IMPORTED, f"would import: {described}")
    try:
        await _store(services, row, target, legacy_status)
    except IntegrityError:  # another run stored it in the meantime
        return result(Outcome.SKIPPED, "already imported (the Item is here)")
    return result(Outcome.IMPORTED, described)


def _shown(value: str | None) -> str:
    """An old column's value fit for the report: short, printable, quoted."""
    text = "".join(ch for ch in (value or "") if ch.isprintable())[:32]
    return repr(text)


async def _present(database: Database, item_id: str) -> str | None:
    """The org of the connection here for `item_id`, if there is one."""
    async with database.transaction() as session:
        org: str | None = await session.scalar(
            select(PlaidConnection.org_id).where(PlaidConnection.item_id == item_id)
        )
    return org


async def _check_with_plaid(services: Services, target: _Target, *, dry_run: bool) -> _Target:
    """`/item/get`, then `/item/webhook/update` when the Item's webhook is not ours (not in a
    dry run). An error Plaid reports that needs the user or revokes the Item decides the status
    (Plaid knows better than the old row); other errors are transient and change nothing."""
    plaid, webhook_url = services.plaid, services.settings.webhook_url
    item = await plaid.get_item(access_token=target.token)
    status, error_code = target.status, None
    reported = None
    if item.error is not None:
        reported = status_for_error(
            meaning(item.error.error_class, item.error.error_code), reported=True
        )
    if item.error is not None and reported is not None:
        status, error_code = reported, item.error.error_code
    if (
        not dry_run
        and status is not ConnectionStatus.REVOKED
        and webhook_url
        and item.webhook != webhook_url
    ):
        item = await plaid.update_item_webhook(access_token=target.token, webhook=webhook_url)
    return _Target(
        target.org_id, target.user_id, target.item_id, target.token, status, error_code, item
    )


async def _store(
    services: Services, row: LegacyRow, target: _Target, legacy_status: LegacyStatus
) -> None:
    """The connection, its audit entry and (if it can sync) its sync request, in one commit."""
    item = target.item
    async with services.database.transaction() as session:
        connection = PlaidConnection(
            org_id=target.org_id,
            user_id=target.user_id,
            item_id=target.item_id,
            institution_id=row.institution_id or (item.institution_id if item else None),
            institution_name=row.institution_name,
            status=target.status.value,
            error_code=target.error_code,
            consent_expires_at=item.consent_expiration_time if item else None,
            last_synced_at=row.last_synced_at,
            cursor=None,
        )
        connection.access_token_encrypted = services.cipher.encrypt(target.token, target.item_id)
        session.add(connection)
        await session.flush()
        await audit.record(
            session,
            org_id=target.org_id,
            action=CONNECTION_IMPORTED,
            user_id=target.user_id,
            item_id=target.item_id,
            details={
                "legacyId": row.id,
                "legacyStatus": legacy_status.value,
                "status": target.status.value,
            },
        )
        if target.status in SYNCABLE:
            await request_sync(session, target.item_id, reason=SYNC_REASON)
