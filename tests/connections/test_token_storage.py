"""Access tokens at rest: v1 ciphertext bound to its row, legacy tokens upgraded, keys rotated."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.connections.tokens import reencrypt_tokens
from plaid_bridge.security.crypto import TokenCipher, TokenDecryptError
from tests.conftest import ENCRYPTION_KEYS, Api, make_settings

pytestmark = pytest.mark.anyio
BASE = "/api/v1/plaid"
LEGACY_KEY = "the old module's passphrase"


def legacy_ciphertext(token: str, passphrase: str) -> str:
    """The old module's format: base64(salt(64) | iv(16) | tag(16) | ciphertext)."""
    salt, iv = os.urandom(64), os.urandom(16)
    key = hashlib.pbkdf2_hmac("sha512", passphrase.encode(), salt, 100_000, 32)
    sealed = AESGCM(key).encrypt(iv, token.encode(), None)
    ciphertext, tag = sealed[:-16], sealed[-16:]
    return base64.b64encode(salt + iv + tag + ciphertext).decode()


async def _rows(api: Api) -> list[PlaidConnection]:
    async with api.services.database.transaction() as session:
        return list((await session.scalars(select(PlaidConnection))).all())


async def test_stored_token_is_bound_to_its_row(api: Api) -> None:
    first = (await api.connect())["itemId"]
    second = (await api.connect(institution_id="ins_109509"))["itemId"]
    rows = {row.item_id: row for row in await _rows(api)}
    stored = rows[first].access_token_encrypted or ""
    assert stored.startswith("v1.k1.")
    assert "access-" not in stored
    assert api.services.cipher.decrypt(stored, first).startswith("access-")
    with pytest.raises(TokenDecryptError):
        api.services.cipher.decrypt(stored, second)
    # Moved into the other row, the ciphertext makes that connection unusable, not another's.
    async with api.services.database.transaction() as session:
        row = await session.get(PlaidConnection, rows[second].id)
        assert row is not None
        row.access_token_encrypted = stored
    response = await api.client.get(
        f"{BASE}/accounts/{second}", params={"refresh": "true"}, headers=api.auth()
    )
    assert response.status_code == 500
    assert "access-" not in response.text


async def test_legacy_token_is_read_and_reencrypted(api: Api) -> None:
    item_id = (await api.connect())["itemId"]
    row = (await _rows(api))[0]
    token = api.services.cipher.decrypt(row.access_token_encrypted or "", item_id)
    async with api.services.database.transaction() as session:
        stored = await session.get(PlaidConnection, row.id)
        assert stored is not None
        stored.access_token_encrypted = legacy_ciphertext(token, LEGACY_KEY)

    settings = make_settings(
        database_url=api.services.settings.database_url,
        plaid_api_host=api.services.settings.plaid_host,
        var_dir=api.services.settings.var_dir,
        plaid_legacy_encryption_key=LEGACY_KEY,
    )
    services = api.use(settings)
    response = await api.client.get(
        f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
    )
    assert response.status_code == 200, response.text
    upgraded = (await _rows(api))[0].access_token_encrypted or ""
    assert upgraded.startswith("v1.k1.")
    assert services.cipher.decrypt(upgraded, item_id) == token


async def test_rotate_keys_moves_every_row_to_the_new_key(api: Api) -> None:
    items = [
        (await api.connect(institution_id=bank))["itemId"] for bank in ("ins_109508", "ins_109509")
    ]
    new_key = "k2:" + base64.b64encode(b"n" * 32).decode()
    settings = make_settings(
        database_url=api.services.settings.database_url,
        plaid_api_host=api.services.settings.plaid_host,
        var_dir=api.services.settings.var_dir,
        plaid_encryption_keys=f"{new_key},{ENCRYPTION_KEYS}",
    )
    rotated_cipher = TokenCipher.from_settings(settings, settings.var_dir)
    assert await reencrypt_tokens(api.services.database, rotated_cipher) == 2
    assert await reencrypt_tokens(api.services.database, rotated_cipher) == 0
    rows = await _rows(api)
    assert all((row.access_token_encrypted or "").startswith("v1.k2.") for row in rows)

    only_new = make_settings(
        database_url=settings.database_url,
        plaid_api_host=settings.plaid_host,
        var_dir=settings.var_dir,
        plaid_encryption_keys=new_key,
    )
    api.use(only_new)
    for item_id in items:
        response = await api.client.get(
            f"{BASE}/accounts/{item_id}", params={"refresh": "true"}, headers=api.auth()
        )
        assert response.status_code == 200, response.text
