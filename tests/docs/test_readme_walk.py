"""README.md's walk-through, run as a newcomer runs it: its shell blocks, in order, in one bash
session against a `plaid-bridge dev` started for the test (free loopback ports, its own var dir).

Rules: every ```sh block of a WALKED section runs, top to bottom, with `set -euo pipefail` and
`curl` made to fail on an HTTP error (`--fail-with-body`), so each block must exit 0 and every
request it sends must succeed. The README's commands read `BASE` and `EMULATOR` from the
environment, which is how the test points them at its own ports. Blocks of the SKIPPED sections do
not run, for the reason given; a ```sh block anywhere else fails the test until it is classified.
Blocks that should not run are fenced otherwise (```text, ```console, ```html)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.dev_process import DevProcess, dev
from tests.docs.readme_blocks import Block, sh_blocks

__all__ = ["dev"]

pytestmark = pytest.mark.slow

WALKED = (
    "Connect a bank in the emulator, with curl",
    "Transactions, webhooks and health in the emulator",
    "Re-authentication: a connection breaks and the user repairs it",
    "The emulator",
)
SKIPPED = {
    "Quick start": "starts the service (`make run`) and the whole suite (`make test`) itself",
    "Tests against PostgreSQL": "runs the whole suite",
    "Updating dependencies": "re-resolves every dependency from the package index",
}
WALK_SECONDS = 240.0
SETTLE_SECONDS = 30.0
MARK = "::readme-block::"


def _walked() -> list[Block]:
    return [block for block in sh_blocks() if block.section in WALKED]


def test_every_shell_block_is_walked_or_skipped_for_a_reason() -> None:
    unclassified = [
        f"line {block.line} ({block.section!r})"
        for block in sh_blocks()
        if block.section not in WALKED and block.section not in SKIPPED
    ]
    assert not unclassified, (
        "README.md has ```sh blocks in sections the walk test does not know; add the section to "
        f"WALKED or SKIPPED in {Path(__file__).name}: " + ", ".join(unclassified)
    )
    assert {block.section for block in _walked()} == set(WALKED), "a walked section lost its block"


def _script(blocks: list[Block]) -> str:
    parts = [
        "set -euo pipefail",
        'curl() { command curl --fail-with-body --max-time 30 "$@"; }',
    ]
    for index, block in enumerate(blocks):
        parts += [f"echo '{MARK}{index}'", block.code, "echo"]
    parts.append('echo "::item::$ITEM"')
    return "\n".join(parts) + "\n"


def _run(dev: DevProcess, script: str) -> tuple[int | None, str]:
    """Run `script` in bash from the dev run's home (with the repository's .venv), bounded by
    WALK_SECONDS; the exit status (None on timeout) and the output."""
    venv = dev.home / ".venv"
    if not venv.exists():
        venv.symlink_to(Path(sys.prefix), target_is_directory=True)
    env = {**dev.env, "BASE": dev.api, "EMULATOR": dev.emulator}
    process = subprocess.Popen(
        ["bash", "-c", script],
        cwd=dev.home,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a timeout ends the `until` loops too
    )
    try:
        output, _ = process.communicate(timeout=WALK_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return None, output
    return process.returncode, output


def _outputs(output: str) -> dict[int, str]:
    """Each block's output, by index."""
    pieces = re.split(rf"^{re.escape(MARK)}(\d+)$", output, flags=re.MULTILINE)
    return {int(pieces[i]): pieces[i + 1] for i in range(1, len(pieces) - 1, 2)}


def _failure(blocks: list[Block], status: int | None, output: str) -> str:
    outputs = _outputs(output)
    last = max(outputs, default=0)
    block = blocks[last]
    what = "timed out" if status is None else f"exited {status}"
    return (
        f"README.md's block at line {block.line} ({block.section!r}) {what}:\n"
        f"{block.code}\n--- output ---\n{outputs.get(last, output)[-3000:]}"
    )


def test_the_readme_walk_links_a_bank_serves_transactions_and_repairs_it(
    dev: DevProcess,
) -> None:
    blocks = _walked()
    dev.start()

    status, output = _run(dev, _script(blocks))

    assert status == 0, _failure(blocks, status, output) + f"\n--- dev log ---\n{dev.log()}"
    item_id = re.search(r"^::item::(\S+)$", output, flags=re.MULTILINE)
    assert item_id is not None, output
    outputs = _outputs(output)
    reauth = next(i for i, block in enumerate(blocks) if block.section == WALKED[2])
    # The re-auth walk's last answer, reauth/complete's connection, is ACTIVE.
    last_answer = outputs[reauth].rstrip().rsplit('{"itemId"', 1)[-1]
    assert '"status":"ACTIVE"' in last_answer, outputs[reauth]
    _assert_goals(dev, item_id[1])


def _assert_goals(dev: DevProcess, item_id: str) -> None:
    """The walk's ends, seen through the API: the connection listed and ACTIVE once the
    webhooks the walk caused are applied, and its transactions served."""
    token = dev.cli("dev-token", "--user", "u1", "--org", "o1", "--role", "OWNER")
    assert token.returncode == 0, token.stderr
    with httpx.Client(
        base_url=f"{dev.api}/api/v1/plaid",
        headers={"Authorization": f"Bearer {token.stdout.strip()}"},
        timeout=30,
        trust_env=False,
    ) as api:
        deadline = time.monotonic() + SETTLE_SECONDS
        while True:
            listed: list[dict[str, Any]] = api.get("/connections").json()
            [connection] = [row for row in listed if row["itemId"] == item_id]
            pending = api.get("/webhooks", params={"status": "PENDING"}).json()["webhooks"]
            if connection["status"] == "ACTIVE" and not pending:
                break
            assert time.monotonic() < deadline, (connection, pending)
            time.sleep(0.2)
        page = api.get("/transactions", params={"itemId": item_id, "limit": 5})
        assert page.status_code == 200, page.text
        assert len(page.json()["transactions"]) == 5
