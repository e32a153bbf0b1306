"""Request authentication (SPEC section 3): bearer JWTs verified with python-jose against one
configured key and a pinned algorithm list, the role ladder, and dev tokens for local use.

Every verification failure is an `AuthError` naming which check failed (the HTTP layer answers
401 with it and a `WWW-Authenticate` challenge); no message echoes the token.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError

from plaid_bridge.config import DEV_JWT_SECRET

if TYPE_CHECKING:
    from plaid_bridge.config import Settings

__all__ = [
    "AuthError",
    "AuthFailure",
    "Principal",
    "Role",
    "TokenVerifier",
    "issue_dev_token",
]

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
PUBLIC_KEY_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
DEFAULT_SECRET_ALGORITHMS = ("HS256",)
DEFAULT_PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")
DEV_TOKEN_TTL_SECONDS = 3600 * 12
# A token that claims to live longer than this is refused (AUTH_JWT_MAX_LIFETIME_SECONDS).
DEFAULT_MAX_LIFETIME_SECONDS = 86_400
# Far above any real bearer token; refusing larger ones keeps parsing cost bounded.
MAX_TOKEN_LENGTH = 16 * 1024
_EC_CURVE_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}


class AuthFailure(StrEnum):
    """Which check a token failed; a client can act on it (refresh when expired, fix its
    configuration when the audience or issuer is wrong)."""

    MISSING = "missing"
    MALFORMED = "malformed"
    ALGORITHM = "algorithm"
    SIGNATURE = "signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    AUDIENCE = "audience"
    ISSUER = "issuer"
    MISSING_CLAIM = "missing_claim"
    INVALID_CLAIM = "invalid_claim"
    LIFETIME = "lifetime"


# RFC 6750 error_description texts: short, and within the characters a quoted header value allows.
_DESCRIPTIONS = {
    AuthFailure.MALFORMED: "The token is malformed",
    AuthFailure.ALGORITHM: "The token's signing algorithm is not accepted",
    AuthFailure.SIGNATURE: "The token's signature is invalid",
    AuthFailure.EXPIRED: "The token has expired",
    AuthFailure.NOT_YET_VALID: "The token is not valid yet",
    AuthFailure.AUDIENCE: "The token is for another audience",
    AuthFailure.ISSUER: "The token is from another issuer",
    AuthFailure.MISSING_CLAIM: "The token lacks a required claim",
    AuthFailure.INVALID_CLAIM: "The token has an invalid claim",
    AuthFailure.LIFETIME: "The token lives longer than allowed",
}


class AuthError(Exception):
    """The request is not authenticated.

    `reason` is a sentence for the caller saying which check failed; it is safe to show and to
    log, and never contains the token (nor any claim value). `claim` names the claim at fault
    for MISSING_CLAIM and INVALID_CLAIM.
    """

    def __init__(self, failure: AuthFailure, reason: str, *, claim: str | None = None) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason
        self.claim = claim

    @property
    def challenge(self) -> str:
        """The `WWW-Authenticate` value (RFC 6750 section 3): a bare `Bearer` when no token was
        given, else `invalid_token` with a short description."""
        if self.failure is AuthFailure.MISSING:
            return "Bearer"
        description = _DESCRIPTIONS[self.failure]
        if self.claim is not None:
            description = f"{description} ({self.claim})"
        return f'Bearer error="invalid_token", error_description="{description}"'


class Role(IntEnum):
    """Org roles, ordered: a role may do whatever any lower role may."""

    VIEWER = 1
    MEMBER = 2
    MANAGER = 3
    ADMIN = 4
    OWNER = 5

    def allows(self, required: Role) -> bool:
        """Whether this role meets `required` (it or anything above it)."""
        return self >= required

    @classmethod
    def parse(cls, value: object) -> Role:
        """The role named by a claim value (case-insensitive); ValueError for anything else."""
        if isinstance(value, Role):
            return value
        if isinstance(value, str):
            member = cls.__members__.get(value.strip().upper())
            if member is not None:
                return member
        raise ValueError("role must be one of " + ", ".join(cls.__members__))


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's `sub`, its tenant and its role."""

    user_id: str
    org_id: str
    role: Role


