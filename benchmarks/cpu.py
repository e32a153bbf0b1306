"""CPU time of other processes (Linux /proc), so a benchmark can say where the cores went."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process so far; 0 if it is gone or unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS


def total_cpu_seconds(pids: Iterable[int]) -> dict[int, float]:
    """`cpu_seconds` of each process, by pid."""
    return {pid: cpu_seconds(pid) for pid in pids}


def used_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots (a process new in `after` counts in full)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
