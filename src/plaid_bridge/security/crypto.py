"""Access tokens at rest (SPEC section 9): AES-256-GCM under a key ring, and a reader for the
old module's PBKDF2 format so existing rows can be migrated.

Stored form: `v1.<kid>.<base64url(nonce(12) | ciphertext+tag)>`, with the item id as associated
data, so a ciphertext copied onto another row does not decrypt. No message raised here ever
contains a key, a token or a ciphertext.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

if TYPE_CHECKING:
    from pydantic import SecretStr

    from plaid_bridge.config import Settings

__all__ = [
    "KEY_FILE_NAME",
    "KeyRing",
    "TokenCipher",
    "TokenDecryptError",
]

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT_PREFIX = "v1."
KEY_FILE_NAME = "encryption.key"
SINGLE_KEY_KID = "k1"
_KID_PATTERN = re.compile(r"[A-Za-z0-9_-]+")
_ECHOED_KID_MAX = 64

_LEGACY_SALT_BYTES = 64
_LEGACY_IV_BYTES = 16
_LEGACY_ITERATIONS = 100_000
_LEGACY_HEADER_BYTES = _LEGACY_SALT_BYTES + _LEGACY_IV_BYTES + TAG_BYTES


class TokenDecryptError(Exception):
    """A stored token could not be decrypted: wrong key, wrong item id, tampering or bad format."""


def _b64decode_lenient(text: str) -> bytes:
    """Decode standard or URL-safe base64, padded or not; raises `binascii.Error`."""
    text = text.strip().replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _decode_key(encoded: str, where: str, problems: list[str]) -> bytes | None:
    """Decode one base64 key, recording a problem (never the key text) when it is unusable."""
    try:
        key = _b64decode_lenient(encoded)
    except binascii.Error:
        problems.append(f"{where}: the key is not valid base64")
        return None
    if len(key) != KEY_BYTES:
        problems.append(
            f"{where}: the key must decode to exactly {KEY_BYTES} bytes, not {len(key)}"
        )
        return None
    return key


def _configured(secret: SecretStr | None) -> str | None:
    """The secret's text, or None when unset or blank (a blank line in `.env` means unset)."""
    if secret is None:
        return None
    value = secret.get_secret_value().strip()
    return value or None


