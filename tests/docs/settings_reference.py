"""What the documentation says about the settings, read from README.md and the `.env` examples,
and the settings class's own view, rendered the way the documentation writes values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from plaid_bridge.config import Settings

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
ENV_EXAMPLES = (ROOT / ".env.example", ROOT / ".env.production.example")
UNSET = "unset"

_ROW = re.compile(r"^\| `(?P<name>[A-Z][A-Z0-9_]*)` \| (?P<default>.*?) \| (?P<does>.*) \|$")
_LEADING_VALUE = re.compile(r"^`(?P<value>[^`]*)`")
_ASSIGNMENT = re.compile(r"^(?P<comment>#\s*)?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


def setting_names() -> list[str]:
    """Every environment variable the settings class reads."""
    return [name.upper() for name in Settings.model_fields]


def render_default(name: str) -> str:
    """The field's default as the docs write it: `unset` for nothing, lists comma-joined,
    booleans lower-case, whole floats without `.0`."""
    value = Settings.model_fields[name.lower()].default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None or value == "" or value == []:
        return UNSET
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(str(part) for part in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Row:
    name: str
    default: str
    """The leading backticked value of the default column, or `unset`."""
    does: str


def readme_section(title: str) -> str:
    """The text of README.md's `## {title}` section, up to the next `## ` heading."""
    text = README.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def configuration_table() -> list[Row]:
    """The rows of the table in README.md's Configuration section."""
    rows = []
    for line in readme_section("Configuration").splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        cell = match["default"].strip()
        leading = _LEADING_VALUE.match(cell)
        default = leading["value"] if leading else cell.split(" ", 1)[0].rstrip(";,.")
        rows.append(Row(match["name"], default, match["does"].strip()))
    return rows


@dataclass(frozen=True)
class Assignment:
    name: str
    value: str
    active: bool
    """Not commented out: the file sets it."""
    described: bool
    """The line above is a comment of its own (what the variable does)."""


def env_assignments(path: Path) -> list[Assignment]:
    """Every `NAME=value` line of an example file, commented out or not."""
    found = []
    previous = ""
    for line in path.read_text().splitlines():
        match = _ASSIGNMENT.match(line.strip())
        if match is not None:
            described = previous.startswith("#") and _ASSIGNMENT.match(previous) is None
            found.append(
                Assignment(match["name"], match["value"], match["comment"] is None, described)
            )
        previous = line.strip()
    return found
