"""Plaid's errors as the emulator renders them: type, HTTP status and messages per error code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DOCS = "https://plaid.com/docs/errors"


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """What Plaid answers for one error code."""

    error_type: str
    status: int
    message: str
    display_message: str | None
    docs_section: str


def _kinds(
    error_type: str, status: int, section: str, entries: dict[str, tuple[str, str | None]]
) -> dict[str, ErrorKind]:
    return {
        code: ErrorKind(error_type, status, message, display, section)
        for code, (message, display) in entries.items()
    }


_RETRY_LATER = "Too many requests were made. Please try again later."

CATALOGUE: dict[str, ErrorKind] = {
    **_kinds(
        "INVALID_REQUEST",
        400,
        "invalid-request",
        {
            "MISSING_FIELDS": ("the following required fields are missing", None),
            "INVALID_FIELD": ("one or more of the provided fields is invalid", None),
            "INVALID_BODY": ("body could not be parsed as JSON", None),
            "INVALID_HEADERS": ("one or more of the provided headers is invalid", None),
            "UNKNOWN_FIELDS": ("the request contained fields that are not recognised", None),
            "SANDBOX_ONLY": ("access to this endpoint is only available in sandbox", None),
        },
    ),
    "NOT_FOUND": ErrorKind("INVALID_REQUEST", 404, "not found", None, "invalid-request"),
    **_kinds(
        "INVALID_INPUT",
        400,
        "invalid-input",
        {
            "INVALID_API_KEYS": ("invalid client_id or secret provided", None),
            "INVALID_ACCESS_TOKEN": ("provided access token is invalid or unknown", None),
            "INVALID_PUBLIC_TOKEN": (
                "provided public token is expired or has already been exchanged",
                None,
            ),
            "INVALID_LINK_TOKEN": ("provided link token is invalid or expired", None),
            "INVALID_INSTITUTION": ("invalid institution_id provided", None),
            "INVALID_ACCOUNT_ID": ("one or more of the account IDs is invalid", None),
            "INVALID_PRODUCT": ("one or more of the requested products is invalid", None),
            "INVALID_WEBHOOK_VERIFICATION_KEY_ID": ("invalid key_id provided", None),
        },
    ),
    **_kinds(
        "ITEM_ERROR",
        400,
        "item",
        {
            "ITEM_LOGIN_REQUIRED": (
                "the login details of this item have changed (credentials, MFA, or required "
                "user action) and a user login is required to update this information. use "
                "Link's update mode to restore the item to a good state",
                "To keep your account connected, please sign in to your bank again.",
            ),
            "ITEM_NOT_FOUND": ("the requested item was not found", None),
            "INVALID_CREDENTIALS": (
                "the provided credentials were not correct",
                "The credentials you provided were incorrect. Check that they are correct.",
            ),
            "INVALID_MFA": (
                "the provided MFA responses were not correct",
                "The security answers you provided were incorrect.",
            ),
            "INSUFFICIENT_CREDENTIALS": (
                "insufficient authorization was provided to complete the request",
                "The authorization flow was not completed.",
            ),
            "ITEM_LOCKED": (
                "the account is locked. prompt the user to visit the institution's site and "
                "unlock their account",
                "Your account is locked. Visit your bank's website to unlock it.",
            ),
            "USER_PERMISSION_REVOKED": (
                "the user has revoked access to this item",
                "Access to this account was revoked. Connect it again to continue.",
            ),
            "PRODUCT_NOT_READY": (
                "the requested product is not yet ready. please provide a webhook or try the "
                "request again later",
                None,
            ),
            "NO_ACCOUNTS": (
                "no valid accounts were found for this item",
                "No valid accounts were found at the bank.",
            ),
            "ITEM_NOT_SUPPORTED": ("this item is not supported by plaid", None),
            "PRODUCTS_NOT_SUPPORTED": ("the item does not support the requested products", None),
            "INVALID_UPDATED_USERNAME": (
                "the username entered in update mode does not match the one the item was "
                "created with",
                "Enter your bank username again. If you changed it recently, connect the "
                "account again.",
            ),
            "INVALID_SEND_METHOD": (
                "the institution did not accept the method chosen to send the MFA code",
                None,
            ),
            "ACCESS_NOT_GRANTED": (
                "the user did not grant the permissions this item needs",
                "This app needs access to your account. Grant access and try again.",
            ),
            "USER_SETUP_REQUIRED": (
                "the account is not fully set up. prompt the user to finish the setup on the "
                "institution's site",
                "Your account is not fully set up. Finish the setup on your bank's website.",
            ),
            "PASSWORD_RESET_REQUIRED": (
                "the user must reset their password at the institution",
                "Reset your password on your bank's website, then try again.",
            ),
        },
    ),
    **_kinds(
        "INSTITUTION_ERROR",
        400,
        "institution",
        {
            "INSTITUTION_DOWN": (
                "this institution is not currently responding to this request. please try "
                "again soon",
                "This bank is experiencing technical difficulties. Please try again later.",
            ),
            "INSTITUTION_NOT_RESPONDING": (
                "this institution is not currently responding to this request. please try "
                "again soon",
                "This bank is experiencing technical difficulties. Please try again later.",
            ),
            "INSTITUTION_NOT_AVAILABLE": (
                "this institution is not currently available",
                "This bank is not currently available. Please try again later.",
            ),
            "INSTITUTION_NO_LONGER_SUPPORTED": (
                "this institution is no longer supported",
                "This bank is no longer supported.",
            ),
        },
    ),
    "INTERNAL_SERVER_ERROR": ErrorKind(
        "API_ERROR",
        500,
        "an unexpected error occurred",
        "Something went wrong. Please try again later.",
        "api",
    ),
    "PLANNED_MAINTENANCE": ErrorKind(
        "API_ERROR",
        503,
        "the Plaid API is undergoing planned maintenance",
        "This service is temporarily unavailable. Please try again later.",
        "api",
    ),
    **_kinds(
        "RATE_LIMIT_EXCEEDED",
        429,
        "rate-limit-exceeded",
        dict.fromkeys(
            (
                "ACCOUNTS_LIMIT",
                "ACCOUNTS_BALANCE_GET_LIMIT",
                "ADDITION_LIMIT",
                "AUTH_LIMIT",
                "BALANCE_LIMIT",
                "IDENTITY_LIMIT",
                "INSTITUTIONS_GET_LIMIT",
                "INSTITUTIONS_GET_BY_ID_LIMIT",
                "INSTITUTION_RATE_LIMIT",
                "ITEM_GET_LIMIT",
                "RATE_LIMIT",
                "TRANSACTIONS_LIMIT",
                "TRANSACTIONS_SYNC_LIMIT",
                "TRANSACTIONS_REFRESH_LIMIT",
            ),
            ("rate limit exceeded for this endpoint", _RETRY_LATER),
        ),
    ),
    "CREDITS_EXHAUSTED": ErrorKind(
        "RATE_LIMIT_EXCEEDED",
        429,
        "the free allowance of API calls for this product has been used up",
        None,
        "rate-limit-exceeded",
    ),
    "TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION": ErrorKind(
        "TRANSACTIONS_ERROR",
        400,
        "underlying transaction data changed since the last page was fetched. please restart "
        "pagination from the last update",
        None,
        "transactions",
    ),
    **_kinds(
        "RECAPTCHA_ERROR",
        400,
        "recaptcha",
        {
            "RECAPTCHA_REQUIRED": (
                "this request requires additional verification. please resubmit the request "
                "after completing the reCAPTCHA",
                "Please complete the verification to continue.",
            ),
            "RECAPTCHA_BAD": (
                "the reCAPTCHA challenge response was not accepted",
                "The verification did not succeed. Please try again.",
            ),
        },
    ),
}

# The code Plaid answers with, per endpoint, when its rate limit is exceeded.
RATE_LIMIT_CODES: dict[str, str] = {
    "/transactions/sync": "TRANSACTIONS_SYNC_LIMIT",
    "/transactions/refresh": "TRANSACTIONS_REFRESH_LIMIT",
    "/transactions/get": "TRANSACTIONS_LIMIT",
    "/accounts/get": "ACCOUNTS_LIMIT",
    "/accounts/balance/get": "BALANCE_LIMIT",
    "/item/get": "ITEM_GET_LIMIT",
    "/auth/get": "AUTH_LIMIT",
    "/identity/get": "IDENTITY_LIMIT",
    "/institutions/get": "INSTITUTIONS_GET_LIMIT",
    "/institutions/get_by_id": "INSTITUTIONS_GET_BY_ID_LIMIT",
}


class PlaidAPIError(Exception):
    """A failure the emulator answers the way Plaid would: a known code, its type and status.

    `message` replaces the catalogue's developer message (e.g. to name a field); `status`
    overrides Plaid's status (control endpoints answer 404 for unknown Items).
    """

    def __init__(
        self,
        code: str,
        message: str | None = None,
        *,
        reason: str | None = None,
        status: int | None = None,
    ) -> None:
        kind = CATALOGUE[code]
        super().__init__(f"{code}: {message or kind.message}")
        self.code = code
        self.kind = kind
        self.message = message or kind.message
        self.reason = reason
        self.status = status or kind.status

    def body(self, request_id: str) -> dict[str, Any]:
        """The error as Plaid's JSON body (PlaidError schema), nullable fields null."""
        return {
            "error_type": self.kind.error_type,
            "error_code": self.code,
            "error_code_reason": self.reason,
            "error_message": self.message,
            "display_message": self.kind.display_message,
            "documentation_url": f"{DOCS}/{self.kind.docs_section}/#{self.code.lower()}",
            "suggested_action": None,
            "request_id": request_id,
        }


