"""The documented systemd units: `systemd-analyze verify` accepts them without a warning, and each
ExecStart is a command line `plaid-bridge` accepts."""

from __future__ import annotations

import configparser
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from plaid_bridge.cli import build_parser
from tests.deploy.stack import COMMAND, DEPLOY

UNITS = DEPLOY / "systemd"
INSTALLED_COMMAND = "/opt/plaid-bridge/.venv/bin/plaid-bridge"
# A template is verified through an instance of it, as systemctl would start it.
INSTANCES = {
    "plaid-bridge-api@.service": "plaid-bridge-api@8001.service",
    "plaid-bridge-worker@.service": "plaid-bridge-worker@1.service",
}


def unit_files() -> list[Path]:
    return sorted(path for path in UNITS.iterdir() if path.suffix in (".service", ".target"))


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (systemd's tools); the units are unchecked")
    for unit in unit_files():
        text = unit.read_text()
        if unit.suffix == ".service":
            assert INSTALLED_COMMAND in text, unit.name
        # The installed path does not exist here: point at this checkout's command instead.
        (tmp_path / unit.name).write_text(text.replace(INSTALLED_COMMAND, str(COMMAND)))
    names = [INSTANCES.get(unit.name, unit.name) for unit in unit_files()]
    checked = subprocess.run(
        [analyze, "verify", *(str(tmp_path / name) for name in names)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


@pytest.mark.parametrize("unit", [u for u in unit_files() if u.suffix == ".service"], ids=str)
def test_each_exec_start_is_a_plaid_bridge_command(unit: Path) -> None:
    parsed = configparser.ConfigParser(strict=False, interpolation=None)
    parsed.optionxform = str  # type: ignore[assignment,method-assign]
    parsed.read_string(unit.read_text())
    instance = "8001" if "-api@" in unit.name else "1"
    command = shlex.split(parsed["Service"]["ExecStart"].replace("%i", instance))
    assert command[0] == INSTALLED_COMMAND
    args = build_parser().parse_args(command[1:])
    assert args.command in ("serve", "worker", "db")
    if args.command == "serve":
        assert (args.host, args.port, args.workers) == ("127.0.0.1", 8001, 1)
    if args.command == "worker":
        assert (args.host, args.port) == ("127.0.0.1", 9101)
