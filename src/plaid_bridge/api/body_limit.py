"""The request-body cap for the whole API, applied before anything parses or authenticates.

A declared `Content-Length` over the cap is answered 413 at once, without calling the app; a body
without one (chunked) is counted as it arrives and the app's reading is cut off at the cap, so no
request can make the process hold more than `max_bytes` of body, whoever sends it.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from plaid_bridge.errors import BadRequest, PayloadTooLarge, error_response

__all__ = ["BodyLimitMiddleware"]


class _BodyTooLarge(Exception):
    """Raised into the app when its body passes the cap; the app's answer is then replaced."""


def _declared_length(scope: Scope) -> int | None:
    """The Content-Length header as an int; None when absent. Raises ValueError when malformed."""
    values = [value for name, value in scope["headers"] if name == b"content-length"]
    if not values:
        return None
    if len(values) > 1 or not values[0].isdigit() or len(values[0]) > 18:
        raise ValueError("invalid Content-Length")
    return int(values[0])


class BodyLimitMiddleware:
    """Pure ASGI: 413 in the error envelope for any request body over `max_bytes`."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body may not exceed {self.max_bytes} bytes.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            declared = _declared_length(scope)
        except ValueError:
            error = BadRequest("The Content-Length header is not valid.", code="INVALID_REQUEST")
            await error_response(error)(scope, receive, send)
            return
        if declared is not None and declared > self.max_bytes:
            await error_response(self._too_large())(scope, receive, send)
            return

        received = 0
        exceeded = False
        started = False

        async def receive_capped() -> Message:
            nonlocal received, exceeded
            if exceeded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def send_unless_exceeded(message: Message) -> None:
            nonlocal started
            if exceeded and not started:
                return  # the app's answer to a body it could not read; 413 goes instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_capped, send_unless_exceeded)
        except Exception:
            # The app may wrap the cut-off read in an error of its own; past the cap, the
            # answer is 413 whatever it raised.
            if not exceeded or started:
                raise
        if exceeded and not started:
            await error_response(self._too_large())(scope, receive, send)
