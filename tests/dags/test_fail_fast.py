"""Fail fast on what retries cannot fix, through ``dag.test()`` with the DAG's real retries left on.

``dag.test()`` in Airflow 3.3 runs retries inline: a task that fails with tries left goes
``up_for_retry``, its loop sleeps until ``next_retry_datetime()`` and runs it again with the next
``try_number``. So the retry delay is cut to one second here (the count stays at the config's 2), and a
task's ``try_number`` after the run says how often it ran. Terminal errors must end at try 1; a
transient one must reach try 2 and the run succeed.

Bad Params that a JSON schema can refuse never get that far: the run is not even created.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def retrying_dag(airflow_db, demo_stack):
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["image_index_demo"]
    for task in dag.tasks:
        assert task.retries == 2  # the config's retries, left on
        task.retry_delay = timedelta(seconds=1)  # a retried test waits ~1-2 s, not minutes
    return dag


def tries(run) -> dict[str, tuple[str, int]]:
    return {ti.task_id: (ti.state, ti.try_number) for ti in run.get_task_instances()}


def say(capfd) -> str:
    out, err = capfd.readouterr()
    return out + err


def test_a_date_no_schema_can_refuse_fails_resolve_partition_on_its_first_try(retrying_dag, capfd) -> None:
    run = retrying_dag.test(logical_date=None, run_conf={"partition_date": "2026-02-30"})  # the schema's form
    got = tries(run)
    assert run.state == "failed"
    assert got["resolve_partition"] == ("failed", 1)
    assert got["load_partition"][0] == "upstream_failed"
    logged = say(capfd)
    assert "ParamError: partition_date '2026-02-30' is not a calendar date: pass a real date" in logged
    assert "a retry cannot fix it" in logged  # the policy's reason, after the error itself


def test_a_future_date_fails_on_its_first_try_saying_what_to_do(retrying_dag, demo_stack, capfd) -> None:
    import zoneinfo

    _, _, config = demo_stack
    tomorrow = datetime.now(zoneinfo.ZoneInfo(config.timezone)).date() + timedelta(days=1)
    run = retrying_dag.test(logical_date=None, run_conf={"partition_date": tomorrow.isoformat()})
    assert run.state == "failed" and tries(run)["resolve_partition"] == ("failed", 1)
    assert "set the allow_future_partition Param to true" in say(capfd)


def test_prefixes_outside_the_config_fail_on_the_first_try_naming_the_prefix(retrying_dag, capfd) -> None:
    run = retrying_dag.test(logical_date=None, run_conf={"partition_date": "2026-11-12", "prefixes": ["nowhere/"]})
    assert run.state == "failed" and tries(run)["resolve_partition"] == ("failed", 1)
    assert "prefix 'nowhere/' is not within the configured prefixes ['catalog/']" in say(capfd)


def test_a_refused_guard_fails_check_partition_on_its_first_try(retrying_dag) -> None:
    run = retrying_dag.test(logical_date=None, run_conf={"partition_date": "2026-11-12", "prefixes": ["catalog/nowhere/"]})
    got = tries(run)
    assert run.state == "failed"
    assert got["load_partition"] == ("success", 1)
    assert got["check_partition"] == ("failed", 1)  # PartitionCheckError (empty): no retry
    assert got["start_rebuild"][0] == "upstream_failed"


def test_a_failed_build_fails_the_deferred_wait_on_its_first_try(retrying_dag, demo_stack, capfd) -> None:
    _, stack, _ = demo_stack
    live = stack.opensearch.engine.live_generation_id("demo_images")
    stack.opensearch.engine.faults.fail_next_build = "disk"
    # An older partition than the newest in the session: force_rebuild makes it rebuild all the same.
    run = retrying_dag.test(logical_date=None, run_conf={"partition_date": "2026-11-13", "force_rebuild": True})
    got = tries(run)
    assert run.state == "failed"
    assert got["start_rebuild"] == ("success", 1)
    assert got["wait_until_searchable"] == ("failed", 1)  # execute_complete raised RebuildFailedError
    assert got["smoke_query"][0] == "upstream_failed"
    assert "RebuildFailedError" in say(capfd)
    assert stack.opensearch.engine.live_generation_id("demo_images") == live


def test_a_transient_oss_error_is_retried_and_the_run_succeeds(retrying_dag, demo_stack, monkeypatch) -> None:
    """A SlowDown burst as long as one try's retry budget for the first page: the first try of
    load_partition fails with TransientSourceError, the task's retry lists it all."""
    import functools

    from pipeline.retry import RetryPolicy

    _, stack, _ = demo_stack
    for module in ("pipeline.oss.pages", "pipeline.oss.client"):
        monkeypatch.setattr(f"{module}.RetryPolicy", functools.partial(RetryPolicy, sleep=lambda _s: None))
    budget = RetryPolicy().attempts
    stack.oss.faults.set(slow_down_next=budget, slow_down_list_only=True)
    try:
        run = retrying_dag.test(logical_date=None, run_conf={"partition_date": "2026-11-14", "skip_rebuild": True})
        sent = stack.oss.faults.slow_downs_sent
    finally:
        stack.oss.faults.reset()
    got = tries(run)
    assert sent == budget
    assert got["load_partition"] == ("success", 2)  # try 1 failed (transient), try 2 listed everything
    assert run.state == "success", got


