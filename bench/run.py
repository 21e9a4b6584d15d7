"""Run the benchmarks: ``python -m bench.run --mode quick|full [--only memory,warehouse,rows,listing,inventory_route]``.

The mode defaults to ``$BENCH_MODE`` (quick). Results are JSON lines on stdout, and are also appended
to ``.local/bench/<mode>.jsonl`` so BENCHMARKS.md can be written from a run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import sys
from contextlib import redirect_stdout
from pathlib import Path

from bench import inventory_route, listing, memory, rows, warehouse
from bench.support import REPO, emit, log, machine

# Memory and warehouse first: their children are forked from this process, and rusage's peak of a
# child counts the image it was forked from (the children's own VmHWM does not), so fork while this
# process is small (rows keeps 2 million objects in memory; the heap does not give them all back).
BENCHMARKS = {"memory": memory.run, "warehouse": warehouse.run, "rows": rows.run, "listing": listing.run,
              "inventory_route": inventory_route.run}


class _Tee(io.TextIOBase):
    def __init__(self, *streams) -> None:  # type: ignore[no-untyped-def]
        self._streams = streams

    def write(self, text: str) -> int:
        for stream in self._streams:
            stream.write(text)
            stream.flush()
        return len(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description="Run the benchmarks (see bench/).")
    parser.add_argument("--mode", choices=["quick", "full"], default=os.environ.get("BENCH_MODE", "quick") or "quick")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of " + ", ".join(BENCHMARKS))
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    out_dir = Path(os.environ.get("PIPELINE_LOCAL_DIR", REPO / ".local")) / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    record = out_dir / f"{args.mode}.jsonl"
    started = dt.datetime.now(dt.timezone.utc)
    with record.open("a", encoding="utf-8") as saved, redirect_stdout(_Tee(sys.stdout, saved)):
        emit({"bench": "run", "mode": args.mode, "started": started.isoformat(timespec="seconds"), "machine": machine()})
        for name in chosen:
            log(f"== {name} ({args.mode})")
            BENCHMARKS[name](args.mode)
        ended = dt.datetime.now(dt.timezone.utc)
        emit({"bench": "run", "mode": args.mode, "ended": ended.isoformat(timespec="seconds"), "minutes": round((ended - started).total_seconds() / 60, 1)})
    log(f"results appended to {record}")


if __name__ == "__main__":
    main()
