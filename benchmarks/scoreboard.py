"""The scoreboard `make bench` prints: one figure per row, each with its same-run baseline.

A benchmark module's `run()` returns `Figure`s. A figure with a `baseline` carries the ratio of
the two as measured in the same run (this machine's speed varies twice over between hours, so
only same-run ratios compare); `better` says which way is good, so that the ratio reads "higher
is better" whichever unit the figure has. `write_json` keeps the run in `var/bench.json` as
`{"name": {"value", "unit", "baseline", "ratio", "note"}}`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure. `ratio` defaults to value/baseline (or baseline/value when lower
    is better); give it explicitly when the figure is itself a ratio."""

    name: str
    value: float
    unit: str
    baseline: float | None = None
    ratio: float | None = None
    target: str = ""
    note: str = ""
    better: Literal["higher", "lower"] = "higher"

    @property
    def same_run_ratio(self) -> float | None:
        if self.ratio is not None:
            return self.ratio
        if self.baseline is None or self.value == 0 or self.baseline == 0:
            return None
        if self.better == "higher":
            return self.value / self.baseline
        return self.baseline / self.value


def _number(value: float) -> str:
    if value == 0 or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def table(figures: Iterable[Figure]) -> str:
    """The figures as an aligned text table (name, value, baseline, ratio, target, note)."""
    header = ("figure", "value", "baseline", "ratio", "target", "note")
    rows = [header]
    for figure in figures:
        ratio = figure.same_run_ratio
        rows.append(
            (
                figure.name,
                f"{_number(figure.value)} {figure.unit}",
                "" if figure.baseline is None else f"{_number(figure.baseline)} {figure.unit}",
                "" if ratio is None else f"{ratio:.2f}x",
                figure.target,
                figure.note,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [
            row[0].ljust(widths[0]),
            *(cell.rjust(width) for cell, width in zip(row[1:4], widths[1:4], strict=True)),
            row[4].ljust(widths[4]),
            row[5],
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def write_json(figures: Iterable[Figure], path: Path) -> None:
    """Keep the run as `{"name": {"value", "unit", "baseline", "ratio", "target", "note"}}`."""
    document = {
        figure.name: {
            "value": figure.value,
            "unit": figure.unit,
            "baseline": figure.baseline,
            "ratio": figure.same_run_ratio,
            "target": figure.target,
            "note": figure.note,
        }
        for figure in figures
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
