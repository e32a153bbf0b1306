"""What a Plaid failure means for us, decided on `error_type` then `error_code`, never messages.

Every failure of a Plaid call leaves `plaid/` as a `PlaidError` whose `error_class` says what to do
about it (see PLAID_FACTS.md, "Error classes"). Failures that never reached Plaid, or answers that
are not Plaid's, carry our own codes (`TIMEOUT`, `NETWORK_ERROR`, `INVALID_RESPONSE`, ...).

`MEANINGS` is the one table of what an error means for the service: the connection status it
leads to, whether the user must act, and the HTTP answer. The HTTP mapping, the connection
lifecycle, the sync engine, health and the webhook handlers all read it, so they cannot disagree.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any

import plaid
import urllib3.exceptions

__all__ = [
    "INVALID_RESPONSE",
    "KNOWN_CODES",
    "MEANINGS",
    "NETWORK_ERROR",
    "OUR_ERROR_TYPE",
    "SDK_VALIDATION_ERROR",
    "TIMEOUT",
    "UNEXPECTED_RESPONSE",
    "CallFailed",
    "ErrorMeaning",
    "PlaidError",
    "PlaidErrorClass",
    "classify",
    "classify_code",
    "error_from_exception",
    "error_from_response",
    "meaning",
]

OUR_ERROR_TYPE = "PLAID_BRIDGE"
"""`error_type` of failures that Plaid did not describe itself (no Plaid error body)."""
TIMEOUT = "TIMEOUT"
NETWORK_ERROR = "NETWORK_ERROR"
INVALID_RESPONSE = "INVALID_RESPONSE"
"""The answer was not JSON (a proxy's error page, a truncated body): worth another try."""
UNEXPECTED_RESPONSE = "UNEXPECTED_RESPONSE"
"""The answer was JSON but not the shape Plaid documents: retrying returns the same."""
SDK_VALIDATION_ERROR = "SDK_VALIDATION_ERROR"
"""The SDK refused our request before sending it (a type or bound it checks)."""


class PlaidErrorClass(enum.StrEnum):
    """What a failure asks of us; the value is stable and safe to store or log."""

    NEEDS_USER = "needs_user"
    """The user must go through Link update mode; do not retry."""
    USER_ACTION_AT_BANK = "user_action_at_bank"
    """The user must act at the bank itself (e.g. unlock the account); do not retry."""
    REVOKED = "revoked"
    """The user revoked access; stop using the Item, the user connects again."""
    GONE = "gone"
    """The Item does not exist at Plaid; treat the connection as removed."""
    INSTITUTION_TRANSIENT = "institution_transient"
    """The bank is down or slow; retry in hours, keep the connection."""
    PLAID_TRANSIENT = "plaid_transient"
    """Plaid or the network failed; retry with backoff."""
    RATE_LIMITED = "rate_limited"
    """A Plaid rate limit was hit; back off."""
    CREDITS_EXHAUSTED = "credits_exhausted"
    """The free allowance is used up; retrying never helps."""
    RESTART_SYNC = "restart_sync"
    """Data changed during /transactions/sync pagination; restart from the loop's first cursor."""
    NOT_READY = "not_ready"
    """The product's data is still being prepared; wait for the webhook or poll later."""
    OURS_TO_FIX = "ours_to_fix"
    """Our request or configuration is wrong; do not retry, log as an error."""
    UNEXPECTED = "unexpected"
    """Nothing above; do not retry automatically."""


_C = PlaidErrorClass

# Per error_type: the codes that decide more than the type does, and the type's default.
_BY_TYPE: dict[str, tuple[dict[str, PlaidErrorClass], PlaidErrorClass]] = {
    "API_ERROR": (
        {"INTERNAL_SERVER_ERROR": _C.PLAID_TRANSIENT, "PLANNED_MAINTENANCE": _C.PLAID_TRANSIENT},
        _C.PLAID_TRANSIENT,
    ),
    "RATE_LIMIT_EXCEEDED": (
        {
            "CREDITS_EXHAUSTED": _C.CREDITS_EXHAUSTED,
            "RATE_LIMIT": _C.RATE_LIMITED,
            "INSTITUTION_RATE_LIMIT": _C.RATE_LIMITED,
        },
        _C.RATE_LIMITED,
    ),
    "ITEM_ERROR": (
        {
            "ITEM_LOGIN_REQUIRED": _C.NEEDS_USER,
            "INVALID_CREDENTIALS": _C.NEEDS_USER,
            "INVALID_MFA": _C.NEEDS_USER,
            "INSUFFICIENT_CREDENTIALS": _C.NEEDS_USER,
            "INVALID_UPDATED_USERNAME": _C.NEEDS_USER,
            "INVALID_SEND_METHOD": _C.NEEDS_USER,
            "ACCESS_NOT_GRANTED": _C.NEEDS_USER,
            "RECAPTCHA_REQUIRED": _C.NEEDS_USER,
            "ITEM_LOCKED": _C.USER_ACTION_AT_BANK,
            "USER_SETUP_REQUIRED": _C.USER_ACTION_AT_BANK,
            "PASSWORD_RESET_REQUIRED": _C.USER_ACTION_AT_BANK,
            "USER_PERMISSION_REVOKED": _C.REVOKED,
            "ITEM_NOT_FOUND": _C.GONE,
            "PRODUCT_NOT_READY": _C.NOT_READY,
        },
        _C.UNEXPECTED,
    ),
    "INSTITUTION_ERROR": (
        {
            "INSTITUTION_DOWN": _C.INSTITUTION_TRANSIENT,
            "INSTITUTION_NOT_RESPONDING": _C.INSTITUTION_TRANSIENT,
            "INSTITUTION_NOT_AVAILABLE": _C.INSTITUTION_TRANSIENT,
        },
        _C.UNEXPECTED,
    ),
    "TRANSACTIONS_ERROR": (
        {"TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": _C.RESTART_SYNC},
        _C.UNEXPECTED,
    ),
    # ITEM_NOT_FOUND is documented under INVALID_INPUT; the rest of that type is our mistake.
    "INVALID_INPUT": (
        {
            "ITEM_NOT_FOUND": _C.GONE,
            "INVALID_API_KEYS": _C.OURS_TO_FIX,
            "INVALID_ACCESS_TOKEN": _C.OURS_TO_FIX,
        },
        _C.OURS_TO_FIX,
    ),
    "INVALID_REQUEST": ({"INVALID_FIELD": _C.OURS_TO_FIX}, _C.OURS_TO_FIX),
    "SANDBOX_ERROR": ({}, _C.OURS_TO_FIX),
    "RECAPTCHA_ERROR": (
        {"RECAPTCHA_REQUIRED": _C.NEEDS_USER, "RECAPTCHA_BAD": _C.NEEDS_USER},
        _C.NEEDS_USER,
    ),
    OUR_ERROR_TYPE: (
        {
            TIMEOUT: _C.PLAID_TRANSIENT,
            NETWORK_ERROR: _C.PLAID_TRANSIENT,
            INVALID_RESPONSE: _C.PLAID_TRANSIENT,
            SDK_VALIDATION_ERROR: _C.OURS_TO_FIX,
        },
        _C.UNEXPECTED,
    ),
}

# Codes that mean the same under any type, for types whose table does not name them.
_ANY_TYPE: dict[str, PlaidErrorClass] = {
    "ITEM_LOGIN_REQUIRED": _C.NEEDS_USER,
    "ITEM_NOT_FOUND": _C.GONE,
    "USER_PERMISSION_REVOKED": _C.REVOKED,
    "PRODUCT_NOT_READY": _C.NOT_READY,
    "CREDITS_EXHAUSTED": _C.CREDITS_EXHAUSTED,
    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": _C.RESTART_SYNC,
}

KNOWN_CODES: dict[str, str] = {
    code: error_type
    for error_type, (codes, _default) in _BY_TYPE.items()
    if error_type != OUR_ERROR_TYPE
    for code in codes
    if error_type != "INVALID_INPUT" or code != "ITEM_NOT_FOUND"  # Plaid files it under ITEM_ERROR
}
"""Every Plaid code this module names, with the `error_type` Plaid sends it under."""

_CLASS_OF_CODE: dict[str, PlaidErrorClass] = {
    **_ANY_TYPE,
    **{code: _BY_TYPE[error_type][0][code] for code, error_type in KNOWN_CODES.items()},
}


@dataclass(frozen=True, slots=True)
class ErrorMeaning:
    """What an error means for the service: one row of `MEANINGS`."""

    status: str | None
    """The connection status the error leads to (a `ConnectionStatus` value); None: unchanged."""
    lasting: bool
    """Whether one failed call is enough to record `status`. Conditions that pass by themselves
    (the bank is down) are recorded only when Plaid reports them as the Item's state: an ITEM/ERROR
    webhook, `/item/get`'s `error`, a failed sync; a failed request of a user leaves the status."""
    needs_reauth: bool
    """The user must go through Link update mode (`needsReauth` in answers and health)."""
    http_status: int
    """Our HTTP answer when a request meets the error (SPEC section 5)."""
    retry_after: int | None
    """Seconds for `retryAfter` and the `Retry-After` header, if any."""
    message: str
    """A message safe for end users, when none is known for the exact code."""

    def status_after(self, *, reported: bool) -> str | None:
        """The status to record: `reported` when Plaid states the error as the Item's condition
        (webhook, `/item/get`, a failed sync), False for one failed request."""
        return self.status if reported or self.lasting else None


_SIGN_IN = "Please sign in to your bank again."
_UNAVAILABLE = "The bank service is unavailable; please try again."

MEANINGS: dict[str, ErrorMeaning] = {
    # By class (PLAID_FACTS "Error classes"): every class has its row.
    _C.NEEDS_USER: ErrorMeaning("LOGIN_REQUIRED", True, True, 409, None, _SIGN_IN),
    _C.USER_ACTION_AT_BANK: ErrorMeaning(
        "ERROR", True, False, 409, None, "Your bank needs you to act on its own website first."
    ),
    _C.REVOKED: ErrorMeaning(
        "REVOKED", True, False, 409, None, "The bank connection cannot be used."
    ),
    _C.GONE: ErrorMeaning(
        "ERROR", True, False, 404, None, "This bank connection no longer exists at Plaid."
    ),
    _C.INSTITUTION_TRANSIENT: ErrorMeaning(
        "ERROR", False, False, 503, 900, "Your bank is temporarily unavailable."
    ),
    _C.PLAID_TRANSIENT: ErrorMeaning(None, False, False, 502, None, _UNAVAILABLE),
    _C.RATE_LIMITED: ErrorMeaning(None, False, False, 429, 60, "Too many requests to Plaid."),
    _C.CREDITS_EXHAUSTED: ErrorMeaning(
        None, False, False, 503, 86400, "The Plaid allowance is used up."
    ),
    _C.RESTART_SYNC: ErrorMeaning(None, False, False, 502, None, _UNAVAILABLE),
    _C.NOT_READY: ErrorMeaning(None, False, False, 503, 300, "Data is still being prepared."),
    _C.OURS_TO_FIX: ErrorMeaning(
        None, False, False, 400, None, "The request to the bank service was not valid."
    ),
    _C.UNEXPECTED: ErrorMeaning("ERROR", False, False, 502, None, _UNAVAILABLE),
    # Codes that mean more than their class: ours to fix, but not the caller's request.
    **dict.fromkeys(
        ("INVALID_API_KEYS", "INVALID_ACCESS_TOKEN", SDK_VALIDATION_ERROR),
        ErrorMeaning(
            None,
            False,
            False,
            502,
            None,
            "The bank service is misconfigured; we have been notified.",
        ),
    ),
}
"""The one table of what a Plaid error means, by code where the code says more than its class,
otherwise by class (`meaning` looks it up)."""


def meaning(error_class: PlaidErrorClass, error_code: str | None) -> ErrorMeaning:
    """The row of `MEANINGS` for an error: its code's if it has one, else its class's."""
    if error_code is not None and error_code in MEANINGS:
        return MEANINGS[error_code]
    return MEANINGS[error_class]


def classify_code(error_code: str) -> PlaidErrorClass:
    """The class of a code known without its type (a stored connection's error code)."""
    return _CLASS_OF_CODE.get(error_code, _C.UNEXPECTED)


_RETRYABLE = frozenset({_C.PLAID_TRANSIENT, _C.RATE_LIMITED})
_TRANSIENT = frozenset(
    {_C.PLAID_TRANSIENT, _C.RATE_LIMITED, _C.INSTITUTION_TRANSIENT, _C.NOT_READY, _C.RESTART_SYNC}
)


def classify(
    error_type: str | None, error_code: str | None, status: int | None = None
) -> PlaidErrorClass:
    """The class of a failure: the type's own code table, then codes that mean the same under
    every type, then the type's default; an unknown type is Plaid's trouble only on a 5xx."""
    codes, default = _BY_TYPE.get(error_type or "", ({}, None))
    if error_code is not None:
        if error_code in codes:
            return codes[error_code]
        if error_code in _ANY_TYPE:
            return _ANY_TYPE[error_code]
    if default is not None:
        return default
    if status is not None and status >= 500:
        return _C.PLAID_TRANSIENT
    return _C.UNEXPECTED


class PlaidError(Exception):
    """A Plaid call failed; `error_class` says what to do about it.

    `str(error)` and `args` are built from the endpoint, type, code, HTTP status and request id
    only, so an error can be logged or rendered without ever exposing a token or a secret.
    Plaid's `error_message` and `display_message` are kept as attributes for people, never for
    decisions.
    """

    def __init__(
        self,
        *,
        error_type: str,
        error_code: str,
        status: int | None = None,
        error_message: str | None = None,
        display_message: str | None = None,
        request_id: str | None = None,
        error_code_reason: str | None = None,
        endpoint: str | None = None,
        error_class: PlaidErrorClass | None = None,
    ) -> None:
        self.error_type = error_type
        self.error_code = error_code
        self.status = status
        self.error_message = error_message
        self.display_message = display_message
        self.request_id = request_id
        self.error_code_reason = error_code_reason
        self.endpoint = endpoint
        self.error_class = error_class or classify(error_type, error_code, status)
        super().__init__(self._summary())

    def _summary(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        status = f"HTTP {self.status}" if self.status is not None else "no HTTP response"
        request = f", request {self.request_id}" if self.request_id else ""
        return f"{where}{self.error_type}/{self.error_code} ({status}{request})"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only construction; keep the error picklable for worker processes and tests.
        return (_rebuild, (self.__dict__.copy(),))

    @property
    def retryable(self) -> bool:
        """True when the same request may simply be sent again after a backoff."""
        return self.error_class in _RETRYABLE

    @property
    def transient(self) -> bool:
        """True when the condition passes without anyone acting (Plaid, the bank, a limit)."""
        return self.error_class in _TRANSIENT

    @property
    def meaning(self) -> ErrorMeaning:
        """What the error means for the service (`MEANINGS`)."""
        return meaning(self.error_class, self.error_code)

    @property
    def needs_reauth(self) -> bool:
        """True when the user must go through Link update mode to repair the Item."""
        return self.meaning.needs_reauth

    @property
    def from_plaid(self) -> bool:
        """True when Plaid itself described the failure (a Plaid error body with a request id)."""
        return self.error_type != OUR_ERROR_TYPE


def _rebuild(state: dict[str, Any]) -> PlaidError:
    error = PlaidError.__new__(PlaidError)
    error.__dict__.update(state)
    error.args = (error._summary(),)
    return error


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def error_from_response(status: int, body: bytes | str | None, *, endpoint: str) -> PlaidError:
    """The error a non-2xx answer stands for: Plaid's own fields when the body is Plaid's error
    object, otherwise `INVALID_RESPONSE` (transient on 429/5xx, where proxies answer in HTML)."""
    fields: dict[str, Any] = {}
    if body:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            fields = parsed
    error_type, error_code = _text(fields.get("error_type")), _text(fields.get("error_code"))
    if error_type is None or error_code is None:
        retry = status == 429 or status >= 500
        return PlaidError(
            error_type=OUR_ERROR_TYPE,
            error_code=INVALID_RESPONSE,
            status=status,
            request_id=_text(fields.get("request_id")),
            endpoint=endpoint,
            error_class=PlaidErrorClass.PLAID_TRANSIENT if retry else PlaidErrorClass.UNEXPECTED,
        )
    return PlaidError(
        error_type=error_type,
        error_code=error_code,
        status=status,
        error_message=_text(fields.get("error_message")),
        display_message=_text(fields.get("display_message")),
        request_id=_text(fields.get("request_id")),
        error_code_reason=_text(fields.get("error_code_reason")),
        endpoint=endpoint,
    )


class CallFailed(Exception):
    """Raised inside the client when an answer is unusable; `error_from_exception` maps it.

    Carries only one of our codes and Plaid's request id, never the response body.
    """

    def __init__(self, code: str, *, status: int | None = None, request_id: str | None = None):
        super().__init__(code)
        self.code = code
        self.status = status
        self.request_id = request_id


def _ours(
    code: str, endpoint: str, status: int | None = None, request_id: str | None = None
) -> PlaidError:
    return PlaidError(
        error_type=OUR_ERROR_TYPE,
        error_code=code,
        status=status,
        request_id=request_id,
        endpoint=endpoint,
    )


def error_from_exception(exc: Exception, *, endpoint: str) -> PlaidError | None:
    """The `PlaidError` for anything a Plaid call can raise, or None for our own bugs.

    The one place where SDK and urllib3 exceptions are translated: Plaid's error answers keep
    Plaid's fields; timeouts become `TIMEOUT`, connection failures `NETWORK_ERROR` (both
    transient at Plaid); the SDK refusing our request before sending it is ours to fix.
    """
    if isinstance(exc, PlaidError):
        return exc
    if isinstance(exc, CallFailed):
        return _ours(exc.code, endpoint, exc.status, exc.request_id)
    if isinstance(exc, plaid.ApiException):
        if not exc.status:  # the SDK's own rendering of a TLS failure: no answer at all
            return _ours(NETWORK_ERROR, endpoint)
        return error_from_response(int(exc.status), exc.body, endpoint=endpoint)
    if isinstance(exc, plaid.OpenApiException):
        return _ours(SDK_VALIDATION_ERROR, endpoint)
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and isinstance(exc.reason, Exception):
        return error_from_exception(exc.reason, endpoint=endpoint) or _ours(NETWORK_ERROR, endpoint)
    if isinstance(exc, urllib3.exceptions.NewConnectionError):
        # A subclass of ConnectTimeoutError for compatibility, but a refusal, not a timeout.
        return _ours(NETWORK_ERROR, endpoint)
    if isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError):
        return _ours(TIMEOUT, endpoint)
    if isinstance(exc, urllib3.exceptions.HTTPError | OSError):
        return _ours(NETWORK_ERROR, endpoint)
    return None
