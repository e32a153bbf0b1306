"""Operate's response envelope, as an option (`API_RESPONSE_ENVELOPE=operate`, SPEC section 4).

Operate's web client unwraps every success body from `{data, meta: {timestamp, requestId}}`;
with this middleware it can call the service by changing only its base URL. Only 2xx JSON
answers of the API's routes are wrapped: errors keep the service's envelope (which Operate's
client reads as `{error: {code, message}}` already), and the webhook's answer and the ops
endpoints are never touched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaid_bridge.browser.scope import serves_browsers
from plaid_bridge.logs import request_id_var


def operate_body(data: Any, *, request_id: str | None, now: datetime | None = None) -> Any:
    """`data` wrapped as Operate's API wraps it; `timestamp` as JavaScript's `toISOString()`
    writes it (UTC, milliseconds, `Z`)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    timestamp = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"data": data, "meta": {"timestamp": timestamp, "requestId": request_id}}


class OperateEnvelopeMiddleware:
    """Wraps the API's success bodies in Operate's envelope. Sits inside the request context,
    whose id becomes `meta.requestId`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] == "HEAD"
            or not serves_browsers(scope["path"])
        ):
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []

        async def send_wrapped(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                if _wraps(message):
                    held = message  # sent with the new length once the body is complete
                    return
                await send(message)
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = _wrap(b"".join(chunks))
            headers = MutableHeaders(raw=list(held["headers"]))
            headers["Content-Length"] = str(len(body))
            await send({**held, "headers": headers.raw})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_wrapped)


def _wraps(start: Message) -> bool:
    content_type = Headers(raw=start.get("headers", [])).get("content-type", "")
    return 200 <= start["status"] < 300 and content_type.startswith("application/json")


def _wrap(body: bytes) -> bytes:
    try:
        data = json.loads(body)
    except ValueError:
        return body  # not JSON after all (an empty body): passed on as it was
    wrapped = operate_body(data, request_id=request_id_var.get())
    # The separators and options of FastAPI's JSONResponse, so only the envelope differs.
    return json.dumps(
        wrapped, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
