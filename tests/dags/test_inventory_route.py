"""The inventory route through the demo DAG (issue 13): the partition MaxCompute derives from the bucket's
OSS inventory equals the one the listing route writes, and a stale inventory fails at once or falls
back to listing as the config says."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.dags.test_image_index_dag import REPO, demo_dag, run_report, task_states  # noqa: F401

DS, DATE = "20270315", "2027-03-15"  # its own day: other DAG tests' partitions are untouched
INVENTORY_AT = datetime(2027, 3, 15, 10, 0, tzinfo=UTC)  # within the day in Asia/Shanghai (ends 16:00 UTC)
CONF = {"partition_date": DATE, "allow_future_partition": True, "prefixes": None}


def inventory(demo_stack, at: datetime) -> str:
    from localcloud.demo import prepare_demo_inventory
    from pipeline.oss.client import OssConnection

    _, stack, config = demo_stack
    oss = OssConnection.from_extras("oss_local", stack.connections("AK")["oss_local"]["extra"])
    return prepare_demo_inventory(stack, oss, config, at)


def test_both_routes_write_the_same_partition(demo_dag, demo_stack) -> None:
    listed = demo_dag.test(logical_date=None, run_conf={**CONF, "source_mode": "list"})
    assert listed.state == "success", task_states(listed)
    assert task_states(listed)["load_from_inventory"] == "skipped"
    inventory(demo_stack, INVENTORY_AT)
    read = demo_dag.test(logical_date=None, run_conf={**CONF, "source_mode": "inventory"})
    assert read.state == "success", task_states(read)
    assert task_states(read)["load_partition"] == "skipped"
    by_listing, by_inventory = run_report(listed, DS), run_report(read, DS)
    assert by_inventory["load"]["route"] == "inventory" and by_listing["load"]["route"] == "list"
    assert by_inventory["load"]["inventory"]["run"] == "2027-03-15T10-00Z"
    # The same rows (the id set's digest), categories and skip counts, whichever route read the bucket.
    assert by_inventory["partition"] == by_listing["partition"]
    for field in ("listed", "kept", "skipped", "unmapped_category_examples", "archived_by_class"):
        assert by_inventory["load"][field] == by_listing["load"][field], field
    assert by_inventory["load"]["pages"] == 0  # the worker listed nothing
    # The run's copy of the inventory is removed once MaxCompute has read it.
    import oss2

    from pipeline.oss.client import OssConnection

    _, stack, config = demo_stack
    oss = OssConnection.from_extras("oss_local", stack.connections("AK")["oss_local"]["extra"])
    work = f"{config.source.inventory.work_prefix}demo/{DS}/"
    assert list(oss2.ObjectIteratorV2(oss.bucket(config.source.inventory.bucket), prefix=work)) == []


def test_a_stale_inventory_fails_the_run_at_once_or_falls_back_to_listing(demo_dag, demo_stack, airflow_db) -> None:
    from pipeline.airflow.dag_factory import build_dag

    inventory(demo_stack, INVENTORY_AT)
    _, _, config = demo_stack
    # The newest run (Mar 15, 10:00 UTC) is 5 days before the end of Mar 20 in Asia/Shanghai: too old.
    conf = {**CONF, "partition_date": "2027-03-20", "source_mode": "inventory"}
    stale = demo_dag.test(logical_date=None, run_conf=conf)
    states = task_states(stale)
    assert states["choose_route"] == "failed" and states["check_partition"] == "upstream_failed"
    message = run_report(stale, "20270320")["failed_tasks"][0]["message"]
    assert "2027-03-15T10-00Z" in message and "is 126 h old" in message and "fallback: list" in message

    fallback = config.model_copy(update={"source": config.source.model_copy(update={
        "inventory": config.source.inventory.model_copy(update={"fallback": "list"})})})
    dag = build_dag(fallback, REPO / "dags" / "indexes" / "demo.yaml")
    for task in dag.tasks:
        task.retries = 0
    listed = dag.test(logical_date=None, run_conf={**conf, "partition_date": "2027-03-21"})
    assert listed.state == "success", task_states(listed)
    assert task_states(listed)["load_from_inventory"] == "skipped"
    load = run_report(listed, "20270321")["load"]
    assert load["route"] == "list" and load["route_reason"].startswith("inventory unusable, fell back to listing")


def test_the_load_reads_the_run_the_route_was_chosen_on(demo_stack) -> None:
    """A newer run delivered between choose_route and the load does not change what is loaded: the
    load verifies the run choose_route chose (its name travels in the route's XCom)."""
    from pipeline.stages import load_partition_from_inventory

    _, _, config = demo_stack
    inventory(demo_stack, datetime(2027, 3, 22, 1, 0, tzinfo=UTC))
    inventory(demo_stack, datetime(2027, 3, 22, 9, 0, tzinfo=UTC))  # newer, delivered meanwhile
    chosen = load_partition_from_inventory(config, "20270322", run_name="2027-03-22T01-00Z")
    assert chosen.inventory["run"] == "2027-03-22T01-00Z" and chosen.counts["kept"] == 320
    newest = load_partition_from_inventory(config, "20270322")
    assert newest.inventory["run"] == "2027-03-22T09-00Z"
