"""The whole demo DAG through ``dag.test()``, on the local OSS server and the local warehouse."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_dag(airflow_db, demo_stack):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["image_index_demo"]
    for task in dag.tasks:
        task.retries = 0  # a failing run should fail now, not wait for a retry delay
    return dag


def report(ds: str) -> dict:
    return json.loads((Path(os.environ["PIPELINE_REPORT_DIR"]) / "demo" / f"{ds}.json").read_text())


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def test_scheduled_run_writes_the_partition_of_its_date(demo_dag, demo_stack) -> None:
    # 18:00 UTC on Nov 22 is 02:00 on Nov 23 in Asia/Shanghai: the nightly run of the 23rd.
    run = demo_dag.test(logical_date=datetime(2026, 11, 22, 18, 0, tzinfo=UTC))
    assert task_states(run) == dict.fromkeys(("resolve_partition", "load_partition", "check_partition"), "success")
    got = report("20261123")
    assert got["partition"]["rows"] == 320
    assert got["partition"]["rows_per_category"] == {"1": 80, "2": 80, "3": 80, "4": 80}
    assert got["load"]["skipped"]["unmapped_category"] == 5
    paths, _, _ = demo_stack
    assert (paths.warehouse / "demo_image_catalog" / "ds=20261123").is_dir()


def test_backfilled_dates_give_one_partition_each(demo_dag, demo_stack) -> None:
    # Dates after the DAG's start_date (2026-11-01): Airflow runs no task for a date before it.
    for day in (10, 11, 12):
        run = demo_dag.test(logical_date=datetime(2026, 11, day, 18, 0, tzinfo=UTC))
        assert run.state == "success", task_states(run)
        assert set(task_states(run).values()) == {"success"}
    paths, _, _ = demo_stack
    partitions = sorted(p.name for p in (paths.warehouse / "demo_image_catalog").glob("ds=2026111*"))
    assert partitions == ["ds=20261111", "ds=20261112", "ds=20261113"]


def test_manual_run_with_params_dry_run(demo_dag, demo_stack) -> None:
    run = demo_dag.test(
        logical_date=None,
        run_conf={"partition_date": "2026-09-09", "dry_run": True, "prefixes": ["catalog/bags/"]},
    )
    assert set(task_states(run).values()) == {"success"}
    got = report("20260909")
    assert got["load"]["dry_run"] is True and got["load"]["kept"] == 80 and "partition" not in got
    paths, _, _ = demo_stack
    assert not (paths.warehouse / "demo_image_catalog" / "ds=20260909").exists()


def test_an_empty_partition_fails_the_run(demo_dag) -> None:
    run = demo_dag.test(logical_date=None, run_conf={"partition_date": "20260808", "prefixes": ["nowhere/"]})
    assert run.state == "failed"
    assert task_states(run) == {"resolve_partition": "success", "load_partition": "success", "check_partition": "failed"}