# -- refused when triggered: no run, no task -----------------------------------------------------


@pytest.mark.parametrize(
    ("conf", "param"),
    [
        ({"partition_date": "2026-13-45"}, "partition_date"),
        ({"partition_date": "2026/11/30"}, "partition_date"),
        ({"prefixes": ["/catalog/bags/"]}, "prefixes"),
        ({"prefixes": ["catalog/../etc/"]}, "prefixes"),
        ({"prefixes": []}, "prefixes"),
    ],
)
def test_a_malformed_param_is_refused_when_the_run_is_triggered(retrying_dag, conf, param) -> None:
    from airflow.exceptions import ParamValidationError
    from airflow.models.dagrun import DagRun

    with pytest.raises(ParamValidationError, match=f"Invalid input for param {param}"):
        retrying_dag.test(logical_date=None, run_conf=conf)
    assert not [run for run in DagRun.find(dag_id=retrying_dag.dag_id) if run.conf == conf]  # no run, no task


def test_the_rest_api_answers_400_to_a_malformed_param(airflow_db, monkeypatch) -> None:
    """What the UI's Trigger form and any client get: POST /api/v2/dags/{dag_id}/dagRuns validates the
    conf in create_dagrun and answers 400 with the schema's message; a well-formed conf gets 200."""
    from airflow.api_fastapi.app import create_app
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import BundleDagBag, sync_bag_to_db
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")  # every request is an admin's
    manager = DagBundlesManager()
    manager.sync_bundles_to_db()
    for bundle in manager.get_all_dag_bundles():  # the API reads the DAG from the metadata DB
        bundle.initialize()
        sync_bag_to_db(BundleDagBag(dag_folder=bundle.path, bundle_path=bundle.path, bundle_name=bundle.name),
                       bundle.name, bundle.version)
    client = TestClient(create_app("core"))

    def trigger(conf: dict):
        return client.post("/api/v2/dags/image_index_demo/dagRuns", json={"logical_date": None, "conf": conf})

    refused = trigger({"partition_date": "2026-13-45"})
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("Invalid input for param partition_date: '2026-13-45' does not match")
    refused = trigger({"prefixes": ["/catalog/bags/"]})
    assert refused.status_code == 400 and "Invalid input for param prefixes" in refused.json()["detail"]

    accepted = trigger({"partition_date": "20261130", "prefixes": ["catalog/bags/"]})
    assert accepted.status_code == 200, accepted.text
    with create_session() as session:  # queued, never run (no scheduler here): remove it
        session.query(DagRun).filter(DagRun.run_id == accepted.json()["dag_run_id"]).delete()
