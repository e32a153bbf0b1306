"""Settings: the only place that reads the environment (and `.env`).

Validated once at start-up; an invalid configuration stops the process with one line per problem
(see `load_settings`), so the service never runs half-configured.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from plaid_bridge.plaid.limits import parse_rate_limits

PlaidEnv = Literal["emulator", "sandbox", "production"]

PLAID_HOSTS: dict[str, str] = {
    "emulator": "http://127.0.0.1:8100",
    "sandbox": "https://sandbox.plaid.com",
    "production": "https://production.plaid.com",
}
API_PREFIX = "/api/v1/plaid"
"""Where the API's routes are mounted; the webhook URL and the health recommendations name it."""
DEV_JWT_SECRET = "plaid-bridge-development-secret-not-for-production"
EMULATOR_CORS_ORIGINS = ("http://localhost:3000", "http://127.0.0.1:3000")
"""The origins a local frontend dev server usually runs on; allowed by default in emulator mode."""
# RFC 6265 cookie-name: an RFC 9110 token.
_COOKIE_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
# HS256 keys shorter than the hash output make brute-forcing a captured token cheaper.
MIN_PRODUCTION_JWT_SECRET_BYTES = 32
CommaList = Annotated[list[str], NoDecode]


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one human-readable line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Every setting of SPEC section 2, typed; secrets are `SecretStr` so they never print.

    Beyond field checks, `_environment_rules` refuses unsafe combinations. Outside emulator mode
    a JWT secret or public key of the deployment's own is required (never the development
    secret). In production also: a JWT secret of at least 32 bytes, an `https://`
    `PLAID_API_HOST`, and shared (`redis://`) rate-limit storage whenever more than one process
    serves, which the settings know from `WEB_CONCURRENCY` above 1 (`plaid-bridge serve
    --workers` sets it) or `WORKER_MODE=external` (the API and `plaid-bridge worker` are apart
    and must share Plaid's limits). Replicas on several hosts cannot be seen from here: they
    need `redis://` as well.

    Browsers (see docs/frontend.md): `CORS_ALLOW_ORIGINS` lists the origins that may call the
    API with credentials (unset: none, or the usual local frontend origins in emulator mode;
    `*` is refused, and plain `http://` origins in production); `AUTH_COOKIE_NAME` names a
    cookie read for the JWT when no Authorization header is sent, with the double-submit CSRF
    check on unsafe methods; `API_RESPONSE_ENVELOPE=operate` wraps success bodies as
    `{data, meta}` like Operate's API.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    plaid_env: PlaidEnv = "emulator"
    plaid_client_id: str | None = None
    plaid_secret: SecretStr | None = None
    plaid_api_host: str | None = None
    emulator_client_id: str = "emulator-client-id"
    emulator_secret: SecretStr = SecretStr("emulator-secret")
    emulator_seed: int = 42
    emulator_transactions: int = Field(default=300, ge=0, le=100_000)

    plaid_products: CommaList = ["transactions"]
    plaid_country_codes: CommaList = ["US", "CA"]
    plaid_language: str = "en"
    plaid_client_name: str = "Operate"
    plaid_webhook_url: str | None = None
    plaid_redirect_uri: str | None = None
    plaid_transactions_days_requested: int = Field(default=730, ge=1, le=730)
    plaid_timeout_seconds: float = Field(default=30.0, gt=0, le=300)
    plaid_max_retries: int = Field(default=3, ge=0, le=10)
    plaid_retry_backoff_seconds: float = Field(default=0.5, ge=0, le=60)
    plaid_webhook_verify: bool = True
    # New webhook verification keys (unknown `kid`s) fetched per second, for the whole process.
    # Plaid publishes no limit for /webhook_verification_key/get; the ceiling of 5/s (300/min)
    # stays under the smallest per-client figure it publishes (400/min).
    plaid_webhook_key_fetch_per_second: float = Field(default=1.0, gt=0, le=5)

    plaid_encryption_keys: SecretStr | None = None
    plaid_encryption_key: SecretStr | None = None
    plaid_legacy_encryption_key: SecretStr | None = None

    database_url: str = "sqlite:///var/plaid_bridge.db"
    # PostgreSQL sessions per process: a fixed pool (no overflow, no ping per checkout), each
    # session replaced after `database_pool_recycle_seconds`. Webhooks need one (group commit).
    database_pool_size: int = Field(default=10, ge=1, le=200)
    database_pool_recycle_seconds: float = Field(default=1800.0, ge=10, le=86_400)
    # Verified webhooks waiting for their group commit, per process; beyond it a webhook is
    # answered 503 with Retry-After at once (Plaid redelivers) instead of waiting for seconds.
    webhook_max_pending: int = Field(default=100, ge=1, le=100_000)

    auth_jwt_secret: SecretStr | None = None
    auth_jwt_public_key: str | None = None
    auth_jwt_algorithms: CommaList = []
    auth_jwt_audience: str | None = None
    auth_jwt_issuer: str | None = None
    # Tokens must carry `exp`, at most this far from `iat` (or from now without `iat`).
    auth_jwt_max_lifetime_seconds: int = Field(default=86_400, ge=60, le=30 * 86_400)
    # A cookie carrying the JWT for browsers (Operate's web app: `access_token`); unset, only
    # `Authorization: Bearer` is read. Cookie-authenticated unsafe methods need the
    # double-submit CSRF check (`X-XSRF-TOKEN` header equal to the `XSRF-TOKEN` cookie).
    auth_cookie_name: str | None = None

    # Origins allowed to call the API from a browser, with credentials. Unset: none, except in
    # emulator mode (EMULATOR_CORS_ORIGINS); set empty: none. See `cors_origins`.
    cors_allow_origins: Annotated[list[str] | None, NoDecode] = None
    # `operate` wraps every success body of the API as `{data, meta: {timestamp, requestId}}`,
    # as Operate's web client expects; errors, the webhook and ops endpoints are unchanged.
    api_response_envelope: Literal["plain", "operate"] = "plain"

    rate_limit_storage_uri: str = "memory://"
    plaid_rate_limits: str | None = None
    plaid_rate_limit_max_wait_seconds: float = Field(default=5.0, ge=0, le=120)
    # Change-feed pages per user per minute, a window of their own (ratelimit/api.py).
    feed_rate_limit: int = Field(default=1800, ge=1, le=1_000_000)
    worker_mode: Literal["embedded", "external"] = "embedded"
    # API processes of this deployment (uvicorn's variable; `serve --workers` overrides it).
    web_concurrency: int = Field(default=1, ge=1, le=512)
    # The transactions sync engine and its queue (sync/engine.py, sync/queue.py).
    sync_page_size: int = Field(default=500, ge=1, le=500)
    sync_max_restarts: int = Field(default=5, ge=0, le=100)
    sync_max_attempts: int = Field(default=8, ge=1, le=100)
    sync_retry_backoff_seconds: float = Field(default=30.0, ge=0, le=86_400)
    # A sync's claim: renewed every third of it while the run lasts, so a dead worker's sync is
    # taken over by another within this long.
    sync_lease_seconds: float = Field(default=30.0, gt=0, le=3600)
    # Syncs one worker runs at once (a steady pool: the next due one starts as one finishes);
    # the Plaid client's connection pool is sized to it.
    sync_concurrency: int = Field(default=16, ge=1, le=256)
    sync_reconcile_after_seconds: float = Field(default=21_600.0, gt=0, le=30 * 86_400)
    # How long a worker's claim on an inbox row lasts; a crashed worker's rows wait this long.
    worker_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Largest request body any route reads; refused (413) before parsing or authentication.
    max_request_bytes: int = Field(default=65_536, ge=1_024, le=16 * 1_048_576)
    # How long a stopping process (SIGTERM) may take: running syncs are interrupted and handed
    # back at once, the webhook in progress finishes; whatever is left after this is cancelled.
    # Under `plaid-bridge serve`, open requests get half of it and the embedded worker the rest.
    shutdown_grace_seconds: float = Field(default=20.0, gt=0, le=600)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "json"
    # Proxies whose X-Forwarded-For/-Proto are believed (addresses, CIDR ranges or `*`);
    # unset, no header is: the connecting peer is the client.
    forwarded_allow_ips: str = ""
    var_dir: Path = Path("var")

    @field_validator("plaid_env", mode="before")
    @classmethod
    def _refuse_development(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() == "development":
            raise ValueError(
                "Plaid retired the Development environment in 2024; "
                "use 'sandbox' or limited 'production' (or 'emulator' offline)"
            )
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("plaid_products", "plaid_country_codes", "auth_jwt_algorithms", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value)

    @field_validator("cors_allow_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        return _split(value)

    @field_validator("cors_allow_origins")
    @classmethod
    def _exact_origins(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        origins: list[str] = []
        problems = [problem for origin in value if (problem := _origin_problem(origin))]
        if problems:
            raise ValueError("\n".join(problems))
        for origin in value:
            normal = _normal_origin(origin)
            if normal not in origins:
                origins.append(normal)
        return origins

    @field_validator("auth_cookie_name")
    @classmethod
    def _cookie_name(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not _COOKIE_NAME.match(value.strip()):
            raise ValueError("must be a cookie name (letters, digits and !#$%&'*+.^_`|~-)")
        return value.strip()

    @field_validator("plaid_products")
    @classmethod
    def _no_balance_product(cls, value: list[str]) -> list[str]:
        if "balance" in value:
            raise ValueError("'balance' is not a Plaid product; remove it from PLAID_PRODUCTS")
        if not value:
            raise ValueError("at least one product is required")
        return value

    @field_validator("plaid_country_codes")
    @classmethod
    def _upper_countries(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one country code is required")
        return [code.upper() for code in value]

    @field_validator("auth_jwt_algorithms")
    @classmethod
    def _no_none_algorithm(cls, value: list[str]) -> list[str]:
        if any(alg.lower() == "none" for alg in value):
            raise ValueError("the 'none' algorithm is never accepted")
        return value

    @field_validator("plaid_rate_limits")
    @classmethod
    def _readable_rate_limits(cls, value: str | None) -> str | None:
        try:
            parse_rate_limits(value)
        except ValueError as error:
            raise ValueError(str(error).removeprefix("PLAID_RATE_LIMITS: ")) from None
        return value

    @field_validator("rate_limit_storage_uri")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        scheme = value.partition("://")[0].lower().removeprefix("async+")
        if scheme not in ("memory", "redis", "rediss", "redis+unix"):
            raise ValueError("must be memory:// or redis://host:port/db")
        return value

    @model_validator(mode="after")
    def _environment_rules(self) -> Settings:
        problems: list[str] = []
        if self.plaid_env in ("sandbox", "production"):
            if not self.plaid_client_id:
                problems.append(f"PLAID_CLIENT_ID is required when PLAID_ENV={self.plaid_env}")
            if self.plaid_secret is None or not self.plaid_secret.get_secret_value():
                problems.append(f"PLAID_SECRET is required when PLAID_ENV={self.plaid_env}")
            problems.extend(self._jwt_key_problems())
        if self.plaid_env == "production":
            if not self.plaid_webhook_url:
                problems.append("PLAID_WEBHOOK_URL is required in production")
            elif not self.plaid_webhook_url.startswith("https://"):
                problems.append("PLAID_WEBHOOK_URL must be an https:// URL in production")
            if self.plaid_redirect_uri and not self.plaid_redirect_uri.startswith("https://"):
                problems.append("PLAID_REDIRECT_URI must be an https:// URL in production")
            if self.plaid_encryption_keys is None and self.plaid_encryption_key is None:
                problems.append(
                    "PLAID_ENCRYPTION_KEYS (or PLAID_ENCRYPTION_KEY) is required in production"
                )
            if self.plaid_api_host and not self.plaid_api_host.lower().startswith("https://"):
                problems.append(
                    "PLAID_API_HOST must be an https:// URL in production "
                    "(the Plaid secret travels with every call)"
                )
            if self.database_url.startswith("sqlite"):
                problems.append(
                    "DATABASE_URL must not be SQLite in production (use postgresql+psycopg://)"
                )
            if not self.plaid_webhook_verify:
                problems.append("PLAID_WEBHOOK_VERIFY=false is not allowed in production")
            plain = [
                origin for origin in self.cors_allow_origins or [] if origin.startswith("http:")
            ]
            if plain:
                problems.append(
                    "CORS_ALLOW_ORIGINS must list https:// origins in production "
                    f"(refused: {', '.join(plain)}): a page served over plain HTTP can be "
                    "altered on the way and would call the API with the user's cookies"
                )
            storage = self.rate_limit_storage_uri.partition("://")[0].lower()
            if storage.removeprefix("async+") == "memory" and (
                self.web_concurrency > 1 or self.worker_mode == "external"
            ):
                problems.append(
                    "RATE_LIMIT_STORAGE_URI=memory:// cannot share limits between processes "
                    f"(WEB_CONCURRENCY={self.web_concurrency}, WORKER_MODE={self.worker_mode}); "
                    "use redis://host:port/db in production"
                )
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _jwt_key_problems(self) -> list[str]:
        """Sandbox and production verify tokens with their own key, never the source's."""
        secret = self.auth_jwt_secret.get_secret_value() if self.auth_jwt_secret else ""
        if not secret and not (self.auth_jwt_public_key or "").strip():
            return [f"AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY is required in {self.plaid_env}"]
        if secret == DEV_JWT_SECRET:
            return [f"AUTH_JWT_SECRET must not be the development secret in {self.plaid_env}"]
        if (
            secret
            and self.plaid_env == "production"
            and len(secret.encode("utf-8")) < MIN_PRODUCTION_JWT_SECRET_BYTES
        ):
            return [
                f"AUTH_JWT_SECRET must be at least {MIN_PRODUCTION_JWT_SECRET_BYTES} bytes "
                "in production"
            ]
        return []

    @cached_property
    def plaid_host(self) -> str:
        """The Plaid API base URL: `PLAID_API_HOST` or the environment's default."""
        return (self.plaid_api_host or PLAID_HOSTS[self.plaid_env]).rstrip("/")

    @cached_property
    def plaid_credentials(self) -> tuple[str, SecretStr]:
        """(client id, secret) for the configured environment."""
        if self.plaid_env == "emulator":
            return (
                self.plaid_client_id or self.emulator_client_id,
                self.plaid_secret or self.emulator_secret,
            )
        if self.plaid_client_id is None or self.plaid_secret is None:  # refused by validation
            raise ConfigError(["PLAID_CLIENT_ID and PLAID_SECRET are required"])
        return self.plaid_client_id, self.plaid_secret

    @cached_property
    def cors_origins(self) -> tuple[str, ...]:
        """The origins browsers may call the API from: `CORS_ALLOW_ORIGINS`, or when it is
        unset, `EMULATOR_CORS_ORIGINS` in emulator mode and none elsewhere."""
        if self.cors_allow_origins is not None:
            return tuple(self.cors_allow_origins)
        return EMULATOR_CORS_ORIGINS if self.plaid_env == "emulator" else ()

    @cached_property
    def webhook_url(self) -> str | None:
        """The webhook URL registered on every Item."""
        if self.plaid_webhook_url:
            return self.plaid_webhook_url
        if self.plaid_env == "emulator":
            return f"http://127.0.0.1:8000{API_PREFIX}/webhook"
        return None


def _origin_problem(origin: str) -> str | None:
    """Why `origin` cannot be matched against a browser's Origin header, or None."""
    if origin == "*":
        return "'*' is not allowed: credentials are sent only to origins listed one by one"
    parts = urlsplit(origin.rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{origin!r} is not an origin (scheme://host[:port], e.g. https://app.example.com)"
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return f"{origin!r}: an origin has no path, query or user (scheme://host[:port])"
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return f"{origin!r}: the port is not valid"
    return None


def _normal_origin(origin: str) -> str:
    """The origin as browsers serialise it: lower-case scheme and host, no default port, no
    trailing slash."""
    parts = urlsplit(origin.rstrip("/"))
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is None or parts.port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{parts.port}"


def _describe(error: ValidationError) -> list[str]:
    lines: list[str] = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]).upper()
        message = str(item["msg"]).removeprefix("Value error, ")
        for line in message.splitlines():
            lines.append(f"{field}: {line}" if field else line)
    return lines


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment; raises `ConfigError` listing every problem."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
