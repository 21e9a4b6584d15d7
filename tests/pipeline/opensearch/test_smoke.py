"""Smoke queries through the real query SDK against the local OpenSearch server.

A smoke query must prove that the *new* index answers: it samples ids that are new against the
partition that last went live, so the previous generation, which lacks them, fails it.
"""

from __future__ import annotations

import time

import pytest

from pipeline.errors import SmokeQueryError
from pipeline.opensearch.connection import OpenSearchConnection
from pipeline.opensearch.management import OpenSearchManagement
from pipeline.opensearch.rebuild import RebuildSettings, start_rebuild, wait_until_ready
from pipeline.opensearch.search import OpenSearchQuery
from pipeline.opensearch.smoke import image_smoke_query
from pipeline.oss.client import OssConnection, read_object
from pipeline.stages import load_partition, open_index_warehouse, run_smoke_queries, smoke_sample_pool
from tests.pipeline.opensearch.test_rebuild import TABLE, settle

FAST = RebuildSettings(poll_interval_s=0.1, stall_timeout_s=30, deadline_s=120, new_generation_timeout_s=10)
OLD, NEW = "20200101", "20200102"  # old dates: never "the newest partition" for the DAG tests


@pytest.fixture
def engine(demo_stack):
    _, stack, _ = demo_stack
    engine = stack.opensearch.engine
    yield engine
    engine.faults.hold_switch_next_build = False
    engine.faults.switch_during_next_query = False
    settle(engine)


@pytest.fixture
def mgmt(demo_stack) -> OpenSearchManagement:
    return OpenSearchManagement(OpenSearchConnection.from_airflow("opensearch_local"))


def go_live(mgmt: OpenSearchManagement, ds: str) -> int:
    handle = start_rebuild(mgmt, TABLE, ds, FAST)
    wait_until_ready(mgmt, handle, FAST)
    return handle.generation_id


def built_not_switched(engine, mgmt: OpenSearchManagement, ds: str) -> int:
    engine.faults.hold_switch_next_build = True
    handle = start_rebuild(mgmt, TABLE, ds, FAST)
    deadline = time.monotonic() + 60
    while mgmt.generation(TABLE, handle.generation_id).get("status") != "ready":
        assert time.monotonic() < deadline, "the new generation was not built within 60 s"
        time.sleep(0.1)
    return handle.generation_id


def fetcher(config):
    oss = OssConnection.from_airflow(config.source.oss_conn_id)
    bucket = oss.bucket(config.source.bucket)
    return lambda key: read_object(oss, bucket, key)


def test_the_smoke_samples_new_ids_and_fails_against_the_previous_generation(
    demo_stack, engine, mgmt, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, config = demo_stack
    # A pool smaller than the partition, as in a real one: the 40 smallest ids are all old ones.
    monkeypatch.setattr("pipeline.opensearch.smoke.SAMPLE_POOL", 40)
    load_partition(config, OLD, prefixes=["catalog/shoes/", "catalog/bags/"])  # ids 1xxxx, 2xxxx
    load_partition(config, NEW)  # adds hats and watches: ids 3xxxx, 4xxxx
    old = go_live(mgmt, OLD)

    rows, new_against, note = smoke_sample_pool(open_index_warehouse(config), NEW, OLD, 1000)
    assert new_against == OLD and {r["id"] // 10000 for r in rows} == {3, 4}
    assert note == f"ids of ds={NEW} new against ds={OLD}, the partition that last went live"

    # The new generation is built but never switched in: the old one keeps answering.
    new = built_not_switched(engine, mgmt, NEW)
    assert engine.live_generation_id(TABLE) == old
    with pytest.raises(SmokeQueryError, match=r"image query with id [34]\d{4} .* did not find that id in the top 5"):
        run_smoke_queries(config, NEW, live_ds=OLD)

    settle(engine)  # the switch happens: now the same queries pass
    assert engine.live_generation_id(TABLE) == new
    results = run_smoke_queries(config, NEW, live_ds=OLD)
    assert all(r["rank"] == 1 and r["id"] // 10000 in (3, 4) for r in results)
    assert results[0]["sampled"] == note


def test_without_a_live_partition_any_id_is_sampled_and_the_report_says_so(demo_stack, engine, mgmt) -> None:
    _, _, config = demo_stack
    load_partition(config, OLD, prefixes=["catalog/shoes/", "catalog/bags/"])
    load_partition(config, NEW)
    warehouse = open_index_warehouse(config)
    rows, new_against, note = smoke_sample_pool(warehouse, OLD, None, 1000)
    assert new_against is None and rows[0]["id"] == 10001
    assert note.startswith(f"first build (no partition has gone live yet): any id of ds={OLD}")
    assert "cannot tell the new index from the old one" in note
    assert "already the live partition" in smoke_sample_pool(warehouse, OLD, OLD, 10)[2]
    assert "no longer exists" in smoke_sample_pool(warehouse, OLD, "20000101", 10)[2]
    assert "adds no id to the live ds=" in smoke_sample_pool(warehouse, OLD, NEW, 10)[2]  # OLD is a subset of NEW


def test_queries_fetch_summaries_by_primary_key_as_the_vendor_example_does(demo_stack, engine, mgmt) -> None:
    """A switch landing between a query's two phases loses docid-fetched summaries; by pk they survive."""
    _, _, config = demo_stack
    load_partition(config, OLD, prefixes=["catalog/shoes/", "catalog/bags/"])
    load_partition(config, NEW)
    go_live(mgmt, OLD)
    new = built_not_switched(engine, mgmt, NEW)
    sent: list[str] = []
    query = OpenSearchQuery(OpenSearchConnection.from_airflow("opensearch_local"))
    search = query.search
    query.search = lambda ha, method="POST": (sent.append(ha), search(ha, method))[1]  # type: ignore[method-assign]

    engine.faults.switch_during_next_query = True  # phase 1 on the old generation, phase 2 on the new one
    row = {"id": 10001, "source_image": "/catalog/shoes/10001.jpg", "cate_id": 1}  # in both generations
    outcome = image_smoke_query(query, config.opensearch, row, fetcher(config))
    assert outcome["rank"] == 1 and engine.live_generation_id(TABLE) == new  # the switch did land in between
    assert sent[0].startswith("config=start:0,hit:5,format:json,fetch_summary_type:pk,qrs_chain:search&&query=")
    wrong_key = config.opensearch.model_copy(update={"primary_key": "sku"})
    with pytest.raises(SmokeQueryError, match=r"a hit carries no 'sku' among its summary fields \['cate_id', 'id', "
                       r"'source_image'\]: set opensearch.primary_key"):
        image_smoke_query(query, wrong_key, row, fetcher(config))
