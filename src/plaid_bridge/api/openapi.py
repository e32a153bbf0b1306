"""The OpenAPI document as the service really answers: the error envelope (SPEC §4) for every
error a route gives, 400 where FastAPI would have said 422, and the bearer scheme on the routes
that need a token, so Swagger UI's Authorize button and "Try it out" work."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Security
from fastapi.openapi.utils import get_openapi
from fastapi.security import HTTPBearer
from pydantic import ConfigDict, Field

from plaid_bridge.api.schemas import CamelModel

__all__ = ["ErrorEnvelope", "answers", "bearer_scheme", "describe_api"]

BEARER = "bearerAuth"


class PlaidErrorOut(CamelModel):
    """What Plaid said, when the error is Plaid's."""

    error_type: str | None
    error_code: str | None
    display_message: str | None
    request_id: str | None


class ErrorOut(CamelModel):
    """One error; some codes add fields of their own (`itemId` of DUPLICATE_ITEM, `limit`)."""

    model_config = ConfigDict(extra="allow")
    code: str = Field(examples=["CONNECTION_NOT_FOUND"])
    message: str = Field(description="Safe to show end users; never holds a token.")
    needs_reauth: bool = Field(description="The user must sign in to the bank again (Link).")
    retry_after: int | None = Field(description="Seconds to wait, as `Retry-After` (429, 503).")
    plaid: PlaidErrorOut | None = Field(
        default=None, description="Present only when Plaid returned the error."
    )


class ErrorEnvelope(CamelModel):
    """The body of every error answer."""

    error: ErrorOut
    request_id: str | None = Field(description="Our request id, also in `X-Request-ID`.")


_MEANINGS = {
    400: "The request is not valid; the message names the field.",
    401: "The bearer token is missing, malformed, expired or not for this service.",
    403: "The caller's role is too low, or `userId` is not the caller.",
    404: "No such connection in the caller's org (another org's is not found either).",
    409: "The connection's state forbids this (needs re-auth, revoked, removed, duplicate).",
    413: "The request body is larger than `MAX_REQUEST_BYTES`.",
    429: "Too many requests (per user, or to Plaid); see `Retry-After`.",
    502: "Plaid failed or answered unexpectedly.",
    503: "The database, the bank or Plaid is unavailable for now; see `Retry-After`.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}


def answers(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for the error answers a route gives, each with the envelope's schema."""
    documented: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorEnvelope, "description": _MEANINGS[status]}
        if status in (429, 503):
            entry["headers"] = _RETRY_AFTER
        documented[status] = entry
    return documented


def _error_response(status: int) -> dict[str, Any]:
    return {
        "description": _MEANINGS[status],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}},
    }


bearer_scheme = Security(
    HTTPBearer(
        auto_error=False,
        scheme_name=BEARER,
        bearerFormat="JWT",
        description="A JWT of the platform (`plaid-bridge dev-token` in development).",
    )
)
"""Declares the bearer scheme on authenticated routes, so OpenAPI (and Swagger UI's Authorize
button) knows them. It checks nothing: the caller's authentication does, and refuses with 401."""


def describe_api(app: FastAPI) -> None:
    """Make `app.openapi()` the honest document: FastAPI's 422 and its HTTPValidationError are
    replaced by the 400 envelope, and every operation with a body may be answered 413."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        document = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            description=app.description,
            routes=app.routes,
        )
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        envelope = ErrorEnvelope.model_json_schema(
            by_alias=True, ref_template="#/components/schemas/{model}", mode="serialization"
        )
        schemas.update(envelope.pop("$defs", {}))
        schemas["ErrorEnvelope"] = envelope
        for operations in document["paths"].values():
            for operation in operations.values():
                responses = operation["responses"]
                if responses.pop("422", None) is not None:
                    responses.setdefault("400", _error_response(400))
                if "requestBody" in operation:
                    responses.setdefault("413", _error_response(413))
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]
