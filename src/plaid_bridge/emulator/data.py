"""Deterministic Plaid-shaped data: ids, accounts and transaction histories.

Everything here is a pure function of its arguments (a seed-derived `random.Random` included), so
two emulators with the same seed produce the same Items in the same order; an id salt per emulator
instance makes the ids differ while the data stays the same. Transactions are plain
dicts in Plaid's `Transaction` shape; they are treated as immutable (a change builds a new dict),
which lets many of them share the nested location and category objects of their merchant.
"""

from __future__ import annotations

import base64
import hashlib
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from plaid_bridge.emulator.institutions import Institution
from plaid_bridge.emulator.merchants import POOLS, SAVINGS, Merchant

HISTORY_DAYS = 730

_ID_TABLE = bytes.maketrans(b"+/", b"xQ")


def plaid_id(rng: random.Random, salt: bytes = b"") -> str:
    """A 37-character alphanumeric id, like Plaid's item, account and transaction ids.

    The draw from `rng` is the same whatever the salt, so data drawn after it does not change;
    a salt (the emulator instance's) makes the id itself unique to that instance.
    """
    raw = rng.randbytes(28)
    if salt:
        raw = hashlib.sha256(salt + raw).digest()[:28]
    return base64.b64encode(raw).translate(_ID_TABLE)[:37].decode()


def plaid_uuid(rng: random.Random, salt: bytes = b"") -> str:
    """A version-4 UUID drawn from `rng` (deterministic, unlike `uuid.uuid4`), salted as ids are."""
    bits = rng.getrandbits(128)
    if salt:
        bits = int.from_bytes(hashlib.sha256(salt + bits.to_bytes(16, "big")).digest()[:16], "big")
    return str(uuid.UUID(int=bits, version=4))


_CITIES: dict[str, tuple[tuple[str, str, str, float, float], ...]] = {
    "US": (
        ("San Francisco", "CA", "94103", 37.7749, -122.4194),
        ("New York", "NY", "10001", 40.7506, -73.9972),
        ("Austin", "TX", "78701", 30.2711, -97.7437),
        ("Chicago", "IL", "60601", 41.8857, -87.6225),
        ("Seattle", "WA", "98101", 47.6101, -122.3344),
    ),
    "CA": (
        ("Toronto", "ON", "M5H 2N2", 43.6506, -79.3832),
        ("Vancouver", "BC", "V6B 1A1", 49.2797, -123.1156),
    ),
}
_STREETS = ("Market St", "Main St", "Broadway", "Oak Ave", "2nd St", "Pine St", "Elm St")

_NULL_LOCATION: dict[str, Any] = dict.fromkeys(
    ("address", "city", "region", "postal_code", "country", "lat", "lon", "store_number")
)
_NULL_PAYMENT_META: dict[str, Any] = dict.fromkeys(
    (
        "by_order_of",
        "payee",
        "payer",
        "payment_method",
        "payment_processor",
        "ppd_id",
        "reason",
        "reference_number",
    )
)


def _merchant_entity_id(merchant: Merchant) -> str:
    # Stable across seeds and Items, as Plaid's merchant entity ids are.
    return plaid_id(random.Random(f"merchant:{merchant.merchant_name}"))


