"""Fixtures for the rate-limit tests: a Redis database of their own (db 15 unless
`TEST_REDIS_URL` says otherwise), emptied around each test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
REQUIRED = os.environ.get("REQUIRE_TEST_SERVICES") == "1"


@pytest.fixture
def redis_url() -> Iterator[str]:
    """The URL of an empty Redis database; skipped when Redis is unreachable, unless
    REQUIRE_TEST_SERVICES=1 (CI), where that is a failure."""
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1, socket_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as error:
        client.close()
        if REQUIRED:
            pytest.fail(f"REQUIRE_TEST_SERVICES=1 but Redis at {TEST_REDIS_URL} is unreachable")
        pytest.skip(f"Redis at {TEST_REDIS_URL} unreachable: {type(error).__name__}")
    yield TEST_REDIS_URL
    client.flushdb()
    client.close()
