"""PlaidClient: the service's only door to Plaid.

Every call runs the synchronous SDK in a worker thread, within one time budget (retries
included), takes the answer raw and parses it into `plaid_bridge.plaid.types`; every failure
leaves as a `PlaidError`. Nothing here is configured at import time: each client owns its SDK
configuration, whose debug switch is pinned off because it would print the secret.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar

import anyio
import anyio.to_thread
import plaid
from plaid.model_utils import validate_and_convert_types
from pydantic import SecretStr

from plaid_bridge.plaid import sdk_models
from plaid_bridge.plaid.errors import (
    INVALID_RESPONSE,
    NETWORK_ERROR,
    UNEXPECTED_RESPONSE,
    CallFailed,
    PlaidError,
    PlaidErrorClass,
    error_from_exception,
)
from plaid_bridge.plaid.outbound import LimiterEvents, OutboundLimiter, item_key_for
from plaid_bridge.plaid.types import (
    Account,
    Institution,
    Json,
    LinkToken,
    NotJson,
    PlaidItem,
    PublicToken,
    SyncPage,
    TokenExchange,
    WebhookKey,
    document,
    request_id_in,
)

if TYPE_CHECKING:
    from plaid_bridge.config import Settings

OUTSIDE_INPUT_CODES = frozenset({"INVALID_PUBLIC_TOKEN", "INVALID_WEBHOOK_VERIFICATION_KEY_ID"})
"""Plaid refusing a value that came from outside (a user's public token, a webhook's `kid`): a
warning, not an error, since anyone can send such values and there is nothing of ours to fix."""

__all__ = ["PLAID_VERSION", "CallObserver", "PlaidClient", "QuietConfiguration"]

PLAID_VERSION = "2020-09-14"
logger = logging.getLogger("plaid_bridge.plaid")
T = TypeVar("T")

CallObserver = Callable[[str, str, str | None, float], None]
"""Told of every attempt: (endpoint, outcome "ok"/"retry"/"error", error code or None, seconds)."""

# The SDK logs response bodies (access tokens) at DEBUG on "plaid.rest"; "plaid" is its root.
_SDK_LOGGERS = ("plaid", "plaid.rest")


class _WarningsOnly(logging.Filter):
    """Drops records below WARNING even if someone lowers the SDK loggers' level."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


_WARNINGS_ONLY = _WarningsOnly()


def _quiet_sdk_loggers() -> None:
    for name in _SDK_LOGGERS:
        sdk_logger = logging.getLogger(name)
        sdk_logger.setLevel(logging.WARNING)
        if _WARNINGS_ONLY not in sdk_logger.filters:
            sdk_logger.addFilter(_WARNINGS_ONLY)


class QuietConfiguration(plaid.Configuration):  # type: ignore[misc]  # the SDK is untyped
    """An SDK configuration whose `debug` is always False.

    The SDK's debug switch turns on `http.client` tracing process-wide, which prints request
    headers (the secret), and DEBUG logging of response bodies (access tokens). Setting it here
    only re-asserts that the SDK loggers emit nothing below WARNING.
    """

    @property
    def debug(self) -> bool:
        return False

    @debug.setter
    def debug(self, _value: bool) -> None:
        _quiet_sdk_loggers()


Parse = Callable[[bytes], tuple[str | None, T]]
"""Reads a successful body: (Plaid's request id, the result)."""


def _object(from_json: Callable[[Json], T]) -> Parse[T]:
    """A parser of a body that is one JSON object, read by `from_json`."""

    def parse(data: bytes) -> tuple[str | None, T]:
        obj = document(data)
        request_id = obj.get("request_id")
        return (request_id if isinstance(request_id, str) else None), from_json(obj)

    return parse


def _sync_page(data: bytes) -> tuple[str | None, SyncPage]:
    page = SyncPage.from_json(data)
    return page.request_id, page


def _request_id(obj: Json) -> str:
    value = obj["request_id"]
    if not isinstance(value, str):
        raise TypeError("request_id must be a string")
    return value


