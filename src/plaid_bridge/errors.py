"""The error tree and the one handler that renders every error in the JSON envelope (SPEC §4)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from plaid_bridge.activity import audit
from plaid_bridge.api.schemas import NO_CONTROL_CHARACTERS
from plaid_bridge.logs import request_id_var
from plaid_bridge.plaid.errors import PlaidError, PlaidErrorClass
from plaid_bridge.plaid.outbound import LimiterUnavailable, LimitReached
from plaid_bridge.redaction import redact_text

logger = logging.getLogger("plaid_bridge.errors")


@dataclass(frozen=True, slots=True)
class PlaidErrorDetail:
    """What Plaid said, passed through as `error.plaid` in the envelope."""

    error_type: str | None
    error_code: str | None
    display_message: str | None
    request_id: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "errorType": self.error_type,
            "errorCode": self.error_code,
            "displayMessage": self.display_message,
            "requestId": self.request_id,
        }


class AppError(Exception):
    """An error with an HTTP status and a message safe to show end users."""

    status = 500
    code = "INTERNAL_ERROR"
    message = "Something went wrong on our side."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        needs_reauth: bool = False,
        retry_after: int | None = None,
        plaid: PlaidErrorDetail | None = None,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.needs_reauth = needs_reauth
        self.retry_after = retry_after
        self.plaid = plaid
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(f"{self.code}: {self.message}")


class BadRequest(AppError):
    status = 400
    code = "INVALID_REQUEST"
    message = "The request was not valid."


class Unauthorized(AppError):
    """401; the response carries `WWW-Authenticate` (`Bearer` unless the error sets its own)."""

    status = 401
    code = "UNAUTHORIZED"
    message = "Authentication is required: send Authorization: Bearer <token>."


class Forbidden(AppError):
    status = 403
    code = "FORBIDDEN"
    message = "You are not allowed to do this."


class NotFound(AppError):
    status = 404
    code = "NOT_FOUND"
    message = "Not found."


class Conflict(AppError):
    status = 409
    code = "CONFLICT"
    message = "The request conflicts with the current state."


class PayloadTooLarge(AppError):
    status = 413
    code = "PAYLOAD_TOO_LARGE"
    message = "The request body is too large."


class RateLimited(AppError):
    status = 429
    code = "RATE_LIMITED"
    message = "Too many requests; try again later."


class Unavailable(AppError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
    message = "The service is temporarily unavailable."


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached right now; nothing was done, the client may retry (Plaid
    redelivers a webhook answered this way)."""

    code = "DATABASE_UNAVAILABLE"
    message = "The service's database is temporarily unavailable; try again shortly."


DATABASE_RETRY_AFTER = 5

# SQLite result codes (low byte of `sqlite_errorcode`) that mean the file cannot be used right
# now: busy/locked, I/O error, cannot open, disk full, read-only. Everything else SQLite reports
# as an OperationalError ("no such table", a syntax error) is a bug, not an outage.
_SQLITE_UNAVAILABLE = frozenset({5, 6, 8, 10, 13, 14, 15})


def database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached or used at the moment (connection
    refused or lost, database gone, pool exhausted), as opposed to a statement that is wrong
    (integrity, programming errors), which stays a 500."""
    if isinstance(error, sa_exc.TimeoutError):  # no pooled connection freed in time
        return True
    if not isinstance(error, sa_exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if not isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        return False
    sqlite_code = getattr(error.orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        return sqlite_code & 0xFF in _SQLITE_UNAVAILABLE
    return True


def envelope(error: AppError, request_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": error.code,
        "message": redact_text(error.message),
        "needsReauth": error.needs_reauth,
        "retryAfter": error.retry_after,
    }
    if error.plaid is not None:
        body["plaid"] = error.plaid.as_json()
    body.update({key: value for key, value in error.details.items() if key not in body})
    return {"error": body, "requestId": request_id}


def error_response(error: AppError, headers: dict[str, str] | None = None) -> JSONResponse:
    """The envelope as a response, with `Retry-After` on 429/503, `WWW-Authenticate` on every
    401 (RFC 9110 requires one), the error's own headers and our request id."""
    request_id = request_id_var.get()
    headers = {**error.headers, **(headers or {})}
    if error.status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if request_id:
        headers["X-Request-ID"] = request_id
    return JSONResponse(envelope(error, request_id), status_code=error.status, headers=headers)


