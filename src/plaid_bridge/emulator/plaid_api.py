"""The Plaid endpoints the service uses, answering with bodies that match Plaid's OpenAPI schemas.

Each handler receives the validated request and a `Call` (request id, resolved Item, sync
position) and returns the response body without `request_id`, which the dispatcher adds.
Handlers raise `PlaidAPIError` for Plaid-shaped failures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from plaid_bridge.emulator.errors import PlaidAPIError, sandbox_password_error
from plaid_bridge.emulator.institutions import INSTITUTIONS
from plaid_bridge.emulator.items import Item, iso
from plaid_bridge.emulator.ledger import Cursor
from plaid_bridge.emulator.requests import (
    AccessTokenRequest,
    AccountsGetRequest,
    FireWebhookRequest,
    InstitutionGetByIdRequest,
    ItemWebhookUpdateRequest,
    LinkTokenCreateRequest,
    PlaidRequest,
    PublicTokenExchangeRequest,
    SandboxPublicTokenCreateRequest,
    TransactionsSyncRequest,
    WebhookKeyGetRequest,
)
from plaid_bridge.emulator.state import EmulatorState

DEFAULT_SYNC_COUNT = 100
PENDING_EXPIRATION_DAYS = 7


@dataclass(slots=True)
class SyncPosition:
    """Where a /transactions/sync call starts: a plain cursor (head None) or mid-update."""

    base: int
    head: int | None
    offset: int
    count: int

    @property
    def page(self) -> int:
        """1 for a call from a plain cursor, k for the call whose offset is (k-1)*count."""
        return 1 if self.head is None else max(2, self.offset // self.count + 1)


@dataclass(slots=True)
class Call:
    """One Plaid API call being answered."""

    request_id: str
    payload: dict[str, Any] | None = None
    item: Item | None = None
    sync: SyncPosition | None = None

    @property
    def item_required(self) -> Item:
        assert self.item is not None, "endpoint declared without an access token"
        return self.item


Handler = Callable[[EmulatorState, Call, Any], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A Plaid endpoint: its request model, handler, and whether an Item in error fails it."""

    model: type[PlaidRequest]
    handler: Handler
    needs_healthy_item: bool = False


def require_healthy(item: Item) -> None:
    """Data endpoints fail with the Item's error while it has one (e.g. ITEM_LOGIN_REQUIRED)."""
    if item.error is not None:
        raise PlaidAPIError(item.error["error_code"])


def sync_position(state: EmulatorState, item: Item, req: TransactionsSyncRequest) -> SyncPosition:
    """Decode and check the cursor of a sync request; INVALID_FIELD if it is not ours."""
    count = req.count or DEFAULT_SYNC_COUNT
    if not req.cursor:
        return SyncPosition(0, None, 0, count)
    cursor = state.cursors.decode(req.cursor)
    head = item.ledger.head
    if (
        cursor is None
        or cursor.item_id != item.item_id
        or not 0 <= cursor.base <= head
        or (
            cursor.head is not None
            and not (cursor.base <= cursor.head <= head and cursor.offset >= 0)
        )
    ):
        raise PlaidAPIError("INVALID_FIELD", "cursor: not a valid cursor for this Item")
    return SyncPosition(cursor.base, cursor.head, cursor.offset, count)


# ---- Link and Items ----------------------------------------------------------------------


async def link_token_create(
    state: EmulatorState, call: Call, req: LinkTokenCreateRequest
) -> dict[str, Any]:
    account_selection = bool(req.update and req.update.account_selection_enabled)
    if call.item is not None:
        if req.products:
            raise PlaidAPIError(
                "INVALID_FIELD", "products: must not be provided in update mode (access_token)"
            )
        token = state.new_link_token(
            item=call.item,
            products=list(call.item.products),
            webhook=req.webhook,
            account_selection_enabled=account_selection,
        )
    else:
        if not req.products:
            raise PlaidAPIError(
                "MISSING_FIELDS", "the following required fields are missing: products"
            )
        token = state.new_link_token(
            item=None,
            products=req.products,
            webhook=req.webhook,
            account_selection_enabled=account_selection,
        )
    return {"link_token": token.token, "expiration": iso(token.expiration)}


