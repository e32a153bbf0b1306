"""Bearer-token verification: pinned algorithms, claims, roles, dev tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from itertools import pairwise
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwt
from pydantic import SecretStr

from plaid_bridge.config import DEV_JWT_SECRET, PlaidEnv, Settings
from plaid_bridge.security.auth import (
    AuthError,
    AuthFailure,
    Principal,
    Role,
    TokenVerifier,
    issue_dev_token,
)

SECRET = "a-test-secret-that-is-long-enough-0123456789"


class KeyPair:
    """A generated signing key and its public PEM, as a platform's identity provider holds."""

    def __init__(self, private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> None:
        self.private_pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        self.public_pem = (
            private_key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode()
        )


@pytest.fixture(scope="module")
def rsa_pair() -> KeyPair:
    return KeyPair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_pair() -> KeyPair:
    return KeyPair(ec.generate_private_key(ec.SECP256R1()))


def make_settings(
    env: PlaidEnv = "emulator",
    *,
    secret: str | None = None,
    public_key: str | None = None,
    algorithms: list[str] | None = None,
    audience: str | None = None,
    issuer: str | None = None,
) -> Settings:
    """Settings independent of the process environment and any `.env` file."""
    production_ready: dict[str, Any] = {
        "plaid_client_id": "client",
        "plaid_secret": SecretStr("secret"),
        "plaid_webhook_url": "https://bridge.example.com/api/v1/plaid/webhook",
        "plaid_encryption_keys": SecretStr("k1:" + base64.b64encode(bytes(32)).decode()),
        "database_url": "postgresql+psycopg://bridge@localhost/bridge",
    }
    return Settings(
        _env_file=None,
        plaid_env=env,
        auth_jwt_secret=SecretStr(secret) if secret is not None else None,
        auth_jwt_public_key=public_key,
        auth_jwt_algorithms=algorithms or [],
        auth_jwt_audience=audience,
        auth_jwt_issuer=issuer,
        **(production_ready if env != "emulator" else {}),
    )


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "sub": "user-1",
        "org_id": "org-1",
        "role": "MEMBER",
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_built(header: dict[str, Any], payload: dict[str, Any], hmac_key: bytes | None) -> str:
    """A JWT assembled without a JWT library, so nothing refuses to build a hostile token."""
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode()) for part in (header, payload)
    )
    signature = b""
    if hmac_key is not None:
        signature = hmac.new(hmac_key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@pytest.fixture
def verifier() -> TokenVerifier:
    return TokenVerifier.from_settings(make_settings(secret=SECRET))


def test_valid_hs256_token_gives_the_principal(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(role="ADMIN"), SECRET, algorithm="HS256")
    assert verifier.verify(token) == Principal(user_id="user-1", org_id="org-1", role=Role.ADMIN)


def test_org_id_alias_and_case_insensitive_role(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(org_id=None, orgId="org-9", role="viewer"), SECRET)
    assert verifier.verify(token) == Principal("user-1", "org-9", Role.VIEWER)
    agreeing = jwt.encode(claims(org_id="org-9", orgId="org-9"), SECRET)
    assert verifier.verify(agreeing).org_id == "org-9"


def test_expired_token_is_refused(verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = jwt.encode(claims(iat=now - 7200, exp=now - 60), SECRET)
    with pytest.raises(AuthError, match="has expired") as caught:
        verifier.verify(token)
    assert caught.value.failure is AuthFailure.EXPIRED


def test_token_without_exp_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(exp=None), SECRET)
    assert "exp" not in jwt.get_unverified_claims(token)
    with pytest.raises(AuthError, match=r"no expiry claim \(exp\)") as caught:
        verifier.verify(token)
    assert (caught.value.failure, caught.value.claim) == (AuthFailure.MISSING_CLAIM, "exp")


@pytest.mark.parametrize(
    "lifetime",
    [
        {"iat": 0, "exp": 86_401},  # one second over the default day, counted from iat
        {"iat": None, "exp": 86_400 + 120},  # without iat, counted from now
        {"iat": 0, "exp": 10 * 365 * 86_400},
        {"iat": 10 * 365 * 86_400, "exp": 10 * 365 * 86_400 + 60},  # iat in the future
        {"iat": 0, "exp": 2**80},
    ],
)
def test_token_living_longer_than_the_maximum_is_refused(
    verifier: TokenVerifier, lifetime: dict[str, int | None]
) -> None:
    now = int(time.time())
    shifted = {name: None if value is None else now + value for name, value in lifetime.items()}
    with pytest.raises(AuthError, match=r"lifetime .* exceeds the allowed maximum") as caught:
        verifier.verify(jwt.encode(claims(**shifted), SECRET))
    assert caught.value.failure is AuthFailure.LIFETIME


def test_token_just_within_the_maximum_lifetime_is_accepted(verifier: TokenVerifier) -> None:
    now = int(time.time())
    assert verifier.max_lifetime_seconds == 86_400
    exactly = jwt.encode(claims(iat=now, exp=now + 86_400), SECRET)
    assert verifier.verify(exactly) == Principal("user-1", "org-1", Role.MEMBER)
    no_iat = jwt.encode(claims(iat=None, exp=now + 86_400 - 60), SECRET)
    assert verifier.verify(no_iat).user_id == "user-1"


def test_maximum_lifetime_is_configurable() -> None:
    settings = make_settings(secret=SECRET).model_copy(
        update={"auth_jwt_max_lifetime_seconds": 600}
    )
    verifier = TokenVerifier.from_settings(settings)
    now = int(time.time())
    assert verifier.verify(jwt.encode(claims(iat=now, exp=now + 600), SECRET)).role is Role.MEMBER
    with pytest.raises(AuthError, match="maximum of 600 seconds"):
        verifier.verify(jwt.encode(claims(iat=now, exp=now + 601), SECRET))
    # dev tokens follow a shorter maximum, and refuse to outlive it
    token = issue_dev_token(settings, user="u", org="o", role="OWNER")
    issued = jwt.get_unverified_claims(token)
    assert issued["exp"] - issued["iat"] == 600
    assert verifier.verify(token).user_id == "u"
    with pytest.raises(ValueError, match="AUTH_JWT_MAX_LIFETIME_SECONDS"):
        issue_dev_token(settings, user="u", org="o", role="OWNER", ttl_seconds=601)


def test_wrong_signature_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), "some-other-secret-of-reasonable-length")
    with pytest.raises(AuthError, match="signature does not verify") as caught:
        verifier.verify(token)
    assert caught.value.failure is AuthFailure.SIGNATURE


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(verifier: TokenVerifier, alg: str) -> None:
    token = hand_built({"alg": alg, "typ": "JWT"}, claims(role="OWNER"), hmac_key=None)
    assert token.endswith(".")
    with pytest.raises(AuthError, match="algorithm this service does not accept"):
        verifier.verify(token)


