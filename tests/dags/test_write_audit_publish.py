"""Write, audit, publish (issue 11): a run stages its rows, checks them against what is live, and only
then publishes; a refused or killed run leaves the published partition and the live index as they were."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tests.pipeline.warehouse.digest import reference_id_digest
from tests.dags.test_image_index_dag import REPO, demo_dag, live_partition, report, task_states  # noqa: F401

DS, DATE = "20271201", "2027-12-01"  # newer than the other DAG tests' partitions: it rebuilds
FUTURE = {"allow_future_partition": True}


def published(config) -> list[tuple]:
    """The published partition's rows, in a stable order (what OpenSearch would build from)."""
    from pipeline.stages import open_index_warehouse

    table = open_index_warehouse(config).read_partition(DS)
    return sorted(zip(*(table.column(n).to_pylist() for n in table.column_names)))


def staged(config) -> list[str]:
    from pipeline.stages import open_index_warehouse

    return open_index_warehouse(config).staging().partitions()


def test_a_same_day_rerun_is_judged_against_the_live_partition_it_would_replace(demo_dag, demo_stack) -> None:
    _, stack, config = demo_stack
    full = demo_dag.test(logical_date=None, run_conf={**FUTURE, "partition_date": DATE})
    assert full.state == "success" and live_partition("demo") == DS
    before, live = published(config), stack.opensearch.engine.live_generation_id("demo_images")
    assert len(before) == 320
    # What went live is recorded with its figures, the id set's digest among them.
    from airflow.models import Variable

    from pipeline.airflow.state import live_record_key

    recorded = Variable.get(live_record_key("demo"), deserialize_json=True)["stats"]
    assert (recorded["ds"], recorded["rows"]) == (DS, 320)
    assert recorded["id_digest"] == reference_id_digest(row[0] for row in before)

    # The same day with one category: 80 rows would replace the 320 that are live.
    rerun = demo_dag.test(logical_date=None, run_conf={**FUTURE, "partition_date": DATE, "prefixes": ["catalog/hats/"]})
    states = task_states(rerun)
    assert states["check_partition"] == "failed" and states["publish_partition"] == "upstream_failed"
    assert published(config) == before  # the live partition's source was never touched
    assert stack.opensearch.engine.live_generation_id("demo_images") == live


def test_an_empty_listing_never_reaches_the_published_partition(demo_dag, demo_stack) -> None:
    _, stack, config = demo_stack
    first = demo_dag.test(logical_date=None, run_conf={**FUTURE, "partition_date": DATE})
    assert first.state == "success", task_states(first)
    before = published(config)
    empty = demo_dag.test(logical_date=None, run_conf={**FUTURE, "partition_date": DATE, "prefixes": ["catalog/nowhere/"]})
    assert task_states(empty)["check_partition"] == "failed"
    assert published(config) == before and DS in staged(config)  # the refused rows stay staged only
    # (dag.test keeps the last run's conf as the DAG's params: name the default again)
    again = demo_dag.test(logical_date=None, run_conf={**FUTURE, "partition_date": DATE, "prefixes": None})
    assert again.state == "success" and DS not in staged(config)  # the next run cleaned and published
    assert published(config) == before


def test_a_load_killed_mid_write_leaves_the_published_partition_and_the_next_run_succeeds(demo_dag, demo_stack) -> None:
    paths, stack, config = demo_stack
    assert demo_dag.test(logical_date=None, run_conf={**FUTURE, "partition_date": DATE}).state == "success"
    before = published(config)
    sessions = paths.maxcompute / "tunnel" / "upload"
    existing = set(sessions.iterdir()) if sessions.is_dir() else set()
    stack.oss._httpd.latency_s = 0.5  # the listing takes seconds: time to kill the load inside its write
    try:
        load = subprocess.Popen(
            [sys.executable, "-c", "from pipeline.config import load_index_config; from pipeline.stages import "
             f"load_partition; load_partition(load_index_config('{REPO}/dags/indexes/demo.yaml'), '{DS}')"],
            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
        )
        deadline = time.monotonic() + 60
        # The upload session is open (the write has begun) before the first row arrives.
        while not (sessions.is_dir() and set(sessions.iterdir()) - existing):
            assert load.poll() is None and time.monotonic() < deadline, "the load ended before its write began"
            time.sleep(0.05)
        load.send_signal(signal.SIGKILL)
        load.wait(10)
    finally:
        stack.oss._httpd.latency_s = 0.0
    assert published(config) == before
    rerun = demo_dag.test(logical_date=None, run_conf={**FUTURE, "partition_date": DATE})
    assert rerun.state == "success", task_states(rerun)
    assert published(config) == before and DS not in staged(config)
    assert report(DS)["partition"]["rows"] == 320
