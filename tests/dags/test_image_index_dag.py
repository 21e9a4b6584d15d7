"""The whole demo DAG through ``dag.test()``, on the local stack: OSS, MaxCompute (pyodps on the wire)
and OpenSearch servers."""

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


def reports() -> Path:
    return Path(os.environ["PIPELINE_REPORT_DIR"]) / "demo"


def report(ds: str) -> dict:
    """The report of the latest run of ``ds`` that was not a dry run."""
    return json.loads((reports() / f"{ds}.json").read_text())


def run_report(run, ds: str) -> dict:
    """The report of one DAG run."""
    from pipeline.report import run_file_name

    return json.loads((reports() / ds / run_file_name(run.run_id)).read_text())


def runs() -> list[dict]:
    from pipeline.report import read_runs

    return read_runs(reports())


def partitions(config) -> set[str]:
    """The catalog table's partitions, read the way the pipeline reads them (pyodps on the local MaxCompute)."""
    from pipeline.stages import open_index_warehouse

    return set(open_index_warehouse(config).partitions())


def task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


ALL_TASKS = (
    "resolve_partition", "choose_route", "load_partition", "check_partition", "publish_partition", "choose_rebuild",
    "start_rebuild", "wait_until_searchable", "smoke_query", "report",
)
#: Tasks a full run skips: the other load route, and the delta path the rebuild branch did not take.
SKIPPED_IN_A_FULL_RUN = ("load_from_inventory", "push_changes", "verify_pushes")


def test_nightly_run_writes_rebuilds_and_proves_the_index(demo_dag, demo_stack) -> None:
    # 18:00 UTC on Dec 30 is 02:00 on Dec 31 in Asia/Shanghai: the nightly run of the 31st.
    run = demo_dag.test(logical_date=datetime(2026, 12, 30, 18, 0, tzinfo=UTC))
    assert task_states(run) == {**dict.fromkeys(ALL_TASKS, "success"), **dict.fromkeys(SKIPPED_IN_A_FULL_RUN, "skipped")}
    got = report("20261231")
    assert got["partition"]["rows"] == 320
    assert got["partition"]["rows_per_category"] == {"1": 80, "2": 80, "3": 80, "4": 80}
    assert got["load"]["skipped"]["unmapped_category"] == 5
    assert got["rebuild"]["started"] is True and got["rebuild"]["outcome"] == "ready"
    _, stack, _ = demo_stack
    assert got["rebuild"]["generation_id"] == stack.opensearch.engine.live_generation_id("demo_images")
    image_queries = [q for q in got["smoke_queries"] if q["kind"] == "image"]
    assert len(image_queries) == 2 and all(q["rank"] == 1 for q in image_queries)
    assert all(q["sampled"] for q in image_queries)  # new ids against the live partition, or why not
    assert set(got["seconds"]) >= {"list_and_write", "check", "start_rebuild", "wait_until_searchable", "smoke_query"}
    figures = got["rebuild"]["figures"]  # the build's own figures, against the partition's distinct ids
    assert (figures["rows"], figures["indexed"], figures["unindexed"], figures["failures"]) == (320, 320, 0, 0)
    from pipeline.report import summarize

    assert "  indexed: 320 of 320 rows indexed" in summarize(got).splitlines()


def test_backfill_of_an_older_partition_writes_it_but_does_not_rebuild(demo_dag, demo_stack) -> None:
    from pipeline.stages import load_partition

    _, stack, config = demo_stack
    load_partition(config, "20261231", publish=True)  # a newer partition exists, whatever ran before
    live_before = stack.opensearch.engine.live_generation_id("demo_images")
    run = demo_dag.test(logical_date=datetime(2026, 12, 1, 18, 0, tzinfo=UTC))  # ds=20261202 < 20261231
    states = task_states(run)
    assert states["check_partition"] == "success" and states["report"] == "success"
    assert states["wait_until_searchable"] == "skipped" and states["smoke_query"] == "skipped"
    got = report("20261202")
    assert got["rebuild"]["started"] is False and "would roll the live index back" in got["rebuild"]["reason"]
    assert stack.opensearch.engine.live_generation_id("demo_images") == live_before


