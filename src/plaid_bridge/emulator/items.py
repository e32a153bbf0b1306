"""Emulated Items: their Plaid-facing state, and how their transactions change over time.

An Item's ledger is a pure function of its seed, index, id salt, history size, creation day and
the list of changes applied since (`changes`: each `advance` and each new account, in order).
That list, not the transactions, is what an Item saves: `Item.from_dict` generates the history
again and replays the changes, which gives back the same ledger and change log, so saved cursors
stay valid and a saved state stays small whatever the history size.
"""

from __future__ import annotations

import functools
import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec

from plaid_bridge.emulator.data import TransactionFactory, generate_item, item_rng, make_account
from plaid_bridge.emulator.institutions import INSTITUTION_PRODUCTS, INSTITUTIONS, Institution
from plaid_bridge.emulator.ledger import Ledger

_NEW_ACCOUNT_SUBTYPES = ("savings", "money market", "checking", "credit card")


def iso(moment: datetime) -> str:
    """Plaid's timestamp format: UTC, seconds, trailing Z."""
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(eq=False)
class Item:
    """One emulated Item: accounts, ledger, webhook URL, error state and sync bookkeeping."""

    item_id: str
    access_token: str
    index: int
    seed: int
    institution: Institution
    products: list[str]
    webhook: str | None
    accounts: list[dict[str, Any]]
    ledger: Ledger
    factory: TransactionFactory
    today: date
    created_at: datetime
    history_size: int
    created_today: date
    exchanged: bool = False
    removed: bool = False
    error: dict[str, Any] | None = None
    consent_expiration_time: str | None = None
    sync_calls: int = 0
    balance_calls: int = 0
    activity_runs: int = 0
    accounts_added: int = 0
    last_successful_update: datetime | None = None
    last_failed_update: datetime | None = None
    last_webhook: tuple[datetime, str] | None = None
    pending_transactions: dict[str, None] = field(default_factory=dict)
    # What changed the ledger or the accounts since creation, in order (see the module docstring).
    changes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def generate(
        cls,
        *,
        item_id: str,
        access_token: str,
        index: int,
        seed: int,
        id_salt: bytes,
        institution: Institution,
        products: list[str],
        webhook: str | None,
        history_size: int,
        today: date,
        created_at: datetime,
    ) -> Item:
        """A new Item with its generated accounts and history (pure: may run on a thread)."""
        data = generate_item(seed, index, institution, history_size, today, id_salt=id_salt)
        item = cls(
            item_id=item_id,
            access_token=access_token,
            index=index,
            seed=seed,
            institution=institution,
            products=list(dict.fromkeys(products)),
            webhook=webhook or None,
            accounts=data.accounts,
            ledger=Ledger(),
            factory=data.factory,
            today=today,
            created_at=created_at,
            history_size=history_size,
            created_today=today,
        )
        item.load_history(data.transactions)
        item.last_successful_update = created_at
        return item

    def to_dict(self) -> dict[str, Any]:
        """What `from_dict` needs to build this Item again: state and changes, no transactions."""
        return {
            "itemId": self.item_id,
            "accessToken": self.access_token,
            "index": self.index,
            "seed": self.seed,
            "institutionId": self.institution.institution_id,
            "products": list(self.products),
            "webhook": self.webhook,
            "historySize": self.history_size,
            "createdToday": self.created_today.isoformat(),
            "createdAt": self.created_at.isoformat(),
            "changes": list(self.changes),
            "accounts": list(self.accounts),
            "exchanged": self.exchanged,
            "removed": self.removed,
            "error": self.error,
            "consentExpirationTime": self.consent_expiration_time,
            "syncCalls": self.sync_calls,
            "balanceCalls": self.balance_calls,
            "lastSuccessfulUpdate": _maybe_isoformat(self.last_successful_update),
            "lastFailedUpdate": _maybe_isoformat(self.last_failed_update),
            "lastWebhook": (
                [self.last_webhook[0].isoformat(), self.last_webhook[1]]
                if self.last_webhook
                else None
            ),
            # Checked after the replay: a different result means the generator changed.
            "today": self.today.isoformat(),
            "ledgerHead": self.ledger.head,
            "liveTransactions": len(self.ledger.live),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, id_salt: bytes) -> Item:
        """The Item `to_dict` described: history generated again and every change replayed.

        Raises ValueError when the replay does not arrive where the saved Item was.
        """
        institution = INSTITUTIONS.get(data["institutionId"])
        if institution is None:
            raise ValueError(f"unknown institution {data['institutionId']}")
        item = cls.generate(
            item_id=data["itemId"],
            access_token=data["accessToken"],
            index=data["index"],
            seed=data["seed"],
            id_salt=id_salt,
            institution=institution,
            products=data["products"],
            webhook=data["webhook"],
            history_size=data["historySize"],
            today=date.fromisoformat(data["createdToday"]),
            created_at=datetime.fromisoformat(data["createdAt"]),
        )
        for change in data["changes"]:
            item.apply(change)
        replayed = (item.today.isoformat(), item.ledger.head, len(item.ledger.live))
        saved = (data["today"], data["ledgerHead"], data["liveTransactions"])
        if replayed != saved:
            raise ValueError(
                f"item {item.item_id}: replay gave (today, head, live) {replayed}, saved {saved}"
            )
        item.accounts = list(data["accounts"])  # balances moved since; ids and order as replayed
        item.exchanged = data["exchanged"]
        item.removed = data["removed"]
        item.error = data["error"]
        item.consent_expiration_time = data["consentExpirationTime"]
        item.sync_calls = data["syncCalls"]
        item.balance_calls = data["balanceCalls"]
        item.last_successful_update = _maybe_datetime(data["lastSuccessfulUpdate"])
        item.last_failed_update = _maybe_datetime(data["lastFailedUpdate"])
        webhook = data["lastWebhook"]
        item.last_webhook = (datetime.fromisoformat(webhook[0]), webhook[1]) if webhook else None
        return item

    def apply(self, change: dict[str, Any]) -> None:
        """Replay one entry of `changes`."""
        kind = change["change"]
        if kind == "advance":
            self.advance(
                days=change["days"],
                add=change["add"],
                modify=change["modify"],
                post=change["post"],
                remove=change["remove"],
            )
        elif kind == "account":
            self.add_account()
        else:
            raise ValueError(f"unknown change {kind!r}")

    @property
    def synced_once(self) -> bool:
        return self.sync_calls > 0

    def plaid_item(self) -> dict[str, Any]:
        """The `Item` object (with consent fields) that /item/get and /accounts/get return."""
        available = [p for p in INSTITUTION_PRODUCTS if p not in self.products]
        return {
            "item_id": self.item_id,
            "institution_id": self.institution.institution_id,
            "institution_name": self.institution.name,
            "webhook": self.webhook,
            "auth_method": None,
            "error": self.error,
            "available_products": available,
            "billed_products": list(self.products),
            "products": list(self.products),
            "consented_products": list(self.products),
            "consent_expiration_time": self.consent_expiration_time,
            "update_type": "background",
            "created_at": iso(self.created_at),
        }

    def status(self) -> dict[str, Any]:
        """The `status` object of /item/get."""
        return {
            "transactions": {
                "last_successful_update": _maybe_iso(self.last_successful_update),
                "last_failed_update": _maybe_iso(self.last_failed_update),
            },
            "last_webhook": (
                {"sent_at": iso(self.last_webhook[0]), "code_sent": self.last_webhook[1]}
                if self.last_webhook
                else None
            ),
        }

    def rng(self, purpose: str) -> random.Random:
        return item_rng(self.seed, self.index, purpose)

    def move_balances(self, now: datetime) -> None:
        """Real-time balances drift a little on each /accounts/balance/get, deterministically."""
        self.balance_calls += 1
        rng = self.rng(f"balance:{self.balance_calls}")
        moved = []
        for account in self.accounts:
            balances = dict(account["balances"])
            delta = round(rng.uniform(-25.0, 25.0), 2)
            current = round((balances["current"] or 0.0) + delta, 2)
            balances["current"] = current
            if balances["limit"] is not None:
                balances["available"] = round(balances["limit"] - current, 2)
            else:
                balances["available"] = current
            balances["last_updated_datetime"] = iso(now)
            moved.append({**account, "balances": balances})
        self.accounts = moved

    def add_account(self) -> dict[str, Any]:
        """A new account appears at the bank (NEW_ACCOUNTS_AVAILABLE)."""
        self.changes.append({"change": "account"})
        self.accounts_added += 1
        rng = self.rng(f"new-account:{self.accounts_added}")
        subtype = _NEW_ACCOUNT_SUBTYPES[(self.accounts_added - 1) % len(_NEW_ACCOUNT_SUBTYPES)]
        number = 1 + sum(1 for a in self.accounts if a["subtype"] == subtype)
        account = make_account(rng, self.institution, subtype, number, self.factory.id_salt)
        self.accounts.append(account)
        self.factory.add_account(account, rng)
        return account

    # ---- activity -----------------------------------------------------------------------

    def record_new(self, txn: dict[str, Any]) -> None:
        self.ledger.add(txn)
        if txn["pending"]:
            self.pending_transactions[txn["transaction_id"]] = None

    def load_history(self, transactions: list[dict[str, Any]]) -> None:
        for txn in transactions:
            self.record_new(txn)

    def advance(
        self,
        *,
        days: int,
        add: int | None = None,
        modify: int | None = None,
        post: int | None = None,
        remove: int | None = None,
    ) -> dict[str, int]:
        """Move emulated time on by `days` and change the ledger like a bank would.

        Older pending transactions post (removal of the pending id plus a posted transaction
        pointing at it), a few posted ones are modified or removed, new ones appear (the most
        recent may be pending). Explicit counts replace the random mix; a count not given is
        then 0. Returns the counts actually applied.
        """
        self.changes.append(
            {
                "change": "advance",
                "days": days,
                "add": add,
                "modify": modify,
                "post": post,
                "remove": remove,
            }
        )
        self.activity_runs += 1
        rng = self.rng(f"activity:{self.activity_runs}")
        self.today += timedelta(days=days)
        explicit = any(n is not None for n in (add, modify, post, remove))
        pending = [self.ledger.live[tid] for tid in self.pending_transactions]
        if explicit:
            to_post = pending[: post or 0]
            n_modify, n_remove, n_add = modify or 0, remove or 0, add or 0
        else:
            cutoff = self.today.isoformat()
            to_post = [t for t in pending if t["date"] < cutoff]
            n_modify, n_remove = rng.randint(0, 2), rng.randint(0, 1)
            n_add = sum(rng.randint(1, 3) for _ in range(max(days, 1)))

        for txn in to_post:
            del self.pending_transactions[txn["transaction_id"]]
            self.ledger.remove(txn["transaction_id"])
            self.ledger.add(self.factory.post(rng, txn, self.today))

        # Modify and remove among recent posted transactions, never the same one twice.
        recent = [
            t for t in _recent(self.ledger.live, 500 + n_modify + n_remove) if not t["pending"]
        ]
        rng.shuffle(recent)
        n_modify = min(n_modify, len(recent))
        n_remove = min(n_remove, len(recent) - n_modify)
        for txn in recent[:n_modify]:
            self.ledger.modify(self.factory.modify(rng, txn))
        for txn in recent[n_modify : n_modify + n_remove]:
            self.ledger.remove(txn["transaction_id"])

        span = max(days, 1)
        for _ in range(n_add):
            age = rng.randrange(span)
            day = self.today - timedelta(days=age)
            is_pending = age <= 1 and rng.random() < 0.6
            account_id = self.factory.random_account(rng)
            self.record_new(self.factory.new(rng, account_id, day, pending=is_pending))
        changed = bool(to_post or n_modify or n_remove or n_add)
        if changed:
            self.last_successful_update = datetime.now(UTC)
        return {
            "added": n_add,
            "modified": n_modify,
            "removed": n_remove,
            "posted": len(to_post),
        }


