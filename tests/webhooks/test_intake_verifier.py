"""The verifier on its own: the key cache (bounded, expiry re-checked, failures not kept), the
single shared fetch, and the time window, with a controlled clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import anyio
import pytest
from jose import jws

from plaid_bridge.plaid.client import PlaidClient
from plaid_bridge.plaid.webhook_verify import (
    KeyFetchBudget,
    WebhookVerificationError,
    WebhookVerifier,
)
from tests.webhooks.conftest import KeyStandIn, SigningKey, unsigned_token, webhook_body

pytestmark = pytest.mark.anyio

MakeVerifier = Callable[..., WebhookVerifier]


class Clock:
    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_verifier(key_server: tuple[KeyStandIn, str], clock: Clock) -> Iterator[MakeVerifier]:
    """Verifiers on a real PlaidClient pointed at the key stand-in, on the test's clock."""
    client = PlaidClient(host=key_server[1], client_id="c", secret="s", max_retries=0, timeout=5)

    def make(**options: object) -> WebhookVerifier:
        # Room for every fetch these tests make, unless a test sets its own budget.
        options.setdefault("fetch_budget", KeyFetchBudget(5, burst=100, clock=clock))
        return WebhookVerifier(client, clock=clock, **options)  # type: ignore[arg-type]

    yield make
    client.close()


async def _refusal(verifier: WebhookVerifier, header: str | None, body: bytes) -> str:
    with pytest.raises(WebhookVerificationError) as refused:
        await verifier.verify(header, body)
    return refused.value.reason


async def test_a_cached_key_that_expires_is_refused_from_then_on(
    make_verifier: MakeVerifier, keys: KeyStandIn, clock: Clock
) -> None:
    key = keys.add(SigningKey(), expired_at=int(clock.now) + 100)
    verifier = make_verifier()
    body = webhook_body()

    await verifier.verify(key.sign(body, iat=clock.now), body)
    clock.now += 100
    assert await _refusal(verifier, key.sign(body, iat=clock.now), body) == "key_expired"
    assert keys.fetches == {key.kid: 1}


@pytest.mark.parametrize(
    ("offset", "accepted"), [(-300, True), (-301, False), (60, True), (61, False)]
)
async def test_iat_window_is_five_minutes_back_and_the_skew_forward(
    make_verifier: MakeVerifier, signing_key: SigningKey, clock: Clock, offset: int, accepted: bool
) -> None:
    verifier = make_verifier()
    body = webhook_body()
    header = signing_key.sign(body, iat=clock.now + offset)

    if accepted:
        await verifier.verify(header, body)
    else:
        assert await _refusal(verifier, header, body) in ("iat_too_old", "iat_in_future")


async def test_claims_without_a_numeric_iat_or_a_body_hash_are_refused(
    make_verifier: MakeVerifier, signing_key: SigningKey
) -> None:
    verifier = make_verifier()
    body = webhook_body()

    def signed(claims: dict[str, object]) -> str:
        return jws.sign(
            claims, signing_key.pem, headers={"kid": signing_key.kid}, algorithm="ES256"
        )

    assert await _refusal(verifier, signed({"request_body_sha256": "0"}), body) == "iat_missing"
    assert await _refusal(verifier, signed({"iat": "now"}), body) == "iat_missing"
    assert await _refusal(verifier, signed({"iat": True}), body) == "iat_missing"
    assert await _refusal(verifier, signed({"iat": int(time.time())}), body) == "body_hash_missing"
    hash_not_ascii = {"iat": int(time.time()), "request_body_sha256": "é" * 64}
    assert await _refusal(verifier, signed(hash_not_ascii), body) == "body_hash_mismatch"


async def test_cheap_refusals_fetch_no_key(make_verifier: MakeVerifier, keys: KeyStandIn) -> None:
    verifier = make_verifier()
    body = webhook_body()
    oversized = SigningKey(kid="k" * 3000).sign(body)
    no_kid = unsigned_token({"alg": "ES256"}, {"iat": 1}, b"x" * 64)
    rs256 = unsigned_token({"alg": "RS256", "kid": "k1"}, {"iat": 1}, b"x" * 64)

    assert await _refusal(verifier, "", body) == "missing_header"
    assert await _refusal(verifier, "a.b", body) == "malformed_header"
    assert await _refusal(verifier, "!!.??.**", body) == "malformed_header"
    assert await _refusal(verifier, oversized, body) == "malformed_header"
    assert await _refusal(verifier, no_kid, body) == "kid_missing"
    assert await _refusal(verifier, rs256, body) == "algorithm_refused"
    assert keys.fetches.total() == 0


async def test_an_unknown_kid_is_refused_for_a_while_then_asked_again(
    make_verifier: MakeVerifier, keys: KeyStandIn, clock: Clock
) -> None:
    verifier = make_verifier(unknown_kid_ttl=60)
    key = SigningKey()
    body = webhook_body()

    assert await _refusal(verifier, key.sign(body), body) == "unknown_key"
    assert await _refusal(verifier, key.sign(body), body) == "unknown_key"
    assert keys.fetches == {key.kid: 1}  # made-up kids cannot make us call Plaid per request
    keys.add(key)
    clock.now += 61
    await verifier.verify(key.sign(body), body)
    assert keys.fetches == {key.kid: 2}


