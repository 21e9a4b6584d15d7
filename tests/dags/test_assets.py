"""The index's assets through ``dag.test()`` on the local stack: which runs record which asset events in
the metadata DB, and what their extras say (README: Assets). The scheduler side (a downstream DAG run
by the live asset's event) is in test_backfill_cli.py, which runs ``airflow standalone``."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# dag.test() keeps the last run's conf as the Params: every run names them all.
PARAMS = {"partition_date": None, "allow_future_partition": False, "prefixes": None, "dry_run": False,
          "source_mode": None, "rebuild_mode": None, "skip_rebuild": False, "force_rebuild": False,
          "override_guards": []}
CATALOG = ("image_index.demo.catalog", "warehouse://warehouse_local/demo_image_catalog")
LIVE = ("image_index.demo.live", "opensearch://opensearch_local/demo_images")


@pytest.fixture
def demo_dag(airflow_db, demo_stack):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["image_index_demo"]
    for task in dag.tasks:
        task.retries = 0
    return dag


def asset_events(run) -> dict[tuple[str, str], list[dict]]:
    """The asset events ``run`` recorded, by (asset name, URI): each its source task and extra."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(AssetModel.name, AssetModel.uri, AssetEvent.source_task_id, AssetEvent.extra)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetEvent.source_dag_id == run.dag_id, AssetEvent.source_run_id == run.run_id)
            .order_by(AssetEvent.id)
        ).all()
    found: dict[tuple[str, str], list[dict]] = {}
    for name, uri, task_id, extra in rows:
        found.setdefault((name, uri), []).append({"task": task_id, **extra})
    return found


# First in the file: its runs make nothing live, so the next test's run compares with nothing either.
def test_a_dry_run_records_no_event_and_an_unrebuilt_partition_no_live_event(demo_dag) -> None:
    dry = demo_dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": "2026-11-26", "dry_run": True})
    assert dry.state == "success"
    states = {ti.task_id: ti.state for ti in dry.get_task_instances()}
    # Nothing was published: the task says so by being skipped, and no event claims otherwise.
    assert states["publish_partition"] == "skipped" and states["smoke_query"] == "skipped"
    assert states["choose_rebuild"] == "success" and states["report"] == "success"
    assert asset_events(dry) == {}

    written = demo_dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": "2026-11-26",
                                                         "skip_rebuild": True})
    assert written.state == "success"
    events = asset_events(written)
    assert set(events) == {CATALOG}  # published, never proven live
    (catalog,) = events[CATALOG]
    assert catalog["task"] == "publish_partition" and catalog["ds"] == "20261126" and catalog["rows"] == 320


def full_run(dag, date: str):
    # force_rebuild: other tests of the session may have published newer partitions
    return dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": date, "rebuild_mode": "full",
                                                 "force_rebuild": True})


def test_a_full_run_records_the_published_partition_and_the_generation_that_went_live(demo_dag, demo_stack) -> None:
    _, stack, _ = demo_stack
    run = full_run(demo_dag, "2026-11-24")
    assert run.state == "success"
    events = asset_events(run)
    assert set(events) == {CATALOG, LIVE}
    (catalog,) = events[CATALOG]
    assert catalog["task"] == "publish_partition"
    assert catalog["index"] == "demo" and catalog["ds"] == "20261124" and catalog["route"] == "list"
    assert catalog["rows"] == catalog["distinct_ids"] == 320
    assert isinstance(catalog["snapshot_at"], float) and catalog["table"]
    (live,) = events[LIVE]
    assert live["task"] == "smoke_query" and live["ds"] == "20261124" and live["mode"] == "full"
    assert live["generation_id"] == stack.opensearch.engine.live_generation_id("demo_images")
    assert live["instance_id"] and live["rows"] == 320 and live["pushed"] is None
    assert set(live) >= {"previous_ds", "added", "removed", "changed", "reason"}


def test_a_delta_run_records_what_it_pushed_and_no_generation(demo_dag, demo_stack) -> None:
    from localcloud.demo_data import change_demo_bucket, reset_demo_bucket
    from pipeline.oss.client import OssConnection

    _, stack, config = demo_stack
    assert full_run(demo_dag, "2026-11-27").state == "success"
    bucket = OssConnection.from_extras("oss_local", stack.connections()["oss_local"]["extra"]).bucket(config.source.bucket)
    changed = change_demo_bucket(bucket, 0.05)
    added, replaced, deleted = (len(changed[kind]) for kind in ("added", "replaced", "deleted"))
    try:
        delta = demo_dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": "2026-11-28",
                                                           "rebuild_mode": "delta"})
    finally:
        reset_demo_bucket(bucket)
    assert delta.state == "success"
    events = asset_events(delta)
    (catalog,) = events[CATALOG]
    assert catalog["ds"] == "20261128" and catalog["rows"] == 320 + added - deleted
    assert (catalog["previous_ds"], catalog["added"], catalog["removed"]) == ("20261127", added, deleted)
    (live,) = events[LIVE]
    assert live["mode"] == "delta" and live["generation_id"] is None  # no new generation: documents were pushed
    assert (live["previous_ds"], live["added"], live["changed"], live["removed"]) == ("20261127", added, replaced, deleted)
    assert live["pushed"]["adds"] == added + replaced and live["pushed"]["deletes"] == deleted
    assert live["pushed"]["requests"] >= 1


def test_the_example_downstream_dag_schedules_on_the_demo_index_s_live_asset() -> None:
    from airflow.dag_processing.dagbag import DagBag

    from pipeline.airflow.assets import index_assets
    from pipeline.config import load_index_config

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    consumer = bag.dags["example_downstream"]
    live = index_assets(load_index_config(REPO / "dags" / "indexes" / "demo.yaml")).live
    assert (live.name, live.uri) == LIVE
    assert list(consumer.timetable.asset_condition.objects) == [live]  # the very asset the demo DAG emits
    assert bag.dags["image_index_demo"].get_task("smoke_query").outlets == [live]
