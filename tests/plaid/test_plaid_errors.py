"""Classification of Plaid failures, from Plaid-shaped error bodies built here."""

from __future__ import annotations

import json
import pickle
from typing import Any

import plaid
import pytest
import urllib3.exceptions

from plaid_bridge.plaid.errors import (
    INVALID_RESPONSE,
    NETWORK_ERROR,
    OUR_ERROR_TYPE,
    SDK_VALIDATION_ERROR,
    TIMEOUT,
    PlaidError,
    PlaidErrorClass,
    classify,
    error_from_exception,
    error_from_response,
)

C = PlaidErrorClass
ENDPOINT = "/accounts/get"
ACCESS_TOKEN = "access-sandbox-0b1c2d3e-secret-token"
NO_POOL: Any = None  # urllib3 exceptions name the pool they came from; these come from none


def plaid_error_body(
    error_type: str,
    error_code: str,
    *,
    message: str = "something happened",
    display: str | None = None,
    reason: str | None = None,
    request_id: str = "req-123",
) -> bytes:
    """An error body shaped as Plaid sends it."""
    body: dict[str, Any] = {
        "error_type": error_type,
        "error_code": error_code,
        "error_code_reason": reason,
        "error_message": message,
        "display_message": display,
        "documentation_url": "https://plaid.com/docs/errors",
        "suggested_action": None,
        "request_id": request_id,
    }
    return json.dumps(body, indent=2).encode()


@pytest.mark.parametrize(
    ("status", "error_type", "error_code", "expected"),
    [
        (400, "ITEM_ERROR", "ITEM_LOGIN_REQUIRED", C.NEEDS_USER),
        (400, "ITEM_ERROR", "INVALID_CREDENTIALS", C.NEEDS_USER),
        (400, "ITEM_ERROR", "INVALID_MFA", C.NEEDS_USER),
        (400, "ITEM_ERROR", "INSUFFICIENT_CREDENTIALS", C.NEEDS_USER),
        (400, "RECAPTCHA_ERROR", "RECAPTCHA_REQUIRED", C.NEEDS_USER),
        (400, "ITEM_ERROR", "ITEM_LOCKED", C.USER_ACTION_AT_BANK),
        (400, "ITEM_ERROR", "USER_PERMISSION_REVOKED", C.REVOKED),
        (400, "INVALID_INPUT", "ITEM_NOT_FOUND", C.GONE),
        (400, "ITEM_ERROR", "ITEM_NOT_FOUND", C.GONE),
        (400, "INSTITUTION_ERROR", "INSTITUTION_DOWN", C.INSTITUTION_TRANSIENT),
        (400, "INSTITUTION_ERROR", "INSTITUTION_NOT_RESPONDING", C.INSTITUTION_TRANSIENT),
        (400, "INSTITUTION_ERROR", "INSTITUTION_NOT_AVAILABLE", C.INSTITUTION_TRANSIENT),
        (400, "INSTITUTION_ERROR", "INSTITUTION_NO_LONGER_SUPPORTED", C.UNEXPECTED),
        (500, "API_ERROR", "INTERNAL_SERVER_ERROR", C.PLAID_TRANSIENT),
        (503, "API_ERROR", "PLANNED_MAINTENANCE", C.PLAID_TRANSIENT),
        (429, "RATE_LIMIT_EXCEEDED", "ACCOUNTS_LIMIT", C.RATE_LIMITED),
        (429, "RATE_LIMIT_EXCEEDED", "INSTITUTION_RATE_LIMIT", C.RATE_LIMITED),
        (429, "RATE_LIMIT_EXCEEDED", "A_CODE_INVENTED_LATER", C.RATE_LIMITED),
        (429, "RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED", C.CREDITS_EXHAUSTED),
        (
            400,
            "TRANSACTIONS_ERROR",
            "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION",
            C.RESTART_SYNC,
        ),
        (400, "ITEM_ERROR", "PRODUCT_NOT_READY", C.NOT_READY),
        (400, "INVALID_REQUEST", "MISSING_FIELDS", C.OURS_TO_FIX),
        (400, "INVALID_INPUT", "INVALID_API_KEYS", C.OURS_TO_FIX),
        (400, "INVALID_INPUT", "INVALID_ACCESS_TOKEN", C.OURS_TO_FIX),
        (400, "INVALID_INPUT", "INVALID_FIELD", C.OURS_TO_FIX),
        (400, "ITEM_ERROR", "NO_ACCOUNTS", C.UNEXPECTED),
        (400, "SOME_NEW_TYPE", "SOME_NEW_CODE", C.UNEXPECTED),
        (502, "SOME_NEW_TYPE", "SOME_NEW_CODE", C.PLAID_TRANSIENT),
    ],
)
def test_plaid_error_bodies_are_classified_by_type_then_code(
    status: int, error_type: str, error_code: str, expected: PlaidErrorClass
) -> None:
    error = error_from_response(status, plaid_error_body(error_type, error_code), endpoint=ENDPOINT)
    assert error.error_class is expected
    assert (error.error_type, error.error_code, error.status) == (error_type, error_code, status)
    assert error.request_id == "req-123"
    assert error.from_plaid