async def test_a_failed_fetch_is_retried_by_the_next_request(
    make_verifier: MakeVerifier, keys: KeyStandIn, signing_key: SigningKey
) -> None:
    verifier = make_verifier()
    keys.failures = 1
    body = webhook_body()

    assert await _refusal(verifier, signing_key.sign(body), body) == "key_fetch_failed"
    await verifier.verify(signing_key.sign(body), body)
    assert keys.fetches == {signing_key.kid: 2}


async def test_a_slow_fetch_is_given_up_within_the_timeout(
    make_verifier: MakeVerifier, keys: KeyStandIn, signing_key: SigningKey
) -> None:
    verifier = make_verifier(fetch_timeout=0.2)
    keys.latency = 60.0
    body = webhook_body()

    # A failure bound, not a speed check: without the timeout the fetch would take a minute.
    with anyio.fail_after(10):
        assert await _refusal(verifier, signing_key.sign(body), body) == "key_fetch_failed"


async def test_the_cache_keeps_the_most_recently_used_keys(
    make_verifier: MakeVerifier, keys: KeyStandIn
) -> None:
    verifier = make_verifier(max_keys=2)
    first, second, third = (keys.add(SigningKey()) for _ in range(3))
    body = webhook_body()

    for key in (first, second, first, third, first, second):
        await verifier.verify(key.sign(body), body)

    # `second` was the least recently used when `third` arrived, so it was fetched again.
    assert keys.fetches == {first.kid: 1, second.kid: 2, third.kid: 1}


async def test_a_caller_giving_up_does_not_cancel_the_shared_fetch(
    make_verifier: MakeVerifier, keys: KeyStandIn, signing_key: SigningKey
) -> None:
    verifier = make_verifier()
    keys.latency = 0.3
    body = webhook_body()
    impatient = asyncio.create_task(verifier.verify(signing_key.sign(body), body))
    patient = asyncio.create_task(verifier.verify(signing_key.sign(body), body))
    assert await anyio.to_thread.run_sync(keys.requested.wait, 5.0)

    impatient.cancel()
    await patient

    assert impatient.cancelled()
    assert keys.fetches == {signing_key.kid: 1}


async def test_new_kids_are_fetched_at_most_at_the_budgets_rate(
    make_verifier: MakeVerifier, keys: KeyStandIn, clock: Clock
) -> None:
    verifier = make_verifier(fetch_budget=KeyFetchBudget(1, clock=clock))
    body = webhook_body()
    first, second = keys.add(SigningKey()), keys.add(SigningKey())

    await verifier.verify(first.sign(body, iat=clock.now), body)
    assert await _refusal(verifier, second.sign(body, iat=clock.now), body) == (
        "key_fetch_throttled"
    )
    await verifier.verify(first.sign(body, iat=clock.now), body)  # cached: no budget needed
    clock.now += 1
    await verifier.verify(second.sign(body, iat=clock.now), body)

    assert keys.fetches == {first.kid: 1, second.kid: 1}


async def test_waiters_on_one_fetch_spend_one_unit_of_budget(
    make_verifier: MakeVerifier, keys: KeyStandIn, signing_key: SigningKey, clock: Clock
) -> None:
    verifier = make_verifier(fetch_budget=KeyFetchBudget(1, clock=clock))
    keys.latency = 0.3
    bodies = [webhook_body(item_id=f"item-{n}") for n in range(20)]

    await asyncio.gather(
        *(verifier.verify(signing_key.sign(body, iat=clock.now), body) for body in bodies)
    )

    assert keys.fetches == {signing_key.kid: 1}


async def test_a_header_with_stale_or_mismatched_claims_spends_no_fetch(
    make_verifier: MakeVerifier, keys: KeyStandIn, clock: Clock
) -> None:
    verifier = make_verifier(fetch_budget=KeyFetchBudget(1, clock=clock))
    key = keys.add(SigningKey())
    body = webhook_body()

    assert await _refusal(verifier, key.sign(body, iat=clock.now - 600), body) == "iat_too_old"
    assert await _refusal(verifier, key.sign(b"other", iat=clock.now), body) == (
        "body_hash_mismatch"
    )
    assert keys.fetches.total() == 0
    await verifier.verify(key.sign(body, iat=clock.now), body)  # the budget is still whole


def test_the_budget_refills_at_its_rate_up_to_its_burst() -> None:
    now = [0.0]
    budget = KeyFetchBudget(2, clock=lambda: now[0])

    assert [budget.take() for _ in range(3)] == [True, True, False]
    now[0] += 0.5
    assert [budget.take() for _ in range(2)] == [True, False]
    now[0] += 100
    assert [budget.take() for _ in range(3)] == [True, True, False]
    slow = KeyFetchBudget(0.25, clock=lambda: now[0])
    assert [slow.take(), slow.take()] == [True, False]
    now[0] += 3.9
    assert not slow.take()
    now[0] += 0.1
    assert slow.take()
