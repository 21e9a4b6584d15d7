"""Inventory route vs listing route (issue 13): the worker's peak RSS, wall time and OSS requests.

One generated bucket per size (``bench-src``: 100 folders ``p000/`` ... of computed keys
``p037/000123456.jpg``) on the local OSS (``python -m localcloud.oss``, its own process, no latency),
and the local MaxCompute (its own process, able to assume the role that reads OSS for an external
table, as in bench/external.py). Per size:

1. ``pipeline.oss.inventory.setup`` puts the index's inventory rule on the bucket (oss2, like the CLI);
2. OSS's job, timed apart and not counted in the route: ``python -m localcloud.oss inventory run``
   writes the inventory (manifest + gzip CSV of 1,000,000 rows a file) into ``bench-inventory``;
3. the worker: a fresh process (``--worker inventory``) runs only ``load_partition_from_inventory``
   (find + verify, copy the run's files, SQL in MaxCompute) with Airflow connections from
   ``AIRFLOW_CONN_*``; it reports its own peak RSS (VmHWM, since exec), the stage's wall time split
   by phase, and its OSS requests by operation;
4. the listing route on the same bucket and MaxCompute: a fresh process (``--worker list``) runs
   ``load_partition`` (``list_concurrency`` 16, the config's default) into the same staging table.

OSS requests are counted in the worker, by wrapping ``oss2.http.Session.do_request`` (every HTTP
request oss2 sends, retries included): only the worker's, not MaxCompute's own reads of the staged
files. Peak RSS of the servers (VmHWM from /proc) is reported beside.

    python -m bench.inventory_route --mode quick     # 100,000 objects, both routes
    python -m bench.inventory_route --mode full      # 1 and 10 million objects, both routes
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from bench.support import (
    ACCESS_KEY_ID, ACCESS_KEY_SECRET, REPO, Server, connection, emit, log, machine, oss_server, server_process,
    status_kib,
)

SIZES = {"quick": [100_000], "full": [1_000_000, 10_000_000]}
FOLDERS = 100
SRC, DEST, INVENTORY_ID = "bench-src", "bench-inventory", "nightly"
ACCOUNT = "1000000000000001"
READ_ROLE = f"acs:ram::{ACCOUNT}:role/aliyunodpsdefaultrole"  # MaxCompute assumes it to read the files
WRITE_ROLE = f"acs:ram::{ACCOUNT}:role/AliyunOSSRole"  # OSS would assume it to write the inventory
PROJECT, TABLE, REGION, TIMEZONE = "bench", "bench_inventory_catalog", "cn-hangzhou", "Asia/Shanghai"
INTERNAL = f"oss-{REGION}-internal.aliyuncs.com"
ROWS_PER_FILE = 1_000_000
GOAL_PEAK_MIB = 256
CHILD_TIMEOUT_S = 30 * 60


def config_data(mode: str) -> dict:
    """The index config of the benchmark (``pipeline.config.parse_index_config`` reads it)."""
    return {
        "name": "bench",
        "timezone": TIMEZONE,
        "source": {
            "oss_conn_id": "oss_bench", "bucket": SRC, "prefixes": ["p"], "extensions": ["jpg"],
            "mode": mode,
            "inventory": {"bucket": DEST, "id": INVENTORY_ID, "role_arn": READ_ROLE, "oss_endpoint": INTERNAL},
        },
        "id_rule": {"kind": "filename_digits"},
        "category_rule": {"kind": "path_segment", "segment": 0,
                          "mapping": {f"p{i:03d}": i + 1 for i in range(FOLDERS)}},
        "warehouse": {"conn_id": "warehouse_bench", "table": TABLE},
    }


# -- the worker (a fresh process per route and size) --------------------------------------------------


def operation(req) -> str:  # req: oss2.http.Request
    """The OSS operation of one oss2 request, for counting."""
    bucket_and_key = urlsplit(req.url).path.lstrip("/").split("/", 1)
    key = bucket_and_key[1] if len(bucket_and_key) > 1 else ""
    params = req.params or {}
    method = req.method.upper()
    if "inventory" in params:
        return f"{method} inventory rule"
    if method == "GET":
        return "GetObject" if key else "ListObjects"
    if method == "HEAD":
        return "HeadObject"
    if method == "PUT":
        return "CopyObject" if "x-oss-copy-source" in req.headers else "PutObject" if key else "PutBucket"
    if method == "DELETE":
        return "DeleteObject"
    if method == "POST" and "delete" in params:
        return "DeleteMultipleObjects"
    return method


def worker(route: str, ds: str) -> None:
    """Run one route's load stage in this fresh process; print one JSON line."""
    import oss2.http

    import pipeline.oss.inventory as inventory
    from pipeline import stages
    from pipeline.config import parse_index_config
    from pipeline.warehouse.maxcompute import MaxComputeWarehouse

    requests: Counter[str] = Counter()
    send = oss2.http.Session.do_request

    def counted(self, req, timeout):  # type: ignore[no-untyped-def]
        requests[operation(req)] += 1
        return send(self, req, timeout)

    oss2.http.Session.do_request = counted  # type: ignore[method-assign]
    phases: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - began
        return wrapper

    # Each SQL statement the inventory route sends (pyodps' execute_sql waits for the instance), in order.
    from odps import ODPS

    statements: list[tuple[str, float]] = []
    execute = ODPS.execute_sql

    def timed_sql(self, sql, *args, **kwargs):  # type: ignore[no-untyped-def]
        began = time.perf_counter()
        try:
            return execute(self, sql, *args, **kwargs)
        finally:
            statements.append((" ".join(str(sql).split())[:60], time.perf_counter() - began))

    ODPS.execute_sql = timed_sql  # type: ignore[method-assign]
    # The stage imports these from their modules when it runs: the wrappers only add clocks.
    inventory.find_inventory = timed("find_verify_s", inventory.find_inventory)
    inventory.stage_inventory_files = timed("copy_s", inventory.stage_inventory_files)
    MaxComputeWarehouse.load_inventory = timed("sql_s", MaxComputeWarehouse.load_inventory)  # type: ignore[method-assign]
    stages.prepare_staging = timed("prepare_staging_s", stages.prepare_staging)
    config = parse_index_config(config_data(route), "bench")
    rss_before = status_kib("VmRSS")
    began = time.perf_counter()
    if route == "inventory":
        result = stages.load_partition_from_inventory(config, ds)
    else:
        result = stages.load_partition(config, ds)
    seconds = time.perf_counter() - began
    peak = status_kib("VmHWM")
    phases["other_s"] = seconds - sum(phases.values())  # connections (Airflow, pyodps imports), the result
    print(json.dumps({
        "seconds": round(seconds, 2),
        "phases_s": {name: round(value, 2) for name, value in phases.items()},
        "rows_written": result.rows_written,
        "listed": result.counts.get("listed"),
        "pages": result.pages,
        "inventory": result.inventory,
        "sql_statements_s": [[head, round(sec, 2)] for head, sec in statements],
        "oss_requests": sum(requests.values()),
        "oss_requests_by_operation": dict(sorted(requests.items())),
        "rss_before_stage_mib": round(rss_before / 1024, 1),
        "peak_rss_mib": round(peak / 1024, 1),
    }), flush=True)


