"""``python -m localcloud.demo``: run the demo index's DAG end to end on the local stack.

1. local state under ``$PIPELINE_LOCAL_DIR`` (``.local/``): OSS root, MaxCompute projects, OpenSearch
   state, Airflow home, reports, and the stack's secrets (random, made once per checkout, never in code);
2. the local OSS, MaxCompute and OpenSearch servers on free loopback ports, and the demo bucket (made
   once); the catalog partition is written with pyodps into the local MaxCompute (``--warehouse fs``:
   into Parquet files instead, no MaxCompute);
3. ``airflow db migrate``, the one-slot rebuild pool, then ``airflow dags test image_index_demo <date>``
   with the connections passed as ``AIRFLOW_CONN_*``;
4. the servers stop, and the run report is printed: the partition, the generation that went live and
   a query's top hits.

Repeated runs reuse the bucket, overwrite the same partition and rebuild the index again.

Fault knobs show each failure mode offline, e.g.::

    python -m localcloud.demo --fault oss.slow_down_next=3             # retried, same result
    python -m localcloud.demo --fault opensearch.fail_next_build=disk  # the run fails, says why
    python -m localcloud.demo --fault opensearch-http.throttle_next=2

    python -m localcloud.demo --fault maxcompute.error_burst=2        # pyodps and the task retry
    python -m localcloud.demo --fault tunnel.fail_next_commit=1       # the load fails, nothing published

Targets: ``oss`` (localcloud/oss/faults.py), ``opensearch`` (EngineFaults), ``opensearch-http``
(HttpFaults), ``maxcompute`` (MaxComputeFaults) and ``tunnel`` (the Table Tunnel's faults).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from localcloud.stack import AUTH_TYPES, DEMO_CONFIG, WAREHOUSES, LocalPaths, LocalStack, StackTable

log = logging.getLogger("localcloud.demo")


def demo_stack(paths: LocalPaths, **options: Any) -> LocalStack:
    """The stack the demo index config expects: its OpenSearch table fed from its warehouse table."""
    from pipeline.config import load_index_config

    config = load_index_config(DEMO_CONFIG)
    assert config.opensearch is not None
    return LocalStack(paths, [StackTable(config.opensearch.table, config.warehouse.table)], **options)


def _parse_value(text: str) -> object:
    """Knob values: integers, floats, true/false, else the text itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def apply_faults(stack: LocalStack, specs: list[str]) -> None:
    """Set ``target.knob=value`` fault knobs on the running stack; unknown targets or knobs are errors."""
    assert stack.oss is not None and stack.opensearch is not None
    for spec in specs:
        target, _, assignment = spec.partition(".")
        knob, equals, raw = assignment.partition("=")
        if not equals or not knob:
            raise SystemExit(f"--fault {spec!r}: expected TARGET.KNOB=VALUE, e.g. oss.slow_down_next=3")
        value = _parse_value(raw)
        if target == "oss":
            try:
                stack.oss.faults.set(**{knob: value})
            except ValueError as exc:
                raise SystemExit(f"--fault {spec!r}: {exc}") from None
            continue
        holders = {"opensearch": stack.opensearch.engine.faults, "opensearch-http": stack.opensearch.http_faults}
        if stack.maxcompute is not None:
            holders.update({"maxcompute": stack.maxcompute.faults, "tunnel": stack.maxcompute.tunnel.faults})
        holder = holders.get(target)
        if holder is None:
            raise SystemExit(f"--fault {spec!r}: target must be oss or one of {', '.join(sorted(holders))}")
        if knob.startswith("_") or not hasattr(holder, knob) or callable(getattr(holder, knob)):
            raise SystemExit(f"--fault {spec!r}: {type(holder).__name__} has no knob {knob!r}")
        setattr(holder, knob, value)
        log.warning("fault knob set: %s.%s = %r", target, knob, value)


def _airflow(args: list[str], env: dict[str, str]) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), *args], env=env, check=True)


def run_demo(logical_date: str, faults: list[str] | None = None, auth_type: str = "AK",
             warehouse: str = "maxcompute") -> int:
    from localcloud.demo_data import upload_demo_bucket
    from pipeline.config import load_index_config
    from pipeline.dates import resolve_partition_date
    from pipeline.oss.client import OssConnection
    from pipeline.report import summarize

    paths = LocalPaths.from_env()
    config = load_index_config(DEMO_CONFIG)
    with demo_stack(paths, auth_type=auth_type, warehouse=warehouse) as stack:
        env = {
            **os.environ,
            **stack.environment(),
            "AIRFLOW_HOME": str(paths.airflow_home),
            "PIPELINE_REPORT_DIR": str(paths.reports),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The triggerer runs inline in `dags test`; the executable must be the venv's.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        oss = OssConnection.from_extras("oss_local", stack.connections("AK")["oss_local"]["extra"])
        written = upload_demo_bucket(oss.bucket(config.source.bucket))
        log.info("demo bucket %s at %s: %d objects uploaded", config.source.bucket, oss.endpoint, written)
        apply_faults(stack, faults or [])
        _airflow(["db", "migrate"], env)
        subprocess.run([sys.executable, "-m", "pipeline.airflow.pools"], env=env, check=True)
        try:
            _airflow(["dags", "test", "image_index_demo", logical_date], env)
        except subprocess.CalledProcessError:
            print("\nthe demo run failed: the failing task's log above says what happened and what to do")
            return 1
    moment = datetime.fromisoformat(logical_date).replace(tzinfo=UTC)
    ds = resolve_partition_date(None, moment, None, config.timezone)
    report_path = paths.reports / config.name / f"{ds}.json"
    report = json.loads(report_path.read_text())
    print("\n" + "=" * 78)
    print(summarize(report))
    print(f"report: {report_path}")
    print("=" * 78)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcloud.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--date", default=date.today().isoformat(), help="logical date of the run (YYYY-MM-DD)")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="TARGET.KNOB=VALUE",
        help="set a fault knob before the run (repeatable), e.g. oss.slow_down_next=3",
    )
    parser.add_argument("--auth", choices=AUTH_TYPES, default="AK",
                        help="how the connections authenticate (temporary credentials come from the local STS)")
    parser.add_argument("--warehouse", choices=WAREHOUSES, default="maxcompute",
                        help="where the catalog partition goes: the local MaxCompute server (pyodps), or fs Parquet files")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_demo(args.date, args.fault, args.auth, args.warehouse)


if __name__ == "__main__":
    sys.exit(main())