def test_algorithm_outside_the_pinned_list_is_refused(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS512")
    with pytest.raises(AuthError, match="algorithm this service does not accept"):
        verifier.verify(token)


@pytest.mark.parametrize("pair_name", ["rsa_pair", "ec_pair"])
def test_hs256_signed_with_the_public_key_text_is_refused(
    request: pytest.FixtureRequest, pair_name: str
) -> None:
    pair: KeyPair = request.getfixturevalue(pair_name)
    verifier = TokenVerifier.from_settings(make_settings(public_key=pair.public_pem))
    assert "HS256" not in verifier.algorithms
    forged = hand_built(
        {"alg": "HS256", "typ": "JWT"}, claims(role="OWNER"), pair.public_pem.encode()
    )
    with pytest.raises(AuthError, match="algorithm this service does not accept"):
        verifier.verify(forged)


def test_rs256_with_a_public_key_config(rsa_pair: KeyPair) -> None:
    verifier = TokenVerifier.from_settings(make_settings(public_key=rsa_pair.public_pem))
    assert verifier.algorithms == ("RS256",)
    token = jwt.encode(claims(role="OWNER"), rsa_pair.private_pem, algorithm="RS256")
    assert verifier.verify(token) == Principal("user-1", "org-1", Role.OWNER)


def test_es256_with_a_public_key_config(ec_pair: KeyPair, rsa_pair: KeyPair) -> None:
    verifier = TokenVerifier.from_settings(make_settings(public_key=ec_pair.public_pem))
    assert verifier.algorithms == ("ES256",)
    token = jwt.encode(claims(), ec_pair.private_pem, algorithm="ES256")
    assert verifier.verify(token).role is Role.MEMBER
    foreign = jwt.encode(claims(), rsa_pair.private_pem, algorithm="RS256")
    with pytest.raises(AuthError, match="algorithm this service does not accept"):
        verifier.verify(foreign)


def test_public_key_given_on_one_line_with_escaped_newlines(ec_pair: KeyPair) -> None:
    one_line = ec_pair.public_pem.strip().replace("\n", "\\n")
    verifier = TokenVerifier.from_settings(make_settings(public_key=one_line))
    assert verifier.verify(jwt.encode(claims(), ec_pair.private_pem, algorithm="ES256"))


def test_audience_and_issuer_are_checked_when_configured() -> None:
    settings = make_settings(secret=SECRET, audience="plaid-bridge", issuer="https://idp.test")
    verifier = TokenVerifier.from_settings(settings)
    good = claims(aud="plaid-bridge", iss="https://idp.test")
    assert verifier.verify(jwt.encode(good, SECRET)).user_id == "user-1"
    listed = {**good, "aud": ["another-service", "plaid-bridge"]}
    assert verifier.verify(jwt.encode(listed, SECRET)).user_id == "user-1"
    for bad, failure, claim in (
        ({**good, "aud": "another-service"}, AuthFailure.AUDIENCE, None),
        ({**good, "aud": ["a", "b"]}, AuthFailure.AUDIENCE, None),
        ({**good, "aud": 7}, AuthFailure.INVALID_CLAIM, "aud"),
        ({**good, "iss": "https://evil.test"}, AuthFailure.ISSUER, None),
        (claims(iss="https://idp.test"), AuthFailure.MISSING_CLAIM, "aud"),
        (claims(aud="plaid-bridge"), AuthFailure.MISSING_CLAIM, "iss"),
    ):
        with pytest.raises(AuthError) as caught:
            verifier.verify(jwt.encode(bad, SECRET))
        assert (caught.value.failure, caught.value.claim) == (failure, claim)


def test_audience_is_not_checked_when_unset(verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(aud="anything"), SECRET)
    assert verifier.verify(token).user_id == "user-1"


@pytest.mark.parametrize(
    ("overrides", "reason", "failure"),
    [
        ({"role": "SUPERUSER"}, r"role claim \(role\) is not one of", AuthFailure.INVALID_CLAIM),
        ({"role": None}, r"no role claim \(role\)", AuthFailure.MISSING_CLAIM),
        ({"role": 5}, r"role claim \(role\) is not one of", AuthFailure.INVALID_CLAIM),
        ({"sub": None}, r"no subject claim \(sub\)", AuthFailure.MISSING_CLAIM),
        ({"sub": ""}, r"no subject claim \(sub\)", AuthFailure.MISSING_CLAIM),
        ({"sub": "  "}, r"subject claim \(sub\) must be", AuthFailure.INVALID_CLAIM),
        ({"org_id": None}, r"no organisation claim \(org_id", AuthFailure.MISSING_CLAIM),
        ({"org_id": ""}, r"no organisation claim \(org_id", AuthFailure.MISSING_CLAIM),
        (
            {"org_id": "org-1", "orgId": "org-2"},
            "conflicting org_id and orgId",
            AuthFailure.INVALID_CLAIM,
        ),
    ],
)
def test_bad_identity_claims_are_refused(
    verifier: TokenVerifier, overrides: dict[str, Any], reason: str, failure: AuthFailure
) -> None:
    token = jwt.encode(claims(**overrides), SECRET)
    with pytest.raises(AuthError, match=reason) as caught:
        verifier.verify(token)
    assert caught.value.failure is failure


@pytest.mark.parametrize(
    "payload",
    [
        {"exp": None},
        {"exp": "soon"},
        {"exp": [1]},
        {"exp": 1e999},
        {"exp": True},
        {"iat": "yesterday"},
        {"nbf": {"a": 1}},
        {"sub": 42},
    ],
)
def test_malformed_claim_values_are_auth_errors(
    verifier: TokenVerifier, payload: dict[str, Any]
) -> None:
    token = hand_built({"alg": "HS256", "typ": "JWT"}, {**claims(), **payload}, SECRET.encode())
    with pytest.raises(AuthError):
        verifier.verify(token)


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "a.b", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.!!!.sig", "x" * 20_000],
)
def test_malformed_tokens_are_auth_errors_that_do_not_echo_them(
    verifier: TokenVerifier, token: str
) -> None:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    if len(token) > 5:
        assert token not in caught.value.reason


