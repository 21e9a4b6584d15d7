"""Smoke queries through the real query SDK against the local OpenSearch server.

A smoke query must prove that the *new* index answers: it samples ids that are new against the
partition that last went live, so the previous generation, which lacks them, fails it.
"""

from __future__ import annotations

import os
import time

import pytest

from pipeline.errors import SmokeQueryError, SourceError
from pipeline.opensearch.connection import OpenSearchConnection
from pipeline.opensearch.management import OpenSearchManagement
from pipeline.opensearch.rebuild import RebuildSettings, start_rebuild, wait_until_ready
from pipeline.opensearch.search import OpenSearchQuery
from pipeline.opensearch.smoke import image_smoke_query, prove_new_generation
from pipeline.oss.client import OssConnection, object_etag, read_object
from pipeline.retry import RetryPolicy
from pipeline.stages import load_partition, open_index_warehouse, run_smoke_queries, smoke_sample_pool
from tests.pipeline.opensearch.waiting import TABLE, settle

FAST = RebuildSettings(poll_interval_s=0.1, stall_timeout_s=30, deadline_s=120, new_generation_timeout_s=10)
OLD, NEW = "20200101", "20200102"  # old dates: never "the newest partition" for the DAG tests


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
    load_partition(config, OLD, prefixes=["catalog/shoes/", "catalog/bags/"], publish=True)  # ids 1xxxx, 2xxxx
    load_partition(config, NEW, publish=True)  # adds hats and watches: ids 3xxxx, 4xxxx
    old = go_live(mgmt, OLD)

    rows, new_against, note = smoke_sample_pool(open_index_warehouse(config), NEW, OLD, 1000)
    assert new_against == OLD and {r["id"] // 10000 for r in rows} == {3, 4}
    assert note == f"ids of ds={NEW} new against ds={OLD}, the partition that last went live"

    # The new generation is built but never switched in: the old one keeps answering.
    new = built_not_switched(engine, mgmt, NEW)
    assert engine.live_generation_id(TABLE) == old
    with pytest.raises(SmokeQueryError, match=r"image query with id [34]\d{4} .* did not find that id, nor an object with the same bytes, in the top 5"):
        run_smoke_queries(config, NEW, live_ds=OLD)

    settle(engine)  # the switch happens: now the same queries pass
    assert engine.live_generation_id(TABLE) == new
    results = run_smoke_queries(config, NEW, live_ds=OLD)
    assert all(r["rank"] == 1 and r["id"] // 10000 in (3, 4) for r in results)
    assert results[0]["sampled"] == note


def test_without_a_live_partition_any_id_is_sampled_and_the_report_says_so(demo_stack, engine, mgmt) -> None:
    _, _, config = demo_stack
    load_partition(config, OLD, prefixes=["catalog/shoes/", "catalog/bags/"], publish=True)
    load_partition(config, NEW, publish=True)
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
    load_partition(config, OLD, prefixes=["catalog/shoes/", "catalog/bags/"], publish=True)
    load_partition(config, NEW, publish=True)
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


def test_a_copy_of_the_sampled_image_under_other_keys_counts_as_found(
    demo_stack, engine, mgmt, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Demo-like data with duplicates: the same bytes under nine keys tie at the top; with top_k 5 the
    sampled id may fall out, and a hit with the same ETag then counts."""
    paths, _, config = demo_stack
    oss = OssConnection.from_airflow(config.source.oss_conn_id)
    bucket = oss.bucket(config.source.bucket)
    original = bucket.get_object("catalog/hats/30005.jpg").read()
    stat = (paths.oss / config.source.bucket / "catalog/hats/30005.jpg").stat()
    for i in range(1, 9):
        bucket.put_object(f"dups/hats/{35000 + i}.jpg", original)
        # Real OSS gives a simple upload the content's MD5 as ETag; the local server (localcloud/oss/store.py)
        # derives it from size and mtime, so equal bytes need the original's mtime to share it here.
        os.utime(paths.oss / config.source.bucket / f"dups/hats/{35000 + i}.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    ds = "20200103"
    load_partition(config, ds, prefixes=["catalog/hats/", "dups/hats/"], publish=True)
    live = go_live(mgmt, ds)
    with pytest.raises(SourceError, match="reading the ETag of 'dups/hats/nope.jpg'"):
        object_etag(oss, bucket, "dups/hats/nope.jpg", retry=RetryPolicy(attempts=1))
    assert object_etag(oss, bucket, "dups/hats/35001.jpg") == object_etag(oss, bucket, "catalog/hats/30005.jpg")

    # The copy the index ranks last among the nine ties (the local engine breaks ties by row) is pushed out.
    order = [i for i in engine._live[TABLE].columns["id"] if i == 30005 or 35000 < i < 35009]  # noqa: SLF001
    assert engine.live_generation_id(TABLE) == live and len(order) == 9
    row = open_index_warehouse(config).rows_by_id(ds, [order[-1]])[0]
    query = OpenSearchQuery(OpenSearchConnection.from_airflow("opensearch_local"))
    with pytest.raises(SmokeQueryError, match="did not find that id, nor an object with the same bytes, in the top 5"):
        image_smoke_query(query, config.opensearch, row, fetcher(config))  # without the ETag check

    warehouse = open_index_warehouse(config)
    outcome = image_smoke_query(
        query, config.opensearch, row, fetcher(config),
        object_etag=lambda key: object_etag(oss, bucket, key), rows_by_id=lambda ids: warehouse.rows_by_id(ds, ids),
    )
    assert outcome["match"] == "same_bytes" and outcome["rank"] == 1 and outcome["matched_id"] in order[:5]
    assert outcome["id"] not in [t["id"] for t in outcome["top"]]

    # The stage wires the ETag (pipeline.oss) and the partition's rows (warehouse) in as callables.
    monkeypatch.setattr("pipeline.opensearch.smoke.pick_samples", lambda rows, count, seed: [row])
    (staged,) = run_smoke_queries(config, ds)
    assert staged["match"] == "same_bytes" and staged["matched_image"].startswith(("/catalog/hats/", "/dups/hats/"))


def test_new_ids_found_only_through_duplicates_prove_nothing() -> None:
    by_copy = {"kind": "image", "id": 35009, "match": "same_bytes", "matched_id": 30005}
    prove_new_generation([by_copy], None)  # any id sampled: a copy is as good as the id
    prove_new_generation([by_copy, {"kind": "image", "id": 40001, "match": "id"}], "20200101")
    with pytest.raises(SmokeQueryError, match=r"every sampled id new against ds=20200101 came back only through an "
                       r"object with the same bytes \(35009 via 30005\).*Raise opensearch.smoke.samples"):
        prove_new_generation([by_copy, {"kind": "text", "id": None}], "20200101")
