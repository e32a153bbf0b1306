"""`plaid-bridge dev` as a user runs it: a linked bank survives a restart (stopped with Ctrl-C),
and `--fresh` starts empty and links again without a conflict; a taken port is one clear line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest

from tests.dev_process import DevProcess, dev

__all__ = ["dev"]  # the fixture, shared with other tests of `plaid-bridge dev`

pytestmark = pytest.mark.slow

SYNC_SECONDS = 60.0
PLAID_CREDENTIALS = {"client_id": "emulator-client-id", "secret": "emulator-secret"}


class Client:
    """The API as an OWNER of org o1 sees it, and the emulator beside it."""

    def __init__(self, dev: DevProcess) -> None:
        token = dev.cli("dev-token", "--user", "u1", "--org", "o1", "--role", "OWNER")
        assert token.returncode == 0, token.stderr
        self.http = httpx.Client(
            base_url=f"{dev.api}/api/v1/plaid",
            headers={"Authorization": f"Bearer {token.stdout.strip()}"},
            timeout=30,
            trust_env=False,
        )
        self.emulator = httpx.Client(base_url=dev.emulator, timeout=30, trust_env=False)
        self.api_base = dev.api

    def close(self) -> None:
        self.http.close()
        self.emulator.close()

    def link(self) -> str:
        """The README's connect walk: link token, public token from the emulator, exchange."""
        created = self.http.post("/create-link-token", json={})
        assert created.status_code == 201, created.text
        public = self.emulator.post(
            "/sandbox/public_token/create",
            json={
                **PLAID_CREDENTIALS,
                "institution_id": "ins_109508",
                "initial_products": ["transactions"],
                # What Link takes from the link token: the API's webhook URL.
                "options": {"webhook": f"{self.api_base}/api/v1/plaid/webhook"},
            },
        )
        assert public.status_code == 200, public.text
        exchanged = self.http.post(
            "/exchange-token",
            json={"publicToken": public.json()["public_token"], "institutionId": "ins_109508"},
        )
        assert exchanged.status_code == 201, exchanged.text
        item_id: str = exchanged.json()["itemId"]
        return item_id

    def connections(self) -> list[dict[str, Any]]:
        response = self.http.get("/connections")
        assert response.status_code == 200, response.text
        listed: list[dict[str, Any]] = response.json()
        return listed

    def stored_ids(self, item_id: str) -> set[str]:
        ids: set[str] = set()
        after: str | None = None
        while True:
            params: dict[str, Any] = {"itemId": item_id, "limit": 500}
            if after:
                params["after"] = after
            page = self.http.get("/transactions", params=params)
            assert page.status_code == 200, page.text
            body = page.json()
            ids |= {txn["transaction_id"] for txn in body["transactions"]}
            after = body["nextAfter"]
            if after is None:
                return ids

    def ledger_ids(self, item_id: str) -> set[str]:
        response = self.emulator.get("/emulator/ledger", params={"item_id": item_id})
        assert response.status_code == 200, response.text
        return {txn["transaction_id"] for txn in response.json()["transactions"]}

    def wait_until_stored(self, item_id: str, wanted: set[str]) -> None:
        deadline = time.monotonic() + SYNC_SECONDS
        while not wanted <= self.stored_ids(item_id):
            if time.monotonic() > deadline:
                missing = wanted - self.stored_ids(item_id)
                pytest.fail(f"{len(missing)} transactions never synced")
            time.sleep(1.0)  # the API allows 120 requests a minute per user


def test_a_linked_bank_survives_a_restart_and_fresh_starts_empty(dev: DevProcess) -> None:
    process = dev.start()
    client = Client(dev)
    try:
        item_id = client.link()
        client.wait_until_stored(item_id, client.ledger_ids(item_id))
    finally:
        client.close()
        dev.stop(process)
    assert (dev.home / "var" / "emulator-state.json").exists()

    process = dev.start()
    client = Client(dev)
    try:
        assert [c["itemId"] for c in client.connections()] == [item_id]
        refreshed = client.http.get(f"/accounts/{item_id}", params={"refresh": "true"})
        assert refreshed.status_code == 200, refreshed.text

        before = client.ledger_ids(item_id)
        advanced = client.emulator.post(
            "/emulator/advance", json={"days": 2, "itemId": item_id, "add": 4}
        )
        assert advanced.status_code == 200, advanced.text
        new = client.ledger_ids(item_id) - before
        assert len(new) >= 4
        requested = client.http.post(f"/connections/{item_id}/sync")
        assert requested.status_code == 202, requested.text
        client.wait_until_stored(item_id, new)

        removed = client.http.delete(f"/connections/{item_id}")
        assert removed.status_code == 200, removed.text
    finally:
        client.close()
        dev.stop(process)

    process = dev.start("--fresh")
    client = Client(dev)
    try:
        assert client.connections() == []
        again = client.link()
        assert again != item_id
        assert [c["itemId"] for c in client.connections()] == [again]
    finally:
        client.close()
        dev.stop(process)


@pytest.mark.parametrize(
    ("command", "taken", "option"),
    [
        ("dev", "emulator", "--emulator-port"),
        ("dev", "api", "--port"),
        ("serve", "api", "--port"),
        ("emulator", "emulator", "--port"),
    ],
)
def test_a_taken_port_is_one_clear_line(
    dev: DevProcess, command: str, taken: str, option: str
) -> None:
    port = dev.emulator_port if taken == "emulator" else dev.api_port
    args = {
        "dev": ["--port", str(dev.api_port), "--emulator-port", str(dev.emulator_port)],
        "serve": ["--port", str(dev.api_port)],
        "emulator": ["--port", str(dev.emulator_port)],
    }[command]
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        result = dev.cli(command, *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port} " in lines[0]
    assert f"with {option} N" in lines[0]
    assert not (dev.home / "var").exists()  # nothing started, nothing written


def test_reset_removes_the_database_and_the_emulator_state(dev: DevProcess) -> None:
    var = dev.home / "var"
    var.mkdir()
    kept = var / "encryption.key"
    for name in ("plaid_bridge.db", "plaid_bridge.db-wal", "emulator-state.json", kept.name):
        (var / name).write_text("x")
    result = dev.cli("reset")
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in var.iterdir()) == [kept.name]


def test_reset_refuses_a_server_database(dev: DevProcess) -> None:
    env = {**dev.env, "DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:9/none"}
    result = subprocess.run(
        [sys.executable, "-m", "plaid_bridge.cli", "reset"],
        cwd=dev.home,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "only a SQLite database" in result.stderr
