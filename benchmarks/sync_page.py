"""One 500-transaction /transactions/sync page: PlaidClient's raw parsing vs the SDK's models.

Both paths fetch the same page over real HTTP from the emulator, run in its own process as Plaid
is remote; the baseline is the SDK's default call (`PlaidApi.transactions_sync`, deserialising
into its generated models). The SDK is imported here only to measure it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import anyio
import plaid
from plaid.api import plaid_api
from plaid.model.transactions_sync_request import TransactionsSyncRequest

from benchmarks.emulator_process import emulator_process
from benchmarks.scoreboard import Figure, table
from plaid_bridge.plaid import PlaidClient

CLIENT_ID, SECRET = "emulator-client-id", "emulator-secret"
PAGE = 500


def _timings(action: Callable[[], object], repeat: int) -> list[float]:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return timings


def run() -> list[Figure]:
    with emulator_process(seed=1, transactions=2_000) as emulator:
        url = emulator.url
        client = PlaidClient(host=url, client_id=CLIENT_ID, secret=SECRET, timeout=60)

        async def prepare() -> str:
            public = await client.sandbox_public_token_create(institution_id="ins_109508")
            exchanged = await client.exchange_public_token(public_token=public.public_token)
            await client.sync_transactions(access_token=exchanged.access_token, count=PAGE)
            return exchanged.access_token

        token = anyio.run(prepare)

        def ours() -> int:
            async def call() -> int:
                page = await client.sync_transactions(access_token=token, count=PAGE)
                return len(page.added)

            return anyio.run(call)

        configuration = plaid.Configuration(
            host=url,
            api_key={"clientId": CLIENT_ID, "secret": SECRET, "plaidVersion": "2020-09-14"},
        )
        sdk = plaid_api.PlaidApi(plaid.ApiClient(configuration))

        def sdk_default() -> int:
            response = sdk.transactions_sync(
                TransactionsSyncRequest(access_token=token, count=PAGE)
            )
            return len(response["added"])

        assert ours() == PAGE
        assert sdk_default() == PAGE
        baseline = _timings(sdk_default, repeat=3)
        measured = _timings(ours, repeat=21)
        client.close()
    # The best of several runs is each path's own cost; the medians show the noise around it.
    best, typical = min(measured), statistics.median(measured)
    return [
        Figure(
            "sync_page_speedup",
            min(baseline) / best,
            "x",
            ratio=min(baseline) / best,
            target=">= 100x",
            note=(
                f"PlaidClient {best * 1000:.1f} ms vs the SDK's deserialisation"
                f" {min(baseline) * 1000:.1f} ms per {PAGE}-row page (best of runs; medians"
                f" {statistics.median(baseline) / typical:.0f}x)"
            ),
        ),
    ]


if __name__ == "__main__":
    print(table(run()))
