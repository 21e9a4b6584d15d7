"""What each task's OpenLineage events name, without running a DAG (the run: tests/dags/test_lineage_and_metrics.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.airflow.lineage import (
    describe_inventory_load,
    describe_load,
    describe_publish,
    describe_push,
    describe_rebuild,
)
from pipeline.config import load_index_config

REPO = Path(__file__).resolve().parents[3]
MC, OS = "maxcompute://my_project", "opensearch://ha-cn-test"


@pytest.fixture
def config(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_LOCAL", json.dumps(
        {"conn_type": "maxcompute", "extra": {"project": "my_project", "endpoint": "http://127.0.0.1:9/api"}}))
    monkeypatch.setenv("AIRFLOW_CONN_OPENSEARCH_LOCAL", json.dumps(
        {"conn_type": "generic", "extra": {"instance_id": "ha-cn-test"}}))
    return load_index_config(REPO / "dags" / "indexes" / "demo.yaml")


def names(refs) -> list[tuple[str, str, str | None]]:
    return [(r.namespace, r.name, r.ds) for r in refs]


def test_the_load_reads_the_prefixes_the_run_lists_and_writes_the_staged_partition(config) -> None:
    start = describe_load(config, ["20261231"], {"prefixes": None}, None)
    assert names(start.inputs) == [("oss://demo-images", "catalog/", None)]
    assert names(start.outputs) == [(MC, "demo_image_catalog__staging", "20261231")]
    # a run's prefixes Param, then what the load reports it listed
    assert names(describe_load(config, ["20261231"], {"prefixes": ["catalog/bags/"]}, None).inputs) == [
        ("oss://demo-images", "catalog/bags/", None)]
    done = describe_load(config, ["20261231"], {}, {"prefixes": ["catalog/hats/"], "dry_run": False,
                                                   "rows_written": 80, "listed": 81, "skipped": {"bad_id": 1}})
    assert names(done.inputs) == [("oss://demo-images", "catalog/hats/", None)] and done.outputs[0].rows == 80
    assert done.details["listed"] == 81 and done.details["skipped"] == {"bad_id": 1}
    # a dry run writes nothing, so names no output
    assert describe_load(config, ["20261231"], {"dry_run": True}, None).outputs == []


def test_the_inventory_route_reads_the_inventory_run(config) -> None:
    start = describe_inventory_load(config, ["20261231"], {}, None)
    assert names(start.inputs) == [("oss://demo-inventory", "demo-images/nightly/", None)]
    result = {"rows_written": 320, "inventory": {"manifest": "oss://demo-inventory/demo-images/nightly/"
                                                             "2026-12-31T10-00Z/manifest.json"}}
    done = describe_inventory_load(config, ["20261231"], {}, result)
    assert names(done.inputs) == [("oss://demo-inventory", "demo-images/nightly/2026-12-31T10-00Z/", None)]
    assert names(done.outputs) == [(MC, "demo_image_catalog__staging", "20261231")]


def test_publish_rebuild_and_push(config) -> None:
    checked = {"dry_run": False, "stats": {"rows": 320}, "live_ds": "20261230"}
    published = describe_publish(config, ["20261231", checked], {}, None)
    assert names(published.inputs) == [(MC, "demo_image_catalog__staging", "20261231")]
    assert names(published.outputs) == [(MC, "demo_image_catalog", "20261231")] and published.outputs[0].rows == 320
    assert describe_publish(config, ["20261231", {"dry_run": True}], {}, None).outputs == []

    rebuild = describe_rebuild(config, ["20261231", checked], {}, None)
    assert names(rebuild.inputs) == [(MC, "demo_image_catalog", "20261231")]
    assert names(rebuild.outputs) == [(OS, "demo_images", None)]
    skipped = describe_rebuild(config, ["20261202", checked], {}, {"started": False, "reason": "older"})
    assert skipped.inputs == [] and skipped.outputs == [] and skipped.details == {"started": False, "reason": "older"}

    pushed = describe_push(config, ["20261231", checked], {}, {"adds": 3, "deletes": 2, "requests": 1})
    assert names(pushed.inputs) == [(MC, "demo_image_catalog", "20261231"), (MC, "demo_image_catalog", "20261230")]
    assert names(pushed.outputs) == [(OS, "demo_images", None)] and pushed.outputs[0].rows == 5


def test_a_local_warehouse_is_named_as_a_file_path(config, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE_LOCAL", json.dumps({"conn_type": "fs", "extra": {"path": str(tmp_path)}}))
    (out,) = describe_load(config, ["20261231"], {}, None).outputs
    assert (out.namespace, out.name) == ("file", f"{tmp_path}/demo_image_catalog__staging")


def test_the_provider_picks_the_operator_facets_and_swallows_what_fails(config, monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.providers.openlineage.extractors.base import DefaultExtractor
    from airflow.providers.openlineage.extractors.manager import ExtractorManager

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["image_index_demo"]
    manager = ExtractorManager()
    for task_id in ("load_partition", "load_from_inventory", "publish_partition", "start_rebuild", "push_changes"):
        assert manager.get_extractor_class(dag.get_task(task_id)) is DefaultExtractor, task_id
    assert manager.get_extractor_class(dag.get_task("resolve_partition")) is None  # a plain @task

    task = dag.get_task("load_partition")
    task.op_args = ["20261231"]  # as rendered
    lineage = DefaultExtractor(task).extract()
    assert [(d.namespace, d.name) for d in lineage.outputs] == [(MC, "demo_image_catalog__staging")]
    assert lineage.outputs[0].facets["imageIndexPartition"].value == "20261231"
    facet = lineage.run_facets["imageIndex"]
    assert (facet.index, facet.ds, facet.task) == ("demo", "20261231", "load_partition")
    failed = DefaultExtractor(task).extract_on_failure(None)
    assert failed.run_facets["imageIndex"].details == {"failed": True}

    # a connection that cannot be read: the provider logs it and emits the event without datasets
    monkeypatch.delenv("AIRFLOW_CONN_WAREHOUSE_LOCAL")
    assert DefaultExtractor(task).extract() is None