def test_the_message_never_decides_the_class() -> None:
    misleading = plaid_error_body(
        "API_ERROR", "INTERNAL_SERVER_ERROR", message="ITEM_LOGIN_REQUIRED: sign in again"
    )
    assert error_from_response(500, misleading, endpoint=ENDPOINT).error_class is C.PLAID_TRANSIENT
    assert classify("ITEM_ERROR", "ITEM_LOGIN_REQUIRED") is C.NEEDS_USER


def test_all_of_plaids_fields_are_kept() -> None:
    body = plaid_error_body(
        "ITEM_ERROR",
        "ITEM_LOGIN_REQUIRED",
        message="the login details of this item have changed",
        display="Please sign in to your bank again.",
        reason="OAUTH_CONSENT_EXPIRED",
        request_id="abc",
    )
    error = error_from_response(400, body.decode(), endpoint="/item/get")
    assert error.error_message == "the login details of this item have changed"
    assert error.display_message == "Please sign in to your bank again."
    assert error.error_code_reason == "OAUTH_CONSENT_EXPIRED"
    assert error.endpoint == "/item/get"
    assert error.needs_reauth
    assert not error.retryable
    assert not error.transient


@pytest.mark.parametrize(
    ("error_class", "retryable", "transient", "needs_reauth"),
    [
        (C.PLAID_TRANSIENT, True, True, False),
        (C.RATE_LIMITED, True, True, False),
        (C.CREDITS_EXHAUSTED, False, False, False),
        (C.INSTITUTION_TRANSIENT, False, True, False),
        (C.NOT_READY, False, True, False),
        (C.RESTART_SYNC, False, True, False),
        (C.NEEDS_USER, False, False, True),
        (C.USER_ACTION_AT_BANK, False, False, False),
        (C.REVOKED, False, False, False),
        (C.GONE, False, False, False),
        (C.OURS_TO_FIX, False, False, False),
        (C.UNEXPECTED, False, False, False),
    ],
)
def test_what_each_class_allows(
    error_class: PlaidErrorClass, retryable: bool, transient: bool, needs_reauth: bool
) -> None:
    error = PlaidError(error_type="X", error_code="Y", error_class=error_class)
    assert (error.retryable, error.transient, error.needs_reauth) == (
        retryable,
        transient,
        needs_reauth,
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (502, b"<html><body>Bad Gateway</body></html>", C.PLAID_TRANSIENT),
        (503, b"", C.PLAID_TRANSIENT),
        (429, b"slow down", C.PLAID_TRANSIENT),
        (400, b"<html>nope</html>", C.UNEXPECTED),
        (400, b'{"error": "not plaid"}', C.UNEXPECTED),
        (500, b"[1, 2]", C.PLAID_TRANSIENT),
    ],
)
def test_answers_that_are_not_plaid_errors_become_invalid_response(
    status: int, body: bytes, expected: PlaidErrorClass
) -> None:
    error = error_from_response(status, body, endpoint=ENDPOINT)
    assert (error.error_type, error.error_code) == (OUR_ERROR_TYPE, INVALID_RESPONSE)
    assert error.error_class is expected
    assert not error.from_plaid


def _api_exception(status: int, body: str | None) -> plaid.ApiException:
    exception = plaid.ApiException(status=status, reason="Bad Request")
    exception.body = body
    return exception


