"""Everything one emulator instance remembers: Items, tokens, faults, calls and webhooks.

All mutation happens on the server's event loop (handlers never await between reading and
writing shared state, except around the history generation of a new Item, which is pure and
runs in a worker thread), so no locks are needed.

Ids and tokens are unique to the instance: a random salt, drawn when the state is created (or
reset) and kept by `snapshot`, is mixed into every id while the data stays a function of the seed.
`snapshot` and `restore` carry what is worth keeping across a restart; faults and the call log
are a test's scaffolding and are not kept.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import string
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import anyio.to_thread

from plaid_bridge.emulator.config import EmulatorConfig
from plaid_bridge.emulator.data import item_rng, plaid_id, plaid_uuid
from plaid_bridge.emulator.errors import PlaidAPIError, item_error
from plaid_bridge.emulator.faults import FaultRegistry
from plaid_bridge.emulator.institutions import Institution
from plaid_bridge.emulator.items import Item, iso
from plaid_bridge.emulator.ledger import CursorCodec
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "expiration": self.expiration.isoformat(),
            "itemId": self.item_id,
            "products": list(self.products),
            "webhook": self.webhook,
            "accountSelectionEnabled": self.account_selection_enabled,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkToken:
        return cls(
            token=data["token"],
            expiration=datetime.fromisoformat(data["expiration"]),
            item_id=data["itemId"],
            products=list(data["products"]),
            webhook=data["webhook"],
            account_selection_enabled=data["accountSelectionEnabled"],
        )


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

    @property
    def expiration(self) -> datetime:
        """A session is worth keeping as long as its link token could still be in use."""
        return self.started_at + LINK_TOKEN_LIFETIME

    def to_dict(self) -> dict[str, Any]:
        return {
            "linkSessionId": self.link_session_id,
            "linkToken": self.link_token,
            "mode": self.mode,
            "startedAt": self.started_at.isoformat(),
            "itemId": self.item_id,
            "institutionId": self.institution_id,
            "accountIds": list(self.account_ids),
            "publicToken": self.public_token,
            "errorCode": self.error_code,
            "outcome": self.outcome,
            "exitStatus": self.exit_status,
            "finishedAt": None if self.finished_at is None else self.finished_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LinkSession:
        finished = data["finishedAt"]
        return cls(
            link_session_id=data["linkSessionId"],
            link_token=data["linkToken"],
            mode=data["mode"],
            started_at=datetime.fromisoformat(data["startedAt"]),
            item_id=data["itemId"],
            institution_id=data["institutionId"],
            account_ids=list(data["accountIds"]),
            public_token=data["publicToken"],
            error_code=data["errorCode"],
            outcome=data["outcome"],
            exit_status=data["exitStatus"],
            finished_at=None if finished is None else datetime.fromisoformat(finished),
        )


@dataclass(slots=True)
class PublicToken:
    token: str
    item_id: str
    expiration: datetime
    used: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "itemId": self.item_id,
            "expiration": self.expiration.isoformat(),
            "used": self.used,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PublicToken:
        return cls(
            data["token"], data["itemId"], datetime.fromisoformat(data["expiration"]), data["used"]
        )


def _unexpired(tokens: dict[str, Any], now: datetime) -> dict[str, dict[str, Any]]:
    """`to_dict` of each token that has not expired (expired ones are never accepted again)."""
    return {key: token.to_dict() for key, token in tokens.items() if token.expiration > now}


def _cursor_codec(salt: bytes) -> CursorCodec:
    return CursorCodec(hashlib.sha256(b"emulator-cursor:" + salt).digest())


class EmulatorState:
    """The emulator's memory and the operations that change it."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.today = config.today or datetime.now(UTC).date()
        self.keys = KeyRing()
        self.webhooks = WebhookSender(self.keys)
        self.webhooks.on_record = self.mark_changed
        self.faults = FaultRegistry()
        self.id_salt = secrets.token_bytes(16)
        self.cursors = _cursor_codec(self.id_salt)
        self.items: dict[str, Item] = {}
        self.by_token: dict[str, Item] = {}
        self.public_tokens: dict[str, PublicToken] = {}
        self.link_tokens: dict[str, LinkToken] = {}
        self.link_sessions: dict[str, LinkSession] = {}
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS)
        self._next_index = 0
        # Set by the state saver; called after anything that `snapshot` would show changed.
        self.on_change: Callable[[], None] | None = None

    def mark_changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def reset(self) -> None:
        """Forget every Item, token, fault, call and webhook; the next Item is index 0 again,
        under a new id salt, so no id or token of before the reset is ever handed out again."""
        self.items.clear()
        self.by_token.clear()
        self.public_tokens.clear()
        self.link_tokens.clear()
        self.link_sessions.clear()
        self.calls.clear()
        self.faults.clear()
        self.webhooks.clear()
        self._next_index = 0
        self.id_salt = secrets.token_bytes(16)
        self.cursors = _cursor_codec(self.id_salt)

    # ---- persistence ----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """What a restart keeps, as JSON-ready data (no transactions: see `Item.to_dict`).

        Built on the event loop from copies, so it can be encoded and written elsewhere.
        """
        now = datetime.now(UTC)
        return {
            "idSalt": base64.b64encode(self.id_salt).decode(),
            "nextIndex": self._next_index,
            "webhookKeys": self.keys.to_dict(),
            "items": [item.to_dict() for item in self.items.values()],
            "publicTokens": _unexpired(self.public_tokens, now),
            "linkTokens": _unexpired(self.link_tokens, now),
            "linkSessions": _unexpired(self.link_sessions, now),
            "webhooks": self.webhooks.records(),
        }

    def restore(self, data: dict[str, Any]) -> None:
        """Take over a `snapshot`; raises KeyError, TypeError or ValueError on a bad one."""
        self.id_salt = base64.b64decode(data["idSalt"], validate=True)
        self.cursors = _cursor_codec(self.id_salt)
        self._next_index = int(data["nextIndex"])
        self.keys = KeyRing.from_dict(data["webhookKeys"])
        self.webhooks.use_keys(self.keys)
        items = [Item.from_dict(entry, id_salt=self.id_salt) for entry in data["items"]]
        self.items = {item.item_id: item for item in items}
        self.by_token = {item.access_token: item for item in items if item.exchanged}
        self.public_tokens = {
            key: PublicToken.from_dict(value) for key, value in data["publicTokens"].items()
        }
        self.link_tokens = {
            key: LinkToken.from_dict(value) for key, value in data["linkTokens"].items()
        }
        self.link_sessions = {
            key: LinkSession.from_dict(value) for key, value in data.get("linkSessions", {}).items()
        }
        self.webhooks.restore(list(data["webhooks"]))

    # ---- Items and tokens ---------------------------------------------------------------

    async def create_item(
        self, institution: Institution, products: list[str], webhook: str | None
    ) -> Item:
        """A new Item with its generated accounts and history (deterministic by creation order).

        Large histories are built on a worker thread so the server keeps answering meanwhile.
        """
        index = self._next_index
        self._next_index += 1
        salt = self.id_salt

        def build() -> Item:
            ids = item_rng(self.config.seed, index, "ids")
            return Item.generate(
                item_id=plaid_id(ids, salt),
                access_token=f"access-{self.config.environment}-{plaid_uuid(ids, salt)}",
                index=index,
                seed=self.config.seed,
                id_salt=salt,
                institution=institution,
                products=products,
                webhook=webhook,
                history_size=self.config.transactions,
                today=self.today,
                created_at=datetime.now(UTC),
            )

        if self.config.transactions >= _THREAD_THRESHOLD:
            item = await anyio.to_thread.run_sync(build)
        else:
            item = build()
        self.items[item.item_id] = item
        return item

    def issue_public_token(self, item: Item) -> str:
        """A public token for `item` that `exchange` accepts once within 30 minutes."""
        token = f"public-{self.config.environment}-{uuid.uuid4()}"
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
