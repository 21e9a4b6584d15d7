"""Warehouse write: generated catalog rows into MaxCompute (pyodps' Arrow tunnel writer, the local
server) and into the local ``fs`` warehouse (one Parquet file), in rows/s and peak RSS.

For each size and each warehouse a fresh child process generates the rows in Arrow record batches of
8,192 (``id`` 1..N, ``source_image`` ``/p037/000000123.jpg``, ``cate_id`` = id mod 64, ``etag`` the id
in 32 digits: generated, not listed, so only the write is measured), calls ``ensure_table()`` and times ``write_partition``. The
child reports its own peak RSS (VmHWM, fresh at exec). For MaxCompute the local server
(``python -m localcloud.maxcompute``) runs in its own process, started afresh per size over an empty
state folder, so its VmHWM (read from /proc before it stops) is that load's peak; the child then
reads the partition's record count back (``get_partition(...).record_num``, the server's count of
what the commit wrote), and the fs child reads its Parquet footer; both must equal the rows written.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator

from bench.support import (
    ACCESS_KEY_ID, ACCESS_KEY_SECRET, REPO, Server, Stopwatch, emit, log, machine, maxcompute_server, status_kib,
)

SIZES = {"quick": [100_000, 1_000_000], "full": [1_000_000, 10_000_000]}
WAREHOUSES = ("fs", "maxcompute")
BATCH_ROWS = 8192
PROJECT, TABLE, DS, REGION = "bench", "bench_catalog", "20260101", "cn-hangzhou"
GOAL_PEAK_GIB = 1.0
GOAL_GROWTH = 1.5
CHILD_TIMEOUT_S = 45 * 60  # a write this slow is a finding to report, not a result to wait for


def catalog_batches(rows: int, clock: dict[str, float]) -> Iterator:  # -> Iterator[pa.RecordBatch]
    """``rows`` catalog rows in batches of BATCH_ROWS, built with Arrow kernels (no per-row Python);
    the time spent here is added to ``clock["generate_s"]`` so it can be told apart from the write."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from pipeline.schema import CATALOG_SCHEMA

    folders = pa.array([f"/p{i:03d}/" for i in range(64)])
    for start in range(0, rows, BATCH_ROWS):
        began = time.perf_counter()
        ids = pa.array(np.arange(start + 1, min(start + BATCH_ROWS, rows) + 1, dtype=np.int64))
        cate = pc.bit_wise_and(ids, 63)
        names = pc.utf8_lpad(ids.cast(pa.string()), width=9, padding="0")
        paths = pc.binary_join_element_wise(folders.take(cate), names, ".jpg", "")
        etags = pc.utf8_lpad(ids.cast(pa.string()), width=32, padding="0")  # an MD5's 32 hex digits
        batch = pa.record_batch([ids, paths, cate, etags], schema=CATALOG_SCHEMA)
        clock["generate_s"] += time.perf_counter() - began
        yield batch


def child(kind: str, rows: int, endpoint: str | None, server_pid: int | None) -> None:
    """Write ``rows`` generated rows to one warehouse in this (fresh) process; print one JSON line."""
    import pyarrow.parquet as pq

    root = tempfile.mkdtemp(prefix="bench-fs-warehouse-") if kind == "fs" else None
    try:
        if kind == "fs":
            from pipeline.warehouse.local import LocalWarehouse

            warehouse = LocalWarehouse(root, TABLE)
        else:
            from odps import ODPS

            from pipeline.warehouse.maxcompute import MaxComputeWarehouse

            odps = ODPS(ACCESS_KEY_ID, ACCESS_KEY_SECRET, project=PROJECT, endpoint=endpoint, region_name=REGION)
            warehouse = MaxComputeWarehouse(odps, TABLE, lifecycle_days=30)
        server = Server(endpoint or "", server_pid) if server_pid else None
        began = time.perf_counter()
        warehouse.ensure_table()
        ensure_s = time.perf_counter() - began
        clock = {"generate_s": 0.0}
        next(catalog_batches(1, clock))  # first use of the Arrow kernels: imports, not the write
        clock["generate_s"] = 0.0
        rss_before = status_kib("VmRSS")
        server_rss_before = status_kib("VmRSS", server_pid) if server_pid else None  # after its CREATE TABLE
        with Stopwatch(server) as watch:
            written = warehouse.write_partition(DS, catalog_batches(rows, clock))
        peak = status_kib("VmHWM")  # before the read-back, which is not the load
        if kind == "fs":
            committed = pq.ParquetFile(warehouse.partition_file(DS)).metadata.num_rows
        else:
            committed = odps.get_table(TABLE).get_partition(f"ds={DS}").record_num
    finally:
        if root:
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({
        "rows_written": written,
        "committed_rows": committed,
        "ensure_table_s": round(ensure_s, 2),
        "seconds": round(watch.seconds, 3),
        "generate_s": round(clock["generate_s"], 2),
        "client_cpu_s": round(watch.cpu_s, 1),
        "server_cpu_s": round(watch.server_cpu_s, 1) if server else None,
        "rss_before_write_kib": rss_before,
        "peak_rss_kib": peak,
        "server_rss_before_write_kib": server_rss_before,
    }), flush=True)