class PlaidClient:
    """Typed, async access to the Plaid endpoints the service uses.

    Every method is keyword-only, finishes within `timeout` seconds (the budget of the whole
    call, retries included) and raises `PlaidError` for every failure; `error.error_class` says
    what to do. Reads and idempotent writes retry transient failures (`PlaidError.retryable`)
    with exponential backoff and full jitter, at most `max_retries` times; the token exchange
    and the sandbox calls are sent once. One log line per attempt goes to "plaid_bridge.plaid"
    (endpoint, attempt, outcome, Plaid request id, duration), never a token or the secret.

    With a `limiter`, every attempt first takes a slot in Plaid's rate-limit windows for its
    endpoint (and Item), waiting within the limiter's bound; a refusal is a `LimitReached`
    (a PlaidError of class RATE_LIMITED with `retry_after`), never retried here. `on_call`
    is told of every attempt, for metrics. At most `concurrency` calls are in flight at once,
    each on a kept-alive connection of a pool of that size.
    """

    def __init__(
        self,
        *,
        host: str,
        client_id: str,
        secret: SecretStr | str,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        products: Sequence[str] = ("transactions",),
        country_codes: Sequence[str] = ("US", "CA"),
        language: str = "en",
        client_name: str = "Operate",
        webhook: str | None = None,
        redirect_uri: str | None = None,
        days_requested: int = 730,
        limiter: OutboundLimiter | None = None,
        on_call: CallObserver | None = None,
        concurrency: int = 40,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if concurrency < 1:
            raise ValueError("concurrency must be positive")
        if max_retries < 0 or backoff < 0:
            raise ValueError("max_retries and backoff must not be negative")
        self.host = host.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._products = tuple(products)
        self._country_codes = tuple(country_codes)
        self._language = language
        self._client_name = client_name
        self._webhook = webhook
        self._redirect_uri = redirect_uri
        self._days_requested = days_requested
        self.limiter = limiter
        self._on_call = on_call

        _quiet_sdk_loggers()
        secret_value = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        configuration = QuietConfiguration(
            host=self.host,
            api_key={"clientId": client_id, "secret": secret_value, "plaidVersion": PLAID_VERSION},
        )
        # urllib3 would otherwise retry on its own, outside our budget and our policy.
        configuration.retries = False
        # As many kept-alive connections (and SDK threads) as calls in flight: a smaller pool
        # discards connections under load ("pool is full"), each a new TLS handshake later.
        configuration.connection_pool_maxsize = concurrency
        self._threads = anyio.CapacityLimiter(concurrency)
        self._configuration = configuration
        self._api_client = plaid.ApiClient(configuration)
        self._api: Any = None  # the SDK's PlaidApi, built on first use: see `load_sdk`
        self._api_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        on_call: CallObserver | None = None,
        limiter_events: LimiterEvents | None = None,
    ) -> PlaidClient:
        """A client for the configured environment, credentials, limits and Link defaults,
        with the outbound rate limiter the settings describe."""
        client_id, secret = settings.plaid_credentials
        return cls(
            host=settings.plaid_host,
            client_id=client_id,
            secret=secret,
            timeout=settings.plaid_timeout_seconds,
            max_retries=settings.plaid_max_retries,
            backoff=settings.plaid_retry_backoff_seconds,
            products=settings.plaid_products,
            country_codes=settings.plaid_country_codes,
            language=settings.plaid_language,
            client_name=settings.plaid_client_name,
            webhook=settings.webhook_url,
            redirect_uri=settings.plaid_redirect_uri,
            days_requested=settings.plaid_transactions_days_requested,
            limiter=OutboundLimiter.from_settings(settings, events=limiter_events),
            on_call=on_call,
            # The worker's syncs, plus room for the API's own calls when it runs embedded.
            concurrency=max(40, settings.sync_concurrency + 10),
        )

    def __repr__(self) -> str:
        return f"PlaidClient(host={self.host!r})"

    def close(self) -> None:
        """Closes pooled connections to Plaid; calls made afterwards open new ones. The
        limiter's storage stays open: `aclose` closes both."""
        self._api_client.close()
        self._api_client.rest_client.pool_manager.clear()

    async def aclose(self) -> None:
        """Closes pooled connections to Plaid and the limiter's storage (Redis)."""
        self.close()
        if self.limiter is not None:
            await self.limiter.aclose()

    async def load_sdk(self) -> None:
        """Loads the SDK's endpoint module on a worker thread, once. It imports every model of
        the SDK, a good part of a second of CPU, so a process does it after it starts serving
        (the app's lifespan, in the background) or at its first call, never before it can
        serve."""
        if self._api is None:
            await anyio.to_thread.run_sync(self._load_sdk, abandon_on_cancel=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Link and Items

    async def create_link_token(
        self,
        *,
        user_id: str,
        products: Sequence[str] | None = None,
        country_codes: Sequence[str] | None = None,
        language: str | None = None,
        account_filters: dict[str, Any] | None = None,
        access_token: str | None = None,
        account_selection_enabled: bool = False,
    ) -> LinkToken:
        """A Link token for `user_id`; with `access_token`, for update mode (re-auth).

        Products, countries and language default to the configured ones; the configured
        client name, webhook, redirect URI and `transactions.days_requested` are always sent.
        Update mode sends no products (Plaid refuses them there) and may let the user add
        accounts (`account_selection_enabled`). `account_filters` is Plaid's JSON object.
        Raises ValueError for products in update mode, PlaidError for any failure.
        """
        if access_token is not None and products is not None:
            raise ValueError("update mode (access_token) takes no products")
        if account_selection_enabled and access_token is None:
            raise ValueError("account_selection_enabled applies to update mode only")
        chosen_products = tuple(products) if products is not None else self._products

        def build() -> Any:
            fields: dict[str, Any] = {
                "client_name": self._client_name,
                "language": language or self._language,
                "country_codes": [
                    sdk_models.CountryCode(code) for code in country_codes or self._country_codes
                ],
                "user": sdk_models.LinkTokenCreateRequestUser(client_user_id=user_id),
            }
            if self._webhook:
                fields["webhook"] = self._webhook
            if self._redirect_uri:
                fields["redirect_uri"] = self._redirect_uri
            if account_filters is not None:
                fields["account_filters"] = validate_and_convert_types(
                    account_filters,
                    (sdk_models.LinkTokenAccountFilters,),
                    ["account_filters"],
                    True,
                    True,
                    configuration=self._configuration,
                )
            if access_token is not None:
                fields["access_token"] = access_token
                if account_selection_enabled:
                    fields["update"] = sdk_models.LinkTokenCreateRequestUpdate(
                        account_selection_enabled=True
                    )
            else:
                fields["products"] = [sdk_models.Products(product) for product in chosen_products]
                if "transactions" in chosen_products:
                    fields["transactions"] = sdk_models.LinkTokenTransactions(
                        days_requested=self._days_requested
                    )
            return sdk_models.LinkTokenCreateRequest(**fields)

        return await self._call(
            "/link/token/create",
            "link_token_create",
            build,
            _object(LinkToken.from_json),
            retry=True,
        )

    async def exchange_public_token(self, *, public_token: str) -> TokenExchange:
        """Exchanges a public token from Link for the Item's access token (a secret: store it
        encrypted, never log it). Sent once, never retried: a second exchange of the same
        token fails. Raises PlaidError."""
        return await self._call(
            "/item/public_token/exchange",
            "item_public_token_exchange",
            lambda: sdk_models.ItemPublicTokenExchangeRequest(public_token=public_token),
            _object(TokenExchange.from_json),
            retry=False,
        )

    async def get_item(self, *, access_token: str) -> PlaidItem:
        """The Item's state: its error (if any), consent expiry, products, webhook and last
        successful transactions update. Raises PlaidError."""
        return await self._call(
            "/item/get",
            "item_get",
            lambda: sdk_models.ItemGetRequest(access_token=access_token),
            _object(PlaidItem.from_json),
            retry=True,
            item_key=item_key_for(access_token),
        )

    async def remove_item(self, *, access_token: str) -> str:
        """Removes the Item at Plaid, which ends billing and invalidates the access token.
        Returns Plaid's request id. An Item already gone raises PlaidError of class GONE."""
        return await self._call(
            "/item/remove",
            "item_remove",
            lambda: sdk_models.ItemRemoveRequest(access_token=access_token),
            _object(_request_id),
            retry=True,
            item_key=item_key_for(access_token),
        )

    async def update_item_webhook(self, *, access_token: str, webhook: str) -> PlaidItem:
        """Points the Item's webhooks at `webhook` (Plaid then sends WEBHOOK_UPDATE_ACKNOWLEDGED
        there). Returns the updated Item (`last_successful_update` is not reported here).
        Raises PlaidError."""
        return await self._call(
            "/item/webhook/update",
            "item_webhook_update",
            lambda: sdk_models.ItemWebhookUpdateRequest(access_token=access_token, webhook=webhook),
            _object(PlaidItem.from_json),
            retry=True,
            item_key=item_key_for(access_token),
        )

    # Accounts and institutions

    async def get_accounts(self, *, access_token: str) -> tuple[Account, ...]:
        """The Item's accounts with cached balances. Raises PlaidError."""
        return await self._call(
            "/accounts/get",
            "accounts_get",
            lambda: sdk_models.AccountsGetRequest(access_token=access_token),
            _object(Account.list_from_json),
            retry=True,
            item_key=item_key_for(access_token),
        )

    async def get_balances(
        self, *, access_token: str, account_ids: Sequence[str] | None = None
    ) -> tuple[Account, ...]:
        """The Item's accounts (or only `account_ids`) with real-time balances, which Plaid
        fetches from the bank (slow, billed per call). Raises PlaidError."""

        def build() -> Any:
            if account_ids is None:
                return sdk_models.AccountsBalanceGetRequest(access_token=access_token)
            options = sdk_models.AccountsBalanceGetRequestOptions(account_ids=list(account_ids))
            return sdk_models.AccountsBalanceGetRequest(access_token=access_token, options=options)

        return await self._call(
            "/accounts/balance/get",
            "accounts_balance_get",
            build,
            _object(Account.list_from_json),
            retry=True,
            item_key=item_key_for(access_token),
        )

    async def get_institution(
        self, *, institution_id: str, country_codes: Sequence[str] | None = None
    ) -> Institution:
        """A bank's name, countries, products and OAuth flag; countries default to the
        configured ones. Raises PlaidError."""
        codes = tuple(country_codes) if country_codes is not None else self._country_codes
        return await self._call(
            "/institutions/get_by_id",
            "institutions_get_by_id",
            lambda: sdk_models.InstitutionsGetByIdRequest(
                institution_id=institution_id,
                country_codes=[sdk_models.CountryCode(code) for code in codes],
            ),
            _object(Institution.from_json),
            retry=True,
        )

    # Transactions

    async def sync_transactions(
        self, *, access_token: str, cursor: str | None = None, count: int = 500
    ) -> SyncPage:
        """One page of `/transactions/sync` from `cursor` (None or "" for the whole history).

        The caller owns the loop: keep the cursor it started from, apply all pages only once
        `has_more` is false, and restart from that cursor on a PlaidError of class
        RESTART_SYNC. A page with `not_ready` means no data yet: store nothing as progress.
        `count` is 1..500 (outside that the SDK refuses: PlaidError OURS_TO_FIX).
        """

        def build() -> Any:
            if cursor:
                return sdk_models.TransactionsSyncRequest(
                    access_token=access_token, cursor=cursor, count=count
                )
            return sdk_models.TransactionsSyncRequest(access_token=access_token, count=count)

        return await self._call(
            "/transactions/sync",
            "transactions_sync",
            build,
            _sync_page,
            retry=True,
            item_key=item_key_for(access_token),
        )

    async def refresh_transactions(self, *, access_token: str) -> str:
        """Asks Plaid to check the bank for new transactions now; results arrive later as a
        SYNC_UPDATES_AVAILABLE webhook. Returns Plaid's request id. Raises PlaidError."""
        return await self._call(
            "/transactions/refresh",
            "transactions_refresh",
            lambda: sdk_models.TransactionsRefreshRequest(access_token=access_token),
            _object(_request_id),
            retry=True,
            item_key=item_key_for(access_token),
        )

    # Webhooks

    async def get_webhook_verification_key(self, *, key_id: str, retry: bool = True) -> WebhookKey:
        """The public key (JWK) that signs webhooks carrying `kid == key_id`; a key with
        `expired_at` set has been rotated out. `retry=False` sends exactly one request (the
        webhook verifier counts its fetches). Raises PlaidError."""
        return await self._call(
            "/webhook_verification_key/get",
            "webhook_verification_key_get",
            lambda: sdk_models.WebhookVerificationKeyGetRequest(key_id=key_id),
            _object(WebhookKey.from_json),
            retry=retry,
        )

    # Sandbox (and emulator) only

    async def sandbox_public_token_create(
        self,
        *,
        institution_id: str,
        products: Sequence[str] | None = None,
        webhook: str | None = None,
    ) -> PublicToken:
        """Creates an Item without Link and returns its public token (sandbox and emulator).
        The webhook defaults to the configured one. Sent once. Raises PlaidError."""
        chosen_products = tuple(products) if products is not None else self._products
        hook = webhook or self._webhook

        def build() -> Any:
            fields: dict[str, Any] = {
                "institution_id": institution_id,
                "initial_products": [sdk_models.Products(product) for product in chosen_products],
            }
            if hook:
                fields["options"] = sdk_models.SandboxPublicTokenCreateRequestOptions(webhook=hook)
            return sdk_models.SandboxPublicTokenCreateRequest(**fields)

        return await self._call(
            "/sandbox/public_token/create",
            "sandbox_public_token_create",
            build,
            _object(PublicToken.from_json),
            retry=False,
        )

    async def sandbox_fire_webhook(
        self, *, access_token: str, webhook_code: str, webhook_type: str | None = None
    ) -> str:
        """Makes Plaid send the Item a test webhook (sandbox and emulator). Returns Plaid's
        request id. Sent once. Raises PlaidError."""

        def build() -> Any:
            if webhook_type is None:
                return sdk_models.SandboxItemFireWebhookRequest(
                    access_token=access_token, webhook_code=webhook_code
                )
            return sdk_models.SandboxItemFireWebhookRequest(
                access_token=access_token,
                webhook_code=webhook_code,
                webhook_type=sdk_models.WebhookType(webhook_type),
            )

        return await self._call(
            "/sandbox/item/fire_webhook",
            "sandbox_item_fire_webhook",
            build,
            _object(_request_id),
            retry=False,
            item_key=item_key_for(access_token),
        )

    async def sandbox_reset_login(self, *, access_token: str) -> str:
        """Puts the Item into ITEM_LOGIN_REQUIRED (sandbox and emulator), as if the bank
        wanted the user to sign in again. Returns Plaid's request id. Sent once. Raises
        PlaidError."""
        return await self._call(
            "/sandbox/item/reset_login",
            "sandbox_item_reset_login",
            lambda: sdk_models.SandboxItemResetLoginRequest(access_token=access_token),
            _object(_request_id),
            retry=False,
            item_key=item_key_for(access_token),
        )

    # The one path every call takes

    async def _call(
        self,
        endpoint: str,
        operation: str,
        build: Callable[[], Any],
        parse: Parse[T],
        *,
        retry: bool,
        item_key: str | None = None,
    ) -> T:
        """Runs one call of the SDK's `PlaidApi` method named `operation` within the time
        budget; each attempt gets what remains of it and a backoff that would end past it is
        not slept: the last error is raised instead.

        Each attempt first takes a rate-limit slot; the wait for the first one comes before
        the budget starts, later ones come out of it. So does loading the SDK, on the first
        call of a client that has not done it yet."""
        await self.load_sdk()
        deadline: float | None = None
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                budget_left = None if deadline is None else max(0.0, deadline - time.monotonic())
                await self.limiter.acquire(endpoint, item_key=item_key, max_wait=budget_left)
            if deadline is None:
                deadline = time.monotonic() + self.timeout
            started = time.monotonic()
            remaining = deadline - started
            failure: PlaidError | None = None
            try:
                with anyio.fail_after(remaining):
                    # Abandoning the thread on timeout bounds the call even when a slow body
                    # keeps urllib3 reading; the thread ends on its own socket timeout.
                    request_id, result = await anyio.to_thread.run_sync(
                        self._attempt,
                        operation,
                        build,
                        parse,
                        remaining,
                        abandon_on_cancel=True,
                        limiter=self._threads,
                    )
            except Exception as exc:
                # The one place failures are mapped; our own bugs (None) propagate unchanged.
                failure = error_from_exception(exc, endpoint=endpoint)
                if failure is None:
                    raise
            if failure is None:
                self._log(endpoint, attempt, started, request_id=request_id)
                return result
            delay = self._retry_delay(failure, attempt, deadline) if retry else None
            self._log(endpoint, attempt, started, error=failure, retrying=delay is not None)
            if delay is None:
                # Raised outside the handler: no chained SDK exception (or body) rides along.
                raise failure
            await anyio.sleep(delay)

    def _retry_delay(self, error: PlaidError, attempt: int, deadline: float) -> float | None:
        if not error.retryable or attempt > self.max_retries:
            return None
        delay = random.uniform(0, self.backoff * 2 ** (attempt - 1))  # full jitter
        if time.monotonic() + delay >= deadline:
            return None
        return delay

    def _load_sdk(self) -> None:
        with self._api_lock:
            if self._api is None:
                from plaid.api import plaid_api

                self._api = plaid_api.PlaidApi(self._api_client)

    def _attempt(
        self,
        operation: str,
        build: Callable[[], Any],
        parse: Parse[T],
        timeout: float,
    ) -> tuple[str | None, T]:
        """One HTTP exchange, in a worker thread: send, read the raw body, release the
        connection, parse. Returns (Plaid request id, parsed result)."""
        request = build()
        call = getattr(self._api, operation)
        try:
            response = call(request, _request_timeout=timeout, _preload_content=False)
        except AttributeError:
            # The SDK's handling of a TLS failure breaks on its own missing body.
            raise CallFailed(NETWORK_ERROR) from None
        except UnicodeDecodeError:
            # An error answer whose body is not UTF-8: not Plaid's.
            raise CallFailed(INVALID_RESPONSE) from None
        try:
            status = int(response.status)
            data = response.data
        finally:
            response.release_conn()
        try:
            return parse(data)
        except NotJson:
            raise CallFailed(INVALID_RESPONSE, status=status) from None
        except (KeyError, TypeError, ValueError, ArithmeticError):
            request_id = request_id_in(data)  # only now: a good answer carries its own
            raise CallFailed(UNEXPECTED_RESPONSE, status=status, request_id=request_id) from None

    def _log(
        self,
        endpoint: str,
        attempt: int,
        started: float,
        *,
        request_id: str | None = None,
        error: PlaidError | None = None,
        retrying: bool = False,
    ) -> None:
        seconds = time.monotonic() - started
        fields: dict[str, Any] = {
            "endpoint": endpoint,
            "attempt": attempt,
            "outcome": "ok",
            "plaid_request_id": request_id,
            "duration_ms": round(seconds * 1000, 1),
        }
        level = logging.INFO
        if error is not None:
            fields["outcome"] = "retry" if retrying else "error"
            fields["plaid_request_id"] = error.request_id
            fields["status"] = error.status
            fields["error_code"] = error.error_code
            fields["error_class"] = error.error_class.value
            if (
                error.error_class is PlaidErrorClass.OURS_TO_FIX
                and error.error_code not in OUTSIDE_INPUT_CODES
                and not retrying
            ):
                level = logging.ERROR
            else:
                level = logging.WARNING
        text = " ".join(f"{key}={value}" for key, value in fields.items())
        logger.log(level, "plaid.call %s", text, extra={"event": "plaid.call", **fields})
        if self._on_call is not None:
            self._on_call(endpoint, fields["outcome"], fields.get("error_code"), seconds)
