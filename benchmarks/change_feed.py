"""One client reading a connection's change feed of 100,000 transactions through the real API.

The store is filled by a real initial sync from the emulator (in its own process) into
PostgreSQL. `plaid-bridge serve` then runs in its own process, and one client reads the whole
feed from the beginning, page after page at the largest page size, with a real JWT, through
every middleware, the per-user limit and the session, as a consumer catching up would.

Baseline, the floor of any such service: the same keyset query, page by page, through psycopg in
this process, the rows (psycopg decodes the stored JSON objects) written by `json.dumps` into the
same page shape. Rounds alternate which goes first, and the best round of each is kept.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import anyio
import httpx
import msgspec
import psycopg

from benchmarks.bench_database import bench_database
from benchmarks.emulator_process import emulator_process
from benchmarks.scoreboard import Figure, table
from benchmarks.service_process import api_process
from benchmarks.sync_store import ENCRYPTION_KEYS, JWT_SECRET, bench_settings, connect_item
from plaid_bridge.security.auth import issue_dev_token
from plaid_bridge.services import build_services
from plaid_bridge.sync.engine import Outcome, sync_item

TRANSACTIONS = 100_000
PAGE = 500  # the feed's largest `count`
ROUNDS = 2


class _Page(msgspec.Struct):
    """What the client needs of a page: how many it got and where to go on."""

    transactions: list[msgspec.Raw]
    modified: list[msgspec.Raw]
    nextCursor: str
    hasMore: bool


_PAGE = msgspec.json.Decoder(_Page)


def _fill_store(database_url: str, plaid_url: str, var_dir: Path) -> str:
    """An Item of TRANSACTIONS transactions, synced into the store; its item id."""
    services = build_services(bench_settings(database_url, plaid_url, var_dir))

    async def fill() -> str:
        try:
            item_id = await connect_item(services)
            result = await sync_item(services, item_id, trigger="bench")
            assert result.outcome is Outcome.SUCCESS, result
            assert result.added == TRANSACTIONS, result
            return item_id
        finally:
            await services.plaid.aclose()
            await services.database.dispose()

    return anyio.run(fill)


def _read_feed(url: str, item_id: str, token: str) -> float:
    """Seconds for one client to read the whole feed from the beginning."""
    read = 0
    cursor = ""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        started = time.perf_counter()
        while True:
            response = client.get(
                f"/api/v1/plaid/transactions/{item_id}/sync",
                params={"cursor": cursor, "count": PAGE},
            )
            if response.status_code != 200:
                raise RuntimeError(f"the feed answered {response.status_code}: {response.text}")
            page = _PAGE.decode(response.content)
            read += len(page.transactions) + len(page.modified)
            cursor = page.nextCursor
            if not page.hasMore:
                break
        elapsed = time.perf_counter() - started
    assert read == TRANSACTIONS, read
    return elapsed


def _warm(url: str, item_id: str, token: str) -> None:
    """A few pages first: the server's first queries are planned and its pool opened."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        for _ in range(3):
            response = client.get(f"/api/v1/plaid/transactions/{item_id}/sync", params={"count": 1})
            response.raise_for_status()


# `raw::json`: psycopg hands the floor each stored object decoded, as for any JSON column.
_FLOOR_QUERY = """
SELECT t.created_seq, t.transaction_id, t.raw::json
FROM plaid_transactions AS t
WHERE t.connection_id = %(connection)s AND t.created_seq > 0 AND t.created_seq <= %(high)s
  AND (t.created_seq, t.transaction_id) > (%(seq)s, %(after)s)
  AND NOT (t.removed AND t.change_seq <= %(high)s)
ORDER BY t.created_seq, t.transaction_id
LIMIT %(limit)s
"""


def _floor(libpq_url: str, item_id: str) -> float:
    """Seconds to page through the same rows with the same keyset query and `json.dumps`."""
    read = 0
    with psycopg.connect(libpq_url, autocommit=True) as connection:
        connection_id, high = connection.execute(
            "SELECT id, change_seq FROM plaid_connections WHERE item_id = %s", (item_id,)
        ).fetchone() or (None, None)
        position = (0, "")
        started = time.perf_counter()
        while True:
            params = {
                "connection": connection_id,
                "high": high,
                "seq": position[0],
                "after": position[1],
                "limit": PAGE + 1,
            }
            rows = connection.execute(_FLOOR_QUERY, params, prepare=True).fetchall()
            assert isinstance(rows[0][2], dict)  # objects, as the API serves them
            has_more = len(rows) > PAGE
            rows = rows[:PAGE]
            position = (rows[-1][0], rows[-1][1])
            cursor = base64.urlsafe_b64encode(json.dumps([2, item_id, 0, high, *position]).encode())
            body = json.dumps(
                {
                    "transactions": [raw for _, _, raw in rows],
                    "modified": [],
                    "removed": [],
                    "nextCursor": cursor.decode(),
                    "hasMore": has_more,
                }
            ).encode()
            assert body
            read += len(rows)
            if not has_more:
                break
        elapsed = time.perf_counter() - started
    assert read == TRANSACTIONS, read
    return elapsed


def run() -> list[Figure]:
    with (
        bench_database() as database,
        emulator_process(seed=5, transactions=TRANSACTIONS) as emulator,
        TemporaryDirectory() as folder,
    ):
        item_id = _fill_store(database.url, emulator.url, Path(folder))
        settings = bench_settings(database.url, emulator.url, Path(folder))
        token = issue_dev_token(settings, user="bench-user", org="bench-org", role="VIEWER")
        served: list[float] = []
        floor: list[float] = []
        with api_process(
            emulator.url,
            database.url,
            Path(folder),
            jwt_secret=JWT_SECRET,
            encryption_keys=ENCRYPTION_KEYS,
        ) as api:
            url = api.url
            _warm(url, item_id, token)
            for round_ in range(ROUNDS):
                if round_ % 2 == 0:
                    served.append(_read_feed(url, item_id, token))
                    floor.append(_floor(database.libpq_url, item_id))
                else:
                    floor.append(_floor(database.libpq_url, item_id))
                    served.append(_read_feed(url, item_id, token))
    return [
        Figure(
            "change_feed",
            TRANSACTIONS / min(served),
            "tx/s",
            TRANSACTIONS / min(floor),
            target=">= 0.9x; >= 10,000 tx/s",
            note=(
                f"one client, {TRANSACTIONS:,} transactions, pages of {PAGE}, over HTTP with a "
                "JWT; baseline psycopg keyset + json.dumps"
            ),
        )
    ]


if __name__ == "__main__":
    print(table(run()))