def _recent(live: dict[str, dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The `count` most recently changed live transactions (dicts keep insertion order)."""
    result: list[dict[str, Any]] = []
    for txn in reversed(live.values()):
        if len(result) >= count:
            break
        result.append(txn)
    return result


def _maybe_iso(moment: datetime | None) -> str | None:
    return iso(moment) if moment else None


def _maybe_isoformat(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _maybe_datetime(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@functools.cache
def generator_fingerprint() -> str:
    """A digest of what this code generates for a small Item and a few changes.

    Saved Items keep changes, not transactions, so they can only be loaded by code that
    generates the same data; a saved state with another fingerprint is refused.
    """
    institution = INSTITUTIONS["ins_109508"]
    item = Item.generate(
        item_id="fingerprint",
        access_token="fingerprint",
        index=3,
        seed=1,
        id_salt=b"fingerprint",
        institution=institution,
        products=["transactions"],
        webhook=None,
        history_size=60,
        today=date(2024, 2, 29),
        created_at=datetime(2024, 2, 29, tzinfo=UTC),
    )
    item.advance(days=3)
    item.add_account()
    item.advance(days=1, add=2, modify=1, post=1, remove=1)
    blob = msgspec.json.encode([item.accounts, list(item.ledger.live.values()), item.today])
    return hashlib.sha256(blob).hexdigest()[:16]
