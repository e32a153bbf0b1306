"""Access-token encryption: v1 format, item binding, key rotation, the legacy reader, key config."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from pydantic import SecretStr

from plaid_bridge.config import PlaidEnv, Settings
from plaid_bridge.security.crypto import KEY_FILE_NAME, KeyRing, TokenCipher, TokenDecryptError

TOKEN = "access-sandbox-8ab976e6-64bc-4b38-98f7-731e7a349970"
ITEM = "eVBnVMp7zdTJLkRNr33Rs6zr7KNJqBFL9DrE6"
LEGACY_PASSPHRASE = "correct horse battery staple 1987"


def b64key(key: bytes | None = None) -> str:
    return base64.b64encode(key if key is not None else os.urandom(32)).decode()


def make_settings(
    env: PlaidEnv = "emulator",
    *,
    keys: str | None = None,
    key: str | None = None,
    legacy: str | None = None,
) -> Settings:
    """Settings independent of the process environment and any `.env` file."""
    production_ready = {
        "plaid_client_id": "client",
        "plaid_secret": SecretStr("secret"),
        "plaid_webhook_url": "https://bridge.example.com/api/v1/plaid/webhook",
        "auth_jwt_secret": SecretStr("a-long-test-secret-for-jwt-signing-000000"),
        "database_url": "postgresql+psycopg://bridge@localhost/bridge",
    }
    return Settings(
        _env_file=None,
        plaid_env=env,
        plaid_encryption_keys=SecretStr(keys) if keys is not None else None,
        plaid_encryption_key=SecretStr(key) if key is not None else None,
        plaid_legacy_encryption_key=SecretStr(legacy) if legacy is not None else None,
        **(production_ready if env != "emulator" else {}),  # type: ignore[arg-type]
    )


def legacy_encrypt(token: str, passphrase: str) -> str:
    """The old module's format, from SPEC section 9: base64(salt | iv | tag | ciphertext)."""
    salt, iv = os.urandom(64), os.urandom(16)
    key = PBKDF2HMAC(algorithm=hashes.SHA512(), length=32, salt=salt, iterations=100_000).derive(
        passphrase.encode("utf-8")
    )
    sealed = AESGCM(key).encrypt(iv, token.encode("utf-8"), None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return base64.b64encode(salt + iv + tag + ciphertext).decode("ascii")


@pytest.fixture
def cipher() -> TokenCipher:
    return TokenCipher(KeyRing.generate())


def test_round_trip(cipher: TokenCipher) -> None:
    assert cipher.decrypt(cipher.encrypt(TOKEN, ITEM), ITEM) == TOKEN


def test_format_is_v1_with_active_kid_and_unpadded_base64url() -> None:
    cipher = TokenCipher(KeyRing.parse(f"main:{b64key()}"))
    stored = cipher.encrypt(TOKEN, ITEM)
    version, kid, body = stored.split(".")
    assert (version, kid) == ("v1", "main")
    assert set(body) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    blob = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    assert len(blob) == 12 + len(TOKEN.encode()) + 16
    assert TOKEN not in stored


def test_ciphertext_moved_to_another_item_does_not_decrypt(cipher: TokenCipher) -> None:
    stored = cipher.encrypt(TOKEN, ITEM)
    with pytest.raises(TokenDecryptError, match="another item"):
        cipher.decrypt(stored, "some-other-item-id")


def test_tampered_byte_does_not_decrypt(cipher: TokenCipher) -> None:
    prefix, _, body = cipher.encrypt(TOKEN, ITEM).rpartition(".")
    blob = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    blob[20] ^= 0x01
    tampered = f"{prefix}.{base64.urlsafe_b64encode(bytes(blob)).decode().rstrip('=')}"
    with pytest.raises(TokenDecryptError) as caught:
        cipher.decrypt(tampered, ITEM)
    assert TOKEN not in str(caught.value)
    assert body not in str(caught.value)


def test_two_encryptions_differ(cipher: TokenCipher) -> None:
    assert cipher.encrypt(TOKEN, ITEM) != cipher.encrypt(TOKEN, ITEM)


@pytest.mark.parametrize(
    "stored", ["v1.", "v1.k1", "v1.k1.", "v1.k1.!!!", "v1.k1.AAAA", "v1.a.b.c"]
)
def test_malformed_v1_values_raise_decrypt_error(cipher: TokenCipher, stored: str) -> None:
    with pytest.raises(TokenDecryptError):
        cipher.decrypt(stored, ITEM)


def test_key_rotation() -> None:
    old_key, new_key = b64key(), b64key()
    old_ring = KeyRing.parse(f"old:{old_key}")
    new_ring = KeyRing.parse(f"new:{new_key},old:{old_key}")
    stored = TokenCipher(old_ring).encrypt(TOKEN, ITEM)

    rotated_cipher = TokenCipher(new_ring)
    assert rotated_cipher.decrypt(stored, ITEM) == TOKEN
    assert rotated_cipher.needs_rewrite(stored)

    rewritten = rotated_cipher.reencrypt(stored, ITEM)
    assert rewritten.startswith("v1.new.")
    assert not rotated_cipher.needs_rewrite(rewritten)
    assert rotated_cipher.decrypt(rewritten, ITEM) == TOKEN
    with pytest.raises(TokenDecryptError, match="'new'"):
        TokenCipher(old_ring).decrypt(rewritten, ITEM)


def test_legacy_format_reads_with_the_legacy_key_only() -> None:
    ring = KeyRing.generate()
    stored = legacy_encrypt(TOKEN, LEGACY_PASSPHRASE)

    migrating = TokenCipher(ring, LEGACY_PASSPHRASE)
    assert migrating.decrypt(stored, ITEM) == TOKEN
    assert migrating.needs_rewrite(stored)
    rewritten = migrating.reencrypt(stored, ITEM)
    assert rewritten.startswith("v1.k1.")
    assert migrating.decrypt(rewritten, ITEM) == TOKEN

    with pytest.raises(TokenDecryptError, match="PLAID_LEGACY_ENCRYPTION_KEY") as caught:
        TokenCipher(ring).decrypt(stored, ITEM)
    assert stored not in str(caught.value)
    with pytest.raises(TokenDecryptError, match="wrong legacy key"):
        TokenCipher(ring, "another passphrase").decrypt(stored, ITEM)


def test_legacy_garbage_raises_decrypt_error() -> None:
    cipher = TokenCipher(KeyRing.generate(), LEGACY_PASSPHRASE)
    with pytest.raises(TokenDecryptError, match="too short"):
        cipher.decrypt(base64.b64encode(b"short").decode(), ITEM)
    with pytest.raises(TokenDecryptError, match="neither v1"):
        cipher.decrypt("not base64 at all!", ITEM)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("k1:{short}", r"entry 1: the key must decode to exactly 32 bytes, not 16"),
        ("k1:{good},k2:not*base64", r"entry 2: the key is not valid base64"),
        ("k1:{good},k1:{other}", r"entry 2: repeats the kid of entry 1"),
        ("bad.kid:{good}", r"entry 1: the kid must match"),
        ("{good}", r"entry 1: expected kid:base64key"),
        (" , ", r"no key given"),
    ],
)
def test_bad_key_lists_give_clear_errors_without_key_text(spec: str, message: str) -> None:
    short, good, other = b64key(os.urandom(16)), b64key(), b64key()
    text = spec.format(short=short, good=good, other=other)
    with pytest.raises(ValueError, match=message) as caught:
        KeyRing.parse(text)
    for secret in (short, good, other):
        assert secret not in str(caught.value)
        assert secret[:12] not in str(caught.value)


