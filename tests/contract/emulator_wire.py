"""Raw JSON POSTs to the emulator, each exchange checked against Plaid's spec from its bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

from tests.contract.plaid_spec import PlaidSpec

CLIENT_ID = "emulator-client-id"
SECRET = "emulator-secret"
CREDENTIALS = {"PLAID-CLIENT-ID": CLIENT_ID, "PLAID-SECRET": SECRET, "Plaid-Version": "2020-09-14"}
INSTITUTION = "ins_109508"
# Nothing listens on the discard port: deliveries fail at once and the emulator still records
# each body it sent.
WEBHOOK = "http://127.0.0.1:9/plaid/webhook"
# Transactions per Item: more than one 500-transaction page, so a full page and a next exist.
HISTORY = 600


@dataclass(frozen=True, slots=True)
class Item:
    access_token: str
    item_id: str


class EmulatorWire:
    """One emulator over plain httpx; Plaid calls are checked, control calls are not."""

    def __init__(self, base_url: str, spec: PlaidSpec) -> None:
        self.spec = spec
        self.client = httpx.Client(base_url=base_url, timeout=30.0, trust_env=False)

    def close(self) -> None:
        self.client.close()

    def post(
        self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
    ) -> httpx.Response:
        """Send `body` as JSON with the SDK's credential headers (or only `headers`)."""
        return self.client.post(
            path, json=body, headers=CREDENTIALS if headers is None else headers
        )

    def ok(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A call that must succeed, with request and response both conforming to the spec."""
        response = self.post(path, body)
        assert response.status_code == 200, response.text
        problems = self.spec.exchange_errors(response)
        assert not problems, "\n".join([f"{path} does not match Plaid's spec:", *problems])
        payload: dict[str, Any] = response.json()
        return payload

    def fails(
        self,
        path: str,
        body: dict[str, Any],
        *,
        code: str,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """A call that must fail with Plaid error `code`, its body conforming to the spec's
        error schema (the request is not checked: some are wrong on purpose)."""
        response = self.post(path, body, headers)
        assert response.status_code >= 400, response.text
        problems = self.spec.response_errors(
            path, response.status_code, response.content, response.headers["content-type"]
        )
        assert not problems, "\n".join([f"{path} error does not match Plaid's spec:", *problems])
        payload: dict[str, Any] = response.json()
        assert payload["error_code"] == code, payload
        return payload

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def link_item(self, webhook: str | None = WEBHOOK) -> Item:
        options = {"webhook": webhook} if webhook else {}
        public = self.ok(
            "/sandbox/public_token/create",
            {
                "institution_id": INSTITUTION,
                "initial_products": ["transactions"],
                "options": options,
            },
        )
        exchanged = self.ok("/item/public_token/exchange", {"public_token": public["public_token"]})
        return Item(exchanged["access_token"], exchanged["item_id"])

    def webhook_bodies(self, item_id: str) -> list[dict[str, Any]]:
        """Bodies the emulator sent for the Item, oldest first, once deliveries in flight end."""
        records = self.control(
            "GET", "/emulator/webhooks", params={"wait": "true", "item_id": item_id}
        )["webhooks"]
        return [json.loads(record["body"]) for record in records]

    def calls(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        """Plaid calls the emulator received (parsed bodies, secret masked), oldest first."""
        params = {"endpoint": endpoint} if endpoint else {}
        found: list[dict[str, Any]] = self.control("GET", "/emulator/calls", params=params)["calls"]
        return found