# Validation messages: each problem as `field: what is wrong` (`publicToken: field required`),
# the field as the client spells it, and bad JSON with its line and column.

_MAX_PROBLEMS = 5
_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})


def _field_name(location: tuple[Any, ...]) -> str:
    """`accounts[0].name` for ("body", "accounts", 0, "name"); `after` for ("query", "after")."""
    name = ""
    for part in location[1:] if location and location[0] in _SOURCES else location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _problem(item: Any) -> str:
    kind, context = item.get("type"), item.get("ctx") or {}
    if kind == "string_pattern_mismatch" and context.get("pattern") == NO_CONTROL_CHARACTERS:
        text = "must not contain control characters"
    else:
        message = str(item.get("msg") or "is not valid")
        text = message[:1].lower() + message[1:]
    return text


def _json_position(document: object, position: int) -> str:
    """`line L, column C` of a character offset into the received text."""
    if not isinstance(document, str):
        return f"character {position + 1}"
    line = document.count("\n", 0, position) + 1
    column = position - (document.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}"


def _validation_message(exc: RequestValidationError) -> str:
    errors = list(exc.errors())
    for item in errors:
        if item.get("type") == "json_invalid":
            location = item.get("loc", ())
            position = location[-1] if location and isinstance(location[-1], int) else 0
            reason = (item.get("ctx") or {}).get("error", "invalid JSON")
            where = _json_position(exc.body, position)
            return f"The body is not valid JSON: {reason} at {where}."
    parts = []
    for item in errors[:_MAX_PROBLEMS]:
        location = tuple(item.get("loc", ()))
        name = _field_name(location)
        if not name and location[:1] == ("body",):
            name = "body"
        parts.append(f"{name}: {_problem(item)}" if name else _problem(item))
    if len(errors) > _MAX_PROBLEMS:
        parts.append(f"and {len(errors) - _MAX_PROBLEMS} more")
    return "; ".join(parts) or "The request was not valid."


def _unreadable_body(exc: StarletteHTTPException) -> AppError:
    """A 400 FastAPI raised because the body could not be decoded at all."""
    cause = exc.__cause__
    if isinstance(cause, UnicodeDecodeError):
        return BadRequest("The body is not valid UTF-8.", code="INVALID_BODY")
    if isinstance(cause, RecursionError):
        return BadRequest("The body is nested too deeply.", code="INVALID_BODY")
    return BadRequest("The body could not be read.", code="INVALID_BODY")


async def audit_failure(app: Any, error: AppError) -> None:
    """Record the request's declared action as failed, in a transaction of its own."""
    action = audit.take_pending()
    if action is None:
        return
    database = app.state.services.database
    try:
        async with database.transaction() as session:
            await audit.record_failure(
                session,
                action,
                error_code=error.code,
                plaid_request_id=error.plaid.request_id if error.plaid else None,
            )
    except Exception:
        logger.exception("audit.failure_not_recorded", extra={"action": action.action})


