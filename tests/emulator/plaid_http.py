"""Raw HTTP access to an emulator: Plaid calls with the SDK's credential headers, control calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

CLIENT_ID = "emulator-client-id"
SECRET = "emulator-secret"
CREDENTIALS = {"PLAID-CLIENT-ID": CLIENT_ID, "PLAID-SECRET": SECRET, "Plaid-Version": "2020-09-14"}
# Nothing listens on the discard port: deliveries fail fast and are still recorded.
UNREACHABLE_WEBHOOK = "http://127.0.0.1:9/webhook"


@dataclass(frozen=True, slots=True)
class LinkedItem:
    access_token: str
    item_id: str


@dataclass(slots=True)
class SyncRun:
    """The pages of one sync loop, and the state they leave when applied in order."""

    cursor: str
    pages: int = 0
    added: list[dict[str, Any]] = field(default_factory=list)
    modified: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)

    def apply(self, store: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for txn in self.added + self.modified:
            store[txn["transaction_id"]] = txn
        for gone in self.removed:
            store.pop(gone["transaction_id"], None)
        return store


class PlaidHTTP:
    """One emulator reached over HTTP; Plaid endpoints carry credentials, control ones don't."""

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30.0, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body, headers=CREDENTIALS)

    def ok(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        payload: dict[str, Any] = response.json()
        return payload

    def control(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.client.request(method, path, **kwargs)
        assert response.status_code in (200, 201), response.text
        payload: dict[str, Any] = response.json()
        return payload

    def link_item(
        self, institution_id: str = "ins_109508", webhook: str | None = UNREACHABLE_WEBHOOK
    ) -> LinkedItem:
        options = {"webhook": webhook} if webhook else {}
        public = self.ok(
            "/sandbox/public_token/create",
            {
                "institution_id": institution_id,
                "initial_products": ["transactions"],
                "options": options,
            },
        )
        exchanged = self.ok("/item/public_token/exchange", {"public_token": public["public_token"]})
        return LinkedItem(exchanged["access_token"], exchanged["item_id"])

    def sync(self, access_token: str, cursor: str = "", count: int = 500) -> httpx.Response:
        return self.post(
            "/transactions/sync", {"access_token": access_token, "cursor": cursor, "count": count}
        )

    def sync_until_ready(self, access_token: str) -> None:
        """Spend the Item's NOT_READY answers (the emulator's first syncs of a new Item)."""
        for _ in range(10):
            page = self.ok("/transactions/sync", {"access_token": access_token})
            if page["transactions_update_status"] != "NOT_READY":
                return
        raise AssertionError("the Item never became ready")

    def sync_all(self, access_token: str, cursor: str = "", count: int = 500) -> SyncRun:
        """Page from `cursor` until has_more is false (the Item must be ready)."""
        run = SyncRun(cursor)
        while True:
            page = self.sync(access_token, run.cursor, count)
            assert page.status_code == 200, page.text
            body = page.json()
            assert body["transactions_update_status"] != "NOT_READY"
            run.pages += 1
            run.added += body["added"]
            run.modified += body["modified"]
            run.removed += body["removed"]
            run.cursor = body["next_cursor"]
            if not body["has_more"]:
                return run

    def ledger(self, item_id: str) -> dict[str, dict[str, Any]]:
        transactions = self.control("GET", "/emulator/ledger", params={"item_id": item_id})
        return {txn["transaction_id"]: txn for txn in transactions["transactions"]}

    def webhooks(self, *, wait: bool = True) -> list[dict[str, Any]]:
        params = {"wait": "true"} if wait else {}
        hooks: list[dict[str, Any]] = self.control("GET", "/emulator/webhooks", params=params)[
            "webhooks"
        ]
        return hooks
