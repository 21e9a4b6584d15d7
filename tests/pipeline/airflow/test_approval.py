"""``guards.on_refusal: ask`` in the DAG, without a run: the graph and its trigger rules, the approval
operator's request and how it turns an answer (or the scheduler's timeout) into a record, and the chat
message while it waits. tests/dags/test_approval.py answers real runs through the REST API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from localcloud.webhook import DINGTALK_TOKEN, LocalWebhookReceiver
from pipeline.airflow.alert_text import dingtalk_markdown, plain_text, slack_blocks
from pipeline.airflow.approval import (
    APPROVAL_TASK,
    APPROVAL_XCOM,
    REQUEST_XCOM,
    ApprovalWaitNotifier,
    GuardApprovalOperator,
    waiting_alert,
)
from pipeline.config import NotificationConfig
from pipeline.errors import ApprovalRejectedError

REPO = Path(__file__).resolve().parents[3]
RUN = "manual__2026-12-01T06:18:21.579048+00:00"
GUARDS = [{"name": "empty", "passed": True, "message": "80 rows", "overridden": False},
          {"name": "shrink", "passed": False, "message": "80 rows, 75.0% fewer than the 320 of ds=20261231",
           "overridden": False}]
CHECKED = {"dry_run": False, "stats": {"ds": "20261230", "rows": 80, "distinct_ids": 80,
                                       "rows_per_category": {"3": 80}}, "guards": GUARDS}


@pytest.fixture
def demo_config():
    from pipeline.config import load_index_config

    return load_index_config(REPO / "dags" / "indexes" / "demo.yaml")


def asking(config, **guards):
    return config.model_copy(update={"guards": config.guards.model_copy(update={"on_refusal": "ask", **guards})})


class StandInTI:
    """The task's instance: XComs ``{(task_id, key): value}``, and what the task pushed."""

    def __init__(self, xcoms: dict) -> None:
        self.xcoms, self.pushed = dict(xcoms), {}
        self.dag_id, self.run_id, self.task_id, self.map_index = "image_index_demo", RUN, APPROVAL_TASK, -1

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        return self.xcoms.get((task_ids, key))

    def xcom_push(self, key: str, value) -> None:
        self.pushed[key] = value
        self.xcoms[(APPROVAL_TASK, key)] = value


def test_with_fail_the_graph_is_as_before_and_with_ask_a_refusal_goes_through_the_approval(demo_config) -> None:
    from pipeline.airflow.dag_factory import build_dag

    plain = build_dag(demo_config, "demo.yaml")
    assert {"choose_approval", APPROVAL_TASK}.isdisjoint(plain.task_ids)
    assert plain.task_dict["publish_partition"].trigger_rule == "all_success"
    assert plain.task_dict["check_partition"].downstream_task_ids >= {"publish_partition"}

    dag = build_dag(asking(demo_config), "demo.yaml")
    tasks = dag.task_dict
    assert tasks["check_partition"].downstream_task_ids >= {"choose_approval", "publish_partition"}
    assert tasks["choose_approval"].downstream_task_ids == {APPROVAL_TASK, "publish_partition"}
    assert tasks[APPROVAL_TASK].downstream_task_ids == {"publish_partition"}
    # After either path (the other skipped by the branch); a failed (rejected) approval stops it.
    assert tasks["publish_partition"].trigger_rule == "none_failed_min_one_success"
    order = dag.task_ids  # the report lists tasks in this order
    assert order.index("check_partition") < order.index("choose_approval") < order.index(APPROVAL_TASK) \
        < order.index("publish_partition")
    assert "waits for approval in `approve_refused_guards`" in dag.doc_md and "24 h" in dag.doc_md