async def sandbox_public_token_create(
    state: EmulatorState, call: Call, req: SandboxPublicTokenCreateRequest
) -> dict[str, Any]:
    institution = INSTITUTIONS.get(req.institution_id)
    if institution is None:
        raise PlaidAPIError("INVALID_INSTITUTION")
    failure = sandbox_password_error(req.options.override_password if req.options else None)
    if failure is not None:
        raise failure
    webhook = req.options.webhook if req.options else None
    item = await state.create_item(institution, req.initial_products, webhook)
    call.item = item
    return {"public_token": state.issue_public_token(item)}


async def item_public_token_exchange(
    state: EmulatorState, call: Call, req: PublicTokenExchangeRequest
) -> dict[str, Any]:
    item = state.exchange(req.public_token)
    call.item = item
    return {"access_token": item.access_token, "item_id": item.item_id}


async def item_get(_state: EmulatorState, call: Call, _req: AccessTokenRequest) -> dict[str, Any]:
    item = call.item_required
    return {"item": item.plaid_item(), "status": item.status()}


async def item_remove(
    _state: EmulatorState, call: Call, _req: AccessTokenRequest
) -> dict[str, Any]:
    call.item_required.removed = True
    return {}


async def item_webhook_update(
    state: EmulatorState, call: Call, req: ItemWebhookUpdateRequest
) -> dict[str, Any]:
    item = call.item_required
    item.webhook = req.webhook or None
    if item.webhook:
        payload = state.webhook_payload(
            item,
            "ITEM",
            "WEBHOOK_UPDATE_ACKNOWLEDGED",
            new_webhook_url=item.webhook,
            error=None,
        )
        await state.send((item, payload))
    return {"item": item.plaid_item()}


# ---- accounts and institutions -----------------------------------------------------------


def _select_accounts(item: Item, account_ids: list[str] | None) -> list[dict[str, Any]]:
    if account_ids is None:
        return item.accounts
    known = {account["account_id"] for account in item.accounts}
    if not account_ids or any(account_id not in known for account_id in account_ids):
        raise PlaidAPIError("INVALID_ACCOUNT_ID")
    return [account for account in item.accounts if account["account_id"] in account_ids]


async def accounts_get(
    _state: EmulatorState, call: Call, req: AccountsGetRequest
) -> dict[str, Any]:
    item = call.item_required
    account_ids = req.options.account_ids if req.options else None
    return {"accounts": _select_accounts(item, account_ids), "item": item.plaid_item()}


async def accounts_balance_get(
    _state: EmulatorState, call: Call, req: AccountsGetRequest
) -> dict[str, Any]:
    item = call.item_required
    account_ids = req.options.account_ids if req.options else None
    _select_accounts(item, account_ids)  # refuse unknown ids before anything moves
    item.move_balances(datetime.now(UTC))
    return {"accounts": _select_accounts(item, account_ids), "item": item.plaid_item()}


def _institution_status() -> dict[str, Any]:
    healthy = {
        "status": "HEALTHY",
        "last_status_change": iso(datetime.now(UTC) - timedelta(days=3)),
        "breakdown": {
            "success": 0.99,
            "error_plaid": 0.005,
            "error_institution": 0.005,
            "refresh_interval": "NORMAL",
        },
    }
    return {
        "item_logins": healthy,
        "transactions_updates": healthy,
        "auth": healthy,
        "identity": healthy,
        "investments_updates": healthy,
        "liabilities_updates": healthy,
        "liabilities": healthy,
        "investments": healthy,
        "health_incidents": [],
    }


async def institutions_get_by_id(
    _state: EmulatorState, _call: Call, req: InstitutionGetByIdRequest
) -> dict[str, Any]:
    institution = INSTITUTIONS.get(req.institution_id)
    if institution is None or not set(req.country_codes) & set(institution.country_codes):
        raise PlaidAPIError("INVALID_INSTITUTION")
    options = req.options
    status = _institution_status() if options and options.include_status else None
    return {
        "institution": institution.as_plaid(
            optional_metadata=bool(options and options.include_optional_metadata), status=status
        )
    }


# ---- transactions ----------------------------------------------------------------------------


