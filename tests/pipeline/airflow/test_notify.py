"""The notifiers without a DAG run: the facts they gather from a callback's context, and how they post.

Gathering reads the run through the context's task instance (``xcom_pull``, ``get_task_states``); here
that instance is a stand-in holding the XComs and states (the narrowest seam: tests/dags/test_alerts.py
reads them from a real run). Posting is real: the providers' clients against the local webhook
receiver, or a socket that never answers.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from types import SimpleNamespace

import pytest

from localcloud.webhook import DINGTALK_TOKEN, LocalWebhookReceiver
from pipeline.airflow import notify
from pipeline.airflow.notify import (
    DingTalkIndexNotifier,
    SlackIndexNotifier,
    dag_callbacks,
    failing_task,
    gather_alert,
    rerun_conf,
    run_url,
    wait_for_failure_record,
    wants,
)
from pipeline.config import NotificationConfig

RUN = "manual__2026-12-01T06:18:21.579048+00:00"
ORDER = ["resolve_partition", "load_partition", "check_partition", "publish_partition", "report"]


class StandInTI:
    """The callback's task instance: the run's XComs ``{(task_id, key): value}`` and task states."""

    def __init__(self, xcoms: dict, states: dict | None, task_id: str = "load_partition",
                 arrive_after: int = 0) -> None:
        self.xcoms, self.states, self.task_id = xcoms, states, task_id
        self.arrive_after = arrive_after  # the failure record shows up on this many-th read (0: at once)
        self.reads = 0

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        if key == "pipeline_failure":
            self.reads += 1
            if self.reads <= self.arrive_after:
                return None
        return self.xcoms.get((task_ids, key))

    def get_task_states(self, dag_id: str, run_ids: list[str]):
        if self.states is None:
            raise RuntimeError("no supervisor to ask")
        return {run_ids[0]: self.states}


def dag(task_ids=ORDER, teardowns=("report",)):
    tasks = {t: SimpleNamespace(is_teardown=t in teardowns) for t in task_ids}
    return SimpleNamespace(dag_id="image_index_shop", task_ids=list(task_ids), task_dict=tasks)


def context(ti, conf=None, **more) -> dict:
    dag_run = SimpleNamespace(dag_id="image_index_shop", run_id=RUN, conf=conf or {})
    return {"dag": dag(), "dag_run": dag_run, "run_id": RUN, "ti": ti, "reason": "task_failure", **more}


def failure(error_type: str, message: str, **more) -> dict:
    return {"error_type": error_type, "message": message, "try_number": 1, **more}


def test_the_run_link_is_built_from_the_api_base_url(monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example/ui/")
    assert run_url("image_index_shop", RUN) == (
        "https://airflow.example/ui/dags/image_index_shop/runs/manual__2026-12-01T06%3A18%3A21.579048%2B00%3A00")
    monkeypatch.delenv("AIRFLOW__API__BASE_URL")
    assert run_url("d", "r").startswith("http://localhost:8080/dags/d/runs/r")  # Airflow's own fallback


def test_the_failing_task_is_the_first_failed_in_dag_order_the_report_last() -> None:
    assert failing_task(dag(), ["publish_partition", "check_partition"], "publish_partition") == "check_partition"
    assert failing_task(dag(), ["report", "publish_partition"], "report") == "publish_partition"
    assert failing_task(dag(), ["report"], "report") == "report"
    assert failing_task(dag(), [], "x") is None  # nothing failed: Airflow ended the run
    assert failing_task(dag(), None, "load_partition") == "load_partition"  # states unreadable: Airflow's pick


def test_a_failure_names_the_partition_the_task_and_its_masked_first_line() -> None:
    from airflow.sdk.log import mask_secret

    mask_secret("oss-secret-123")
    ti = StandInTI({("resolve_partition", "return_value"): "20261201",
                    ("load_partition", "pipeline_failure"): failure(
                        "SourceAccessError", "OSS refused key oss-secret-123: check it\nmore detail")},
                   {"resolve_partition": "success", "load_partition": "failed", "check_partition": "upstream_failed",
                    "report": "success"})
    got = gather_alert("shop", context(ti), success=False, grace_s=0)
    assert (got.event, got.index, got.ds, got.task_id) == ("failure", "shop", "20261201", "load_partition")
    assert got.reason == "SourceAccessError: OSS refused key ***: check it"
    assert got.run_id == RUN and got.url.endswith("/dags/image_index_shop/runs/manual__2026-12-01T06%3A18%3A21.579048%2B00%3A00")


def test_a_guards_refusal_is_its_own_event_with_the_conf_that_passes_it() -> None:
    record = failure("PartitionCheckError", "[shrink] 80 rows ... Nothing was rebuilt",
                     refused_guards=[{"name": "shrink", "message": "80 rows, 75.0% fewer than 320 (limit 10%)"}])
    ti = StandInTI({("resolve_partition", "return_value"): "20261201", ("check_partition", "pipeline_failure"): record},
                   {"check_partition": "failed"})
    got = gather_alert("shop", context(ti, conf={"prefixes": ["catalog/hats/"], "override_guards": ["empty"]}),
                       success=False, grace_s=0)
    assert got.event == "refused_guard" and got.refused == (("shrink", "80 rows, 75.0% fewer than 320 (limit 10%)"),)
    assert got.rerun_conf == {"prefixes": ["catalog/hats/"], "override_guards": ["empty", "shrink"],
                              "partition_date": "20261201"}


def test_the_same_error_elsewhere_is_a_plain_failure() -> None:
    record = failure("PartitionCheckError", "partition ds=20261201 has no rows to sample a smoke query from")
    ti = StandInTI({("smoke_query", "pipeline_failure"): record}, {"smoke_query": "failed"})
    got = gather_alert("shop", context(ti), success=False, grace_s=0)
    assert (got.event, got.task_id, got.ds) == ("failure", "smoke_query", None)


def test_rerun_conf() -> None:
    refused = (("empty", "..."),)
    assert rerun_conf({}, "20261201", refused) == {"override_guards": ["empty"], "partition_date": "20261201"}
    assert rerun_conf({"partition_date": "2026-12-01"}, "20261201", refused)["partition_date"] == "2026-12-01"
    assert rerun_conf(None, None, refused) is None and rerun_conf({}, "20261201", ()) is None
    other = {"prefixes": ["a/"], "note": "not a Param"}
    assert rerun_conf(other, "20261201", refused, {"prefixes": None, "override_guards": []}) == {
        "prefixes": ["a/"], "override_guards": ["empty"], "partition_date": "20261201"}


def test_a_record_still_being_written_is_awaited_then_reported_missing() -> None:
    states = {"load_partition": "failed"}
    late = StandInTI({("load_partition", "pipeline_failure"): failure("E", "late")}, states, arrive_after=2)
    now = [0.0]
    reader = notify._RunReader(late, "d", RUN)
    got = wait_for_failure_record(reader, "load_partition", 10, clock=lambda: now[0],
                                  sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert got["message"] == "late" and late.reads == 3 and now[0] == 1.0

    never = StandInTI({}, states)
    got = gather_alert("shop", context(never), success=False, grace_s=0)
    assert got.reason.startswith("no message recorded: the task did not reach its failure callback")


def test_without_a_channel_to_the_run_the_alert_says_so(caplog) -> None:
    class NoChannel(StandInTI):
        def xcom_pull(self, task_ids, key="return_value"):
            raise NameError("name 'SUPERVISOR_COMMS' is not defined")

    with caplog.at_level(logging.WARNING, logger="pipeline.airflow.notify"):
        got = gather_alert("shop", context(NoChannel({}, None, task_id="check_partition")), success=False, grace_s=5)
    assert (got.ds, got.task_id) == (None, "check_partition")  # the failed task instance Airflow handed over
    assert got.reason == ("no message recorded: the run's XComs could not be read (NameError: name "
                          "'SUPERVISOR_COMMS' is not defined); see the task log")
    assert caplog.text.count("could not read") == 1  # logged once, then given up (no waiting)


def test_no_task_failed_and_no_task_instance() -> None:
    got = gather_alert("shop", context(StandInTI({}, {"a": "success"}), reason="all_tasks_deadlocked"), success=False)
    assert got.task_id is None and got.reason == "no task failed: Airflow marked the run failed (all_tasks_deadlocked)"
    bare = gather_alert("shop", {"dag": dag(), "run_id": RUN}, success=False)
    assert bare.ds is None and bare.task_id is None and bare.run_id == RUN


def test_a_success_reads_the_partition_and_the_report() -> None:
    ti = StandInTI({("resolve_partition", "return_value"): "20261201",
                    ("report", "return_value"): {"outcome": "rebuild_skipped", "partition": {"rows": 320}}}, {})
    got = gather_alert("shop", context(ti), success=True)
    assert (got.event, got.ds, got.outcome, got.rows) == ("success", "20261201", "rebuild_skipped", 320)


def test_the_index_notifiers_of_one_run_gather_its_facts_once(receiver) -> None:
    """Airflow hands every DAG callback of one run the same context: the second chat reuses the facts,
    so a missing record is waited for once, not once per chat."""
    ti = StandInTI({("resolve_partition", "return_value"): "20261201"}, {"load_partition": "failed"})
    shared = context(ti)
    started = time.monotonic()
    for notifier in notifiers():
        notifier.grace_s = 1.0
        notifier(shared)
    assert 1.0 <= time.monotonic() - started < 2.5 and ti.reads >= 2  # one wait of 1 s, read every 0.5 s
    reads = ti.reads
    (slack,), (dingtalk,) = receiver.received("slack"), receiver.received("dingtalk")
    assert "did not reach its failure callback" in slack.json["text"] and "ds=20261201" in dingtalk.json["markdown"]["text"]
    SlackIndexNotifier("other", NotificationConfig(kind="slack", conn_id="slack_t"), success=False, grace_s=0)(shared)
    assert ti.reads == reads + 1  # another index's notifier gathers its own


def test_failure_covers_a_refusal_and_refused_guard_only_that() -> None:
    assert wants(frozenset({"failure"}), "failure") and wants(frozenset({"failure"}), "refused_guard")
    assert wants(frozenset({"refused_guard"}), "refused_guard") and not wants(frozenset({"refused_guard"}), "failure")
    assert not wants(frozenset({"success"}), "failure") and wants(frozenset({"success"}), "success")


def test_the_dag_gets_its_notifiers_on_the_run_callbacks_only(demo_config) -> None:
    from pipeline.airflow.dag_factory import build_dag

    assert dag_callbacks(demo_config) == {}
    plain = build_dag(demo_config, "demo.yaml")
    assert not plain.has_on_failure_callback and not plain.has_on_success_callback
    config = demo_config.model_copy(update={"notifications": [
        NotificationConfig(kind="slack", conn_id="s", on=["refused_guard", "success"]),
        NotificationConfig(kind="dingtalk", conn_id="d"),
    ]})
    built = build_dag(config, "demo.yaml")
    assert built.has_on_failure_callback and built.has_on_success_callback  # recorded at creation: serialized
    assert [(type(n), n.conn_id, n.success) for n in built.on_failure_callback] == [
        (SlackIndexNotifier, "s", False), (DingTalkIndexNotifier, "d", False)]
    assert [(type(n), n.conn_id, n.success) for n in built.on_success_callback] == [(SlackIndexNotifier, "s", True)]
    assert all(not task.on_success_callback for task in built.tasks)  # never per task: one message per run
    assert "slack connection `s` on refused_guard, success; dingtalk connection `d` on failure" in built.doc_md


@pytest.fixture
def demo_config():
    from pathlib import Path

    from pipeline.config import load_index_config

    return load_index_config(Path(__file__).resolve().parents[3] / "dags" / "indexes" / "demo.yaml")


# -- posting ---------------------------------------------------------------------------------------------

@pytest.fixture
def receiver(monkeypatch):
    with LocalWebhookReceiver(tokens={DINGTALK_TOKEN}) as server:
        for name, value in server.environment("slack_t", "dingtalk_t").items():
            monkeypatch.setenv(name, value)
        yield server


def failed_context(reason_text: str) -> dict:
    ti = StandInTI({("resolve_partition", "return_value"): "20261201",
                    ("load_partition", "pipeline_failure"): failure("ValueError", reason_text)},
                   {"load_partition": "failed"})
    return context(ti)


def notifiers(on=("failure",)):
    return (SlackIndexNotifier("shop", NotificationConfig(kind="slack", conn_id="slack_t", on=list(on)), success=False),
            DingTalkIndexNotifier("shop", NotificationConfig(kind="dingtalk", conn_id="dingtalk_t", on=list(on),
                                                             at_mobiles=["13800000000"]), success=False))


def test_the_message_is_posted_as_written_never_rendered_as_a_template(receiver) -> None:
    for notifier in notifiers():
        notifier(failed_context("bad value {{ conn.slack_t.password }} {% raw %}"))  # as Airflow calls it
    (slack,), (dingtalk,) = receiver.received("slack"), receiver.received("dingtalk")
    assert "ValueError: bad value {{ conn.slack_t.password }} {% raw %}" in slack.json["text"]
    assert "ValueError: bad value {{ conn.slack_t.password }} {% raw %}" in dingtalk.json["markdown"]["text"]


def test_a_notifier_whose_event_is_not_wanted_posts_nothing(receiver) -> None:
    for notifier in notifiers(on=("refused_guard",)):
        notifier(failed_context("x"))
    assert receiver.requests == []


@pytest.mark.parametrize("kind", ["slack", "dingtalk"])
def test_a_refused_post_is_logged_never_raised(receiver, caplog, kind: str) -> None:
    notifier = dict(zip(("slack", "dingtalk"), notifiers(), strict=True))[kind]
    receiver.fail_next = 1
    with caplog.at_level(logging.INFO, logger="pipeline.airflow.notify"):
        notifier(failed_context("x"))  # returns: the run's own state is not the notifier's to change
    assert f"could not post the failure alert of index shop, run {RUN} to {kind} connection '{kind}_t'" in caplog.text
    assert "The run's own state is unchanged" in caplog.text and "FAILED image index shop ds=20261201" in caplog.text


def test_a_missing_connection_is_logged_naming_it(caplog) -> None:
    slack = SlackIndexNotifier("shop", NotificationConfig(kind="slack", conn_id="slack_nowhere"), success=False)
    with caplog.at_level(logging.ERROR, logger="pipeline.airflow.notify"):
        slack(failed_context("x"))
    assert "to slack connection 'slack_nowhere'" in caplog.text and "slack_nowhere" in caplog.text


def test_a_chat_that_never_answers_costs_the_timeout_not_the_processor(monkeypatch, caplog) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts connections (the kernel does), never answers
    host = f"127.0.0.1:{silent.getsockname()[1]}"
    monkeypatch.setenv("AIRFLOW_CONN_SLACK_T", json.dumps({"conn_type": "slackwebhook", "host": f"http://{host}/services",
                                                           "password": "T0/B0/x"}))
    monkeypatch.setenv("AIRFLOW_CONN_DINGTALK_T", json.dumps({"conn_type": "dingding", "host": f"http://{host}",
                                                              "password": "t"}))
    monkeypatch.setattr(notify, "POST_TIMEOUT_S", 1)
    try:
        for notifier in notifiers():
            started = time.monotonic()
            with caplog.at_level(logging.ERROR, logger="pipeline.airflow.notify"):
                notifier(failed_context("x"))
            assert time.monotonic() - started < 8  # slack_sdk retries a connection error once
        assert caplog.text.count("could not post the failure alert") == 2
    finally:
        silent.close()


def test_an_unreadable_context_is_logged_and_nothing_posted(receiver, caplog) -> None:
    class Exploding(dict):
        def get(self, key, default=None):
            if key == "dag":
                raise RuntimeError("broken context")
            return super().get(key, default)

    slack, _ = notifiers()
    with caplog.at_level(logging.ERROR, logger="pipeline.airflow.notify"):
        slack(Exploding(run_id=RUN))
    assert "could not gather the run's facts; nothing posted" in caplog.text and receiver.requests == []

