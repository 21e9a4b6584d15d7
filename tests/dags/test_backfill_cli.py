"""`airflow backfill create` through a real scheduler: one partition per date, and no rollback.

This is the one test that runs Airflow as operators do (``airflow standalone``: scheduler, dag
processor, triggerer, API server, LocalExecutor), so it is slow (about a minute) and marked so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.dags.processes import free_port, stop_tree, wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_backfill_writes_one_partition_per_date_and_never_rolls_back(demo_stack, tmp_path: Path) -> None:
    from pipeline.stages import load_partition

    paths, stack, config = demo_stack
    load_partition(config, "20261231", publish=True)  # the newest partition: older backfill dates must not rebuild
    live_before = stack.opensearch.engine.live_generation_id("demo_images")

    port = free_port()
    reports = tmp_path / "reports"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "PIPELINE_REPORT_DIR": str(reports),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=120)

    assert cli("db", "migrate").returncode == 0
    subprocess.run([sys.executable, "-m", "pipeline.airflow.pools"], env=env, check=True, capture_output=True)
    log = open(tmp_path / "standalone.log", "w")
    standalone = subprocess.Popen([airflow, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("the DAG to be parsed", lambda: "image_index_demo" in cli("dags", "list").stdout, 120)
        assert cli("dags", "unpause", "image_index_demo").returncode == 0
        # SQLite (the test's metadata DB) lets one writer in at a time: while the scheduler writes, the CLI's
        # insert can fail with "database is locked". Production uses PostgreSQL/MySQL; here, try again.
        for _ in range(10):
            created = cli("backfill", "create", "--dag-id", "image_index_demo", "--from-date", "2026-11-15",
                          "--to-date", "2026-11-17")
            if created.returncode == 0 or "database is locked" not in created.stderr:
                break
            time.sleep(2)
        assert created.returncode == 0, created.stderr[-2000:]

        # Logical dates 11-15 and 11-16 at 18:00 UTC are the 02:00 Shanghai runs of the 16th and 17th.
        wanted = [reports / "demo" / f"{ds}.json" for ds in ("20261116", "20261117")]
        wait_for("both backfill runs to report", lambda: all(p.exists() for p in wanted), 420)  # a loaded 2-core machine
    finally:
        stop_tree(standalone)
        log.close()

    for path in wanted:
        report = json.loads(path.read_text())
        assert report["partition"]["rows"] == 320
        assert report["rebuild"]["started"] is False and "roll the live index back" in report["rebuild"]["reason"]
    from pipeline.stages import open_index_warehouse

    assert {"20261116", "20261117"} <= set(open_index_warehouse(config).partitions())
    assert stack.opensearch.engine.live_generation_id("demo_images") == live_before