@pytest.mark.parametrize(
    ("exception", "code", "error_class"),
    [
        (
            urllib3.exceptions.ReadTimeoutError(NO_POOL, "/x", "read timed out"),
            TIMEOUT,
            C.PLAID_TRANSIENT,
        ),
        (urllib3.exceptions.ConnectTimeoutError("connect timed out"), TIMEOUT, C.PLAID_TRANSIENT),
        (TimeoutError(), TIMEOUT, C.PLAID_TRANSIENT),
        (
            urllib3.exceptions.NewConnectionError(NO_POOL, "connection refused"),
            NETWORK_ERROR,
            C.PLAID_TRANSIENT,
        ),
        (
            urllib3.exceptions.ProtocolError("Connection aborted", ConnectionResetError()),
            NETWORK_ERROR,
            C.PLAID_TRANSIENT,
        ),
        (
            urllib3.exceptions.MaxRetryError(
                NO_POOL,
                "/x",
                urllib3.exceptions.ReadTimeoutError(NO_POOL, "/x", "read timed out"),
            ),
            TIMEOUT,
            C.PLAID_TRANSIENT,
        ),
        (
            urllib3.exceptions.MaxRetryError(
                NO_POOL,
                "/x",
                urllib3.exceptions.NewConnectionError(NO_POOL, "refused"),
            ),
            NETWORK_ERROR,
            C.PLAID_TRANSIENT,
        ),
        (ConnectionRefusedError(), NETWORK_ERROR, C.PLAID_TRANSIENT),
        (plaid.ApiException(status=0, reason="SSLError"), NETWORK_ERROR, C.PLAID_TRANSIENT),
        (plaid.ApiValueError("Invalid value for `count`"), SDK_VALIDATION_ERROR, C.OURS_TO_FIX),
        (plaid.ApiTypeError("Invalid type for variable"), SDK_VALIDATION_ERROR, C.OURS_TO_FIX),
    ],
)
def test_failures_without_a_plaid_answer_get_our_codes(
    exception: Exception, code: str, error_class: PlaidErrorClass
) -> None:
    error = error_from_exception(exception, endpoint=ENDPOINT)
    assert error is not None
    assert (error.error_type, error.error_code, error.error_class) == (
        OUR_ERROR_TYPE,
        code,
        error_class,
    )
    assert error.status is None


def test_an_sdk_api_exception_keeps_plaids_fields() -> None:
    body = plaid_error_body("RATE_LIMIT_EXCEEDED", "CREDITS_EXHAUSTED").decode()
    error = error_from_exception(_api_exception(429, body), endpoint=ENDPOINT)
    assert error is not None
    assert (error.status, error.error_code, error.error_class) == (
        429,
        "CREDITS_EXHAUSTED",
        C.CREDITS_EXHAUSTED,
    )


def test_our_own_bugs_are_not_disguised_as_plaid_errors() -> None:
    assert error_from_exception(KeyError("oops"), endpoint=ENDPOINT) is None
    assert error_from_exception(ZeroDivisionError(), endpoint=ENDPOINT) is None


def test_the_text_of_an_error_holds_no_token_or_secret() -> None:
    # Plaid never echoes a token, but even an answer that did must not leak through str().
    body = plaid_error_body(
        "INVALID_INPUT",
        "INVALID_ACCESS_TOKEN",
        message=f"provided access token {ACCESS_TOKEN} is invalid",
        display=ACCESS_TOKEN,
    )
    error = error_from_response(400, body, endpoint=ENDPOINT)
    rendered = [str(error), repr(error), *map(str, error.args)]
    assert all(ACCESS_TOKEN not in text for text in rendered)
    assert (
        str(error)
        == "/accounts/get: INVALID_INPUT/INVALID_ACCESS_TOKEN (HTTP 400, request req-123)"
    )


def test_an_error_survives_pickling() -> None:
    error = error_from_response(
        400, plaid_error_body("ITEM_ERROR", "ITEM_LOCKED"), endpoint=ENDPOINT
    )
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, PlaidError)
    assert (copy.error_code, copy.error_class, str(copy)) == (
        "ITEM_LOCKED",
        C.USER_ACTION_AT_BANK,
        str(error),
    )
