"""Request bodies the emulator accepts, as strict pydantic models (unknown fields ignored).

Plaid endpoints use Plaid's snake_case names; control endpoints use camelCase. Validation
failures become Plaid's MISSING_FIELDS / INVALID_FIELD errors naming the field (`as_plaid_error`).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from plaid_bridge.emulator.errors import PlaidAPIError

M = TypeVar("M", bound=BaseModel)

COUNTRY_CODES = frozenset("US GB ES NL FR IE CA DE IT PL DK NO SE EE LT LV PT BE AT FI".split())
# Plaid's product names (`balance` is refused: it is not a product you can request).
PRODUCTS = frozenset(
    """assets auth balance_plus beacon identity identity_match investments investments_auth
    liabilities payment_initiation identity_verification transactions credit_details income
    income_verification standing_orders transfer employment recurring_transactions
    transactions_refresh signal statements processor_payments processor_identity profile
    cra_base_report cra_income_insights cra_partner_insights cra_network_insights
    cra_cashflow_insights cra_monitoring cra_lend_score cra_plaid_credit_score layer pay_by_bank
    protect_linked_bank protect_transactions""".split()
)


def _check_products(value: list[str] | None) -> list[str] | None:
    for product in value or ():
        if product == "balance":
            raise ValueError("balance is not a valid product (balances come with every Item)")
        if product not in PRODUCTS:
            raise ValueError(f"{product!r} is not a valid product")
    return value


def _check_countries(value: list[str]) -> list[str]:
    for code in value:
        if code not in COUNTRY_CODES:
            raise ValueError(f"{code!r} is not a supported country code")
    return value


def _check_url(value: str | None) -> str | None:
    if value and not value.startswith(("http://", "https://")):
        raise ValueError("must be an http:// or https:// URL")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)


class PlaidRequest(_Strict):
    """Fields every Plaid request may carry (credentials may also come as headers)."""

    client_id: str | None = None
    secret: str | None = None


class AccessTokenRequest(PlaidRequest):
    access_token: str


class LinkUser(_Strict):
    client_user_id: str = Field(min_length=1)


class LinkUpdate(_Strict):
    account_selection_enabled: bool = False


class DaysRequested(_Strict):
    days_requested: int | None = Field(default=None, ge=1, le=730)


class LinkTokenCreateRequest(PlaidRequest):
    client_name: str = Field(min_length=1)
    language: str = Field(min_length=1)
    country_codes: list[str] = Field(min_length=1)
    user: LinkUser
    products: list[str] | None = None
    access_token: str | None = None
    webhook: str | None = None
    redirect_uri: str | None = None
    update: LinkUpdate | None = None
    transactions: DaysRequested | None = None

    _products = field_validator("products")(_check_products)
    _countries = field_validator("country_codes")(_check_countries)
    _webhook = field_validator("webhook", "redirect_uri")(_check_url)


class SandboxOptions(_Strict):
    webhook: str | None = None
    override_username: str | None = None
    override_password: str | None = None
    transactions: DaysRequested | None = None

    _webhook = field_validator("webhook")(_check_url)


class SandboxPublicTokenCreateRequest(PlaidRequest):
    institution_id: str = Field(min_length=1)
    initial_products: list[str] = Field(min_length=1)
    options: SandboxOptions | None = None

    _products = field_validator("initial_products")(_check_products)


class PublicTokenExchangeRequest(PlaidRequest):
    public_token: str


class ItemWebhookUpdateRequest(AccessTokenRequest):
    webhook: str | None = None

    _webhook = field_validator("webhook")(_check_url)


class AccountsOptions(_Strict):
    account_ids: list[str] | None = None
    min_last_updated_datetime: str | None = None


class AccountsGetRequest(AccessTokenRequest):
    options: AccountsOptions | None = None


class InstitutionOptions(_Strict):
    include_optional_metadata: bool = False
    include_status: bool = False
    include_auth_metadata: bool = False
    include_payment_initiation_metadata: bool = False


class InstitutionGetByIdRequest(PlaidRequest):
    institution_id: str = Field(min_length=1)
    country_codes: list[str] = Field(min_length=1)
    options: InstitutionOptions | None = None

    _countries = field_validator("country_codes")(_check_countries)


class SyncOptions(_Strict):
    include_original_description: bool | None = None
    include_personal_finance_category: bool | None = None
    account_id: str | None = None
    days_requested: int | None = Field(default=None, ge=1, le=730)


class TransactionsSyncRequest(AccessTokenRequest):
    cursor: str | None = None
    count: int | None = Field(default=None, ge=1, le=500)
    options: SyncOptions | None = None


class WebhookKeyGetRequest(PlaidRequest):
    key_id: str


class FireWebhookRequest(AccessTokenRequest):
    webhook_type: str | None = None
    webhook_code: str


# ---- control endpoints (camelCase) ---------------------------------------------------------


class _Control(_Strict):
    model_config = ConfigDict(
        extra="ignore", strict=True, frozen=True, alias_generator=to_camel, populate_by_name=True
    )


class FaultCreate(_Control):
    endpoint: str = Field(min_length=2, pattern=r"^/")
    error_code: str | None = None
    count: int = Field(default=1, ge=1, le=1_000_000)
    item_id: str | None = None
    page: int | None = Field(default=None, ge=1)
    latency_ms: int | None = Field(default=None, ge=0, le=600_000)
    drop_connection: bool = False


class AdvanceRequest(_Control):
    days: int = Field(default=1, ge=0, le=3650)
    item_id: str | None = None
    add: int | None = Field(default=None, ge=0, le=100_000)
    modify: int | None = Field(default=None, ge=0, le=100_000)
    post: int | None = Field(default=None, ge=0, le=100_000)
    remove: int | None = Field(default=None, ge=0, le=100_000)


class LinkCompleteRequest(_Control):
    link_token: str
    institution_id: str | None = None


def _field_name(loc: tuple[int | str, ...]) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else part)
    return name or "body"


def as_plaid_error(error: ValidationError) -> PlaidAPIError:
    """MISSING_FIELDS listing every missing field, else INVALID_FIELD naming the first bad one."""
    problems = error.errors(include_url=False)
    missing = [_field_name(p["loc"]) for p in problems if p["type"] == "missing"]
    if missing:
        return PlaidAPIError(
            "MISSING_FIELDS", "the following required fields are missing: " + ", ".join(missing)
        )
    first = problems[0]
    detail = str(first["msg"]).removeprefix("Value error, ")
    detail = detail[:1].lower() + detail[1:]
    return PlaidAPIError("INVALID_FIELD", f"{_field_name(first['loc'])}: {detail}")


def parse(model: type[M], payload: dict[str, Any]) -> M:
    """Validate `payload` as `model`, raising the Plaid-shaped error on failure."""
    try:
        return model.model_validate(payload)
    except ValidationError as error:
        raise as_plaid_error(error) from None


class FireWebhookControl(_Control):
    webhook_code: str
    webhook_type: str | None = None
