"""Every table, imported in one place so Alembic and the tests see the whole schema."""

from plaid_bridge.audit import AuditLog
from plaid_bridge.connections.models import PlaidAccount, PlaidConnection
from plaid_bridge.db import Base
from plaid_bridge.events import Event
from plaid_bridge.sync.models import SyncRequest, SyncRun
from plaid_bridge.transactions.models import PlaidTransaction
from plaid_bridge.webhooks.models import WebhookEvent

metadata = Base.metadata

__all__ = [
    "AuditLog",
    "Event",
    "PlaidAccount",
    "PlaidConnection",
    "PlaidTransaction",
    "SyncRequest",
    "SyncRun",
    "WebhookEvent",
    "metadata",
]
