"""The opaque cursors of the transaction lists: a compact JSON array in unpadded URL-safe base64.

Clients hand a cursor back as they got it. Each list chooses its array and checks it on the way
back (`decode` only promises a list), so a cursor of one list is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any

__all__ = ["InvalidCursor", "decode", "encode"]


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
