"""The base of every request and response body: camelCase on the wire, snake_case in Python."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class CamelModel(BaseModel):
    """Fields are written in snake_case and travel as camelCase; either spelling is read, and
    unknown fields are ignored (clients send more than a route needs)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")
