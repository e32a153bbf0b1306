"""Contract fixtures: Plaid's OpenAPI spec, loaded once, and an emulator per test module.

The spec lives outside the repository (`$PLAID_OPENAPI_SPEC`, else
`../shared/plaid-openapi/2020-09-14.yml`); without it every contract test is skipped.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plaid_bridge.emulator import EmulatorConfig, EmulatorServer
from tests.contract.emulator_wire import HISTORY, EmulatorWire
from tests.contract.plaid_spec import MISSING_SPEC, PlaidSpec, spec_location


@pytest.fixture(scope="session")
def plaid_spec() -> PlaidSpec:
    path = spec_location()
    if not path.is_file():
        pytest.skip(f"{MISSING_SPEC} (looked at {path})")
    return PlaidSpec.load(path)


@pytest.fixture(scope="module")
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(seed=3, transactions=HISTORY), port=0) as server:
        yield server


@pytest.fixture
def wire(emulator: EmulatorServer, plaid_spec: PlaidSpec) -> Iterator[EmulatorWire]:
    """Raw access to the module's emulator; faults are cleared before and after each test."""
    connection = EmulatorWire(emulator.url, plaid_spec)
    connection.control("DELETE", "/emulator/faults")
    yield connection
    connection.control("DELETE", "/emulator/faults")
    connection.close()
