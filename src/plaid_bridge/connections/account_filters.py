"""Plaid's `account_filters` for a Link token, typed as Plaid defines `LinkTokenAccountFilters`.

Each account type takes `{account_subtypes: [...]}` with the subtypes Plaid lists for it (`all`
for every one); nothing else is accepted, so the object's depth and size are bounded by its shape
and it reaches the SDK as Plaid would accept it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["AccountFilters"]

DepositorySubtype = Literal[
    "checking",
    "savings",
    "hsa",
    "cd",
    "money market",
    "paypal",
    "prepaid",
    "cash management",
    "ebt",
    "limited purpose checking",
    "all",
]
CreditSubtype = Literal["credit card", "paypal", "all"]
LoanSubtype = Literal[
    "auto",
    "business",
    "commercial",
    "construction",
    "consumer",
    "home equity",
    "loan",
    "mortgage",
    "overdraft",
    "line of credit",
    "student",
    "other",
    "all",
]
InvestmentSubtype = Literal[
    "529",
    "401a",
    "401k",
    "403B",
    "457b",
    "brokerage",
    "cash isa",
    "crypto exchange",
    "education savings account",
    "fhsa",
    "fixed annuity",
    "gic",
    "health reimbursement arrangement",
    "hsa",
    "ira",
    "isa",
    "keogh",
    "lif",
    "life insurance",
    "line of credit",
    "lira",
    "lrif",
    "lrsp",
    "mutual fund",
    "non-custodial wallet",
    "non-taxable brokerage account",
    "other",
    "other annuity",
    "other insurance",
    "pension",
    "prif",
    "profit sharing plan",
    "qshr",
    "rdsp",
    "resp",
    "retirement",
    "rlif",
    "roth",
    "roth 401k",
    "roth 403B",
    "roth 457b",
    "roth pension",
    "roth profit sharing plan",
    "roth thrift savings plan",
    "rrif",
    "rrsp",
    "sarsep",
    "sep ira",
    "simple ira",
    "sipp",
    "stock plan",
    "thrift savings plan",
    "tfsa",
    "trust",
    "ugma",
    "utma",
    "variable annuity",
    "all",
]
OtherSubtype = Literal["other", "all"]
# Plaid's names are snake_case and stay so: this object is passed through as Plaid shapes it.
_PLAID_SHAPE = ConfigDict(extra="forbid")
_MAX_SUBTYPES = 64


class DepositoryFilter(BaseModel):
    model_config = _PLAID_SHAPE
    account_subtypes: list[DepositorySubtype] = Field(min_length=1, max_length=_MAX_SUBTYPES)
    limited_purpose_types: list[Literal["RENT_MORTGAGE"]] | None = Field(default=None, max_length=1)


class CreditFilter(BaseModel):
    model_config = _PLAID_SHAPE
    account_subtypes: list[CreditSubtype] = Field(min_length=1, max_length=_MAX_SUBTYPES)


class LoanFilter(BaseModel):
    model_config = _PLAID_SHAPE
    account_subtypes: list[LoanSubtype] = Field(min_length=1, max_length=_MAX_SUBTYPES)


class InvestmentFilter(BaseModel):
    model_config = _PLAID_SHAPE
    account_subtypes: list[InvestmentSubtype] = Field(min_length=1, max_length=_MAX_SUBTYPES)


class OtherFilter(BaseModel):
    model_config = _PLAID_SHAPE
    account_subtypes: list[OtherSubtype] = Field(min_length=1, max_length=_MAX_SUBTYPES)


class AccountFilters(BaseModel):
    """The account types and subtypes Link shows; a type left out is not shown at all."""

    model_config = _PLAID_SHAPE
    depository: DepositoryFilter | None = None
    credit: CreditFilter | None = None
    loan: LoanFilter | None = None
    investment: InvestmentFilter | None = None
    other: OtherFilter | None = None

    def as_plaid(self) -> dict[str, Any]:
        """Plaid's JSON object: the types given, each with its distinct subtypes."""
        plain = self.model_dump(exclude_none=True)
        for value in plain.values():
            value["account_subtypes"] = list(dict.fromkeys(value["account_subtypes"]))
        return plain
