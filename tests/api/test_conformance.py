"""The live API against its own OpenAPI document (schemathesis), as an OWNER, a VIEWER and an
OWNER of another org, with the emulator behind the service and a linked Item with transactions.

Checked for every response: no 5xx, a status the operation documents, the documented media type,
a body that conforms to the documented schema. The other org's caller must never see the Item:
404 on its paths, nothing when filtering by it, and its id in no answer at all. Bounded: a few
examples per operation, role and generation mode, derandomized so a failure reproduces.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from plaid_bridge.app import create_app
from plaid_bridge.config import Settings
from plaid_bridge.emulator import EmulatorServer
from plaid_bridge.security.auth import issue_dev_token
from plaid_bridge.serving import BackgroundServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 4
ROLES = {  # name: (org, role): every role of the Item's org, and an owner of another org
    "owner": ("org-a", "OWNER"),
    "admin": ("org-a", "ADMIN"),
    "manager": ("org-a", "MANAGER"),
    "member": ("org-a", "MEMBER"),
    "viewer": ("org-a", "VIEWER"),
    "other-org": ("org-b", "OWNER"),
}
_users = itertools.count()


@pytest.fixture
def live_api(settings: Settings) -> Iterator[str]:
    """The app served over loopback as in production: services and worker from its lifespan.
    A call over Plaid's limits is refused at once (429) instead of waiting for a slot."""
    served = settings.model_copy(update={"plaid_rate_limit_max_wait_seconds": 0.0})
    with BackgroundServer() as server:
        server.serve(create_app(served), name="api")
        yield server.url


def _token(settings: Settings, role: str) -> str:
    # A fresh user per request: the per-user limits must not turn the run into 429s.
    org, claim = ROLES[role]
    return issue_dev_token(settings, user=f"user-{next(_users)}", org=org, role=claim)


def _link_item(api_url: str, emulator: EmulatorServer, settings: Settings) -> str:
    """An Item of org-a linked through the API, once its transactions are stored."""
    created = httpx.post(
        f"{emulator.url}/sandbox/public_token/create",
        json={
            "client_id": settings.emulator_client_id,
            "secret": settings.emulator_secret.get_secret_value(),
            "institution_id": "ins_109508",
            "initial_products": ["transactions"],
        },
        timeout=15,
    )
    created.raise_for_status()
    headers = {"Authorization": f"Bearer {_token(settings, 'owner')}"}
    exchanged = httpx.post(
        f"{api_url}/api/v1/plaid/exchange-token",
        json={"publicToken": created.json()["public_token"]},
        headers=headers,
        timeout=30,
    )
    assert exchanged.status_code == 201, exchanged.text
    item_id: str = exchanged.json()["itemId"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stored = httpx.get(
            f"{api_url}/api/v1/plaid/transactions",
            params={"itemId": item_id},
            headers={"Authorization": f"Bearer {_token(settings, 'owner')}"},
            timeout=15,
        )
        if stored.status_code == 200 and stored.json()["transactions"]:
            return item_id
        time.sleep(0.1)
    raise AssertionError("the Item's transactions were not stored within 60 s")


def _strategies(operation: Any, item_id: str, role: str) -> list[tuple[str, Any]]:
    """Generated input, positive and (as the owner, the others would repeat it) negative, and
    positive input aimed at the linked Item."""
    aimed: dict[str, Any] = {}
    parameters = {parameter.name for parameter in operation.iter_parameters()}
    if "itemId" in operation.path:
        aimed["path_parameters"] = {"itemId": item_id}
    elif "itemId" in parameters:
        aimed["query"] = {"itemId": item_id}
    strategies = [("positive", operation.as_strategy(generation_mode=GenerationMode.POSITIVE))]
    if role == "owner":
        negative = operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
        strategies.append(("negative", negative))
    if aimed:
        strategies.append(
            ("the Item", operation.as_strategy(generation_mode=GenerationMode.POSITIVE, **aimed))
        )
    return strategies


def _run(strategy: Any, examples: int, test: Callable[[Any], None]) -> None:
    """Up to `examples` cases of `strategy` through `test`; none when no case can be made (a
    negative case for an operation that takes no input)."""

    @given(case=strategy)
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        test(case)

    try:
        run()
    except Unsatisfiable:
        pass


@pytest.mark.slow
def test_the_api_keeps_its_openapi_document(
    live_api: str, emulator: EmulatorServer, settings: Settings
) -> None:
    item_id = _link_item(live_api, emulator, settings)
    schema = schemathesis.openapi.from_url(f"{live_api}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the document itself is valid
        operations.append(result.ok())
    # Removing the Item comes last, so every other operation meets it linked.
    operations.sort(key=lambda operation: operation.method.upper() == "DELETE")
    assert len(operations) >= 17
    seen: dict[str, set[int]] = {}

    for operation, role in itertools.product(operations, ROLES):
        for mode, strategy in _strategies(operation, item_id, role):

            def check(
                case: Any, role: str = role, mode: str = mode, name: str = operation.label
            ) -> None:
                headers = {"Authorization": f"Bearer {_token(settings, role)}"}
                response = case.call(base_url=live_api, headers=headers, timeout=30)
                case.validate_response(response, checks=CHECKS, headers=headers)
                label = f"{name} as {role} ({mode})"
                seen.setdefault(label, set()).add(response.status_code)
                if role == "other-org":
                    assert item_id not in response.text, label
                    if mode == "the Item" and "{itemId}" in name:
                        assert response.status_code == 404, (label, response.text)

            _run(strategy, EXAMPLES, check)

    # The run reached the Item's data, not only refusals.
    feed = "GET /api/v1/plaid/transactions/{itemId}/sync"
    assert 200 in seen[f"{feed} as viewer (the Item)"]
    assert 200 in seen["GET /api/v1/plaid/accounts/{itemId} as owner (the Item)"]
