"""Webhook delivery: Plaid's pretty-printed JSON body, signed, POSTed with a 10 s timeout, logged.

Control endpoints await `deliver` so the webhook has arrived (or failed) before they answer;
side effects of `/transactions/sync` use `deliver_in_background`, and `drain` awaits those.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from plaid_bridge.emulator.signer import KeyRing

logger = logging.getLogger("plaid_bridge.emulator.webhooks")

DELIVERY_TIMEOUT_SECONDS = 10.0


class WebhookSender:
    """Signs, sends and records webhooks; one per emulator app."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys
        self._log: list[dict[str, Any]] = []
        self._in_flight: set[asyncio.Task[dict[str, Any]]] = set()
        self._client: httpx.AsyncClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        # Called after each recorded delivery (the state saver listens).
        self.on_record: Callable[[], None] = _nothing

    def use_keys(self, keys: KeyRing) -> None:
        """Sign with `keys` from now on (a restored state's)."""
        self._keys = keys

    def _http(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._client_loop is not loop:
            # trust_env off: proxy variables must never reroute deliveries meant for localhost.
            self._client = httpx.AsyncClient(timeout=DELIVERY_TIMEOUT_SECONDS, trust_env=False)
            self._client_loop = loop
        return self._client

    async def deliver(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST one webhook and record the outcome; never raises for delivery failures."""
        return (await self.deliver_all([(url, payload)]))[0]

    async def deliver_all(self, batch: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """POST several webhooks concurrently; they are recorded in the order given."""
        records = await asyncio.gather(*(self._send(url, payload) for url, payload in batch))
        self._log.extend(records)
        self.on_record()
        return list(records)

    def deliver_in_background(self, url: str, payload: dict[str, Any]) -> None:
        """Start a delivery without waiting for it; `drain` waits for all such deliveries."""
        task = asyncio.get_running_loop().create_task(self._send(url, payload))
        self._in_flight.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[dict[str, Any]]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            self._log.append(task.result())
            self.on_record()

    async def drain(self) -> None:
        """Wait until every background delivery started so far has finished."""
        while self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _send(self, url: str, payload: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(payload, indent=2)
        raw = body.encode()
        record: dict[str, Any] = {
            "webhookType": payload.get("webhook_type"),
            "webhookCode": payload.get("webhook_code"),
            "itemId": payload.get("item_id"),
            "url": url,
            "body": body,
            "statusCode": None,
            "error": None,
            "sentAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        headers = {
            "Content-Type": "application/json",
            "Plaid-Verification": self._keys.sign(raw),
        }
        try:
            response = await self._http().post(url, content=raw, headers=headers)
        except Exception as error:  # a failed delivery is recorded, never raised
            record["error"] = f"{type(error).__name__}: {error}" if str(error) else repr(error)
            logger.info(
                "emulator.webhook.failed",
                extra={"url": url, "code": record["webhookCode"], "error": record["error"]},
            )
        else:
            record["statusCode"] = response.status_code
            logger.debug(
                "emulator.webhook.sent",
                extra={"url": url, "code": record["webhookCode"], "status": response.status_code},
            )
        return record

    def records(self, item_id: str | None = None) -> list[dict[str, Any]]:
        """Deliveries so far, oldest first, optionally for one Item."""
        return [r for r in self._log if item_id is None or r["itemId"] == item_id]

    def clear(self) -> None:
        self._log.clear()

    def restore(self, records: list[dict[str, Any]]) -> None:
        """Take back the deliveries a saved state recorded (they stay first in the log)."""
        self._log[:0] = records

    async def cancel_in_flight(self) -> None:
        """Abandon background deliveries (they are not recorded)."""
        for task in list(self._in_flight):
            task.cancel()
        if self._in_flight:
            await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel background deliveries and close the HTTP client."""
        await self.cancel_in_flight()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _nothing() -> None:
    return None
