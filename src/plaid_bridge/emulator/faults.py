"""Fault injection: the next `count` matching Plaid calls fail, are delayed, or are cut off."""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from plaid_bridge.emulator.errors import is_fault_code

logger = logging.getLogger("plaid_bridge.emulator.faults")


@dataclass(slots=True)
class Fault:
    """One registered fault; `remaining` counts down as matching calls consume it."""

    fault_id: int
    endpoint: str
    error_code: str | None
    remaining: int
    item_id: str | None = None
    page: int | None = None
    latency_ms: int | None = None
    drop_connection: bool = False

    def matches(self, endpoint: str, item_id: str | None, page: int | None) -> bool:
        return (
            self.remaining > 0
            and self.endpoint == endpoint
            and (self.item_id is None or self.item_id == item_id)
            and (self.page is None or self.page == page)
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.fault_id,
            "endpoint": self.endpoint,
            "errorCode": self.error_code,
            "remaining": self.remaining,
            "itemId": self.item_id,
            "page": self.page,
            "latencyMs": self.latency_ms,
            "dropConnection": self.drop_connection,
        }


class FaultRegistry:
    """Faults in registration order; the oldest matching one is consumed first."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(
        self,
        *,
        endpoint: str,
        error_code: str | None,
        count: int,
        item_id: str | None = None,
        page: int | None = None,
        latency_ms: int | None = None,
        drop_connection: bool = False,
    ) -> Fault:
        """Register a fault; raises ValueError for an error code Plaid does not have."""
        if error_code is not None and not is_fault_code(error_code):
            raise ValueError(f"unknown error code: {error_code}")
        fault = Fault(
            next(self._ids),
            endpoint,
            error_code,
            count,
            item_id,
            page,
            latency_ms,
            drop_connection,
        )
        self._faults.append(fault)
        return fault

    def take(self, endpoint: str, item_id: str | None, page: int | None) -> Fault | None:
        """Consume one use of the oldest fault matching this call, if any."""
        for fault in self._faults:
            if fault.matches(endpoint, item_id, page):
                fault.remaining -= 1
                if fault.remaining == 0:
                    self._faults.remove(fault)
                return fault
        return None

    def active(self) -> list[Fault]:
        return list(self._faults)

    def clear(self) -> None:
        self._faults.clear()


_INCOMPLETE_RESPONSE = "ASGI callable returned without completing response."


class _ExpectedDrops(logging.Filter):
    """Silences uvicorn's error line for each response the emulator cuts off on purpose."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._expected = 0

    def expect(self) -> None:
        with self._lock:
            self._expected += 1

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != _INCOMPLETE_RESPONSE:
            return True
        with self._lock:
            if self._expected:
                self._expected -= 1
                return False
        return True


_EXPECTED_DROPS = _ExpectedDrops()


def quiet_expected_drops() -> None:
    """Keep uvicorn from logging an error for each deliberately dropped response (idempotent)."""
    uvicorn_errors = logging.getLogger("uvicorn.error")
    if _EXPECTED_DROPS not in uvicorn_errors.filters:
        uvicorn_errors.addFilter(_EXPECTED_DROPS)


class DroppedConnection(Response):
    """Starts a response, sends part of it and stops: the server then closes the connection.

    Clients see the connection break mid-response (urllib3: ProtocolError / IncompleteRead).
    """

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG002
        logger.info("emulator.fault.connection_dropped", extra={"path": scope.get("path")})
        _EXPECTED_DROPS.expect()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"accounts": [', "more_body": True})
