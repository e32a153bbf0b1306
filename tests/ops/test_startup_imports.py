"""A serving process starts without the heavy modules it does not need to serve.

The SDK's endpoint module (which loads every one of its models), Alembic and the emulator cost
a good part of a second to import; the API imports them only when it first calls Plaid, when it
migrates, and never, respectively. The readiness probe reads the head revision without Alembic,
and must agree with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from alembic.script import ScriptDirectory

from plaid_bridge.ops import migrate

LAZY = ("alembic", "plaid.api", "plaid.model", "plaid_bridge.emulator")
_PROBE = """
import json, sys
from plaid_bridge.app import create_app_from_env
from plaid_bridge.config import load_settings
from plaid_bridge.services import build_services
create_app_from_env()
build_services(load_settings())
print(json.dumps(sorted(sys.modules)))
"""


def test_the_head_revision_is_alembics() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    assert migrate.head_revision() == scripts.get_current_head()


def test_building_the_app_and_its_services_imports_no_heavy_module(tmp_path: Path) -> None:
    environment = {
        **os.environ,
        "PLAID_ENV": "emulator",
        "DATABASE_URL": f"sqlite:///{tmp_path}/probe.db",
        "VAR_DIR": str(tmp_path),
    }
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = json.loads(probe.stdout.strip().splitlines()[-1])
    assert "plaid_bridge.app" in loaded
    heavy = [
        name for name in loaded if name in LAZY or name.startswith(tuple(f"{p}." for p in LAZY))
    ]
    assert heavy == []
