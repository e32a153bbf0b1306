"""`make bench`: run every benchmark and print one table of figures."""

from __future__ import annotations

import sys
from collections.abc import Callable

from benchmarks import limiter, sync_page, sync_store, webhook_flood

Row = tuple[str, str, str]
BENCHMARKS: list[tuple[str, Callable[[], list[Row]]]] = [
    ("sync page parse", sync_page.run),
    ("outbound limiter", limiter.run),
    ("sync into the store", sync_store.run),
    ("webhooks during a forgery flood", webhook_flood.run),
]


def main() -> int:
    rows: list[Row] = []
    for name, bench in BENCHMARKS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        rows.extend(bench())
    width = max(len(row[0]) for row in rows)
    print(f"\n{'figure':<{width}}  {'value':>14}  note")
    for figure, value, note in rows:
        print(f"{figure:<{width}}  {value:>14}  {note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
