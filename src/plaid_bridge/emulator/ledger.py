"""One Item's transactions with a change log, and the net diffs `/transactions/sync` pages through.

Every add, modify or remove appends one entry to the log, so the log position is a monotonic
sequence number. A sync cursor names a sequence number `base`; the net diff from `base` to the
current head is computed in one pass over the log entries after `base` (added = not live at
`base` and live now, modified = live at both and changed, removed = live at `base` and gone),
ordered by each transaction's last change. Diffs are cached per (base, head), so paging through
100,000 transactions costs one pass, not one per page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

Op = Literal["added", "modified", "removed"]
# Compact UTF-8 JSON, as json.dumps(separators=(",", ":"), ensure_ascii=False) writes it, in C;
# a Decimal (a test's exact amount) is written as the number it is.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


class JsonFragment(str):
    """Text that is already JSON; `encode_json` writes it as is."""


def encode_json(value: Any) -> str:
    """Compact JSON as Plaid's answers are written, with `JsonFragment`s inside lists kept as is."""
    if isinstance(value, JsonFragment):
        return value
    if isinstance(value, dict) and any(_has_fragments(item) for item in value.values()):
        members = (f"{json.dumps(key)}:{encode_json(item)}" for key, item in value.items())
        return "{" + ",".join(members) + "}"
    if _has_fragments(value):
        return "[" + ",".join(encode_json(item) for item in value) + "]"
    return _ENCODER.encode(value).decode()


def _has_fragments(value: Any) -> bool:
    return isinstance(value, list) and any(isinstance(item, JsonFragment) for item in value)


_CACHE_SIZE = 4


@dataclass(slots=True)
class _Entry:
    """Where one transaction id stands in the log; ids are never reused after removal."""

    created: int
    last: int
    removed: bool
    account_id: str


class Ledger:
    """The transactions of one Item: live objects, tombstones and the change log."""

    def __init__(self) -> None:
        self.live: dict[str, dict[str, Any]] = {}
        self._entries: dict[str, _Entry] = {}
        self._log: list[str] = []
        self._diffs: OrderedDict[tuple[int, int], list[tuple[Op, str]]] = OrderedDict()
        self._encoded: dict[str, JsonFragment] = {}

    @property
    def head(self) -> int:
        """Sequence number of the latest change (0 for an empty ledger)."""
        return len(self._log)

    def _append(self, transaction_id: str) -> int:
        self._log.append(transaction_id)
        return len(self._log)

    def add(self, txn: dict[str, Any]) -> None:
        """Record a new transaction; its id must never have been used in this ledger."""
        transaction_id = txn["transaction_id"]
        if transaction_id in self._entries:
            raise ValueError(f"transaction id reused: {transaction_id}")
        seq = self._append(transaction_id)
        self._entries[transaction_id] = _Entry(seq, seq, False, txn["account_id"])
        self.live[transaction_id] = txn

    def extend(self, transactions: list[dict[str, Any]]) -> None:
        """Record many new transactions in order (the initial history)."""
        for txn in transactions:
            self.add(txn)

    def modify(self, txn: dict[str, Any]) -> None:
        """Replace a live transaction with a changed version of it (same id)."""
        transaction_id = txn["transaction_id"]
        entry = self._entries[transaction_id]
        if entry.removed:
            raise ValueError(f"transaction removed: {transaction_id}")
        entry.last = self._append(transaction_id)
        self.live[transaction_id] = txn
        self._encoded.pop(transaction_id, None)

    def remove(self, transaction_id: str) -> None:
        """Remove a live transaction; it keeps a tombstone so later diffs can report it."""
        entry = self._entries[transaction_id]
        if entry.removed:
            raise ValueError(f"transaction already removed: {transaction_id}")
        entry.last = self._append(transaction_id)
        entry.removed = True
        del self.live[transaction_id]
        self._encoded.pop(transaction_id, None)

    def encoded(self, transaction_id: str) -> JsonFragment:
        """The live transaction as JSON text, encoded once per version: a page of 500 is then
        a join, not 700 KB of encoding (transactions are replaced on change, never mutated)."""
        fragment = self._encoded.get(transaction_id)
        if fragment is None:
            fragment = JsonFragment(_ENCODER.encode(self.live[transaction_id]).decode())
            self._encoded[transaction_id] = fragment
        return fragment

    def account_of(self, transaction_id: str) -> str:
        return self._entries[transaction_id].account_id

    def diff(self, base: int) -> list[tuple[Op, str]]:
        """The net changes from sequence `base` to the head, ordered by last change (cached)."""
        if not 0 <= base <= self.head:
            raise ValueError("base outside the log")
        key = (base, self.head)
        cached = self._diffs.get(key)
        if cached is not None:
            self._diffs.move_to_end(key)
            return cached
        ops: list[tuple[Op, str]] = []
        entries = self._entries
        for seq in range(base + 1, self.head + 1):
            transaction_id = self._log[seq - 1]
            entry = entries[transaction_id]
            if entry.last != seq:
                continue  # a later change of the same transaction decides
            live_at_base = entry.created <= base
            if not entry.removed:
                ops.append(("modified" if live_at_base else "added", transaction_id))
            elif live_at_base:
                ops.append(("removed", transaction_id))
        self._diffs[key] = ops
        while len(self._diffs) > _CACHE_SIZE:
            self._diffs.popitem(last=False)
        return ops


@dataclass(frozen=True, slots=True)
class Cursor:
    """A decoded sync cursor: `head` and `offset` are set only mid-update (between pages)."""

    item_id: str
    base: int
    head: int | None = None
    offset: int = 0


class CursorCodec:
    """Opaque, tamper-evident cursors: base64url of a small JSON payload plus an HMAC tag."""

    _TAG = 12

    def __init__(self, key: bytes) -> None:
        self._key = key

    def encode(self, cursor: Cursor) -> str:
        payload = {"i": cursor.item_id, "b": cursor.base}
        if cursor.head is not None:
            payload.update({"h": cursor.head, "o": cursor.offset})
        raw = json.dumps(payload, separators=(",", ":")).encode()
        tag = hmac.new(self._key, raw, hashlib.sha256).digest()[: self._TAG]
        return base64.urlsafe_b64encode(raw + tag).decode().rstrip("=")

    def decode(self, text: str) -> Cursor | None:
        """The cursor, or None when `text` is not one this emulator issued."""
        try:
            blob = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        raw, tag = blob[: -self._TAG], blob[-self._TAG :]
        expected = hmac.new(self._key, raw, hashlib.sha256).digest()[: self._TAG]
        if len(blob) <= self._TAG or not hmac.compare_digest(tag, expected):
            return None
        payload = json.loads(raw)
        head = payload.get("h")
        return Cursor(payload["i"], payload["b"], head, payload.get("o", 0))