def test_every_problem_in_a_key_list_is_reported() -> None:
    with pytest.raises(ValueError, match="entry 1") as caught:
        KeyRing.parse(f"k1:{b64key(os.urandom(8))},k2:***")
    assert len(str(caught.value).splitlines()) == 2


def test_url_safe_and_unpadded_keys_are_accepted() -> None:
    raw = b"\xfb\xff" * 16  # encodes with '+' and '/' in standard base64
    url_safe = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    standard = TokenCipher(KeyRing.parse(f"k1:{b64key(raw)}"))
    url_safe_cipher = TokenCipher(KeyRing.parse(f"k1:{url_safe}"))
    assert url_safe_cipher.decrypt(standard.encrypt(TOKEN, ITEM), ITEM) == TOKEN


def test_single_key_variable_uses_kid_k1_and_hints_at_legacy() -> None:
    ring = KeyRing.from_settings(make_settings(key=b64key()), Path("/nonexistent"))
    assert ring.kids == ("k1",)
    with pytest.raises(ValueError, match="PLAID_LEGACY_ENCRYPTION_KEY") as caught:
        KeyRing.from_settings(make_settings(key=LEGACY_PASSPHRASE), Path("/nonexistent"))
    assert LEGACY_PASSPHRASE not in str(caught.value)


def test_both_key_variables_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        KeyRing.from_settings(make_settings(keys=f"a:{b64key()}", key=b64key()), tmp_path)


def test_repr_shows_kids_not_keys() -> None:
    key = b64key()
    cipher = TokenCipher(KeyRing.parse(f"main:{key}"), LEGACY_PASSPHRASE)
    assert "main" in repr(cipher)
    assert key not in repr(cipher)
    assert LEGACY_PASSPHRASE not in repr(cipher)


def test_emulator_key_file_is_generated_once_and_reused(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    settings = make_settings()
    first = TokenCipher.from_settings(settings, var_dir)
    key_file = var_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_bytes()
    assert sorted(path.name for path in var_dir.iterdir()) == [KEY_FILE_NAME]

    stored = first.encrypt(TOKEN, ITEM)
    second = TokenCipher.from_settings(settings, var_dir)
    assert second.decrypt(stored, ITEM) == TOKEN
    assert key_file.read_bytes() == content


def test_configured_keys_win_over_the_emulator_key_file(tmp_path: Path) -> None:
    ring = KeyRing.from_settings(make_settings(keys=f"cfg:{b64key()}"), tmp_path)
    assert ring.active_kid == "cfg"
    assert not (tmp_path / KEY_FILE_NAME).exists()


@pytest.mark.parametrize("env", ["sandbox", "production"])
def test_missing_keys_outside_the_emulator_raise(tmp_path: Path, env: PlaidEnv) -> None:
    if env == "production":
        # The settings already refuse this; the key ring must refuse it too on its own.
        settings = make_settings("production", keys=f"k:{b64key()}").model_copy(
            update={"plaid_encryption_keys": None}
        )
    else:
        settings = make_settings(env)
    with pytest.raises(ValueError, match=f"required when PLAID_ENV={env}"):
        KeyRing.from_settings(settings, tmp_path)
    assert not (tmp_path / KEY_FILE_NAME).exists()