def install_error_handlers(app: FastAPI) -> None:
    """Every error, validation and unexpected ones included, leaves in the envelope."""

    async def on_app_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        if exc.status >= 500:
            logger.error("request.failed", extra={"code": exc.code, "status": exc.status})
        await audit_failure(request.app, exc)
        return error_response(exc)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(BadRequest(_validation_message(exc), code="VALIDATION_ERROR"))

    async def on_http(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        codes = {404: NotFound, 405: BadRequest, 401: Unauthorized, 403: Forbidden}
        error_type = codes.get(exc.status_code, AppError)
        error = error_type(status=exc.status_code)
        headers: dict[str, str] = {}
        if exc.status_code == 400:
            error = _unreadable_body(exc)
        elif exc.status_code == 405:
            error = BadRequest("Method not allowed.", code="METHOD_NOT_ALLOWED", status=405)
            headers = {"Allow": (exc.headers or {}).get("Allow", "")}
        return error_response(error, headers)

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, sa_exc.SQLAlchemyError)
        if not database_unavailable(exc):
            raise exc  # a bug: the request context's handler answers 500 and logs it
        logger.error("database.unavailable", extra={"error_type": type(exc).__name__})
        error = DatabaseUnavailable(retry_after=DATABASE_RETRY_AFTER)
        await audit_failure(request.app, error)
        return error_response(error)

    async def on_plaid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, PlaidError)
        logger.warning(
            "plaid.call_failed",
            extra={
                "plaid_error_type": exc.error_type,
                "plaid_error_code": exc.error_code,
                "plaid_request_id": exc.request_id,
            },
        )
        error = from_plaid(exc)
        await audit_failure(request.app, error)
        return error_response(error)

    app.add_exception_handler(AppError, on_app_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(PlaidError, on_plaid)
    app.add_exception_handler(sa_exc.SQLAlchemyError, on_database)


# Messages for end users where the code says more than its class's message in the table.
_MESSAGES = {
    "ITEM_LOGIN_REQUIRED": "Your bank needs you to sign in again.",
    "INVALID_CREDENTIALS": "Your bank did not accept the credentials; please sign in again.",
    "INVALID_MFA": "The verification code was not accepted; please sign in again.",
    "INSUFFICIENT_CREDENTIALS": "Your bank needs more information; please sign in again.",
    "RECAPTCHA_REQUIRED": "Your bank needs you to complete a captcha; please sign in again.",
    "RECAPTCHA_BAD": "Your bank needs you to complete a captcha; please sign in again.",
    "INVALID_UPDATED_USERNAME": "Your bank did not accept the username; please sign in again.",
    "INVALID_SEND_METHOD": "Your bank could not send the verification code; please sign in again.",
    "ACCESS_NOT_GRANTED": "Your bank needs you to grant access again; please sign in again.",
    "ITEM_LOCKED": "Your bank has locked the account; please contact your bank.",
    "USER_SETUP_REQUIRED": "Your bank needs you to finish setting up the account on its website.",
    "PASSWORD_RESET_REQUIRED": "Your bank needs you to reset your password on its website.",
    "USER_PERMISSION_REVOKED": "Access to this bank was revoked; please connect it again.",
    "ITEM_NOT_FOUND": "This bank connection no longer exists at Plaid.",
    "PRODUCT_NOT_READY": "Your bank data is still being prepared; try again shortly.",
    "CREDITS_EXHAUSTED": "The Plaid allowance for this service is used up.",
}
LIMITER_RETRY_AFTER = 5


def from_plaid(error: PlaidError) -> AppError:
    """SPEC §5: the HTTP error for a Plaid failure, from the one table of what Plaid errors
    mean (`plaid.errors.MEANINGS`: HTTP status, `needsReauth`, `retryAfter`).

    Our own outbound limiter's refusals are not Plaid's: 429 RATE_LIMITED with the limiter's
    `retryAfter`, or 503 when its storage cannot be reached (the call was not sent).
    """
    if isinstance(error, LimitReached):
        return RateLimited(
            "Too many requests to the bank service; try again later.",
            retry_after=error.retry_after,
        )
    if isinstance(error, LimiterUnavailable):
        return Unavailable(
            "Rate limiting is unavailable, so the request was not processed; try again shortly.",
            code="RATE_LIMITER_UNAVAILABLE",
            retry_after=LIMITER_RETRY_AFTER,
        )
    detail = (
        PlaidErrorDetail(
            error.error_type, error.error_code, error.display_message, error.request_id
        )
        if error.from_plaid
        else None
    )
    meaning = error.meaning
    if error.error_class is PlaidErrorClass.OURS_TO_FIX and meaning.http_status >= 500:
        logger.error("plaid.misconfigured", extra={"plaid_error_code": error.error_code})
    return AppError(
        _MESSAGES.get(error.error_code, meaning.message),
        code=error.error_code,
        status=meaning.http_status,
        needs_reauth=meaning.needs_reauth,
        retry_after=meaning.retry_after,
        plaid=detail,
    )
