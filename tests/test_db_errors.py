"""A failed statement's error names the SQL, never the bound values: the log line of an
integrity error (its traceback included) holds no parameter, on both databases."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import Database, async_url
from plaid_bridge.logs import ContextFilter, JsonFormatter

pytestmark = pytest.mark.anyio
# Not shaped like a secret, so log redaction would not catch it: only hidden parameters keep it out.
PERSONAL = "Savings of Ada Lovelace, 12 Marker Street"


async def _duplicate_item(database: Database) -> IntegrityError:
    async with database.transaction() as session:
        session.add(PlaidConnection(org_id="o", user_id="u", item_id="item-dup"))
    with pytest.raises(IntegrityError) as failed:
        async with database.transaction() as session:
            session.add(
                PlaidConnection(
                    org_id="o", user_id="u", item_id="item-dup", institution_name=PERSONAL
                )
            )
    return failed.value


def _log_line(error: BaseException) -> str:
    """The line the service's logging writes for `logger.error(..., exc_info=error)`."""
    record = logging.LogRecord("plaid_bridge.test", logging.ERROR, __file__, 1, "db", (), None)
    record.exc_info = (type(error), error, error.__traceback__)
    assert ContextFilter().filter(record)
    return JsonFormatter().format(record)


async def test_an_integrity_errors_log_line_holds_no_parameter(database: Database) -> None:
    line = _log_line(await _duplicate_item(database))

    assert "INSERT INTO plaid_connections" in line  # the statement is still there to debug with
    assert PERSONAL not in line


async def test_without_hidden_parameters_the_value_would_be_logged(database_url: str) -> None:
    """The control: the same failure on an engine left at SQLAlchemy's default."""
    engine = create_async_engine(async_url(database_url))
    try:
        line = _log_line(await _duplicate_item(Database(engine)))
    finally:
        await engine.dispose()

    assert PERSONAL in line