class TokenVerifier:
    """Verifies bearer tokens against one key and a pinned list of algorithms.

    A token whose header names an algorithm outside the list is refused before any signature
    check, and each allowed algorithm has its own key object built once, so a token can never
    pick how its signature is checked (e.g. HS256 keyed with the public key's PEM text).
    """

    __slots__ = (
        "_algorithms",
        "_audience",
        "_issuer",
        "_keys",
        "_max_lifetime",
        "uses_dev_secret",
    )

    def __init__(
        self,
        *,
        key: str,
        algorithms: Sequence[str],
        audience: str | None = None,
        issuer: str | None = None,
        max_lifetime_seconds: int = DEFAULT_MAX_LIFETIME_SECONDS,
        uses_dev_secret: bool = False,
    ) -> None:
        """`key` is an HMAC secret (HS* algorithms) or a PEM public key (RS*/ES*); the list
        may not mix the two. Algorithms the public key cannot serve are dropped (an RSA key
        keeps RS*, a P-256 key ES256). Tokens living longer than `max_lifetime_seconds` are
        refused. Raises ValueError for an unusable combination; messages never show the key.
        """
        if max_lifetime_seconds <= 0:
            raise ValueError("AUTH_JWT_MAX_LIFETIME_SECONDS must be positive")
        if not algorithms:
            raise ValueError("AUTH_JWT_ALGORITHMS: at least one algorithm is required")
        unknown = [alg for alg in algorithms if alg not in HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS]
        if unknown:
            raise ValueError(
                f"AUTH_JWT_ALGORITHMS: unsupported {', '.join(unknown)}; allowed: "
                + ", ".join(HMAC_ALGORITHMS + PUBLIC_KEY_ALGORITHMS)
            )
        hmac_algs = [alg for alg in algorithms if alg in HMAC_ALGORITHMS]
        if hmac_algs and len(hmac_algs) != len(algorithms):
            raise ValueError(
                "AUTH_JWT_ALGORITHMS: HMAC (HS*) and public-key (RS*/ES*) algorithms cannot be "
                "mixed; one key serves one family"
            )
        if hmac_algs:
            self._keys = _hmac_keys(key, hmac_algs)
        else:
            self._keys = _public_keys(key, algorithms)
        self._algorithms = tuple(self._keys)
        self._audience = audience or None
        self._issuer = issuer or None
        self._max_lifetime = max_lifetime_seconds
        self.uses_dev_secret = uses_dev_secret

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenVerifier:
        """The verifier for `AUTH_JWT_SECRET` or `AUTH_JWT_PUBLIC_KEY` (not both).

        With neither, in emulator mode only, the fixed `DEV_JWT_SECRET` is used and
        `uses_dev_secret` is True so the caller can warn. Raises ValueError for a missing key
        or the dev secret outside emulator mode, both keys set, or algorithms that do not fit
        the key.
        """
        secret = settings.auth_jwt_secret.get_secret_value() if settings.auth_jwt_secret else ""
        public_key = (settings.auth_jwt_public_key or "").strip()
        configured = list(settings.auth_jwt_algorithms)
        if secret and public_key:
            raise ValueError("set AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY, not both")
        deployed = settings.plaid_env != "emulator"
        if public_key:
            return cls(
                key=_unescape_pem(public_key),
                algorithms=configured or DEFAULT_PUBLIC_KEY_ALGORITHMS,
                audience=settings.auth_jwt_audience,
                issuer=settings.auth_jwt_issuer,
                max_lifetime_seconds=settings.auth_jwt_max_lifetime_seconds,
            )
        if not secret and deployed:
            raise ValueError(
                f"AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY is required in {settings.plaid_env}"
            )
        if secret == DEV_JWT_SECRET and deployed:
            raise ValueError(
                f"AUTH_JWT_SECRET must not be the development secret in {settings.plaid_env}"
            )
        return cls(
            key=secret or DEV_JWT_SECRET,
            algorithms=configured or DEFAULT_SECRET_ALGORITHMS,
            audience=settings.auth_jwt_audience,
            issuer=settings.auth_jwt_issuer,
            max_lifetime_seconds=settings.auth_jwt_max_lifetime_seconds,
            uses_dev_secret=not secret,
        )

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The pinned algorithms, in configured order."""
        return self._algorithms

    @property
    def audience(self) -> str | None:
        return self._audience

    @property
    def issuer(self) -> str | None:
        return self._issuer

    @property
    def max_lifetime_seconds(self) -> int:
        return self._max_lifetime

    def verify(self, token: str) -> Principal:
        """The caller named by a valid token.

        Checks, in order: size, header algorithm in the pinned list, signature, `exp` (present,
        a number, not past), `nbf` (not ahead), the lifetime (`exp` from `iat`, or from now
        without `iat`) within the maximum, `aud`/`iss` when configured (then required), and the
        `sub`, `org_id` (or `orgId`) and `role` claims. Raises `AuthError` naming the first
        check that failed.
        """
        if not token:
            raise AuthError(AuthFailure.MISSING, "No token was given.")
        if len(token) > MAX_TOKEN_LENGTH:
            raise AuthError(
                AuthFailure.MALFORMED,
                f"The token is malformed: longer than {MAX_TOKEN_LENGTH} characters.",
            )
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError:
            raise AuthError(
                AuthFailure.MALFORMED,
                "The token is malformed: a JWT is three base64url parts separated by dots, "
                "the first a JSON header.",
            ) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._keys:
            raise AuthError(
                AuthFailure.ALGORITHM,
                "The token is signed with an algorithm this service does not accept "
                f"(accepted: {', '.join(self._algorithms)}).",
            )
        try:
            payload = jws.verify(token, self._keys[alg], algorithms=[alg])
        except (JOSEError, TypeError, ValueError):
            raise AuthError(
                AuthFailure.SIGNATURE,
                "The token's signature does not verify with this service's key.",
            ) from None
        claims = _claims(payload)
        self._check_times(claims)
        self._check_audience(claims)
        self._check_issuer(claims)
        return _principal(claims)

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        """Expired or not yet valid; and a token without `exp`, or one issued to live for years,
        is a standing credential."""
        exp = _numeric_date(claims, "exp")
        if exp is None:
            raise AuthError(
                AuthFailure.MISSING_CLAIM, "The token has no expiry claim (exp).", claim="exp"
            )
        now = time.time()
        if now >= exp:
            raise AuthError(AuthFailure.EXPIRED, "The token has expired (exp).")
        nbf = _numeric_date(claims, "nbf")
        if nbf is not None and now < nbf:
            raise AuthError(AuthFailure.NOT_YET_VALID, "The token is not valid yet (nbf).")
        iat = _numeric_date(claims, "iat")
        # An `iat` in the future must not stretch the window: count from now at the latest.
        issued = now if iat is None else min(iat, now)
        if exp - issued > self._max_lifetime:
            raise AuthError(
                AuthFailure.LIFETIME,
                "The token's lifetime (exp after iat) exceeds the allowed maximum of "
                f"{self._max_lifetime} seconds.",
            )

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        if self._audience is None:
            return
        aud = claims.get("aud")
        if aud is None:
            raise AuthError(
                AuthFailure.MISSING_CLAIM, "The token has no audience claim (aud).", claim="aud"
            )
        audiences = [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise AuthError(
                AuthFailure.INVALID_CLAIM,
                "The token's audience claim (aud) is not a string or a list of strings.",
                claim="aud",
            )
        if self._audience not in audiences:
            raise AuthError(AuthFailure.AUDIENCE, "The token is meant for another audience (aud).")

    def _check_issuer(self, claims: Mapping[str, Any]) -> None:
        if self._issuer is None:
            return
        iss = claims.get("iss")
        if iss is None:
            raise AuthError(
                AuthFailure.MISSING_CLAIM, "The token has no issuer claim (iss).", claim="iss"
            )
        if iss != self._issuer:
            raise AuthError(AuthFailure.ISSUER, "The token was issued by another issuer (iss).")


def issue_dev_token(
    settings: Settings,
    *,
    user: str,
    org: str,
    role: Role | str,
    ttl_seconds: int | None = None,
) -> str:
    """A token for local use, signed with `AUTH_JWT_SECRET` (or the dev secret), carrying
    `aud`/`iss` when configured so the service accepts it. It lives `ttl_seconds`, by default
    12 hours or the configured maximum lifetime if that is shorter.

    Raises ValueError when `PLAID_ENV=production`, when a public key is configured (tokens
    then come from the holder of the private key), or for an empty user/org, unknown role or
    a ttl that is not positive or exceeds the maximum lifetime.
    """
    if settings.plaid_env == "production":
        raise ValueError("dev tokens are refused when PLAID_ENV=production")
    if (settings.auth_jwt_public_key or "").strip():
        raise ValueError(
            "AUTH_JWT_PUBLIC_KEY is configured: tokens must be signed by the private key holder"
        )
    if not user or not org:
        raise ValueError("user and org must be non-empty")
    verifier = TokenVerifier.from_settings(settings)  # refuses configurations it cannot verify
    if ttl_seconds is None:
        ttl_seconds = min(DEV_TOKEN_TTL_SECONDS, verifier.max_lifetime_seconds)
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    if ttl_seconds > verifier.max_lifetime_seconds:
        raise ValueError(
            f"ttl_seconds exceeds AUTH_JWT_MAX_LIFETIME_SECONDS ({verifier.max_lifetime_seconds})"
        )
    secret = settings.auth_jwt_secret.get_secret_value() if settings.auth_jwt_secret else ""
    algorithm = verifier.algorithms[0]
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": user,
        "org_id": org,
        "role": Role.parse(role).name,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    if verifier.audience is not None:
        claims["aud"] = verifier.audience
    if verifier.issuer is not None:
        claims["iss"] = verifier.issuer
    return jwt.encode(claims, secret or DEV_JWT_SECRET, algorithm=algorithm)


def _hmac_keys(secret: str, algorithms: Sequence[str]) -> dict[str, Key]:
    if not secret:
        raise ValueError("AUTH_JWT_SECRET must not be empty")
    try:
        return {alg: jwk.construct(secret, alg) for alg in algorithms}
    except JOSEError:
        # jose refuses PEM and ssh key text as HMAC secrets.
        raise ValueError(
            "AUTH_JWT_SECRET looks like a public key; use AUTH_JWT_PUBLIC_KEY"
        ) from None


def _public_keys(pem: str, algorithms: Sequence[str]) -> dict[str, Key]:
    try:
        public_key = load_pem_public_key(pem.encode("utf-8"))
    except (ValueError, TypeError):
        raise ValueError(
            "AUTH_JWT_PUBLIC_KEY must be a PEM public key (-----BEGIN PUBLIC KEY-----)"
        ) from None
    # jose does not check that a PEM fits the algorithm, so the key type decides here.
    if isinstance(public_key, rsa.RSAPublicKey):
        fitting = {"RS256", "RS384", "RS512"}
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        fitting = {_EC_CURVE_ALGORITHMS.get(public_key.curve.name, "")}
    else:
        fitting = set()
    keys = {alg: jwk.construct(pem, alg) for alg in algorithms if alg in fitting}
    if not keys:
        raise ValueError(
            f"AUTH_JWT_ALGORITHMS ({', '.join(algorithms)}) do not fit the AUTH_JWT_PUBLIC_KEY "
            "type (RS* needs an RSA key; ES256, ES384, ES512 need a P-256, P-384, P-521 key)"
        )
    return keys


def _unescape_pem(text: str) -> str:
    """Accept a PEM pasted on one line with literal `\\n` (common in env files)."""
    if "\n" not in text and "\\n" in text:
        return text.replace("\\n", "\n")
    return text


def _claims(payload: bytes) -> dict[str, Any]:
    """The verified payload as a JSON object."""
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        claims = None
    if not isinstance(claims, dict):
        raise AuthError(
            AuthFailure.MALFORMED, "The token is malformed: its payload is not a JSON object."
        )
    return claims


def _numeric_date(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519: a JSON number), None when absent."""
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthError(
            AuthFailure.INVALID_CLAIM,
            f"The token's {name} claim must be a number (seconds since 1970).",
            claim=name,
        )
    try:
        number = float(value)
    except OverflowError:  # an integer past float range: later than any allowed lifetime
        return math.inf
    if math.isnan(number):
        raise AuthError(
            AuthFailure.INVALID_CLAIM, f"The token's {name} claim is not a number.", claim=name
        )
    return number