def test_reasons_never_echo_the_token(verifier: TokenVerifier) -> None:
    now = int(time.time())
    tokens = [
        jwt.encode(claims(exp=now - 5), SECRET),
        jwt.encode(claims(), "wrong-secret-wrong-secret-wrong-secret"),
        jwt.encode(claims(role="ROOT"), SECRET),
    ]
    for token in tokens:
        with pytest.raises(AuthError) as caught:
            verifier.verify(token)
        for segment in token.split("."):
            assert segment not in caught.value.reason


def test_role_ordering() -> None:
    ladder = [Role.VIEWER, Role.MEMBER, Role.MANAGER, Role.ADMIN, Role.OWNER]
    assert sorted(Role) == ladder
    for lower, higher in pairwise(ladder):
        assert lower < higher
        assert higher.allows(lower)
        assert not lower.allows(higher)
    assert all(role.allows(role) for role in Role)
    assert all(Role.OWNER.allows(role) for role in Role)


def test_dev_token_verifies_with_the_configured_secret() -> None:
    settings = make_settings(secret=SECRET, audience="plaid-bridge", issuer="https://idp.test")
    token = issue_dev_token(settings, user="u-7", org="o-7", role="ADMIN", ttl_seconds=60)
    assert TokenVerifier.from_settings(settings).verify(token) == Principal(
        "u-7", "o-7", Role.ADMIN
    )
    unverified = jwt.get_unverified_claims(token)
    assert unverified["exp"] - unverified["iat"] == 60
    with pytest.raises(AuthError, match="signature"):
        TokenVerifier.from_settings(make_settings()).verify(token)


