"""Commands of the production and migration guides that no other test runs, run as written: the
key generation lines and the runbook's inbox queries (on both databases)."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text

from plaid_bridge.db import Database
from plaid_bridge.security.crypto import KeyRing
from plaid_bridge.webhooks.models import WebhookEvent

DOCS = Path(__file__).resolve().parents[2] / "docs"
PRODUCTION = DOCS / "production.md"
MIGRATING = DOCS / "migrating-from-nestjs.md"


def blocks(path: Path, lang: str) -> list[str]:
    """The fenced blocks of `path` marked `lang`, in order."""
    found = re.findall(rf"^```{lang}\n(.*?)^```$", path.read_text(), flags=re.M | re.S)
    assert found, f"{path.name} has no ```{lang} block"
    return [str(block) for block in found]


def shell(script: str) -> str:
    done = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def assert_usable(spec: str) -> None:
    ring = KeyRing.parse(spec)
    [(kid, secret)] = [item.split(":", 1) for item in spec.split(",")]
    assert re.fullmatch(r"k[0-9]+", kid)
    assert len(base64.b64decode(secret)) == 32
    assert ring is not None


def test_the_guide_key_generation_line_makes_a_key_the_service_reads() -> None:
    [line] = [b for b in blocks(PRODUCTION, "sh") if "os.urandom(32)" in b]
    assert_usable(shell(line))


def test_the_migration_guide_key_export_makes_a_key_the_service_reads() -> None:
    [block] = [b for b in blocks(MIGRATING, "sh") if "PLAID_ENCRYPTION_KEYS=" in b]
    [line] = [row for row in block.splitlines() if row.startswith("export PLAID_ENCRYPTION_KEYS=")]
    assert_usable(shell(f'{line}\nprintf %s "$PLAID_ENCRYPTION_KEYS"'))


@pytest.mark.anyio
async def test_the_runbook_inbox_queries_list_what_they_say(database: Database) -> None:
    retrying, failed, done = (
        WebhookEvent(
            webhook_type="ITEM",
            webhook_code=code,
            item_id="item-1",
            body="{}",
            body_sha256="0" * 64,
            status=status,
            attempts=attempts,
            last_error=error,
        )
        for code, status, attempts, error in (
            ("ERROR", "PENDING", 2, "OperationalError"),
            ("LOGIN_REPAIRED", "FAILED", 8, "ValueError"),
            ("WEBHOOK_UPDATE_ACKNOWLEDGED", "DONE", 1, None),
        )
    )
    async with database.transaction() as session:
        session.add_all([retrying, failed, done])
    pending_query, failed_query = [q for q in blocks(PRODUCTION, "sql") if "webhook_events" in q]
    async with database.transaction() as session:
        pending = (await session.execute(text(pending_query))).all()
        gave_up = (await session.execute(text(failed_query))).all()
    assert [(row.id, row.webhook_code, row.attempts, row.last_error) for row in pending] == [
        (retrying.id, "ERROR", 2, "OperationalError")
    ]
    assert [(row.id, row.webhook_code, row.attempts, row.last_error) for row in gave_up] == [
        (failed.id, "LOGIN_REPAIRED", 8, "ValueError")
    ]
