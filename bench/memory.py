"""Peak memory of list -> rows -> local warehouse, in a fresh process per bucket size.

For each size a child process runs the real stage, ``load_partition``, with the parallel lister
(16 workers, real oss2 client, one shared session) against a generated bucket on the local OSS
server (another process, no latency: memory, not time, is measured here) and the local warehouse
(one Parquet file, written as batches arrive). The child reports its own peak RSS (VmHWM, which
starts afresh at exec); the parent cross-checks it with the child's rusage (``wait4``), which also
counts the image the child was forked from, so it only agrees when this parent is small (bench.run
runs memory first). Flat memory means the peak barely moves when the bucket grows tenfold.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.support import REPO, emit, log, machine, oss_server, status_kib

SIZES = {"quick": [100_000, 1_000_000], "full": [1_000_000, 10_000_000]}
CONCURRENCY = 16
GOAL_PEAK_GIB = 1.0
GOAL_GROWTH = 1.5


def layout(keys: int) -> str:
    """64 prefixes holding 90% of the keys, one flat prefix the rest."""
    per_prefix = keys * 9 // 10 // 64
    return f"name=bench-mem-{keys},prefixes=64,keys_per_prefix={per_prefix},flat_keys={keys - 64 * per_prefix}"


def child(endpoint: str, keys: int) -> None:
    """Run one load in this (fresh) process and print one JSON line about it."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s: %(message)s")
    from bench.support import ACCESS_KEY_ID, ACCESS_KEY_SECRET
    from pipeline.config import CategoryRule, IdRule, IndexConfig, SourceConfig, WarehouseConfig
    from pipeline.oss.client import OssConnection
    from pipeline.oss.pages import LeanListingBucket, OssLister
    from pipeline.oss.parallel import ParallelLister
    from pipeline.stages import load_partition
    from pipeline.warehouse.local import LocalWarehouse

    bucket = f"bench-mem-{keys}"
    config = IndexConfig(
        name="bench_memory",
        source=SourceConfig(oss_conn_id="oss_bench", bucket=bucket, prefixes=[""], list_concurrency=CONCURRENCY),
        id_rule=IdRule(kind="filename_digits"),
        category_rule=CategoryRule(
            kind="path_segment", segment=0, mapping={**{f"p{i:03d}": i for i in range(64)}, "flat": 64}
        ),
        warehouse=WarehouseConfig(conn_id="unused", table="bench_catalog"),
    )
    conn = OssConnection.from_extras(
        "oss_bench", {"access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET, "region": "cn-hangzhou", "endpoint": endpoint}
    )
    lister = ParallelLister(OssLister(conn, conn.bucket(bucket, pool_size=CONCURRENCY, kind=LeanListingBucket)), concurrency=CONCURRENCY)
    root = Path(tempfile.mkdtemp(prefix="bench-warehouse-"))
    try:
        warehouse = LocalWarehouse(root, "bench_catalog")
        rss_before = status_kib("VmRSS")
        started = time.perf_counter()
        result = load_partition(config, "20260101", lister=lister, warehouse=warehouse, publish=True)
        seconds = time.perf_counter() - started
        parquet_bytes = warehouse.partition_file("20260101").stat().st_size
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(
        json.dumps(
            {
                "keys": keys,
                "rows_written": result.rows_written,
                "pages": result.pages,
                "seconds": round(seconds, 1),
                "rss_before_load_kib": rss_before,
                "peak_rss_kib": status_kib("VmHWM"),
                "parquet_mib": round(parquet_bytes / 2**20, 1),
            }
        ),
        flush=True,
    )


def run(mode: str) -> list[dict]:
    sizes = SIZES[mode]
    results: list[dict] = []
    with oss_server([layout(keys) for keys in sizes]) as server:
        for keys in sizes:
            log(f"memory: {keys} keys in a fresh process...")
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.memory", "--child", "--endpoint", server.endpoint, "--keys", str(keys)],
                cwd=REPO,
                env={**os.environ, "PYTHONPATH": str(REPO)},
                stdout=subprocess.PIPE,
            )
            assert proc.stdout is not None
            output = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            if proc.returncode != 0:
                raise RuntimeError(f"memory child for {keys} keys failed with exit code {proc.returncode}")
            measured = json.loads(output.decode().strip().splitlines()[-1])
            if measured["rows_written"] != keys:
                raise RuntimeError(f"wrote {measured['rows_written']} rows for {keys} keys")
            peak_mib = measured["peak_rss_kib"] / 1024
            results.append(
                {
                    "bench": "memory",
                    "mode": mode,
                    "pipeline": f"load_partition: ParallelLister x{CONCURRENCY} -> CatalogBuilder -> LocalWarehouse",
                    "layout": layout(keys),
                    **measured,
                    "peak_rss_mib": round(peak_mib, 1),
                    "child_maxrss_mib": round(usage.ru_maxrss / 1024, 1),  # wait4: at least the parent's size at fork
                    "keys_per_s": round(keys / measured["seconds"]) if measured["seconds"] else None,
                }
            )
    small, large = results[0], results[-1]
    growth = large["peak_rss_mib"] / small["peak_rss_mib"]
    results.append(
        {
            "bench": "memory",
            "mode": mode,
            "summary": f"peak RSS at {large['keys']:,} keys vs {small['keys']:,} keys",
            "peak_rss_mib": {str(r["keys"]): r["peak_rss_mib"] for r in results},
            "growth": round(growth, 3),
            "goals": {"peak_gib_at_10m": GOAL_PEAK_GIB, "growth_10m_vs_1m": GOAL_GROWTH},
            "peak_within_goal": large["peak_rss_mib"] <= GOAL_PEAK_GIB * 1024,
            "growth_within_goal": growth <= GOAL_GROWTH,
            "machine": machine(),
        }
    )
    for result in results:
        emit(result)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(SIZES), default="quick")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--keys", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.endpoint, args.keys)
    else:
        run(args.mode)


if __name__ == "__main__":
    main()