def test_a_failed_build_fails_the_run_with_its_message(demo_dag, demo_stack) -> None:
    _, stack, _ = demo_stack
    stack.opensearch.engine.faults.fail_next_build = "the build node ran out of disk"
    run = demo_dag.test(logical_date=None, run_conf={"partition_date": "2027-01-02", "allow_future_partition": True})
    states = task_states(run)
    assert states["start_rebuild"] == "success" and states["wait_until_searchable"] == "failed"
    assert states["smoke_query"] == "upstream_failed" and run.state == "failed"
    # The sensor failed after deferring (the trigger's event, raised on resuming): its message is kept.
    got = run_report(run, "20270102")
    assert got["outcome"] == "failed" and [f["task_id"] for f in got["failed_tasks"]] == ["wait_until_searchable"]
    assert "the build node ran out of disk" in got["failed_tasks"][0]["message"]
    assert got["rebuild"]["started"] is True


def test_a_build_that_drops_images_is_reported_and_past_the_limit_fails_the_run(demo_stack) -> None:
    """48 pictures and 2 broken files: the build leaves 2 out (4%, under the server's own 5%). With
    max_unindexed_fraction 5% the run succeeds and its report names them; with the default 1% the wait
    fails at once (no retry) saying the index already serves, and the partition is not marked live."""
    from localcloud.demo_data import undecodable_objects, upload_objects
    from pipeline.airflow.dag_factory import build_dag
    from pipeline.oss.client import OssConnection
    from pipeline.report import summarize

    _, stack, config = demo_stack
    upload_objects(OssConnection.from_airflow("oss_local").bucket(config.source.bucket), undecodable_objects(48, 2))
    # 50 rows against 320 live; dates between the other tests' (a newer partition would stop their rebuilds)
    conf = {"prefixes": ["planted/"], "override_guards": ["shrink"], "allow_future_partition": True}
    # the planted images lie outside the demo's catalog/ prefix: this index lets a run list them
    config = config.model_copy(update={"source": config.source.model_copy(update={"allow_param_prefixes_outside": True})})
    lenient = config.model_copy(update={"guards": config.guards.model_copy(update={"max_unindexed_fraction": 0.05})})
    dags = [build_dag(c, REPO / "dags" / "indexes" / "demo.yaml") for c in (lenient, config)]
    for dag in dags:
        for task in dag.tasks:
            task.retries = 0 if task.task_id != "wait_until_searchable" else 2  # a retry would wait a minute

    passed = dags[0].test(logical_date=None, run_conf={**conf, "partition_date": "2027-02-01"})
    assert passed.state == "success", task_states(passed)
    rebuild = report("20270201")["rebuild"]
    assert (rebuild["figures"]["rows"], rebuild["figures"]["indexed"], rebuild["figures"]["failures"]) == (50, 48, 2)
    assert [e["image"] for e in rebuild["figures"]["failure_examples"]] == ["/planted/shoes/19901.jpg", "/planted/shoes/19902.jpg"]
    assert "48 of 50 rows indexed (2 = 4.0% not indexed)" in rebuild["message"]
    (line,) = [x for x in summarize(report("20270201")).splitlines() if x.startswith("  indexed: ")]
    assert "48 of 50 rows indexed" in line and "e.g. 19901 /planted/shoes/19901.jpg (decode failed" in line
    assert live_partition("demo") == "20270201"

    failed = dags[1].test(logical_date=None, run_conf={**conf, "partition_date": "2027-02-02"})
    states = task_states(failed)
    assert states["wait_until_searchable"] == "failed" and states["smoke_query"] == "upstream_failed", states
    assert failed.state == "failed"
    (wait,) = [ti for ti in failed.get_task_instances() if ti.task_id == "wait_until_searchable"]
    assert wait.try_number == 1  # terminal: not retried although the task allows 2 retries
    assert live_partition("demo") == "20270201"  # not proven live: the next shrink guard compares with it
    newest = max(g["generationId"] for g in stack.opensearch.engine.list_generations("demo_images"))
    assert stack.opensearch.engine.live_generation_id("demo_images") == newest  # ...though it does serve


