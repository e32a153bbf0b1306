"""Every Plaid error code the service gives a meaning to can be produced by the emulator, with the
error type the service expects for it: by fault injection and by a Sandbox `error_<CODE>` password.
"""

from __future__ import annotations

import pytest

from plaid_bridge import errors as http_errors
from plaid_bridge.connections import health_rules as health
from plaid_bridge.emulator.errors import CATALOGUE
from plaid_bridge.plaid import errors as plaid_errors
from tests.emulator.plaid_http import PlaidHTTP


def _service_codes() -> dict[str, set[str]]:
    """Each Plaid code the service names, with the error types it files the code under."""
    codes: dict[str, set[str]] = {}
    for error_type, (table, _default) in plaid_errors._BY_TYPE.items():
        if error_type == plaid_errors.OUR_ERROR_TYPE:
            continue
        for code in table:
            codes.setdefault(code, set()).add(error_type)
    our_codes = {
        plaid_errors.TIMEOUT,
        plaid_errors.NETWORK_ERROR,
        plaid_errors.INVALID_RESPONSE,
        plaid_errors.UNEXPECTED_RESPONSE,
        plaid_errors.SDK_VALIDATION_ERROR,
    }
    classes = {str(error_class) for error_class in plaid_errors.PlaidErrorClass}
    named_anywhere = (
        set(plaid_errors._ANY_TYPE)
        | (set(plaid_errors.MEANINGS) - classes - our_codes)
        | set(http_errors._MESSAGES)
        | health.CRITICAL_CODES
    )
    for code in named_anywhere:
        codes.setdefault(code, set())
    return codes


SERVICE_CODES = _service_codes()


def test_the_service_names_codes_and_the_emulator_knows_them_all() -> None:
    assert {"INVALID_UPDATED_USERNAME", "ACCESS_NOT_GRANTED", "INVALID_SEND_METHOD"} <= set(
        SERVICE_CODES
    )
    assert sorted(set(SERVICE_CODES) - set(CATALOGUE)) == []


@pytest.mark.parametrize("code", sorted(SERVICE_CODES))
def test_fault_with_every_service_code(plaid: PlaidHTTP, code: str) -> None:
    item = plaid.link_item()
    created = plaid.client.post(
        "/emulator/faults", json={"endpoint": "/item/get", "errorCode": code, "count": 1}
    )
    assert created.status_code == 201, created.text
    response = plaid.post("/item/get", {"access_token": item.access_token})
    error = response.json()
    kind = CATALOGUE[code]
    assert response.status_code == kind.status
    assert (error["error_type"], error["error_code"]) == (kind.error_type, code)
    assert error["error_message"]
    if SERVICE_CODES[code]:
        assert kind.error_type in SERVICE_CODES[code]
    # The service reads the answer as it reads the code in its own tables.
    meaning = plaid_errors.classify(error["error_type"], code, response.status_code)
    assert meaning is not plaid_errors.PlaidErrorClass.UNEXPECTED


@pytest.mark.parametrize("code", sorted(SERVICE_CODES))
def test_sandbox_error_password_with_every_service_code(plaid: PlaidHTTP, code: str) -> None:
    response = plaid.post(
        "/sandbox/public_token/create",
        {
            "institution_id": "ins_109508",
            "initial_products": ["transactions"],
            "options": {"override_username": "user_good", "override_password": f"error_{code}"},
        },
    )
    assert response.status_code == CATALOGUE[code].status
    assert response.json()["error_code"] == code
    assert plaid.control("GET", "/emulator/items")["items"] == []


def test_unknown_sandbox_error_password_names_the_field(plaid: PlaidHTTP) -> None:
    response = plaid.post(
        "/sandbox/public_token/create",
        {
            "institution_id": "ins_109508",
            "initial_products": ["transactions"],
            "options": {"override_password": "error_NOT_A_CODE"},
        },
    )
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_FIELD"
    assert "override_password" in response.json()["error_message"]