@dataclass(slots=True)
class TransactionFactory:
    """Builds transactions for one Item: per-merchant templates bound to its city and currency."""

    currency: str
    place: tuple[str, str, str, float, float, str]  # city, region, postal code, lat, lon, country
    templates: dict[tuple[str, Merchant], dict[str, Any]]
    accounts: dict[str, str]  # account_id -> subtype
    id_salt: bytes = b""

    @classmethod
    def for_item(
        cls,
        rng: random.Random,
        institution: Institution,
        accounts: list[dict[str, Any]],
        id_salt: bytes = b"",
    ) -> TransactionFactory:
        country = institution.country_codes[0]
        city, region, postal, lat, lon = rng.choice(_CITIES.get(country, _CITIES["US"]))
        place = (city, region, postal, lat, lon, country)
        factory = cls(institution.currency, place, {}, {}, id_salt)
        for account in accounts:
            factory.add_account(account, rng)
        return factory

    def random_account(self, rng: random.Random) -> str:
        """An account of the Item, busier accounts more likely."""
        ids = list(self.accounts)
        weights = [_ACTIVITY.get(self.accounts[i], 0.3) for i in ids]
        return rng.choices(ids, weights=weights)[0]

    def add_account(self, account: dict[str, Any], rng: random.Random) -> None:
        """Prepare templates for a (possibly new) account of the Item."""
        subtype = account["subtype"]
        self.accounts[account["account_id"]] = subtype
        for merchant in POOLS.get(subtype, SAVINGS):
            key = (subtype, merchant)
            if key not in self.templates:
                self.templates[key] = self._template(merchant, rng)

    def _template(self, merchant: Merchant, rng: random.Random) -> dict[str, Any]:
        city, region, postal, lat, lon, country = self.place
        if merchant.in_store:
            location: dict[str, Any] = {
                "address": f"{rng.randrange(10, 2999)} {rng.choice(_STREETS)}",
                "city": city,
                "region": region,
                "postal_code": postal,
                "country": country,
                "lat": round(lat + rng.uniform(-0.03, 0.03), 4),
                "lon": round(lon + rng.uniform(-0.03, 0.03), 4),
                "store_number": str(rng.randrange(100, 9999)),
            }
        else:
            location = _NULL_LOCATION
        entity_id = _merchant_entity_id(merchant) if merchant.merchant_name else None
        counterparties = (
            [
                {
                    "name": merchant.merchant_name,
                    "type": "merchant",
                    "entity_id": entity_id,
                    "website": merchant.website,
                    "logo_url": None,
                    "confidence_level": "VERY_HIGH",
                }
            ]
            if merchant.merchant_name
            else []
        )
        return {
            "account_id": None,
            "account_owner": None,
            "amount": 0.0,
            "authorized_date": None,
            "authorized_datetime": None,
            "category": list(merchant.category),
            "category_id": merchant.category_id,
            "check_number": None,
            "counterparties": counterparties,
            "date": None,
            "datetime": None,
            "iso_currency_code": self.currency,
            "location": location,
            "logo_url": None,
            "merchant_entity_id": entity_id,
            "merchant_name": merchant.merchant_name,
            "name": merchant.name,
            "original_description": None,
            "payment_channel": merchant.channel,
            "payment_meta": _NULL_PAYMENT_META,
            "pending": False,
            "pending_transaction_id": None,
            "personal_finance_category": {
                "primary": merchant.pfc_primary,
                "detailed": merchant.pfc_detailed,
                "confidence_level": "VERY_HIGH",
            },
            "personal_finance_category_icon_url": (
                f"https://plaid-category-icons.plaid.com/PFC_{merchant.pfc_primary}.png"
            ),
            "transaction_code": None,
            "transaction_id": None,
            "transaction_type": "place" if merchant.in_store else "special",
            "unofficial_currency_code": None,
            "website": merchant.website,
        }

    def new(
        self,
        rng: random.Random,
        account_id: str,
        day: date,
        *,
        pending: bool,
        authorized_lag: int = 0,
    ) -> dict[str, Any]:
        """A new transaction dated `day`, authorized `authorized_lag` days earlier."""
        subtype = self.accounts[account_id]
        merchant = rng.choice(POOLS.get(subtype, SAVINGS))
        template = self.templates[(subtype, merchant)]
        amount = round(rng.uniform(merchant.low, merchant.high), 2)
        return {
            **template,
            "account_id": account_id,
            "amount": amount if amount != 0 else 0.01,
            "authorized_date": (day - timedelta(days=authorized_lag)).isoformat(),
            "date": day.isoformat(),
            "pending": pending,
            "transaction_id": plaid_id(rng, self.id_salt),
        }

    def post(self, rng: random.Random, pending: dict[str, Any], day: date) -> dict[str, Any]:
        """The posted transaction that replaces `pending`: a new id pointing back at it."""
        amount = pending["amount"]
        if rng.random() < 0.15:  # tips and currency adjustments change the final amount
            amount = round(amount * rng.uniform(1.0, 1.2), 2)
        return {
            **pending,
            "amount": amount,
            "authorized_date": pending["date"],
            "date": max(day, date.fromisoformat(pending["date"])).isoformat(),
            "pending": False,
            "pending_transaction_id": pending["transaction_id"],
            "transaction_id": plaid_id(rng, self.id_salt),
        }

    def modify(self, rng: random.Random, txn: dict[str, Any]) -> dict[str, Any]:
        """The same transaction (same id) with its amount, name or date changed."""
        change = rng.randrange(3)
        if change == 0:
            delta = round(rng.uniform(0.5, 15.0), 2) * (1 if txn["amount"] >= 0 else -1)
            return {**txn, "amount": round(txn["amount"] + delta, 2)}
        if change == 1:
            name = txn["name"]
            renamed = f"{name} #{rng.randrange(100, 999)}" if "#" not in name else name + "X"
            return {**txn, "name": renamed}
        earlier = date.fromisoformat(txn["date"]) - timedelta(days=1)
        return {**txn, "date": earlier.isoformat()}