# -- the local MaxCompute of this benchmark (a server process) ---------------------------------------


def serve_maxcompute(root: str, oss_endpoint: str) -> None:
    """The local MaxCompute with the role MaxCompute assumes to read OSS and the internal endpoint mapped
    to the local OSS (the CLI has no flags for these); logs its address, serves until SIGTERM."""
    from localcloud.maxcompute.server import LocalMaxComputeServer
    from localcloud.ram import ServiceRoles, TokenAuthority

    authority = TokenAuthority.from_hex(os.environ["LOCAL_STS_KEY_HEX"])
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = LocalMaxComputeServer(Path(root), {ACCESS_KEY_ID: ACCESS_KEY_SECRET}, projects=[PROJECT], region=REGION,
                                   authority=authority, assume_role=ServiceRoles(authority, {READ_ROLE: 3600}).assume,
                                   oss_endpoints={INTERNAL: oss_endpoint}).start()
    log(f"bench MaxCompute listening on {server.endpoint}")
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()


# -- the parent -----------------------------------------------------------------------------------------


def _run(command: list[str], env: dict[str, str], what: str) -> tuple[str, float, float]:
    """Run ``command``; its stdout, wall seconds and wait4's ru_maxrss in MiB (at least this process's
    size when it forked: a cross-check of a worker's own VmHWM, not a measure of a small child)."""
    began = time.perf_counter()
    proc = subprocess.Popen(command, cwd=REPO, env={**os.environ, **env, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    watchdog = threading.Timer(CHILD_TIMEOUT_S, proc.kill)
    watchdog.start()
    try:
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        watchdog.cancel()
    seconds = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{what} failed with exit code {code}")
    return output.decode(), seconds, usage.ru_maxrss / 1024


def _connections(oss: Server, maxcompute: Server) -> dict[str, str]:
    keys = {"auth_type": "AK", "access_key_id": ACCESS_KEY_ID, "access_key_secret": ACCESS_KEY_SECRET}
    return {
        "AIRFLOW_CONN_OSS_BENCH": json.dumps({"conn_type": "oss", "extra": {**keys, "region": REGION, "endpoint": oss.endpoint}}),
        "AIRFLOW_CONN_WAREHOUSE_BENCH": json.dumps({"conn_type": "maxcompute", "extra": {
            **keys, "project": PROJECT, "endpoint": maxcompute.endpoint, "region": REGION}}),
    }


def measure(objects: int, mode: str) -> list[dict]:
    from pipeline.config import parse_index_config
    from pipeline.oss.inventory.cli import setup

    spec = f"name={SRC},prefixes={FOLDERS},keys_per_prefix={objects // FOLDERS}"
    ds = datetime.now(ZoneInfo(TIMEZONE)).strftime("%Y%m%d")
    key_hex = secrets.token_hex(32)
    root = tempfile.mkdtemp(prefix="bench-inventory-oss-")
    os.mkdir(os.path.join(root, DEST))
    base = {"bench": "inventory_route", "mode": mode, "objects": objects, "layout": spec, "ds": ds}
    results = []
    with oss_server([spec], root=root, sts_key_hex=key_hex) as oss:
        setup(parse_index_config(config_data("inventory"), "bench"), WRITE_ROLE, conn=connection(oss), out=log)
        log(f"inventory_route: {objects:,} objects: OSS writes the inventory...")
        command = [sys.executable, "-m", "localcloud.oss", "inventory", "run", "--root", root, "--bucket", SRC,
                   "--id", INVENTORY_ID, "--rows-per-file", str(ROWS_PER_FILE), "--generated", spec]
        load = os.getloadavg()[0]
        manifest, generate_s, generate_peak = _run(command, {}, "inventory run")
        results.append({**base, "route": "OSS inventory generation (OSS's job, not the route's)",
                        "manifest": manifest.strip(), "seconds": round(generate_s, 2),
                        "wait4_maxrss_mib": round(generate_peak, 1),  # at least this process's image at fork
                        "load_before": round(load, 2),
                        "load_after": round(os.getloadavg()[0], 2)})
        log(f"inventory_route: generated in {generate_s:.1f} s")
        mc_root = tempfile.mkdtemp(prefix="bench-inventory-mc-")
        mc_command = [sys.executable, "-m", "bench.inventory_route", "--serve-maxcompute", mc_root, "--oss-endpoint", oss.endpoint]
        with server_process("MaxCompute", mc_command, {"LOCAL_STS_KEY_HEX": key_hex}, mc_root) as maxcompute:
            env = _connections(oss, maxcompute)
            for route in ("inventory", "list"):
                log(f"inventory_route: {objects:,} objects, {route} route in a fresh worker...")
                load = os.getloadavg()[0]
                oss_cpu, mc_cpu = oss.cpu_s(), maxcompute.cpu_s()
                output, wall, maxrss = _run([sys.executable, "-m", "bench.inventory_route", "--worker", route, "--ds", ds],
                                            env, f"{route} worker")
                measured = json.loads(output.strip().splitlines()[-1])
                measured.update({
                    "process_wall_s": round(wall, 2), "wait4_maxrss_mib": round(maxrss, 1),
                    "oss_server_cpu_s": round(oss.cpu_s() - oss_cpu, 1),
                    "maxcompute_server_cpu_s": round(maxcompute.cpu_s() - mc_cpu, 1),
                    "maxcompute_peak_rss_so_far_mib": round(status_kib("VmHWM", maxcompute.pid) / 1024, 1),
                    "oss_server_peak_rss_so_far_mib": round(status_kib("VmHWM", oss.pid) / 1024, 1),
                    "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
                })
                if measured["rows_written"] != objects:
                    log(f"inventory_route: WARNING: {route} wrote {measured['rows_written']} rows of {objects}")
                log(f"inventory_route: {route}: {measured['seconds']} s, peak RSS {measured['peak_rss_mib']} MiB, "
                    f"{measured['oss_requests']} OSS requests {measured['oss_requests_by_operation']}")
                results.append({**base, "route": route, **measured})
    return results


def summary(results: list[dict], mode: str) -> dict:
    routes = [r for r in results if r["route"] in ("inventory", "list")]
    by = {(r["route"], r["objects"]): r for r in routes}
    sizes = SIZES[mode]
    peaks = {str(n): by["inventory", n]["peak_rss_mib"] for n in sizes}
    return {
        "bench": "inventory_route", "mode": mode,
        "summary": "worker's load stage: inventory route vs listing route, same bucket and MaxCompute",
        "seconds": {str(n): {"inventory": by["inventory", n]["seconds"], "list": by["list", n]["seconds"]} for n in sizes},
        "oss_requests": {str(n): {"inventory": by["inventory", n]["oss_requests"], "list": by["list", n]["oss_requests"]}
                         for n in sizes},
        "inventory_peak_rss_mib": peaks,
        "list_peak_rss_mib": {str(n): by["list", n]["peak_rss_mib"] for n in sizes},
        "list_keys_per_s": {str(n): round(n / by["list", n]["seconds"]) for n in sizes},
        "goals": {"inventory_peak_rss_mib": GOAL_PEAK_MIB},
        "peak_within_goal": all(v <= GOAL_PEAK_MIB for v in peaks.values()),
        "machine": machine(),
    }


def run(mode: str) -> list[dict]:
    results = [r for objects in SIZES[mode] for r in measure(objects, mode)]
    results.append(summary(results, mode))
    for result in results:
        emit(result)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inventory_route", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=sorted(SIZES), default="quick")
    parser.add_argument("--worker", choices=["inventory", "list"], help=argparse.SUPPRESS)
    parser.add_argument("--ds", help=argparse.SUPPRESS)
    parser.add_argument("--serve-maxcompute", metavar="ROOT", help=argparse.SUPPRESS)
    parser.add_argument("--oss-endpoint", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.ds)
    elif args.serve_maxcompute:
        serve_maxcompute(args.serve_maxcompute, args.oss_endpoint)
    else:
        run(args.mode)


if __name__ == "__main__":
    main()