async def transactions_sync(
    state: EmulatorState, call: Call, req: TransactionsSyncRequest
) -> dict[str, Any]:
    item = call.item_required
    assert call.sync is not None
    item.sync_calls += 1
    not_ready = state.config.not_ready_syncs
    if item.sync_calls == max(not_ready, 1):
        # The initial data is ready (from the next call on): say so without delaying this answer.
        state.send_in_background(item, state.sync_updates_payload(item))
    if item.sync_calls <= not_ready:
        return {
            "added": [],
            "modified": [],
            "removed": [],
            "next_cursor": "",
            "has_more": False,
            "accounts": item.accounts,
            "transactions_update_status": "NOT_READY",
        }

    ledger = item.ledger
    position = call.sync
    if position.head is None:
        base, head, offset = position.base, ledger.head, 0
    elif position.head != ledger.head:
        raise PlaidAPIError("TRANSACTIONS_SYNC_MUTATION_DURING_PAGINATION")
    else:
        base, head, offset = position.base, position.head, position.offset
    ops = ledger.diff(base)
    if offset > len(ops):
        raise PlaidAPIError("INVALID_FIELD", "cursor: not a valid cursor for this Item")
    end = offset + position.count
    described = bool(req.options and req.options.include_original_description)
    added: list[Any] = []
    modified: list[Any] = []
    removed: list[dict[str, Any]] = []
    live = ledger.live
    for op, transaction_id in ops[offset:end]:
        if op == "removed":
            removed.append(
                {"transaction_id": transaction_id, "account_id": ledger.account_of(transaction_id)}
            )
            continue
        if described:
            txn = live[transaction_id]
            changed: Any = {**txn, "original_description": txn["name"].upper()}
        else:
            changed = ledger.encoded(transaction_id)  # pre-encoded: pages are joins, not encodes
        (added if op == "added" else modified).append(changed)
    has_more = end < len(ops)
    cursor = Cursor(item.item_id, base, head, end) if has_more else Cursor(item.item_id, head)
    return {
        "added": added,
        "modified": modified,
        "removed": removed,
        "next_cursor": state.cursors.encode(cursor),
        "has_more": has_more,
        "accounts": item.accounts,
        "transactions_update_status": "HISTORICAL_UPDATE_COMPLETE",
    }


async def transactions_refresh(
    state: EmulatorState, call: Call, _req: AccessTokenRequest
) -> dict[str, Any]:
    item = call.item_required
    new = item.rng(f"refresh:{item.activity_runs}").randint(1, 3)
    item.advance(days=0, add=new)
    if item.synced_once:
        await state.send((item, state.sync_updates_payload(item)))
    return {}


# ---- webhooks and sandbox ------------------------------------------------------------------


async def webhook_verification_key_get(
    state: EmulatorState, _call: Call, req: WebhookKeyGetRequest
) -> dict[str, Any]:
    key = state.keys.jwk(req.key_id)
    if key is None:
        raise PlaidAPIError("INVALID_WEBHOOK_VERIFICATION_KEY_ID")
    return {"key": key}


WEBHOOK_TYPES: dict[str, str] = {
    "SYNC_UPDATES_AVAILABLE": "TRANSACTIONS",
    "DEFAULT_UPDATE": "TRANSACTIONS",
    "INITIAL_UPDATE": "TRANSACTIONS",
    "HISTORICAL_UPDATE": "TRANSACTIONS",
    "TRANSACTIONS_REMOVED": "TRANSACTIONS",
    "NEW_ACCOUNTS_AVAILABLE": "ITEM",
    "LOGIN_REPAIRED": "ITEM",
    "PENDING_EXPIRATION": "ITEM",
    "PENDING_DISCONNECT": "ITEM",
    "USER_PERMISSION_REVOKED": "ITEM",
    "USER_ACCOUNT_REVOKED": "ITEM",
    "WEBHOOK_UPDATE_ACKNOWLEDGED": "ITEM",
    "ERROR": "ITEM",
    "AUTOMATICALLY_VERIFIED": "AUTH",
    "VERIFICATION_EXPIRED": "AUTH",
}