def test_backfilled_dates_give_one_partition_each(demo_dag, demo_stack) -> None:
    # Dates after the DAG's start_date (2026-11-01): Airflow runs no task for a date before it.
    _, _, config = demo_stack
    before = partitions(config)
    for day in (20, 21, 22):
        run = demo_dag.test(logical_date=datetime(2026, 11, day, 18, 0, tzinfo=UTC), run_conf={"skip_rebuild": True})
        assert run.state == "success", task_states(run)
        assert task_states(run)["report"] == "success"
    added = partitions(config) - before
    assert added == {"20261121", "20261122", "20261123"} - before


def test_manual_run_with_params_dry_run(demo_dag, demo_stack) -> None:
    run = demo_dag.test(
        logical_date=None,
        run_conf={"partition_date": "2026-09-09", "dry_run": True, "prefixes": ["catalog/bags/"]},
    )
    assert task_states(run)["report"] == "success"
    got = run_report(run, "20260909")
    assert got["load"]["dry_run"] is True and got["load"]["kept"] == 80 and got["partition"] is None
    assert got["outcome"] == "dry_run" and got["params"]["dry_run"] is True
    assert not (reports() / "20260909.json").exists()  # a dry run is not the day's report
    _, _, config = demo_stack
    assert "20260909" not in partitions(config)


def test_an_empty_partition_fails_the_run_and_its_report_says_why(demo_dag) -> None:
    from pipeline.report import summarize

    before = len(runs())
    run = demo_dag.test(logical_date=None, run_conf={"partition_date": "20260808", "prefixes": ["catalog/nowhere/"]})
    assert run.state == "failed"  # the report succeeding does not make the failed run succeed
    states = task_states(run)
    assert states["check_partition"] == "failed" and states["start_rebuild"] == "upstream_failed"
    assert states["report"] == "success"

    got = run_report(run, "20260808")
    assert got["outcome"] == "failed" and got["run"]["run_id"] == run.run_id and got["run"]["run_type"] == "manual"
    assert got["run"]["started_at"] and got["run"]["finished_at"]
    assert got["params"]["prefixes"] == ["catalog/nowhere/"] and got["params"]["partition_date"] == "20260808"
    (failure,) = got["failed_tasks"]
    assert (failure["task_id"], failure["error_type"]) == ("check_partition", "PartitionCheckError")
    assert "[empty] partition ds=20260808" in failure["message"]
    assert got["tasks"]["load_partition"]["state"] == "success"
    assert got["tasks"]["smoke_query"]["state"] == "upstream_failed"
    assert summarize(got).splitlines()[0].startswith("FAILED at check_partition: PartitionCheckError: [empty]")
    assert report("20260808")["run"]["run_id"] == run.run_id  # a failed run is the day's latest report too

    lines = runs()
    assert len(lines) == before + 1
    assert lines[-1]["run_id"] == run.run_id and lines[-1]["outcome"] == "failed"
    assert lines[-1]["failed_tasks"] == ["check_partition"] and lines[-1]["report"].startswith("20260808/")


def test_a_run_that_cannot_resolve_its_date_still_reports(demo_dag) -> None:
    from pipeline.report import run_file_name

    run = demo_dag.test(logical_date=None, run_conf={"partition_date": "2026-02-30"})
    assert run.state == "failed" and task_states(run)["report"] == "success"
    got = json.loads((reports() / "unresolved" / run_file_name(run.run_id)).read_text())
    assert got["ds"] is None and got["outcome"] == "failed"
    (failure,) = got["failed_tasks"]
    assert failure["task_id"] == "resolve_partition" and "is not a calendar date" in failure["message"]
    assert runs()[-1]["run_id"] == run.run_id


def test_each_run_of_a_ds_keeps_its_report_and_a_dry_run_never_replaces_the_real_one(demo_dag) -> None:
    from pipeline.report import run_file_name

    before = len(runs())
    real = demo_dag.test(logical_date=None, run_conf={"partition_date": "2026-10-10", "skip_rebuild": True})
    dry = demo_dag.test(logical_date=None, run_conf={"partition_date": "2026-10-10", "dry_run": True})
    assert real.state == dry.state == "success" and real.run_id != dry.run_id

    assert sorted(p.name for p in (reports() / "20261010").iterdir()) == sorted(run_file_name(r.run_id) for r in (real, dry))
    assert run_report(real, "20261010")["outcome"] == "rebuild_skipped"
    assert run_report(dry, "20261010")["outcome"] == "dry_run"
    assert report("20261010")["run"]["run_id"] == real.run_id  # the day's report is still the real run's
    lines = runs()[before:]
    assert [(line["run_id"], line["outcome"]) for line in lines] == [(real.run_id, "rebuild_skipped"), (dry.run_id, "dry_run")]


