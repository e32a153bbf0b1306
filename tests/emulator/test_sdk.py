"""The official plaid-python SDK accepts the emulator as Plaid, default deserialisation included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from plaid import ApiClient, ApiException, Configuration
from plaid.api import plaid_api
from plaid.model.accounts_balance_get_request import AccountsBalanceGetRequest
from plaid.model.country_code import CountryCode
from plaid.model.institutions_get_by_id_request import InstitutionsGetByIdRequest
from plaid.model.item_get_request import ItemGetRequest
from plaid.model.item_public_token_exchange_request import ItemPublicTokenExchangeRequest
from plaid.model.link_token_create_request import LinkTokenCreateRequest
from plaid.model.link_token_create_request_user import LinkTokenCreateRequestUser
from plaid.model.products import Products
from plaid.model.sandbox_public_token_create_request import SandboxPublicTokenCreateRequest
from plaid.model.sandbox_public_token_create_request_options import (
    SandboxPublicTokenCreateRequestOptions,
)
from plaid.model.transactions_sync_request import TransactionsSyncRequest

from plaid_bridge.emulator import EmulatorConfig
from tests.emulator.conftest import EmulatorPool
from tests.emulator.plaid_http import CLIENT_ID, SECRET, UNREACHABLE_WEBHOOK


@pytest.fixture
def sdk(emulator_pool: EmulatorPool) -> Iterator[plaid_api.PlaidApi]:
    server = emulator_pool.get(EmulatorConfig(transactions=600))
    configuration = Configuration(
        host=server.url,
        api_key={"clientId": CLIENT_ID, "secret": SECRET, "plaidVersion": "2020-09-14"},
    )
    with ApiClient(configuration) as api_client:
        yield plaid_api.PlaidApi(api_client)


def link(sdk: plaid_api.PlaidApi) -> str:
    public = sdk.sandbox_public_token_create(
        SandboxPublicTokenCreateRequest(
            institution_id="ins_109508",
            initial_products=[Products("transactions")],
            options=SandboxPublicTokenCreateRequestOptions(webhook=UNREACHABLE_WEBHOOK),
        )
    )
    exchanged = sdk.item_public_token_exchange(
        ItemPublicTokenExchangeRequest(public_token=public.public_token)
    )
    assert exchanged.access_token.startswith("access-sandbox-")
    return str(exchanged.access_token)


def test_a_500_transaction_page_deserialises_through_the_sdk(sdk: plaid_api.PlaidApi) -> None:
    access_token = link(sdk)
    first = sdk.transactions_sync(TransactionsSyncRequest(access_token=access_token))
    assert first.transactions_update_status.value == "NOT_READY"
    page = sdk.transactions_sync(TransactionsSyncRequest(access_token=access_token, count=500))
    assert len(page.added) == 500
    assert page.has_more is True
    assert page.added[0].transaction_id
    assert {a.account_id for a in page.accounts} >= {t.account_id for t in page.added}


def test_link_item_accounts_and_institution_through_the_sdk(sdk: plaid_api.PlaidApi) -> None:
    token = sdk.link_token_create(
        LinkTokenCreateRequest(
            client_name="Operate",
            language="en",
            country_codes=[CountryCode("US")],
            user=LinkTokenCreateRequestUser(client_user_id="user-1"),
            products=[Products("transactions")],
        )
    )
    assert token.link_token.startswith("link-sandbox-")
    access_token = link(sdk)
    item = sdk.item_get(ItemGetRequest(access_token=access_token))
    assert item.item.institution_id == "ins_109508"
    assert item.status.transactions.last_successful_update is not None
    balances = sdk.accounts_balance_get(AccountsBalanceGetRequest(access_token=access_token))
    assert all(account.balances.current is not None for account in balances.accounts)
    institution = sdk.institutions_get_by_id(
        InstitutionsGetByIdRequest(institution_id="ins_109508", country_codes=[CountryCode("US")])
    )
    assert institution.institution.name == "First Platypus Bank"


def test_errors_reach_the_sdk_as_api_exceptions(sdk: plaid_api.PlaidApi) -> None:
    with pytest.raises(ApiException) as caught:
        sdk.item_get(ItemGetRequest(access_token="access-sandbox-unknown"))
    assert caught.value.status == 400
    assert '"INVALID_ACCESS_TOKEN"' in caught.value.body
