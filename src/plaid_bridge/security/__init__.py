"""Access-token encryption at rest and request authentication (SPEC sections 3 and 9)."""

from plaid_bridge.security.auth import AuthError, Principal, Role, TokenVerifier, issue_dev_token
from plaid_bridge.security.crypto import KeyRing, TokenCipher, TokenDecryptError

__all__ = [
    "AuthError",
    "KeyRing",
    "Principal",
    "Role",
    "TokenCipher",
    "TokenDecryptError",
    "TokenVerifier",
    "issue_dev_token",
]