class KeyRing:
    """Encryption keys by kid: the first encrypts, every one decrypts.

    The raw keys are held only inside AES-GCM objects; `repr` shows the kids alone.
    """

    __slots__ = ("_active_kid", "_ciphers")

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """Raises ValueError when the list is empty, a kid is invalid or repeated, or a key is
        not 32 bytes."""
        if not keys:
            raise ValueError("the key ring needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for position, (kid, key) in enumerate(keys, start=1):
            if not _KID_PATTERN.fullmatch(kid):
                raise ValueError(f"key {position}: the kid must match [A-Za-z0-9_-]+")
            if kid in ciphers:
                raise ValueError(f"key {position}: the kid is used twice")
            if len(key) != KEY_BYTES:
                raise ValueError(f"key {position}: the key must be exactly {KEY_BYTES} bytes")
            ciphers[kid] = AESGCM(key)
        self._ciphers = ciphers
        self._active_kid = keys[0][0]

    @classmethod
    def parse(cls, spec: str, *, source: str = "PLAID_ENCRYPTION_KEYS") -> KeyRing:
        """Parse `kid:base64key[,kid:base64key...]`.

        Raises ValueError with one line per problem; lines name entries by position and never
        quote the entry, since a mistyped entry may be a key.
        """
        problems: list[str] = []
        keys: list[tuple[str, bytes]] = []
        first_use: dict[str, int] = {}
        entries = [entry.strip() for entry in spec.split(",")]
        for position, entry in enumerate(entries, start=1):
            if not entry:
                continue
            where = f"{source} entry {position}"
            kid, colon, encoded = entry.partition(":")
            kid = kid.strip()
            if not colon:
                problems.append(f"{where}: expected kid:base64key")
                continue
            if not _KID_PATTERN.fullmatch(kid):
                problems.append(f"{where}: the kid must match [A-Za-z0-9_-]+")
                continue
            if kid in first_use:
                problems.append(f"{where}: repeats the kid of entry {first_use[kid]}")
                continue
            first_use[kid] = position
            key = _decode_key(encoded, where, problems)
            if key is not None:
                keys.append((kid, key))
        if not problems and not keys:
            problems.append(f"{source}: no key given (expected kid:base64key[,kid:base64key...])")
        if problems:
            raise ValueError("\n".join(problems))
        return cls(keys)

    @classmethod
    def single(
        cls, encoded: str, *, kid: str = SINGLE_KEY_KID, source: str = "PLAID_ENCRYPTION_KEY"
    ) -> KeyRing:
        """One base64 key under `kid` (the `PLAID_ENCRYPTION_KEY` compatibility form)."""
        problems: list[str] = []
        key = _decode_key(encoded, source, problems)
        if key is None:
            problems.append(
                f"{source}: if this is the old module's passphrase, set it as "
                "PLAID_LEGACY_ENCRYPTION_KEY and configure a new 32-byte key"
            )
            raise ValueError("\n".join(problems))
        return cls([(kid, key)])

    @classmethod
    def generate(cls, kid: str = SINGLE_KEY_KID) -> KeyRing:
        """A ring with one fresh random key (tests, and the emulator's first start)."""
        return cls([(kid, AESGCM.generate_key(bit_length=KEY_BYTES * 8))])

    @classmethod
    def from_settings(cls, settings: Settings, var_dir: Path) -> KeyRing:
        """The ring from `PLAID_ENCRYPTION_KEYS` or `PLAID_ENCRYPTION_KEY`.

        With neither, in emulator mode only, a key is generated once into
        `var_dir/encryption.key` (mode 0600) and reused on later starts; in sandbox or
        production a missing key raises ValueError. Setting both variables also raises, as it
        would leave unclear which key encrypts.
        """
        keys = _configured(settings.plaid_encryption_keys)
        single = _configured(settings.plaid_encryption_key)
        if keys is not None and single is not None:
            raise ValueError(
                "set PLAID_ENCRYPTION_KEYS or PLAID_ENCRYPTION_KEY, not both "
                f"(list the single key as '{SINGLE_KEY_KID}:<key>' in PLAID_ENCRYPTION_KEYS)"
            )
        if keys is not None:
            return cls.parse(keys)
        if single is not None:
            return cls.single(single)
        if settings.plaid_env != "emulator":
            raise ValueError(
                f"PLAID_ENCRYPTION_KEYS is required when PLAID_ENV={settings.plaid_env}"
            )
        return cls._from_key_file(var_dir / KEY_FILE_NAME)

    @classmethod
    def _from_key_file(cls, path: Path) -> KeyRing:
        """Read the emulator key file, creating it first if absent.

        Creation writes a private temporary file and hard-links it into place: the link either
        publishes a complete file or fails because another process got there first, in which
        case that process's key is used, so concurrent first starts agree on one key.
        """
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            encoded = base64.b64encode(AESGCM.generate_key(bit_length=KEY_BYTES * 8))
            content = f"{SINGLE_KEY_KID}:{encoded.decode('ascii')}\n".encode("ascii")
            temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    os.fchmod(handle.fileno(), 0o600)
                    handle.write(content)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(temporary, path)
                except FileExistsError:
                    pass  # another process created it first; its key wins
            finally:
                temporary.unlink(missing_ok=True)
        return cls.parse(path.read_text(encoding="ascii"), source=str(path))

    @property
    def active_kid(self) -> str:
        """The kid new ciphertexts are written under."""
        return self._active_kid

    @property
    def kids(self) -> tuple[str, ...]:
        """Every kid, the active one first."""
        return tuple(self._ciphers)

    def cipher(self, kid: str) -> AESGCM | None:
        """The AES-GCM object for `kid`, or None when the ring does not hold that key."""
        return self._ciphers.get(kid)

    def __repr__(self) -> str:
        return f"KeyRing(kids={list(self._ciphers)!r})"


class TokenCipher:
    """Encrypts access tokens for storage and reads them back, bound to their item id."""

    __slots__ = ("_keyring", "_legacy_key")

    def __init__(self, keyring: KeyRing, legacy_key: str | None = None) -> None:
        """`legacy_key` is the old module's passphrase; without it legacy tokens are refused."""
        self._keyring = keyring
        self._legacy_key = legacy_key or None

    @classmethod
    def from_settings(cls, settings: Settings, var_dir: Path) -> TokenCipher:
        """The cipher for the configured keys (see `KeyRing.from_settings`) and legacy key."""
        return cls(
            KeyRing.from_settings(settings, var_dir),
            _configured(settings.plaid_legacy_encryption_key),
        )

    @property
    def keyring(self) -> KeyRing:
        return self._keyring

    @property
    def reads_legacy(self) -> bool:
        """Whether tokens in the old module's format can be read."""
        return self._legacy_key is not None

    def encrypt(self, token: str, item_id: str) -> str:
        """Encrypt under the active key with a fresh random nonce; equal inputs give different
        outputs. Raises ValueError for an empty token or item id."""
        if not token or not item_id:
            raise ValueError("token and item id must both be non-empty")
        kid = self._keyring.active_kid
        aead = self._keyring.cipher(kid)
        assert aead is not None  # the active kid is always in the ring
        nonce = os.urandom(NONCE_BYTES)
        sealed = aead.encrypt(nonce, token.encode("utf-8"), item_id.encode("utf-8"))
        return f"{FORMAT_PREFIX}{kid}.{_b64url_encode(nonce + sealed)}"

    def decrypt(self, stored: str, item_id: str) -> str:
        """The plaintext token of a `v1` value, or of a legacy value when a legacy key is set.

        Raises `TokenDecryptError` when the value was written for another item id, tampered
        with, written under a key not in the ring, or is malformed. A legacy value costs a
        100,000-iteration PBKDF2 (tens of milliseconds of CPU): call off the event loop.
        """
        if stored.startswith(FORMAT_PREFIX):
            return self._decrypt_v1(stored, item_id)
        return self._decrypt_legacy(stored)

    def needs_rewrite(self, stored: str) -> bool:
        """True for legacy values and for `v1` values under a kid other than the active one."""
        if not stored.startswith(FORMAT_PREFIX):
            return True
        kid = stored[len(FORMAT_PREFIX) :].partition(".")[0]
        return kid != self._keyring.active_kid

    def reencrypt(self, stored: str, item_id: str) -> str:
        """Decrypt and encrypt again under the active key (key rotation, legacy migration)."""
        return self.encrypt(self.decrypt(stored, item_id), item_id)

    def _decrypt_v1(self, stored: str, item_id: str) -> str:
        parts = stored.split(".")
        if len(parts) != 3:
            raise TokenDecryptError("malformed v1 token: expected v1.<kid>.<data>")
        _, kid, body = parts
        aead = self._keyring.cipher(kid)
        if aead is None:
            named = (
                f" {kid!r}" if _KID_PATTERN.fullmatch(kid) and len(kid) <= _ECHOED_KID_MAX else ""
            )
            raise TokenDecryptError(f"no configured encryption key has the kid{named}")
        try:
            blob = _b64decode_lenient(body)
        except binascii.Error:
            raise TokenDecryptError("malformed v1 token: the data is not base64url") from None
        if len(blob) < NONCE_BYTES + TAG_BYTES:
            raise TokenDecryptError("malformed v1 token: the data is too short")
        try:
            plaintext = aead.decrypt(
                blob[:NONCE_BYTES], blob[NONCE_BYTES:], item_id.encode("utf-8")
            )
        except InvalidTag:
            raise TokenDecryptError(
                "v1 token failed authentication: tampered, or stored for another item"
            ) from None
        return _utf8(plaintext)

    def _decrypt_legacy(self, stored: str) -> str:
        if self._legacy_key is None:
            raise TokenDecryptError(
                "token is in the old module's format; set PLAID_LEGACY_ENCRYPTION_KEY to read it"
            )
        try:
            blob = base64.b64decode(stored.strip(), validate=True)
        except binascii.Error:
            raise TokenDecryptError("token is neither v1 nor the old module's base64") from None
        if len(blob) < _LEGACY_HEADER_BYTES:
            raise TokenDecryptError("legacy token is too short")
        salt = blob[:_LEGACY_SALT_BYTES]
        iv = blob[_LEGACY_SALT_BYTES : _LEGACY_SALT_BYTES + _LEGACY_IV_BYTES]
        tag = blob[_LEGACY_SALT_BYTES + _LEGACY_IV_BYTES : _LEGACY_HEADER_BYTES]
        ciphertext = blob[_LEGACY_HEADER_BYTES:]
        key = PBKDF2HMAC(
            algorithm=hashes.SHA512(),
            length=KEY_BYTES,
            salt=salt,
            iterations=_LEGACY_ITERATIONS,
        ).derive(self._legacy_key.encode("utf-8"))
        try:
            plaintext = AESGCM(key).decrypt(iv, ciphertext + tag, None)
        except InvalidTag:
            raise TokenDecryptError(
                "legacy token failed authentication: wrong legacy key or tampered"
            ) from None
        return _utf8(plaintext)

    def __repr__(self) -> str:
        return f"TokenCipher(keyring={self._keyring!r}, reads_legacy={self.reads_legacy})"


def _utf8(plaintext: bytes) -> str:
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenDecryptError("decrypted token is not UTF-8 text") from None
