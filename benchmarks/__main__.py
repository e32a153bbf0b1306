"""`make bench`: run every benchmark, print one table of figures, keep it in `var/bench.json`.

`python -m benchmarks NAME ...` runs only the named benchmarks (module names below).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from benchmarks.scoreboard import Figure, table, write_json

# Module names under benchmarks/, each with `run() -> list[Figure]`, in the order they run.
BENCHMARKS = [
    "sync_page",
    "limiter",
    "sync_store",
    "change_feed",
    "webhook_flood",
    "webhook_ingest",
    "sync_burst",
    "api_path",
]
RESULTS = Path("var/bench.json")


def main(argv: list[str]) -> int:
    chosen = argv or BENCHMARKS
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    figures: list[Figure] = []
    started = time.monotonic()
    for name in chosen:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        figures.extend(module.run())
    print(table(figures))
    print(f"\n{len(figures)} figures in {time.monotonic() - started:.0f} s; written to {RESULTS}")
    write_json(figures, RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