def fire(state: EmulatorState, item: Item, code: str) -> dict[str, Any]:
    """Apply the state change a sandbox webhook stands for and build its body."""
    kind = WEBHOOK_TYPES[code]
    if code == "SYNC_UPDATES_AVAILABLE":
        return state.sync_updates_payload(item)
    if code in ("DEFAULT_UPDATE", "INITIAL_UPDATE", "HISTORICAL_UPDATE"):
        new = 0 if code == "DEFAULT_UPDATE" else len(item.ledger.live)
        return state.webhook_payload(item, kind, code, error=None, new_transactions=new)
    if code == "TRANSACTIONS_REMOVED":
        return state.webhook_payload(item, kind, code, error=None, removed_transactions=[])
    if code == "NEW_ACCOUNTS_AVAILABLE":
        item.add_account()
        return state.webhook_payload(item, kind, code, error=None)
    if code == "LOGIN_REPAIRED":
        state.clear_login_error(item)
        return state.webhook_payload(item, kind, code)
    if code in ("PENDING_EXPIRATION", "PENDING_DISCONNECT"):
        expiry = state.consent_expiry(PENDING_EXPIRATION_DAYS)
        item.consent_expiration_time = expiry
        if code == "PENDING_EXPIRATION":
            return state.webhook_payload(item, kind, code, consent_expiration_time=expiry)
        return state.webhook_payload(
            item, kind, code, reason="INSTITUTION_TOKEN_EXPIRATION", disconnect_time=expiry
        )
    if code == "USER_PERMISSION_REVOKED":
        error = state.set_item_error(item, "USER_PERMISSION_REVOKED")
        return state.webhook_payload(item, kind, code, error=error)
    if code == "ERROR":
        error = state.set_item_error(item, "ITEM_LOGIN_REQUIRED")
        return state.webhook_payload(item, kind, code, error=error)
    if code == "WEBHOOK_UPDATE_ACKNOWLEDGED":
        return state.webhook_payload(
            item, kind, code, new_webhook_url=item.webhook or "", error=None
        )
    # USER_ACCOUNT_REVOKED and the AUTH codes name one account.
    account = item.accounts[-1] if code == "USER_ACCOUNT_REVOKED" else item.accounts[0]
    return state.webhook_payload(item, kind, code, account_id=account["account_id"])


async def fire_webhook(
    state: EmulatorState, item: Item, webhook_code: str, webhook_type: str | None
) -> None:
    """/sandbox/item/fire_webhook's work: check the code (and type), change the Item, send."""
    expected = WEBHOOK_TYPES.get(webhook_code)
    if expected is None:
        raise PlaidAPIError("INVALID_FIELD", f"webhook_code: {webhook_code!r} is not supported")
    if webhook_type is not None and webhook_type != expected:
        raise PlaidAPIError(
            "INVALID_FIELD", f"webhook_type: {webhook_code} is a {expected} webhook"
        )
    await state.send((item, fire(state, item, webhook_code)))


async def sandbox_item_fire_webhook(
    state: EmulatorState, call: Call, req: FireWebhookRequest
) -> dict[str, Any]:
    await fire_webhook(state, call.item_required, req.webhook_code, req.webhook_type)
    return {"webhook_fired": True}


async def sandbox_item_reset_login(
    state: EmulatorState, call: Call, _req: AccessTokenRequest
) -> dict[str, Any]:
    item = call.item_required
    await state.send((item, fire(state, item, "ERROR")))
    return {"reset_login": True}


ENDPOINTS: dict[str, Endpoint] = {
    "/link/token/create": Endpoint(LinkTokenCreateRequest, link_token_create),
    "/sandbox/public_token/create": Endpoint(
        SandboxPublicTokenCreateRequest, sandbox_public_token_create
    ),
    "/item/public_token/exchange": Endpoint(PublicTokenExchangeRequest, item_public_token_exchange),
    "/item/get": Endpoint(AccessTokenRequest, item_get),
    "/item/remove": Endpoint(AccessTokenRequest, item_remove),
    "/item/webhook/update": Endpoint(ItemWebhookUpdateRequest, item_webhook_update),
    "/accounts/get": Endpoint(AccountsGetRequest, accounts_get, needs_healthy_item=True),
    "/accounts/balance/get": Endpoint(
        AccountsGetRequest, accounts_balance_get, needs_healthy_item=True
    ),
    "/institutions/get_by_id": Endpoint(InstitutionGetByIdRequest, institutions_get_by_id),
    "/transactions/sync": Endpoint(
        TransactionsSyncRequest, transactions_sync, needs_healthy_item=True
    ),
    "/transactions/refresh": Endpoint(
        AccessTokenRequest, transactions_refresh, needs_healthy_item=True
    ),
    "/webhook_verification_key/get": Endpoint(WebhookKeyGetRequest, webhook_verification_key_get),
    "/sandbox/item/fire_webhook": Endpoint(FireWebhookRequest, sandbox_item_fire_webhook),
    "/sandbox/item/reset_login": Endpoint(AccessTokenRequest, sandbox_item_reset_login),
}