def _run_child(kind: str, rows: int, server: Server | None) -> dict:
    command = [sys.executable, "-m", "bench.warehouse", "--child", kind, "--rows", str(rows)]
    if server:
        command += ["--endpoint", server.endpoint, "--server-pid", str(server.pid)]
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    watchdog = threading.Timer(CHILD_TIMEOUT_S, proc.kill)
    watchdog.start()
    try:
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait: the child's rusage cross-checks VmHWM
    finally:
        watchdog.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"warehouse child ({kind}, {rows} rows) failed with exit code {proc.returncode}"
                           + (f" (killed after {CHILD_TIMEOUT_S} s)" if proc.returncode == -9 else ""))
    measured = json.loads(output.decode().strip().splitlines()[-1])
    if not measured["rows_written"] == measured["committed_rows"] == rows:
        raise RuntimeError(f"{kind}: asked {rows} rows, wrote {measured['rows_written']}, "
                           f"the committed partition holds {measured['committed_rows']}")
    measured["child_maxrss_mib"] = round(usage.ru_maxrss / 1024, 1)  # at least the parent's size at fork
    return measured


def measure(kind: str, rows: int, mode: str) -> dict:
    log(f"warehouse: {rows:,} rows into {kind} in a fresh process...")
    result = {"bench": "warehouse", "mode": mode, "warehouse": kind, "rows": rows, "batch_rows": BATCH_ROWS}
    if kind == "fs":
        result["how"] = "LocalWarehouse.write_partition: one Parquet file, 64 Ki-row groups, os.replace"
        result.update(_run_child(kind, rows, None))
    else:
        result["how"] = "MaxComputeWarehouse.write_partition: pyodps BufferedArrowWriter, one upload session, V4 signing"
        with maxcompute_server(PROJECT) as server:
            server_start_kib = status_kib("VmHWM", server.pid)
            result.update(_run_child(kind, rows, server))
            server_peak_kib = status_kib("VmHWM", server.pid)  # the server is still up: its peak covers the load
        result["server_rss_at_start_mib"] = round(server_start_kib / 1024, 1)
        result["server_peak_rss_mib"] = round(server_peak_kib / 1024, 1)
    result["rows_per_s"] = round(rows / result["seconds"]) if result["seconds"] else None
    result["peak_rss_mib"] = round(result["peak_rss_kib"] / 1024, 1)
    log(f"warehouse: {kind} {rows:,} rows: {result['rows_per_s']:,} rows/s, peak RSS {result['peak_rss_mib']} MiB"
        + (f", server {result['server_peak_rss_mib']} MiB" if kind == "maxcompute" else ""))
    return result


def summary(results: list[dict], mode: str) -> dict:
    by = {(r["warehouse"], r["rows"]): r for r in results}
    small, large = SIZES[mode][0], SIZES[mode][-1]
    peaks = {
        "fs_client": {str(n): by["fs", n]["peak_rss_mib"] for n in SIZES[mode]},
        "maxcompute_client": {str(n): by["maxcompute", n]["peak_rss_mib"] for n in SIZES[mode]},
        "maxcompute_server": {str(n): by["maxcompute", n]["server_peak_rss_mib"] for n in SIZES[mode]},
    }
    growth = {name: round(values[str(large)] / values[str(small)], 3) for name, values in peaks.items()}
    return {
        "bench": "warehouse",
        "mode": mode,
        "summary": f"write of {large:,} vs {small:,} generated rows: MaxCompute (pyodps Arrow tunnel) vs fs",
        "rows_per_s": {str(n): {"fs": by["fs", n]["rows_per_s"], "maxcompute": by["maxcompute", n]["rows_per_s"]}
                       for n in SIZES[mode]},
        "peak_rss_mib": peaks,
        "growth": growth,
        "goals": {"peak_gib": GOAL_PEAK_GIB, "growth_10x": GOAL_GROWTH},
        "peak_within_goal": all(v[str(large)] <= GOAL_PEAK_GIB * 1024 for v in peaks.values()),
        "growth_within_goal": all(g <= GOAL_GROWTH for g in growth.values()),
        "machine": machine(),
    }


def run(mode: str) -> list[dict]:
    results = [measure(kind, rows, mode) for rows in SIZES[mode] for kind in WAREHOUSES]
    results.append(summary(results, mode))
    for result in results:
        emit(result)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.warehouse", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(SIZES), default="quick")
    parser.add_argument("--child", choices=WAREHOUSES, help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.rows, args.endpoint, args.server_pid)
    else:
        run(args.mode)


if __name__ == "__main__":
    main()