def live_partition(index: str) -> str | None:
    """Read the Variable from the metadata DB (the task SDK's Variable works inside tasks only)."""
    from airflow.models import Variable

    from pipeline.airflow.state import live_partition_key

    return Variable.get(live_partition_key(index), default_var=None)


def test_shrink_guard_stops_a_shrunken_partition_until_overridden(demo_dag, demo_stack) -> None:
    _, stack, _ = demo_stack
    full = demo_dag.test(logical_date=None, run_conf={"partition_date": "2027-03-01", "allow_future_partition": True})
    assert full.state == "success" and live_partition("demo") == "20270301"
    live = stack.opensearch.engine.live_generation_id("demo_images")

    # Listing a wrong prefix: 80 rows against 320 live. The partition is written, the index untouched.
    later = {"partition_date": "2027-03-02", "allow_future_partition": True}  # after the other tests' partitions
    shrunk = demo_dag.test(logical_date=None, run_conf={**later, "prefixes": ["catalog/hats/"]})
    states = task_states(shrunk)
    assert states["check_partition"] == "failed" and states["start_rebuild"] == "upstream_failed"
    assert stack.opensearch.engine.live_generation_id("demo_images") == live

    forced = demo_dag.test(
        logical_date=None,
        run_conf={**later, "prefixes": ["catalog/hats/"], "override_guards": ["shrink"]},
    )
    assert forced.state == "success"
    got = report("20270302")
    assert [g["name"] for g in got["guards"] if g["overridden"]] == ["shrink"] and got["baseline_ds"] == "20270301"
    assert live_partition("demo") == "20270302"


def test_a_rerun_of_start_rebuild_follows_the_build_an_earlier_attempt_started(demo_stack) -> None:
    """Attempt 1's reindex reaches the service but its answer is lost and the generation registers late:
    the attempt gives up without a second reindex. The rerun of the same DAG run follows that build."""
    from pipeline.airflow.dag_factory import build_dag
    from pipeline.airflow.state import rebuild_attempt_key

    _, stack, config = demo_stack
    quick = config.model_copy(update={"opensearch": config.opensearch.model_copy(
        update={"new_generation_timeout_minutes": 0.05})})  # 3 s instead of 10 min
    dag = build_dag(quick, REPO / "dags" / "indexes" / "demo.yaml")
    for task in dag.tasks:
        task.retries = 0
    engine, http = stack.opensearch.engine, stack.opensearch.http_faults
    before = {g["generationId"] for g in engine.list_generations("demo_images")}
    http.lose_reindex_answer_next, engine.faults.register_delay_s = 1, 5.0
    when = datetime(2027, 5, 31, 18, 0, tzinfo=UTC)  # ds=20270601
    try:
        first = dag.test(logical_date=when, run_after=when)
        states = task_states(first)
        assert states["start_rebuild"] == "failed" and first.state == "failed", states
        assert engine.wait_for(lambda: {g["generationId"] for g in engine.list_generations("demo_images")} - before, 30)
    finally:
        http.lose_reindex_answer_next, engine.faults.register_delay_s = 0, 0.0
    (started,) = {g["generationId"] for g in engine.list_generations("demo_images")} - before

    rerun = dag.test(logical_date=when, run_after=when)  # the same run id: a rerun of this run
    assert rerun.state == "success", task_states(rerun)
    assert {g["generationId"] for g in engine.list_generations("demo_images")} - before == {started}  # one build
    got = report("20270601")
    assert got["rebuild"]["followed_earlier_attempt"] is True and got["rebuild"]["generation_id"] == started
    assert engine.live_generation_id("demo_images") == started

    from airflow.models import Variable

    assert Variable.get(rebuild_attempt_key("demo", rerun.run_id), default_var=None) is None  # proven live: forgotten
