"""Alerts through real DAG runs (``dag.test()``) on the local stack: both notifiers post through the
providers' real clients (slack_sdk's WebhookClient, the DingTalk hook's requests session) to the local
webhook receiver (localcloud/webhook.py), named by ``AIRFLOW_CONN_*`` variables.

One seam, and why: ``dag.test()`` does run a DAG's ``on_failure_callback`` / ``on_success_callback``
(``DagRun.update_state`` → ``execute_dag_callbacks``, "only needed for dag.test"), but in the test
process with no channel to the Execution API, where the DAG processor runs them in production with one
(``dag_processing/processor.py`` serves ``GetXCom`` and ``GetTaskStates`` to callbacks). So the
``dag_processor_channel`` fixture gives the callbacks the in-process channel ``dag.test()`` itself gives
tasks and triggers (``InProcessTestSupervisor``, as ``run_trigger_in_process`` builds it): the XComs
and task states then come from the run's real metadata DB through the real Execution API routes.
Nothing is faked. ``test_without_the_channel_a_run_still_posts_once_and_says_what_it_could_not_read``
shows what ``airflow dags test`` users get without it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SLACK, DINGTALK = "slack_alerts_test", "dingtalk_alerts_test"
BASE_URL = "https://airflow.example.internal"
#: Every Param named: dag.test() keeps the last run's conf as the Params' defaults.
PARAMS = {"partition_date": None, "allow_future_partition": False, "prefixes": None, "dry_run": False,
          "skip_rebuild": False, "force_rebuild": False, "override_guards": [], "source_mode": None}


@pytest.fixture(scope="module")
def receiver():
    from localcloud.webhook import DINGTALK_TOKEN, LocalWebhookReceiver

    with LocalWebhookReceiver(tokens={DINGTALK_TOKEN}) as server:
        with pytest.MonkeyPatch.context() as patch:
            for key, value in {**server.environment(SLACK, DINGTALK), "AIRFLOW__API__BASE_URL": BASE_URL}.items():
                patch.setenv(key, value)
            yield server


@pytest.fixture
def dag_processor_channel(monkeypatch):
    """The DAG's callbacks get the Execution API channel the DAG processor gives them (see the module doc)."""
    import psutil
    import structlog
    from airflow.models.dagrun import DagRun
    from airflow.sdk.execution_time.supervisor import (
        InProcessSupervisorComms,
        InProcessTestSupervisor,
        set_supervisor_comms,
    )
    from uuid6 import uuid7

    original = DagRun.execute_dag_callbacks

    def with_channel(self, dag, *args, **kwargs):
        supervisor = InProcessTestSupervisor(
            id=uuid7(), pid=os.getpid(), process=psutil.Process(),
            process_log=structlog.get_logger(logger_name="dag_callback").bind(),
            client=InProcessTestSupervisor._api_client(dag),
        )
        supervisor.comms = InProcessSupervisorComms(supervisor=supervisor)
        with set_supervisor_comms(supervisor.comms):
            return original(self, dag, *args, **kwargs)

    monkeypatch.setattr(DagRun, "execute_dag_callbacks", with_channel)


def alerting_dag(config, *, slack_on=("failure",), dingtalk_on=("failure",), **source):
    """The demo index, listing only (no inventory route, no rebuild: cheap runs), with both chats."""
    from pipeline.airflow.dag_factory import build_dag
    from pipeline.config import NotificationConfig

    config = config.model_copy(update={
        "source": config.source.model_copy(update={"mode": "list", "inventory": None, **source}),
        "opensearch": None,
        "notifications": [
            NotificationConfig(kind="slack", conn_id=SLACK, on=list(slack_on)),
            NotificationConfig(kind="dingtalk", conn_id=DINGTALK, on=list(dingtalk_on), at_mobiles=["13800000000"]),
        ],
    })
    dag = build_dag(config, REPO / "dags" / "indexes" / "demo.yaml")
    for task in dag.tasks:
        task.retries = 0
    for notifier in [*dag.on_failure_callback, *(dag.on_success_callback or [])]:
        notifier.grace_s = 0  # dag.test() runs a task's own callback before the run's: nothing to wait for
    return dag


def run_link(run) -> str:
    from urllib.parse import quote

    return f"{BASE_URL}/dags/{run.dag_id}/runs/{quote(run.run_id)}"


