"""The API description: served without a CDN, with the bearer scheme, and every answer a route
gives documented with its schema (errors with the envelope's)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import Api

pytestmark = pytest.mark.anyio

ENVELOPE = {"$ref": "#/components/schemas/ErrorEnvelope"}
# The development token endpoint (emulator mode only) is where a token comes from.
UNAUTHENTICATED = {"/healthz", "/readyz", "/metrics", "/api/v1/plaid/dev/token"}
WEBHOOKS = {"/api/v1/plaid/webhook", "/api/v1/integrations/plaid/webhook"}


async def _document(api: Api) -> dict[str, Any]:
    response = await api.client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


@pytest.mark.parametrize(
    ("page", "asset"),
    [("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")],
)
async def test_the_docs_pages_load_their_assets_from_the_service(
    api: Api, page: str, asset: str
) -> None:
    html = await api.client.get(page)
    assert html.status_code == 200
    sources = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html.text)
    assert f"/docs/static/{asset}" in sources
    assert [source for source in sources if "://" in source] == []  # nothing from a CDN
    for source in sources:
        loaded = await api.client.get(source)
        assert loaded.status_code == 200, source
    assert len((await api.client.get(f"/docs/static/{asset}")).content) > 100_000


async def test_bearer_scheme_on_every_authenticated_route(api: Api) -> None:
    document = await _document(api)
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT of the platform (`plaid-bridge dev-token` in development).",
    }
    for path, method, operation in _operations(document):
        open_route = path in UNAUTHENTICATED or path in WEBHOOKS
        assert ("security" in operation) is not open_route, (method, path)
        if not open_route:
            assert operation["security"] == [{"bearerAuth": []}]
            assert {"401", "429", "503"} <= set(operation["responses"]), (method, path)


async def test_errors_are_the_envelope_and_never_422(api: Api) -> None:
    document = await _document(api)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "ValidationError" not in schemas
    assert set(schemas["ErrorEnvelope"]["required"]) == {"error", "requestId"}
    assert set(schemas["ErrorOut"]["required"]) == {"code", "message", "needsReauth", "retryAfter"}
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        assert "422" not in responses, (method, path)
        for status, answer in responses.items():
            if int(status) >= 400:
                assert answer["content"]["application/json"]["schema"] == ENVELOPE, (
                    method,
                    path,
                    status,
                )
        if "parameters" in operation or "requestBody" in operation:
            assert "400" in responses, (method, path)
        if "requestBody" in operation:
            assert "413" in responses, (method, path)


async def test_every_success_says_what_its_body_is(api: Api) -> None:
    document = await _document(api)
    for path, method, operation in _operations(document):
        successes = {s: a for s, a in operation["responses"].items() if s.startswith("2")}
        assert len(successes) == 1, (method, path)
        (answer,) = successes.values()
        content = answer["content"]
        media = "text/plain" if path == "/metrics" else "application/json"
        assert content[media]["schema"] not in ({}, {"type": "object"}), (method, path)


async def test_routes_document_their_own_errors(api: Api) -> None:
    responses = {
        (method, path): set(operation["responses"])
        for path, method, operation in _operations(await _document(api))
    }
    base = "/api/v1/plaid"
    assert {"404", "409", "502"} <= responses["get", f"{base}/accounts/{{itemId}}"]
    assert {"403", "409", "502"} <= responses["post", f"{base}/exchange-token"]
    assert {"403", "404", "409"} <= responses["post", f"{base}/connections/{{itemId}}/sync"]
    assert {"400", "401", "413", "503"} <= responses["post", f"{base}/webhook"]
    assert "503" in responses["get", "/readyz"]
