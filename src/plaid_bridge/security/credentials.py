"""Where a request's token comes from (the Authorization header, or a browser's cookie) and the
double-submit CSRF check that cookie authentication needs (SPEC section 3).

A browser attaches cookies to requests that another site makes it send, so a cookie alone proves
nothing about who wrote the request. For unsafe methods the caller must also echo the
`XSRF-TOKEN` cookie in the `X-XSRF-TOKEN` header, which only a page able to read that cookie
(the application's own origin) can do. A bearer header is never attached by the browser on its
own, so bearer requests need no such proof.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from plaid_bridge.security.auth import AuthError, AuthFailure

__all__ = [
    "CSRF_COOKIE",
    "CSRF_HEADER",
    "SAFE_METHODS",
    "CredentialSource",
    "Credentials",
    "CsrfError",
    "check_double_submit",
    "read_credentials",
]

CSRF_COOKIE = "XSRF-TOKEN"
CSRF_HEADER = "X-XSRF-TOKEN"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CredentialSource(StrEnum):
    BEARER = "bearer"
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True)
class Credentials:
    """The token a request presents and where it was found."""

    token: str
    source: CredentialSource


class CsrfError(Exception):
    """A cookie-authenticated unsafe request without the matching double-submit token;
    `reason` names what was wrong and never contains either value."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_credentials(
    headers: Mapping[str, str], cookies: Mapping[str, str], *, cookie_name: str | None
) -> Credentials:
    """The token from `Authorization: Bearer`, else from the cookie `cookie_name` (when
    configured). An Authorization header always wins, even a broken one: a request that sends
    one means it, and a stale cookie must not stand in for it.

    Raises `AuthError` (MISSING or MALFORMED) saying what the request lacks.
    """
    header = headers.get("authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            raise AuthError(
                AuthFailure.MISSING,
                "The Authorization header must use the Bearer scheme: Bearer <token>.",
            )
        token = token.strip()
        if not token:
            raise AuthError(
                AuthFailure.MISSING, "The Authorization header has no token after Bearer."
            )
        if " " in token:
            raise AuthError(
                AuthFailure.MALFORMED, "The token is malformed: it may not contain spaces."
            )
        return Credentials(token, CredentialSource.BEARER)
    if cookie_name:
        cookie = cookies.get(cookie_name, "").strip()
        if cookie:
            return Credentials(cookie, CredentialSource.COOKIE)
        raise AuthError(
            AuthFailure.MISSING,
            "Authentication is required: send Authorization: Bearer <token>, "
            f"or the {cookie_name} cookie.",
        )
    raise AuthError(
        AuthFailure.MISSING, "Authentication is required: send Authorization: Bearer <token>."
    )


def check_double_submit(headers: Mapping[str, str], cookies: Mapping[str, str]) -> None:
    """Refuse (`CsrfError`) unless the `X-XSRF-TOKEN` header equals the `XSRF-TOKEN` cookie,
    compared in constant time."""
    cookie = cookies.get(CSRF_COOKIE, "")
    header = headers.get(CSRF_HEADER.lower(), "")
    if not cookie:
        raise CsrfError(
            f"A cookie-authenticated request that changes data needs the {CSRF_COOKIE} cookie "
            f"and the same value in the {CSRF_HEADER} header; the cookie is missing."
        )
    if not header:
        raise CsrfError(
            f"A cookie-authenticated request that changes data needs the {CSRF_HEADER} header, "
            f"equal to the {CSRF_COOKIE} cookie; the header is missing."
        )
    if not hmac.compare_digest(header.encode("utf-8"), cookie.encode("utf-8")):
        raise CsrfError(f"The {CSRF_HEADER} header does not match the {CSRF_COOKIE} cookie.")
