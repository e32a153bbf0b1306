"""One rule for secrets in logs, audit metadata and error text: they never pass."""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEYS = re.compile(
    r"(access_?token|public_?token|secret|password|authorization|api_?key|encryption|"
    r"private_?key|^key$|_key$|cookie)",
    re.IGNORECASE,
)
# Plaid tokens (access-<env>-<uuid>, public-<env>-<uuid>), our v1 ciphertexts, JWTs, and
# whatever follows the Bearer scheme when it is token-shaped: a run of RFC 6750 token characters
# long enough that no English word is one (so "a bearer token is required" stays readable).
# The scheme word is kept; only the token is masked.
_SECRET_VALUES = re.compile(
    r"\b(?:access|public)-(?:sandbox|production|development|emulator)-[0-9a-f-]{8,}\b"
    r"|\bv1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_=-]{16,}"
    r"|\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"
    r"|(?P<scheme>\b(?i:bearer)\s+)[A-Za-z0-9._~+/-]{20,}=*",
)

_extra_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Make `redact_text` mask this exact value too (configured secrets, keys)."""
    if value and len(value) >= 6:
        _extra_secrets.add(value)


def _mask(match: re.Match[str]) -> str:
    return (match.group("scheme") or "") + REDACTED


def redact_text(text: str) -> str:
    """`text` with every token-shaped or registered secret value replaced."""
    text = _SECRET_VALUES.sub(_mask, text)
    for secret in _extra_secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact(value: Any) -> Any:
    """A copy of a JSON-like value with secret keys and secret-shaped strings masked."""
    if isinstance(value, dict):
        return {
            key: REDACTED if _SECRET_KEYS.search(str(key)) else redact(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    return value