def _principal(claims: Mapping[str, Any]) -> Principal:
    sub = claims.get("sub")
    if sub is None or sub == "":
        raise AuthError(
            AuthFailure.MISSING_CLAIM, "The token has no subject claim (sub).", claim="sub"
        )
    if not isinstance(sub, str) or not sub.strip():
        raise AuthError(
            AuthFailure.INVALID_CLAIM,
            "The token's subject claim (sub) must be a non-blank string.",
            claim="sub",
        )
    snake, camel = claims.get("org_id"), claims.get("orgId")
    if snake is not None and camel is not None and snake != camel:
        raise AuthError(
            AuthFailure.INVALID_CLAIM,
            "The token has conflicting org_id and orgId claims.",
            claim="org_id",
        )
    org = snake if snake is not None else camel
    if org is None or org == "":
        raise AuthError(
            AuthFailure.MISSING_CLAIM,
            "The token has no organisation claim (org_id or orgId).",
            claim="org_id",
        )
    if not isinstance(org, str) or not org.strip():
        raise AuthError(
            AuthFailure.INVALID_CLAIM,
            "The token's organisation claim (org_id) must be a non-blank string.",
            claim="org_id",
        )
    role_claim = claims.get("role")
    if role_claim is None or role_claim == "":
        raise AuthError(
            AuthFailure.MISSING_CLAIM, "The token has no role claim (role).", claim="role"
        )
    try:
        role = Role.parse(role_claim)
    except ValueError:
        raise AuthError(
            AuthFailure.INVALID_CLAIM,
            "The token's role claim (role) is not one of " + ", ".join(Role.__members__) + ".",
            claim="role",
        ) from None
    return Principal(user_id=sub, org_id=org, role=role)
