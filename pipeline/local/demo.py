"""``python -m pipeline.local.demo``: run the demo index's DAG end to end on the local stack.

1. local state under ``$PIPELINE_LOCAL_DIR`` (``.local/``): OSS root, warehouse, OpenSearch state,
   Airflow home, reports, and the stack's secrets (random, made once per checkout, never in code);
2. the local OSS and OpenSearch servers on free loopback ports, and the demo bucket (made once);
3. ``airflow db migrate``, the one-slot rebuild pool, then ``airflow dags test image_index_demo <date>``
   with the connections passed as ``AIRFLOW_CONN_*``;
4. the servers stop, and the run report is printed: the partition, the generation that went live and
   a query's top hits.

Repeated runs reuse the bucket, overwrite the same partition and rebuild the index again.
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

from pipeline.local.stack import LocalPaths, LocalStack, StackTable

log = logging.getLogger("pipeline.demo")

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "dags" / "indexes" / "demo.yaml"


def demo_stack(paths: LocalPaths) -> LocalStack:
    """The stack the demo index config expects: its OpenSearch table fed from its warehouse table."""
    from pipeline.config import load_index_config

    config = load_index_config(DEMO_CONFIG)
    assert config.opensearch is not None
    return LocalStack(paths, [StackTable(config.opensearch.table, config.warehouse.table)])


def _airflow(args: list[str], env: dict[str, str]) -> None:
    airflow = Path(sys.executable).with_name("airflow")
    subprocess.run([str(airflow), *args], env=env, check=True)


def run_demo(logical_date: str) -> int:
    from pipeline.config import load_index_config
    from pipeline.dates import resolve_partition_date
    from pipeline.local.demo_data import upload_demo_bucket
    from pipeline.oss import OssConnection
    from pipeline.report import summarize

    paths = LocalPaths.from_env()
    config = load_index_config(DEMO_CONFIG)
    with demo_stack(paths) as stack:
        env = {
            **os.environ,
            **stack.environment(),
            "AIRFLOW_HOME": str(paths.airflow_home),
            "PIPELINE_REPORT_DIR": str(paths.reports),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            # The triggerer runs inline in `dags test`; the executable must be the venv's.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        oss = OssConnection.from_extras("oss_local", stack.connections()["oss_local"]["extra"])
        written = upload_demo_bucket(oss.bucket(config.source.bucket))
        log.info("demo bucket %s at %s: %d objects uploaded", config.source.bucket, oss.endpoint, written)
        _airflow(["db", "migrate"], env)
        subprocess.run([sys.executable, "-m", "pipeline.airflow.pools"], env=env, check=True)
        _airflow(["dags", "test", "image_index_demo", logical_date], env)
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
    parser = argparse.ArgumentParser(prog="python -m pipeline.local.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--date", default=date.today().isoformat(), help="logical date of the run (YYYY-MM-DD)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_demo(args.date)


if __name__ == "__main__":
    sys.exit(main())
