"""Everything one emulator instance remembers: Items, tokens, faults, calls and webhooks.

All mutation happens on the server's event loop (handlers never await between reading and
writing shared state, except around the history generation of a new Item, which is pure and
runs in a worker thread), so no locks are needed.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio.to_thread

from plaid_bridge.emulator.config import EmulatorConfig
from plaid_bridge.emulator.data import generate_item, item_rng, plaid_id, plaid_uuid
from plaid_bridge.emulator.errors import PlaidAPIError, item_error
from plaid_bridge.emulator.faults import FaultRegistry
from plaid_bridge.emulator.institutions import Institution
from plaid_bridge.emulator.items import Item, iso
from plaid_bridge.emulator.ledger import CursorCodec, Ledger
from plaid_bridge.emulator.signer import KeyRing
from plaid_bridge.emulator.webhooks import WebhookSender

MAX_CALLS = 10_000
LINK_TOKEN_LIFETIME = timedelta(hours=4)
PUBLIC_TOKEN_LIFETIME = timedelta(minutes=30)
# Histories at least this long are generated off the event loop.
_THREAD_THRESHOLD = 2_000
_REQUEST_ID_ALPHABET = string.ascii_letters + string.digits


def request_id() -> str:
    """A Plaid-like request id (15 alphanumerics)."""
    return "".join(secrets.choice(_REQUEST_ID_ALPHABET) for _ in range(15))


@dataclass(slots=True)
class LinkToken:
    """A link token: new mode (`item_id` None) or update mode for one Item."""

    token: str
    expiration: datetime
    item_id: str | None
    products: list[str]
    webhook: str | None
    account_selection_enabled: bool


LinkMode = Literal["new", "update"]


@dataclass(slots=True)
class LinkSession:
    """One opening of Link with one link token, from start to success or exit."""

    link_session_id: str
    link_token: str
    mode: LinkMode
    started_at: datetime
    item_id: str | None = None  # the update-mode Item, or the Item a new-mode login created
    institution_id: str | None = None
    account_ids: list[str] = field(default_factory=list)  # the accounts shared, once finished
    public_token: str | None = None
    error_code: str | None = None  # the last error the user met
    outcome: Literal["success", "exit"] | None = None
    exit_status: str | None = None
    finished_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        """The session as the control API shows it (camelCase, like every control answer)."""
        return {
            "linkSessionId": self.link_session_id,
            "mode": self.mode,
            "itemId": self.item_id,
            "institutionId": self.institution_id,
            "accountIds": list(self.account_ids),
            "errorCode": self.error_code,
            "outcome": self.outcome,
            "exitStatus": self.exit_status,
            "startedAt": self.started_at.isoformat().replace("+00:00", "Z"),
        }


@dataclass(slots=True)
class PublicToken:
    token: str
    item_id: str
    expiration: datetime
    used: bool = False


class EmulatorState:
    """The emulator's memory and the operations that change it."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.today = config.today or datetime.now(UTC).date()
        self.keys = KeyRing()
        self.webhooks = WebhookSender(self.keys)
        self.faults = FaultRegistry()
        self.cursors = CursorCodec(
            hashlib.sha256(f"emulator-cursor:{config.seed}".encode()).digest()
        )
        self.items: dict[str, Item] = {}
        self.by_token: dict[str, Item] = {}
        self.public_tokens: dict[str, PublicToken] = {}
        self.link_tokens: dict[str, LinkToken] = {}
        self.link_sessions: dict[str, LinkSession] = {}
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS)
        self._next_index = 0

    def reset(self) -> None:
        """Forget every Item, token, fault, call and webhook; the next Item is index 0 again."""
        self.items.clear()
        self.by_token.clear()
        self.public_tokens.clear()
        self.link_tokens.clear()
        self.link_sessions.clear()
        self.calls.clear()
        self.faults.clear()
        self.webhooks.clear()
        self._next_index = 0

    # ---- Items and tokens ---------------------------------------------------------------

    async def create_item(
        self, institution: Institution, products: list[str], webhook: str | None
    ) -> Item:
        """A new Item with its generated accounts and history (deterministic by creation order).

        Large histories are built on a worker thread so the server keeps answering meanwhile.
        """
        index = self._next_index
        self._next_index += 1

        def build() -> Item:
            ids = item_rng(self.config.seed, index, "ids")
            environment = self.config.environment
            data = generate_item(
                self.config.seed, index, institution, self.config.transactions, self.today
            )
            item = Item(
                item_id=plaid_id(ids),
                access_token=f"access-{environment}-{plaid_uuid(ids)}",
                index=index,
                seed=self.config.seed,
                institution=institution,
                products=list(dict.fromkeys(products)),
                webhook=webhook or None,
                accounts=data.accounts,
                ledger=Ledger(),
                factory=data.factory,
                today=self.today,
                created_at=datetime.now(UTC),
            )
            item.load_history(data.transactions)
            item.last_successful_update = item.created_at
            return item

        if self.config.transactions >= _THREAD_THRESHOLD:
            item = await anyio.to_thread.run_sync(build)
        else:
            item = build()
        self.items[item.item_id] = item
        return item

    def issue_public_token(self, item: Item) -> str:
        """A public token for `item` that `exchange` accepts once within 30 minutes."""
        token = f"public-{self.config.environment}-{plaid_uuid(item.rng('public-token'))}"
        self.public_tokens[token] = PublicToken(
            token, item.item_id, datetime.now(UTC) + PUBLIC_TOKEN_LIFETIME
        )
        return token

    def exchange(self, public_token: str) -> Item:
        """Trade a public token (once, before it expires) for its Item's access token."""
        record = self.public_tokens.get(public_token)
        if record is None or record.used or record.expiration < datetime.now(UTC):
            raise PlaidAPIError("INVALID_PUBLIC_TOKEN")
        item = self.items.get(record.item_id)
        if item is None or item.removed:
            raise PlaidAPIError("INVALID_PUBLIC_TOKEN")
        record.used = True
        item.exchanged = True
        self.by_token[item.access_token] = item
        return item

    def item_for_token(self, access_token: str) -> Item:
        """The live Item of an access token; INVALID_ACCESS_TOKEN or ITEM_NOT_FOUND otherwise."""
        item = self.by_token.get(access_token)
        if item is None:
            raise PlaidAPIError("INVALID_ACCESS_TOKEN")
        if item.removed:
            raise PlaidAPIError("ITEM_NOT_FOUND")
        return item

    def new_link_token(
        self,
        *,
        item: Item | None,
        products: list[str],
        webhook: str | None,
        account_selection_enabled: bool,
    ) -> LinkToken:
        token = LinkToken(
            token=f"link-{self.config.environment}-{uuid.uuid4()}",
            expiration=datetime.now(UTC) + LINK_TOKEN_LIFETIME,
            item_id=item.item_id if item else None,
            products=products,
            webhook=webhook,
            account_selection_enabled=account_selection_enabled,
        )
        self.link_tokens[token.token] = token
        return token

    # ---- Item errors ----------------------------------------------------------------------

    def set_item_error(self, item: Item, code: str) -> dict[str, Any]:
        item.error = item_error(code, request_id())
        item.last_failed_update = datetime.now(UTC)
        return item.error

    def clear_login_error(self, item: Item) -> bool:
        """Clear an error the user fixes in Link; returns whether there was one."""
        if item.error is None:
            return False
        item.error = None
        item.last_successful_update = datetime.now(UTC)
        return True

    # ---- webhooks ----------------------------------------------------------------------------

    def webhook_payload(
        self, item: Item, webhook_type: str, webhook_code: str, **fields: Any
    ) -> dict[str, Any]:
        """A webhook body for `item`, in Plaid's field order."""
        return {
            "webhook_type": webhook_type,
            "webhook_code": webhook_code,
            "item_id": item.item_id,
            **fields,
            "environment": self.config.environment,
        }

    def sync_updates_payload(self, item: Item) -> dict[str, Any]:
        return self.webhook_payload(
            item,
            "TRANSACTIONS",
            "SYNC_UPDATES_AVAILABLE",
            initial_update_complete=True,
            historical_update_complete=True,
        )

    async def send(self, *notices: tuple[Item, dict[str, Any]]) -> None:
        """Deliver (Item, body) webhooks, each to its Item's URL, before returning.

        Items without a URL get none; each Item remembers its last webhook for /item/get.
        """
        batch = []
        for item, payload in notices:
            if item.webhook:
                item.last_webhook = (datetime.now(UTC), payload["webhook_code"])
                batch.append((item.webhook, payload))
        if batch:
            await self.webhooks.deliver_all(batch)

    def send_in_background(self, item: Item, payload: dict[str, Any]) -> None:
        """Start delivering a webhook without waiting (GET /emulator/webhooks?wait=true does)."""
        if item.webhook:
            item.last_webhook = (datetime.now(UTC), payload["webhook_code"])
            self.webhooks.deliver_in_background(item.webhook, payload)

    # ---- calls ------------------------------------------------------------------------------

    def record_call(
        self,
        *,
        endpoint: str,
        item_id: str | None,
        at: datetime,
        status: int | None,
        error_code: str | None,
        request: dict[str, Any] | None,
        request_id: str,
    ) -> None:
        if request is not None and "secret" in request:
            request = {**request, "secret": "***"}
        self.calls.append(
            {
                "endpoint": endpoint,
                "itemId": item_id,
                "at": at.isoformat().replace("+00:00", "Z"),
                "status": status,
                "errorCode": error_code,
                "request": request,
                "requestId": request_id,
            }
        )

    def consent_expiry(self, days: int) -> str:
        return iso(datetime.now(UTC) + timedelta(days=days))