def item_error(code: str, request_id: str) -> dict[str, Any]:
    """An error object as Plaid embeds it in an Item and in ITEM/ERROR webhooks."""
    body = PlaidAPIError(code).body(request_id)
    body["status"] = CATALOGUE[code].status
    return body


def fault_error(code: str, endpoint: str) -> PlaidAPIError:
    """The error an injected fault produces; RATE_LIMIT_EXCEEDED becomes the endpoint's code."""
    if code == "RATE_LIMIT_EXCEEDED":
        code = RATE_LIMIT_CODES.get(endpoint, "RATE_LIMIT")
    return PlaidAPIError(code)


SANDBOX_ERROR_PASSWORD_PREFIX = "error_"


def sandbox_password_error(password: str | None) -> PlaidAPIError | None:
    """The error a Sandbox password `error_<CODE>` asks for, None for any other password.

    Any code of the catalogue works; an unknown one is refused naming the field, so a typo is not
    mistaken for a successful link.
    """
    if not password or not password.startswith(SANDBOX_ERROR_PASSWORD_PREFIX):
        return None
    code = password.removeprefix(SANDBOX_ERROR_PASSWORD_PREFIX)
    if code not in CATALOGUE:
        return PlaidAPIError("INVALID_FIELD", f"override_password: unknown error code {code}")
    return PlaidAPIError(code)


def is_fault_code(code: str) -> bool:
    """Whether a fault may be registered with this error code."""
    return code == "RATE_LIMIT_EXCEEDED" or code in CATALOGUE