_ACCOUNT_KINDS: dict[str, tuple[str, str, str]] = {
    # subtype: (type, name, official name suffix)
    "checking": ("depository", "Checking", "Gold Standard 0.1% Interest Checking"),
    "savings": ("depository", "Saving", "Silver Standard 0.1% Interest Saving"),
    "credit card": ("credit", "Credit Card", "Diamond 12.5% APR Interest Credit Card"),
    "money market": ("depository", "Money Market", "Platinum Standard 1.85% Interest Money Market"),
}
# Share of an Item's history per account subtype.
_ACTIVITY = {"checking": 6.0, "credit card": 3.0, "savings": 0.6, "money market": 0.3}


def make_account(
    rng: random.Random, institution: Institution, subtype: str, number: int, id_salt: bytes = b""
) -> dict[str, Any]:
    """An `AccountBase` object; `number` distinguishes two accounts of the same subtype."""
    account_type, name, official = _ACCOUNT_KINDS[subtype]
    suffix = f" {number}" if number > 1 else ""
    balances: dict[str, Any]
    if account_type == "credit":
        limit = float(rng.randrange(20, 200) * 100)
        current = round(rng.uniform(50.0, limit * 0.4), 2)
        balances = {"available": round(limit - current, 2), "current": current, "limit": limit}
    else:
        current = round(rng.uniform(100.0, 25_000.0), 2)
        balances = {"available": current, "current": current, "limit": None}
    balances.update(
        {
            "iso_currency_code": institution.currency,
            "unofficial_currency_code": None,
            "last_updated_datetime": None,
        }
    )
    return {
        "account_id": plaid_id(rng, id_salt),
        "balances": balances,
        "mask": f"{rng.randrange(10_000):04d}",
        "name": f"{institution.short_name} {name}{suffix}",
        "official_name": f"{institution.short_name} {official}{suffix}",
        "type": account_type,
        "subtype": subtype,
        "holder_category": "personal",
    }


@dataclass(slots=True)
class ItemData:
    """A new Item's accounts and its history, oldest transaction first."""

    accounts: list[dict[str, Any]]
    transactions: list[dict[str, Any]]
    factory: TransactionFactory


def item_rng(seed: int, index: int, purpose: str) -> random.Random:
    """The random stream of one Item for one purpose; independent streams keep data stable."""
    return random.Random(f"plaid-emulator:{seed}:{index}:{purpose}")


def generate_item(
    seed: int,
    index: int,
    institution: Institution,
    count: int,
    today: date,
    *,
    id_salt: bytes = b"",
) -> ItemData:
    """Accounts (2-4) and `count` transactions over the last ~2 years, a few recent ones pending.

    Pure and deterministic in its arguments; 100,000 transactions take well under two seconds.
    `id_salt` changes the account and transaction ids only, never the data.
    """
    rng = item_rng(seed, index, "history")
    subtypes = ["checking"]
    if rng.random() < 0.8:
        subtypes.append("savings")
    if rng.random() < 0.8:
        subtypes.append("credit card")
    if len(subtypes) < 2:
        subtypes.append("savings")
    if rng.random() < 0.3:
        subtypes.append("money market" if "savings" in subtypes else "savings")
    accounts = [make_account(rng, institution, subtype, 1, id_salt) for subtype in subtypes]
    factory = TransactionFactory.for_item(rng, institution, accounts, id_salt)

    account_ids = [account["account_id"] for account in accounts]
    weights = [_ACTIVITY[account["subtype"]] for account in accounts]
    pending_count = min(count, 2 + count // 250) if count >= 5 else 0
    ages = sorted(rng.randrange(1, HISTORY_DAYS + 1) for _ in range(count - pending_count))
    ages.reverse()
    ages.extend(sorted((rng.randrange(0, 3) for _ in range(pending_count)), reverse=True))
    chosen = rng.choices(account_ids, weights=weights, k=count)
    days = [today - timedelta(days=age) for age in range(HISTORY_DAYS + 1)]
    transactions = []
    for position, (age, account_id) in enumerate(zip(ages, chosen, strict=True)):
        pending = position >= count - pending_count
        lag = 0 if pending else rng.choice((0, 0, 1, 2))
        transactions.append(
            factory.new(rng, account_id, days[age], pending=pending, authorized_lag=lag)
        )
    return ItemData(accounts, transactions, factory)
