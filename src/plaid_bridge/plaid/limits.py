"""Plaid's documented rate limits per endpoint, and the parser of `PLAID_RATE_LIMITS` overrides.

Plaid counts calls per endpoint in one-minute windows, per Item and per client (PLAID_FACTS.md,
"Rate limits"). These tables are the figures the outbound limiter (`plaid/ratelimit.py`) keeps;
settings validate their overrides with the same parser, so this module depends on nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "PRODUCTION_LIMITS",
    "SANDBOX_LIMITS",
    "EndpointLimits",
    "default_limits",
    "parse_rate_limits",
]


@dataclass(frozen=True, slots=True)
class EndpointLimits:
    """Calls allowed per window for one endpoint; None means that scope is not limited."""

    per_item: int | None = None
    per_client: int | None = None


PRODUCTION_LIMITS: Mapping[str, EndpointLimits] = {
    "/transactions/sync": EndpointLimits(50, 2_500),
    "/transactions/refresh": EndpointLimits(2, 100),
    "/accounts/get": EndpointLimits(15, 15_000),
    "/accounts/balance/get": EndpointLimits(5, 1_200),
    "/item/get": EndpointLimits(15, 5_000),
    "/item/remove": EndpointLimits(30, 2_000),
    "/auth/get": EndpointLimits(15, 12_000),
    "/identity/get": EndpointLimits(15, 2_000),
    "/institutions/get_by_id": EndpointLimits(None, 400),
}
"""Plaid's published Production figures per minute (PLAID_FACTS.md)."""

SANDBOX_LIMITS: Mapping[str, EndpointLimits] = {
    **PRODUCTION_LIMITS,
    "/transactions/sync": EndpointLimits(50, 1_000),
    "/accounts/get": EndpointLimits(100, 15_000),
    "/item/get": EndpointLimits(40, 5_000),
    "/item/remove": EndpointLimits(100, 2_000),
}
"""Sandbox: looser per Item, tighter per client for /transactions/sync."""


def default_limits(plaid_env: str) -> dict[str, EndpointLimits]:
    """Plaid's documented limits for the environment; the emulator stands in for Production."""
    return dict(SANDBOX_LIMITS if plaid_env == "sandbox" else PRODUCTION_LIMITS)


_PART = re.compile(r"^(?P<count>\d+)/(?P<scope>item|client)$")


def parse_rate_limits(
    text: str | None, base: Mapping[str, EndpointLimits] | None = None
) -> dict[str, EndpointLimits]:
    """`base` with the overrides of `PLAID_RATE_LIMITS` applied.

    Syntax: `/endpoint=N/item,M/client`, several endpoints separated by `;` or `,`
    (e.g. `/accounts/balance/get=5/item,1200/client;/item/get=15/item`). A scope not named keeps
    its figure from `base`; `/endpoint=off` removes the endpoint's limits. Raises ValueError with
    a message naming the first part it cannot read.
    """
    limits = dict(base or {})
    if not text or not text.strip():
        return limits
    endpoint: str | None = None
    for raw in re.split(r"[;,\s]+", text.strip()):
        if not raw:
            continue
        part = raw
        if "=" in raw:
            endpoint, _, part = raw.partition("=")
            if not endpoint.startswith("/") or len(endpoint) < 2:
                raise ValueError(f"PLAID_RATE_LIMITS: {raw!r} must start with a /endpoint")
            if part == "off":
                limits.pop(endpoint, None)
                endpoint = None
                continue
            limits.setdefault(endpoint, EndpointLimits())
        if endpoint is None:
            raise ValueError(f"PLAID_RATE_LIMITS: {raw!r} does not follow an /endpoint=")
        match = _PART.match(part)
        if match is None:
            raise ValueError(f"PLAID_RATE_LIMITS: {raw!r} is not N/item or N/client")
        count = int(match["count"])
        if count < 1:
            raise ValueError(f"PLAID_RATE_LIMITS: {raw!r} must allow at least 1 call")
        current = limits[endpoint]
        if match["scope"] == "item":
            limits[endpoint] = EndpointLimits(count, current.per_client)
        else:
            limits[endpoint] = EndpointLimits(current.per_item, count)
    return limits
