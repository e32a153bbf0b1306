"""The base of every request and response body: camelCase on the wire, snake_case in Python; and
the limits every input must keep before it may reach the database."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

MAX_BIGINT = 2**63 - 1
"""The largest integer a BIGINT column holds: ids and sequence numbers past it are refused (400),
never sent to PostgreSQL."""
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"
"""Text without C0 control characters or DEL: PostgreSQL refuses NUL in text, and no id, cursor
or name of ours holds the others."""
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def is_printable(text: str) -> bool:
    """Whether `text` matches NO_CONTROL_CHARACTERS."""
    return _CONTROL.search(text) is None


class CamelModel(BaseModel):
    """Fields are written in snake_case and travel as camelCase; either spelling is read, and
    unknown fields are ignored (clients send more than a route needs)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
