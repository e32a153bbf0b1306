"""Plaid's OpenAPI spec as a checker: exchanges, request bodies and component schemas.

The spec is Plaid's file, read where it lies (never copied into the repository). Checks return
readable problems ("$.added[0].payment_channel: 'x' is not one of [...]") instead of raising, so
a test can assert that a body conforms (`assert not errors`) or that a tampered one does not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import yaml
from jsonschema_path import SchemaPath
from openapi_core.testing import MockRequest, MockResponse
from openapi_core.validation.request.validators import (
    V30RequestBodyValidator,
    V30RequestValidator,
)
from openapi_core.validation.response.validators import V30ResponseValidator
from openapi_core.validation.schemas import oas30_read_schema_validators_factory
from openapi_core.validation.schemas.exceptions import InvalidSchemaValue

SPEC_ENV = "PLAID_OPENAPI_SPEC"
# <repo>/../shared/plaid-openapi/: beside the repository, not in it.
DEFAULT_SPEC = Path(__file__).parents[2].parent / "shared" / "plaid-openapi" / "2020-09-14.yml"
MISSING_SPEC = (
    "Plaid's OpenAPI spec not found: set PLAID_OPENAPI_SPEC or place "
    "../shared/plaid-openapi/2020-09-14.yml"
)
# The longest message kept per problem: jsonschema quotes whole instances (a 500-item page).
_MESSAGE_LIMIT = 240


def spec_location() -> Path:
    """Where the spec should be: `$PLAID_OPENAPI_SPEC`, else beside the repository."""
    configured = os.environ.get(SPEC_ENV)
    return Path(configured) if configured else DEFAULT_SPEC


def _shorten(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _schema_problems(errors: Any) -> list[str]:
    problems: list[str] = []
    for error in errors:
        problems.append(f"{error.json_path}: {_shorten(error.message)}")
        # anyOf/oneOf failures: say why each alternative was refused.
        problems.extend(f"  {line}" for line in _schema_problems(error.context or ()))
    return problems


def describe(error: BaseException) -> list[str]:
    """openapi-core wraps the schema errors (InvalidData -> InvalidSchemaValue -> jsonschema
    errors); unwrap them into one line per problem, or the error itself if it has none."""
    cause: BaseException | None = error
    while cause is not None:
        schema_errors = getattr(cause, "schema_errors", None)
        if schema_errors:
            return _schema_problems(schema_errors)
        cause = cause.__cause__
    return [f"{type(error).__name__}: {_shorten(str(error) or repr(error))}"]


def _json_bytes(body: bytes | Mapping[str, Any]) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


class PlaidSpec:
    """Validators for Plaid's spec, built once (loading the 3 MB file takes about 1.5 s).

    Requests are checked with undeclared properties forbidden where a schema does not say
    otherwise, because Plaid refuses unknown request fields (UNKNOWN_FIELDS); responses and
    webhooks follow the spec's own rules, which let Plaid add fields. (Forbidding is not
    applied to responses: openapi-core then flags every property of an `allOf` part, e.g.
    /item/get's `item`, so it would report false problems there.)
    """

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        spec = SchemaPath.from_dict(document)
        self._spec = spec
        self._request = V30RequestValidator(spec, forbid_unspecified_additional_properties=True)
        self._request_body = V30RequestBodyValidator(
            spec, forbid_unspecified_additional_properties=True
        )
        self._response = V30ResponseValidator(spec)
        self._schemas: dict[str, Any] = {}

    @classmethod
    def load(cls, path: Path) -> PlaidSpec:
        """Reads the spec as is, except `servers`: Plaid's hosts become "/", so an exchange is
        matched on its path alone wherever the emulator listens."""
        with path.open("rb") as handle:
            document = yaml.load(handle, Loader=yaml.CSafeLoader)
        document["servers"] = [{"url": "/"}]
        return cls(document)

    def schema_names(self) -> set[str]:
        return set(self.document["components"]["schemas"])

    def property_enum(self, schema: str, prop: str) -> list[Any]:
        """The values `components/schemas/<schema>` allows for `prop` (declared inline)."""
        values: list[Any] = self.document["components"]["schemas"][schema]["properties"][prop][
            "enum"
        ]
        return values

    def request_errors(
        self,
        path: str,
        body: bytes | Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Problems of a POST to `path` against its requestBody schema; with `headers`, also
        against the security scheme (PLAID-CLIENT-ID, PLAID-SECRET, Plaid-Version headers).
        Without them only the body is checked: the SDK's bodies carry no credentials, and
        bodies that do are legal though the security scheme names only the headers."""
        request = MockRequest(
            "http://emulator",
            "post",
            path,
            headers=dict(headers) if headers is not None else None,
            data=_json_bytes(body),
        )
        validator = self._request if headers is not None else self._request_body
        found = validator.iter_errors(request)
        return [line for error in found for line in describe(error)]

    def response_errors(
        self,
        path: str,
        status: int,
        body: bytes | Mapping[str, Any],
        content_type: str = "application/json",
    ) -> list[str]:
        """Problems of an answer to a POST to `path`: 200 against the path's success schema,
        any other status against its `default` (PlaidError)."""
        request = MockRequest("http://emulator", "post", path)
        response = MockResponse(_json_bytes(body), status_code=status, content_type=content_type)
        return [
            line
            for error in self._response.iter_errors(request, response)
            for line in describe(error)
        ]

    def exchange_errors(self, response: httpx.Response) -> list[str]:
        """Problems of a real exchange, from the exact bytes sent and received: the request
        (security included when credentials came as headers) and the response."""
        request = response.request
        path = request.url.path
        headers = request.headers if "plaid-client-id" in request.headers else None
        problems = [
            f"request {line}" for line in self.request_errors(path, request.content, headers)
        ]
        content_type = response.headers.get("content-type", "")
        problems += [
            f"response {line}"
            for line in self.response_errors(
                path, response.status_code, response.content, content_type
            )
        ]
        return problems

    def schema_errors(self, name: str, value: Any) -> list[str]:
        """Problems of `value` against `components/schemas/<name>` (webhook bodies)."""
        validator = self._schemas.get(name)
        if validator is None:
            schema = self._spec / "components" / "schemas" / name
            validator = oas30_read_schema_validators_factory.create(self._spec, schema)
            self._schemas[name] = validator
        try:
            validator.validate(value)
        except InvalidSchemaValue as error:
            return describe(error)
        return []
