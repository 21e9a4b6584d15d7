"""The build's own figures, read through the real management SDK from the local OpenSearch server and
checked against the partition the run wrote (pipeline/opensearch/figures.py).

A build leaves out the rows whose image cannot be decoded and still succeeds under the service's own
limit (the local server's: 5%). The wait reports what the generation holds against the partition's
rows, with the build's examples; more missing than ``guards.max_unindexed_fraction`` fails it, saying
that the generation already serves and what to do.
"""

from __future__ import annotations

import asyncio

import pytest

from localcloud.demo_data import undecodable_objects, upload_objects
from pipeline.airflow.triggers import RebuildTrigger
from pipeline.config import GuardsConfig
from pipeline.errors import RebuildIncompleteError
from pipeline.opensearch.connection import OpenSearchConnection
from pipeline.opensearch.management import OpenSearchManagement
from pipeline.opensearch.rebuild import RebuildHandle, settings_for, wait_until_ready
from pipeline.oss.client import OssConnection
from pipeline.stages import check_partition, load_partition, open_index_warehouse, start_index_rebuild

TABLE = "demo_images"
CLEAN_DS, PLANTED_DS = "20261205", "20261206"  # the demo's images; 48 pictures and 2 broken files
BROKEN = ["/planted/shoes/19901.jpg", "/planted/shoes/19902.jpg"]


@pytest.fixture(scope="module")
def partitions(demo_stack) -> dict[str, dict]:
    """Both partitions written and checked as the DAG does; ``checked`` as start_rebuild receives it."""
    _, _, config = demo_stack
    oss = OssConnection.from_airflow(config.source.oss_conn_id)
    upload_objects(oss.bucket(config.source.bucket), undecodable_objects(good=48, broken=2))
    warehouse = open_index_warehouse(config)
    checked = {}
    for ds, prefixes in ((CLEAN_DS, None), (PLANTED_DS, ["planted/"])):
        load_partition(config, ds, prefixes=prefixes, publish=True)
        stats, _ = check_partition(warehouse, ds)
        checked[ds] = {"stats": stats.as_dict(), "partitions": warehouse.partitions(), "live_ds": CLEAN_DS}
    return checked


def _rebuild(config, ds: str, checked: dict) -> tuple[OpenSearchManagement, RebuildHandle]:
    started = start_index_rebuild(config, ds, checked, force=True)
    handle = RebuildHandle.from_dict(started["handle"])
    assert handle.partition_rows == checked["stats"]["distinct_ids"] and handle.live_ds_before == CLEAN_DS
    return OpenSearchManagement(OpenSearchConnection.from_airflow(config.opensearch.conn_id)), handle


def _settings(config, limit: float | None = None):
    guards = GuardsConfig() if limit is None else GuardsConfig(max_unindexed_fraction=limit)
    return settings_for(config.opensearch.model_copy(update={"poll_interval_s": 0.1}), guards)


def test_a_clean_build_reports_every_row_indexed(demo_stack, engine, partitions) -> None:
    _, _, config = demo_stack
    mgmt, handle = _rebuild(config, CLEAN_DS, partitions[CLEAN_DS])
    verdict = wait_until_ready(mgmt, handle, _settings(config))
    figures = verdict.figures
    assert verdict.outcome == "ready" and figures["rows"] == partitions[CLEAN_DS]["stats"]["distinct_ids"] == 320
    assert (figures["indexed"], figures["unindexed"], figures["failures"], figures["failure_examples"]) == (320, 0, 0, [])
    assert figures["summary"] == "320 of 320 rows indexed" and verdict.message.endswith("the new index is live; 320 of 320 rows indexed")


def test_undecodable_images_under_the_limit_are_reported_with_examples(demo_stack, engine, partitions) -> None:
    _, _, config = demo_stack
    mgmt, handle = _rebuild(config, PLANTED_DS, partitions[PLANTED_DS])
    verdict = wait_until_ready(mgmt, handle, _settings(config, limit=0.05))  # 2 of 50 = 4%: allowed here
    figures = verdict.figures
    assert verdict.outcome == "ready" and engine.live_generation_id(TABLE) == handle.generation_id
    assert (figures["rows"], figures["indexed"], figures["unindexed"], figures["failures"]) == (50, 48, 2, 2)
    assert figures["unindexed_fraction"] == 0.04 and figures["service_rows"] == 50
    assert [e["image"] for e in figures["failure_examples"]] == BROKEN
    assert all(e["reason"].startswith("decode failed") for e in figures["failure_examples"])
    assert figures["summary"].startswith("48 of 50 rows indexed (2 = 4.0% not indexed); the build left out 2 it "
                                         "could not fetch or decode, e.g. 19901 /planted/shoes/19901.jpg (decode failed")

    # The trigger (the DAG's wait) ends with the same figures in its event.
    settings = _settings(config, limit=0.05).__dict__
    (event,) = asyncio.run(_events(RebuildTrigger(handle.as_dict(), settings)))
    assert event["outcome"] == "ready" and event["figures"] == figures


def test_over_the_limit_the_wait_fails_saying_the_index_already_serves(demo_stack, engine, partitions) -> None:
    _, _, config = demo_stack
    mgmt, handle = _rebuild(config, PLANTED_DS, partitions[PLANTED_DS])
    with pytest.raises(RebuildIncompleteError) as err:
        wait_until_ready(mgmt, handle, _settings(config))  # the default limit, 1%
    message = str(err.value)
    assert f"generation {handle.generation_id} of table 'demo_images'" in message
    assert "48 of 50 rows indexed (2 = 4.0% not indexed)" in message and "more than guards.max_unindexed_fraction (1.0%)" in message
    assert "/planted/shoes/19901.jpg (decode failed" in message and "/planted/shoes/19902.jpg" in message
    assert "ALREADY SWITCHED IN and serving" in message
    assert f"partition_date={CLEAN_DS} (the partition live before this run) and force_rebuild=true" in message
    assert "trigger a new DAG run (clearing this run would follow the same generation)" in message
    assert engine.live_generation_id(TABLE) == handle.generation_id  # it does serve: the message is true

    (event,) = asyncio.run(_events(RebuildTrigger(handle.as_dict(), _settings(config).__dict__)))
    assert event["outcome"] == "incomplete" and event["message"] == message and event["figures"]["unindexed"] == 2


def test_a_service_that_reports_no_figures_is_not_checked_and_says_so(demo_stack, engine, partitions) -> None:
    """As the cloud documents GetTableGeneration (generationId and status only): nothing to check, said
    plainly, and the run is not failed on a count nobody gave."""
    _, stack, config = demo_stack
    stack.opensearch.report_build_figures = False
    mgmt, handle = _rebuild(config, PLANTED_DS, partitions[PLANTED_DS])
    verdict = wait_until_ready(mgmt, handle, _settings(config))
    assert verdict.outcome == "ready" and verdict.figures["indexed"] is None and verdict.figures["rows"] == 50
    assert verdict.figures["summary"] == ("the service reported no document count for the generation "
                                          "(GetTableGeneration documents only generationId and status), so its 50 "
                                          "rows were not checked against the index")


async def _events(trigger: RebuildTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]
