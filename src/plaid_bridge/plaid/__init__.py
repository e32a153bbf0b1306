"""The only package that imports the `plaid` SDK: a typed async client, our error classes and
the small types the rest of the service sees instead of SDK models."""

from plaid_bridge.plaid.client import PLAID_VERSION, PlaidClient
from plaid_bridge.plaid.errors import PlaidError, PlaidErrorClass, classify
from plaid_bridge.plaid.types import (
    Account,
    Balances,
    Institution,
    LinkToken,
    PlaidErrorInfo,
    PlaidItem,
    PublicToken,
    RemovedTransaction,
    SyncPage,
    TokenExchange,
    Transaction,
    WebhookKey,
)

__all__ = [
    "PLAID_VERSION",
    "Account",
    "Balances",
    "Institution",
    "LinkToken",
    "PlaidClient",
    "PlaidError",
    "PlaidErrorClass",
    "PlaidErrorInfo",
    "PlaidItem",
    "PublicToken",
    "RemovedTransaction",
    "SyncPage",
    "TokenExchange",
    "Transaction",
    "WebhookKey",
    "classify",
]
