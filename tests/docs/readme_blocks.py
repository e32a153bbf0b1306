"""README.md's ```sh blocks, each with the `## ` section it stands in."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.docs.settings_reference import README

_FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")


@dataclass(frozen=True)
class Block:
    section: str
    line: int
    """1-based line of the opening fence in README.md."""
    code: str


def sh_blocks() -> list[Block]:
    """Every fenced block marked `sh`, in order."""
    blocks: list[Block] = []
    section = ""
    opened: tuple[str, int] | None = None
    body: list[str] = []
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        fence = _FENCE.match(line)
        if opened is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif fence is not None:
                opened, body = (fence["lang"], number), []
        elif fence is not None and not fence["lang"]:
            if opened[0] == "sh":
                blocks.append(Block(section, opened[1], "\n".join(body)))
            opened = None
        else:
            body.append(line)
    assert opened is None, f"README.md: the block opened on line {opened[1]} is never closed"
    return blocks
