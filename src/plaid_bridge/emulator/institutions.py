"""The sandbox institutions the emulator knows, with Plaid's ids and names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Institution:
    """A sandbox bank: its Plaid id, name, countries and the currency of its accounts."""

    institution_id: str
    name: str
    short_name: str
    country_codes: tuple[str, ...]
    currency: str
    url: str
    primary_color: str
    routing_numbers: tuple[str, ...]
    oauth: bool = False

    def as_plaid(self, *, optional_metadata: bool, status: dict[str, Any] | None) -> dict[str, Any]:
        """The `Institution` object of `/institutions/get_by_id`."""
        body: dict[str, Any] = {
            "institution_id": self.institution_id,
            "name": self.name,
            "products": list(INSTITUTION_PRODUCTS),
            "country_codes": list(self.country_codes),
            "routing_numbers": list(self.routing_numbers),
            "dtc_numbers": [],
            "oauth": self.oauth,
            # Not in the 2020-09-14 spec file, but required by plaid-python 46's model.
            "connection_availability": "SUPPORTED",
            "status": status,
        }
        if optional_metadata:
            body.update({"url": self.url, "primary_color": self.primary_color, "logo": None})
        return body


INSTITUTION_PRODUCTS = (
    "assets",
    "auth",
    "balance",
    "identity",
    "investments",
    "liabilities",
    "transactions",
)

INSTITUTIONS: dict[str, Institution] = {
    ins.institution_id: ins
    for ins in (
        Institution(
            "ins_109508",
            "First Platypus Bank",
            "Platypus",
            ("US",),
            "USD",
            "https://www.platypus.example",
            "#1f1f1f",
            ("011000138",),
        ),
        Institution(
            "ins_109509",
            "First Gingham Credit Union",
            "Gingham",
            ("US",),
            "USD",
            "https://www.gingham.example",
            "#0a5f38",
            ("021000021",),
        ),
        Institution(
            "ins_109510",
            "Tattersall Federal Credit Union",
            "Tattersall",
            ("US",),
            "USD",
            "https://www.tattersall.example",
            "#7b2d26",
            ("031000053",),
        ),
        Institution(
            "ins_109511",
            "Tartan Bank",
            "Tartan",
            ("US",),
            "USD",
            "https://www.tartan.example",
            "#213a8f",
            ("041000124",),
        ),
        Institution(
            "ins_109512",
            "Houndstooth Bank",
            "Houndstooth",
            ("US",),
            "USD",
            "https://www.houndstooth.example",
            "#3c3c3c",
            ("051000017",),
        ),
        Institution(
            "ins_43",
            "Tartan-Dominion Bank of Canada",
            "Tartan-Dominion",
            ("CA",),
            "CAD",
            "https://www.tartan-dominion.example",
            "#b01c2e",
            ("000300002",),
        ),
    )
}
DEFAULT_INSTITUTION = "ins_109508"