def test_the_approval_operator_asks_with_approve_or_reject_and_rejects_at_the_deadline(demo_config) -> None:
    from airflow.providers.standard.operators.hitl import ApprovalOperator

    config = asking(demo_config, approval_timeout_hours=6, approvers=["alice", "7"]).model_copy(update={
        "notifications": [NotificationConfig(kind="slack", conn_id="s", on=["refused_guard"]),
                          NotificationConfig(kind="dingtalk", conn_id="d", on=["failure"]),  # covers a refusal
                          NotificationConfig(kind="slack", conn_id="quiet", on=["success"])]})
    from airflow.sdk import DAG

    with DAG("d", params={"partition_date": None}):
        op = GuardApprovalOperator(index_config=config, load_of=lambda ti: None)
    assert isinstance(op, ApprovalOperator) and op.task_id == APPROVAL_TASK
    assert op.options == ["Approve", "Reject"] and op.defaults == ["Reject"] and op.multiple is False
    assert op.response_timeout == timedelta(hours=6)
    assert op.assigned_users == [{"id": "alice", "name": "alice"}, {"id": "7", "name": "7"}]
    assert list(op.serialized_params) == ["comment"]  # the form: the DAG's Params are not the approver's
    (notifier,) = op.notifiers
    assert [(n.kind, n.conn_id) for n in notifier.chats] == [("slack", "s"), ("dingtalk", "d")]

    with DAG("e"):
        anyone = GuardApprovalOperator(index_config=asking(demo_config), load_of=lambda ti: None)
    assert anyone.assigned_users is None and anyone.notifiers == [] and anyone.response_timeout == timedelta(hours=24)


def operator(demo_config, **guards) -> GuardApprovalOperator:
    from airflow.sdk import DAG

    with DAG("x"):
        return GuardApprovalOperator(index_config=asking(demo_config, **guards), load_of=lambda ti: None)


def waited(**request) -> StandInTI:
    return StandInTI({("check_partition", "return_value"): CHECKED, ("resolve_partition", "return_value"): "20261230",
                      (APPROVAL_TASK, REQUEST_XCOM): {"ds": "20261230", "guards": ["shrink"],
                                                      "asked_at": "2026-12-01T09:00:00+00:00", **request}})


def answer(option: str, *, user: dict | None, comment: str = "", **more) -> dict:
    return {"chosen_options": [option], "params_input": {"comment": comment}, "responded_by_user": user,
            "responded_at": datetime(2026, 12, 1, 10, tzinfo=UTC), **more}


def test_an_approval_is_recorded_and_returned(demo_config) -> None:
    ti = waited()
    got = operator(demo_config).execute_complete({"ti": ti}, answer("Approve", user={"id": "a", "name": "alice"},
                                                                     comment="known"))
    assert got == ti.pushed[APPROVAL_XCOM] == {
        "decision": "approved", "guards": ["shrink"], "by": {"id": "a", "name": "alice"},
        "at": "2026-12-01T10:00:00+00:00", "comment": "known", "timeout_hours": 24,
        "asked_at": "2026-12-01T09:00:00+00:00"}


def test_a_rejection_is_recorded_then_fails_the_task_without_retry(demo_config) -> None:
    from pipeline.airflow.failures import is_terminal

    ti = waited()
    with pytest.raises(ApprovalRejectedError, match="the refused guards were rejected by bob at 2026-12-01T10:00:00") as err:
        operator(demo_config).execute_complete({"ti": ti}, answer("Reject", user={"id": "bob", "name": "bob"}))
    assert is_terminal(err.value) and ti.pushed[APPROVAL_XCOM]["decision"] == "rejected"


def test_the_scheduler_answering_reject_at_the_deadline_is_a_timeout(demo_config) -> None:
    ti = waited()
    with pytest.raises(ApprovalRejectedError, match="timed out after 2 h with no answer"):
        operator(demo_config, approval_timeout_hours=2).execute_complete(
            {"ti": ti}, answer("Reject", user=None, timedout=True))
    assert (ti.pushed[APPROVAL_XCOM]["decision"], ti.pushed[APPROVAL_XCOM]["by"]) == ("timed_out", None)
    ti = waited()  # no default applied: the provider's error event
    with pytest.raises(ApprovalRejectedError, match="timed out"):
        operator(demo_config).execute_complete({"ti": ti}, {"error": "no response", "error_type": "timeout"})


def test_an_answer_outside_the_options_is_refused(demo_config) -> None:
    with pytest.raises(ValueError, match="not in"):
        operator(demo_config).execute_complete({"ti": waited()}, answer("Maybe", user={"id": "a", "name": "a"}))