def test_dev_token_without_configuration_uses_the_dev_secret() -> None:
    settings = make_settings()
    verifier = TokenVerifier.from_settings(settings)
    assert verifier.uses_dev_secret
    token = issue_dev_token(settings, user="u", org="o", role=Role.VIEWER)
    issued = jwt.get_unverified_claims(token)
    assert 0 < issued["exp"] - issued["iat"] <= verifier.max_lifetime_seconds
    assert verifier.verify(token).role is Role.VIEWER
    assert jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"])["sub"] == "u"


def test_dev_token_refused_in_production() -> None:
    settings = make_settings("production", secret=SECRET)
    with pytest.raises(ValueError, match="refused when PLAID_ENV=production"):
        issue_dev_token(settings, user="u", org="o", role="OWNER")


def test_dev_token_refused_with_a_public_key(rsa_pair: KeyPair) -> None:
    settings = make_settings(public_key=rsa_pair.public_pem)
    with pytest.raises(ValueError, match="AUTH_JWT_PUBLIC_KEY is configured"):
        issue_dev_token(settings, user="u", org="o", role="OWNER")


def test_dev_token_with_unknown_role_is_refused() -> None:
    with pytest.raises(ValueError, match="role must be one of"):
        issue_dev_token(make_settings(), user="u", org="o", role="ROOT")


def test_configuration_errors(rsa_pair: KeyPair) -> None:
    no_key = make_settings("production", secret=SECRET).model_copy(update={"auth_jwt_secret": None})
    with pytest.raises(ValueError, match="required in production"):
        TokenVerifier.from_settings(no_key)
    with pytest.raises(ValueError, match="development secret"):
        TokenVerifier.from_settings(
            make_settings("production", secret=SECRET).model_copy(
                update={"auth_jwt_secret": SecretStr(DEV_JWT_SECRET)}
            )
        )
    sandbox = make_settings("sandbox", secret=SECRET).model_copy(update={"auth_jwt_secret": None})
    with pytest.raises(ValueError, match="required in sandbox"):
        TokenVerifier.from_settings(sandbox)
    with pytest.raises(ValueError, match="required in sandbox"):
        issue_dev_token(sandbox, user="u", org="o", role="OWNER")
    with pytest.raises(ValueError, match="not both"):
        TokenVerifier.from_settings(make_settings(secret=SECRET, public_key=rsa_pair.public_pem))
    with pytest.raises(ValueError, match="looks like a public key"):
        TokenVerifier.from_settings(
            make_settings(public_key=rsa_pair.public_pem, algorithms=["HS256"])
        )
    with pytest.raises(ValueError, match="cannot be mixed"):
        TokenVerifier.from_settings(make_settings(secret=SECRET, algorithms=["HS256", "RS256"]))
    with pytest.raises(ValueError, match="do not fit"):
        TokenVerifier.from_settings(
            make_settings(public_key=rsa_pair.public_pem, algorithms=["ES256"])
        )
    with pytest.raises(ValueError, match="must be a PEM public key"):
        TokenVerifier.from_settings(make_settings(public_key=rsa_pair.private_pem))
    with pytest.raises(ValueError, match="unsupported PS256"):
        TokenVerifier.from_settings(make_settings(secret=SECRET, algorithms=["PS256"]))
