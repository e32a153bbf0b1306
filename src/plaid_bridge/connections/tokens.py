"""A connection's access token: read (decrypted) where a Plaid call needs it, and re-encrypted
under the active key, on the way or for every stored row at once (`plaid-bridge rotate-keys`).

The clear token never leaves the process: it goes to PlaidClient and nowhere else.
"""

from __future__ import annotations

import anyio
from sqlalchemy import select

from plaid_bridge.connections.models import PlaidConnection
from plaid_bridge.db import Database
from plaid_bridge.errors import AppError
from plaid_bridge.security.crypto import TokenCipher

__all__ = ["ConnectionRemoved", "decrypt_access_token", "reencrypt_tokens"]


class ConnectionRemoved(AppError):
    """The connection was removed: its access token is erased, so Plaid cannot be asked about it."""

    status = 404
    code = "CONNECTION_REMOVED"
    message = "This connection was removed."


async def decrypt_access_token(connection: PlaidConnection, *, cipher: TokenCipher) -> str:
    """The connection's access token in clear. A token in the legacy format or under a retired key
    is re-encrypted under the active key on the way: the row changes, and the caller's
    transaction saves it. Raises ConnectionRemoved when the token was erased."""
    stored = connection.access_token_encrypted
    if stored is None:
        raise ConnectionRemoved()
    if not cipher.needs_rewrite(stored):
        return cipher.decrypt(stored, connection.item_id)
    # The legacy format derives its key with 100,000 PBKDF2 rounds: keep that off the loop.
    token = await anyio.to_thread.run_sync(cipher.decrypt, stored, connection.item_id)
    connection.access_token_encrypted = cipher.encrypt(token, connection.item_id)
    return token


async def reencrypt_tokens(database: Database, cipher: TokenCipher, batch: int = 200) -> int:
    """Re-encrypt every stored access token that is not under the active key; returns how many.

    Works in batches, one transaction each, so a large table never holds one long transaction;
    safe to re-run (rows already under the active key are skipped).
    """
    rotated, after = 0, ""
    while True:
        async with database.transaction() as session:
            rows = (
                await session.scalars(
                    select(PlaidConnection)
                    .where(
                        PlaidConnection.access_token_encrypted.is_not(None),
                        PlaidConnection.id > after,
                    )
                    .order_by(PlaidConnection.id)
                    .limit(batch)
                    .with_for_update()
                )
            ).all()
            if not rows:
                return rotated
            for row in rows:
                stored = row.access_token_encrypted
                if stored is not None and cipher.needs_rewrite(stored):
                    row.access_token_encrypted = await anyio.to_thread.run_sync(
                        cipher.reencrypt, stored, row.item_id
                    )
                    rotated += 1
            after = rows[-1].id