def test_the_request_is_built_from_the_runs_check_when_the_task_runs(demo_config, monkeypatch) -> None:
    from airflow.providers.standard.operators.hitl import HITLOperator
    from airflow.sdk.exceptions import AirflowSkipException

    seen = {}
    monkeypatch.setattr(HITLOperator, "execute", lambda self, context: seen.update(subject=self.subject, body=self.body))
    op = operator(demo_config, approval_timeout_hours=3)
    ti = StandInTI({("check_partition", "return_value"): CHECKED, ("resolve_partition", "return_value"): "20261230"})
    op.execute({"ti": ti})
    assert seen["subject"] == "Image index demo ds=20261230: guard shrink refused the partition. Publish it anyway?"
    assert "- **shrink**: 80 rows, 75.0% fewer than the 320 of ds=20261231" in seen["body"]
    request = ti.pushed[REQUEST_XCOM]
    assert request["guards"] == ["shrink"] and request["timeout_hours"] == 3 and request == op.request
    asked, deadline = datetime.fromisoformat(request["asked_at"]), datetime.fromisoformat(request["deadline"])
    assert deadline - asked == timedelta(hours=3)
    passed = StandInTI({("check_partition", "return_value"): {**CHECKED, "guards": GUARDS[:1]}})
    with pytest.raises(AirflowSkipException, match="nothing to approve"):
        op.execute({"ti": passed})


def test_while_it_waits_the_chats_hear_which_guard_refused_and_where_to_answer(demo_config, monkeypatch) -> None:
    from pipeline.airflow.notify import DingTalkIndexNotifier, SlackIndexNotifier

    monkeypatch.setenv("AIRFLOW__API__BASE_URL", "https://airflow.example")
    op = operator(demo_config)
    op.request = {"ds": "20261230", "guards": ["shrink"], "timeout_hours": 24, "deadline": "2026-12-02T09:00:00+00:00"}
    ti = waited()
    alert = waiting_alert("demo", {"ti": ti, "task": op})
    assert alert.event == "refused_guard" and alert.task_id == APPROVAL_TASK and alert.ds == "20261230"
    run_link = "https://airflow.example/dags/image_index_demo/runs/manual__2026-12-01T06%3A18%3A21.579048%2B00%3A00"
    assert alert.url == run_link and alert.waiting["url"] == f"{run_link}/tasks/{APPROVAL_TASK}/required_actions"
    text = plain_text(alert)
    assert text.splitlines()[0] == ("REFUSED image index demo ds=20261230: guard shrink refused the partition; "
                                    "waiting for approval")
    assert "[shrink] 80 rows, 75.0% fewer than the 320 of ds=20261231" in text
    assert (f"Nothing is published until someone answers task {APPROVAL_TASK} of the run: approve (publish anyway, "
            f"then rebuild) or reject, in Airflow's Required Actions ({run_link}/tasks/{APPROVAL_TASK}/"
            "required_actions) or through the REST API. With no answer by 2026-12-02T09:00:00+00:00 (24 h) it is "
            "rejected.") in text
    assert "override_guards" not in text
    assert "*Waiting task*\napprove_refused_guards" in [f["text"] for f in slack_blocks(alert)[1]["fields"]]
    assert f"- **Waiting task**: {APPROVAL_TASK}" in dingtalk_markdown(alert)["text"]

    with LocalWebhookReceiver(tokens={DINGTALK_TOKEN}) as server:
        for name, value in server.environment("slack_t", "dingtalk_t").items():
            monkeypatch.setenv(name, value)
        chats = [SlackIndexNotifier("demo", NotificationConfig(kind="slack", conn_id="slack_t"), success=False),
                 SlackIndexNotifier("demo", NotificationConfig(kind="slack", conn_id="slack_nowhere"), success=False),
                 DingTalkIndexNotifier("demo", NotificationConfig(kind="dingtalk", conn_id="dingtalk_t"), success=False)]
        ApprovalWaitNotifier("demo", chats)({"ti": ti, "task": op})  # a chat that cannot take it is only logged
        (slack,), (dingtalk,) = server.received("slack"), server.received("dingtalk")
    assert slack.json["text"] == text and "waiting for approval" in dingtalk.json["markdown"]["title"]
    ApprovalWaitNotifier("demo", chats)({"ti": None, "task": op})  # facts that cannot be read: nothing raised


def test_an_answer_counts_only_for_a_check_that_refused() -> None:
    from pipeline.airflow.approval import approval_of

    kept = StandInTI({(APPROVAL_TASK, APPROVAL_XCOM): {"decision": "approved", "guards": ["shrink"]}})
    assert approval_of(kept, CHECKED)["decision"] == "approved"
    # A run cleared after an approval, whose check now passes: the skipped task's old XCom is not this run's.
    assert approval_of(kept, {**CHECKED, "guards": GUARDS[:1]}) is None and approval_of(kept, None) is None
