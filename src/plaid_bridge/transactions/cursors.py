"""The opaque cursors of the transaction lists: a compact JSON array in unpadded URL-safe base64.

Clients hand a cursor back as they got it. Each list chooses its array and checks it on the way
back (`decode` only promises a list), so a cursor of one list is refused by another. A cursor is
client input: its numbers must fit a BIGINT and its texts be printable ids (`is_row_number`,
`is_id_text`) before they reach a query.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

from plaid_bridge.api.schemas import MAX_BIGINT, is_printable

__all__ = ["InvalidCursor", "decode", "encode", "is_id_text", "is_row_number"]


class InvalidCursor(ValueError):
    """The text is not a cursor this service issued (or it was altered)."""


def encode(values: Sequence[object]) -> str:
    """`values` (JSON-serialisable) as an opaque cursor."""
    raw = json.dumps(list(values), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str) -> list[Any]:
    """The array a cursor carries. Raises InvalidCursor unless `cursor` came from `encode`."""
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor(cursor) from None
    if not isinstance(values, list):
        raise InvalidCursor(cursor)
    return values


def is_row_number(value: object) -> bool:
    """Whether `value` is an int a BIGINT column holds, from 0 (JSON carries any size)."""
    return type(value) is int and 0 <= value <= MAX_BIGINT


def is_id_text(value: object, max_length: int = 128) -> bool:
    """Whether `value` is a printable string of at most `max_length` characters."""
    return isinstance(value, str) and len(value) <= max_length and is_printable(value)