def test_a_failing_run_posts_one_message_per_notifier(receiver, demo_stack, dag_processor_channel) -> None:
    _, _, config = demo_stack
    dag = alerting_dag(config, oss_conn_id="oss_nowhere")  # the load fails: no such connection (terminal)
    receiver.clear()
    run = dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": "2026-08-01"})
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["load_partition"] == "failed", states
    assert states["check_partition"] == "upstream_failed" and states["publish_partition"] == "upstream_failed"

    (slack,), (dingtalk,) = receiver.received("slack"), receiver.received("dingtalk")  # one each, no more
    assert len(receiver.requests) == 2 and slack.status == dingtalk.status == 200
    reason = ("ConnectionConfigError: Airflow connection 'oss_nowhere' is not defined: create it (type 'oss') "
              "or set AIRFLOW_CONN_OSS_NOWHERE")
    text = slack.json["text"]
    assert text.splitlines()[0] == "FAILED image index demo ds=20260801 at load_partition"
    assert f"task load_partition: {reason}" in text and run_link(run) in text
    blocks = slack.json["blocks"]
    assert blocks[0]["text"]["text"] == "FAILED image index demo ds=20260801 at load_partition"
    assert [f["text"] for f in blocks[1]["fields"]] == [
        "*Index*\ndemo", "*Partition*\nds=20260801", "*Failed task*\nload_partition",
        f"*Run*\n<{run_link(run)}|{run.run_id}>",
    ]
    assert blocks[2]["text"]["text"] == f"*Reason*\n{reason}"

    assert dingtalk.query["access_token"] and dingtalk.json["msgtype"] == "markdown"
    assert dingtalk.json["at"] == {"atMobiles": ["13800000000"], "isAtAll": False}
    markdown = dingtalk.json["markdown"]["text"]
    for line in ("- **Index**: demo", "- **Partition**: ds=20260801", "- **Failed task**: load_partition",
                 f"- **Reason**: {reason}", f"- **Run**: [{run.run_id}]({run_link(run)})", "@13800000000"):
        assert line in markdown.splitlines(), (line, markdown)


def test_a_refused_guard_says_which_guard_its_numbers_and_how_to_pass_it(receiver, demo_stack,
                                                                        dag_processor_channel) -> None:
    _, _, config = demo_stack
    dag = alerting_dag(config, slack_on=("refused_guard",), dingtalk_on=("failure",))
    receiver.clear()
    run = dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": "2026-08-02",
                                                "prefixes": ["catalog/nowhere/"]})
    assert run.state == "failed"

    (slack,), (dingtalk,) = receiver.received("slack"), receiver.received("dingtalk")
    text = slack.json["text"]
    assert text.splitlines()[0] == "REFUSED image index demo ds=20260802: guard empty refused the partition"
    assert ("[empty] partition ds=20260802 of demo_image_catalog has no rows: check the prefixes and filters in "
            "the index config") in text
    conf = ('{"allow_future_partition": false, "dry_run": false, "force_rebuild": false, "override_guards": '
            '["empty"], "partition_date": "2026-08-02", "prefixes": ["catalog/nowhere/"], "skip_rebuild": false, '
            '"source_mode": null}')
    assert f"with the override_guards Param naming empty: conf {conf}" in text
    assert run_link(run) in text
    markdown = dingtalk.json["markdown"]["text"]  # `failure` covers a guard's refusal: the same facts
    assert "- **Failed task**: check_partition" in markdown and "  - **empty**: partition ds=20260802" in markdown


def test_a_successful_run_posts_to_the_notifiers_that_asked_for_it(receiver, demo_stack,
                                                                   dag_processor_channel) -> None:
    _, _, config = demo_stack
    dag = alerting_dag(config, slack_on=("failure", "success"), dingtalk_on=("failure",))
    receiver.clear()
    run = dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": "2026-08-03", "dry_run": True})
    assert run.state == "success"
    assert receiver.received("dingtalk") == []  # failure only
    (slack,) = receiver.received("slack")
    assert slack.json["text"].splitlines()[0] == "SUCCESS image index demo ds=20260803 (dry_run)"
    assert run_link(run) in slack.json["text"]


def test_a_chat_that_cannot_take_the_message_leaves_the_run_failed_and_the_other_chat_told(
        receiver, demo_stack, dag_processor_channel, caplog) -> None:
    _, _, config = demo_stack
    dag = alerting_dag(config, oss_conn_id="oss_nowhere")
    receiver.clear()
    receiver.fail_next = 1  # the first post (Slack's: the DAG's callbacks run in config order) gets a 500
    try:
        run = dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": "2026-08-04"})
    finally:
        receiver.fail_next = 0
    assert run.state == "failed"
    assert [r.status for r in receiver.received("slack")] == [500]  # the provider does not retry a 500
    (dingtalk,) = receiver.received("dingtalk")
    assert dingtalk.status == 200 and "load_partition" in dingtalk.json["markdown"]["text"]
    assert re.search(r"could not post the failure alert of index demo, run \S+ to slack connection "
                     rf"'{SLACK}': AirflowException: Response body: 'rollup_error', Status Code: 500", caplog.text)


def test_without_the_channel_a_run_still_posts_once_and_says_what_it_could_not_read(receiver, demo_stack) -> None:
    """``airflow dags test`` / ``dag.test()`` as they are: the callbacks cannot read the run's XComs."""
    _, _, config = demo_stack
    dag = alerting_dag(config, oss_conn_id="oss_nowhere")
    receiver.clear()
    run = dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": "2026-08-05"})
    assert run.state == "failed"
    (slack,), (dingtalk,) = receiver.received("slack"), receiver.received("dingtalk")
    text = slack.json["text"]
    assert text.splitlines()[0] == "FAILED image index demo no partition at load_partition"  # Airflow's failed TI
    assert "no message recorded: the run's XComs could not be read" in text and run_link(run) in text
