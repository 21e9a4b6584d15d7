"""Approving a refused run (``guards.on_refusal: ask``) through ``dag.test()`` on the local stack.

``dag.test()`` leaves a human-in-the-loop task parked in ``awaiting_input`` and polls the metadata DB
each second until something outside flips it back (Airflow 3.3: ``DAG.test``, "Waiting for
Human-in-the-loop input"). Here that outside is a thread answering through Airflow's real REST API
(``PATCH .../taskInstances/approve_refused_guards/-1/hitlDetails``, the core API app in-process with the
simple auth manager's tokens), or the scheduler's own timeout sweep
(``SchedulerJobRunner.check_awaiting_input_timeouts``) once the deadline is moved into the past. The
run, the operator's resume (``execute_complete``), the publish, the rebuild and the report are real.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import pytest

REPO = Path(__file__).resolve().parents[2]
APPROVAL = "approve_refused_guards"
SLACK = "slack_approval_test"
#: dag.test() keeps the last run's conf as the Params: every run names them all.
PARAMS = {"partition_date": None, "allow_future_partition": False, "prefixes": None, "dry_run": False,
          "source_mode": None, "rebuild_mode": None, "skip_rebuild": False, "force_rebuild": False,
          "override_guards": []}


def ask_dag(config, *, rebuild: bool, notify: bool = False, **guards):
    """The demo index with ``guards.on_refusal: ask``; without ``rebuild`` no opensearch section (cheap runs)."""
    from pipeline.airflow.dag_factory import build_dag
    from pipeline.config import NotificationConfig

    update: dict = {
        "guards": config.guards.model_copy(update={"on_refusal": "ask", **guards}),
        "source": config.source.model_copy(update={"mode": "list", "inventory": None}),
    }
    if not rebuild:
        update["opensearch"] = None
    if notify:
        update["notifications"] = [NotificationConfig(kind="slack", conn_id=SLACK, on=["refused_guard"])]
    dag = build_dag(config.model_copy(update=update), REPO / "dags" / "indexes" / "demo.yaml")
    for task in dag.tasks:
        task.retries = 0
    for notifier in dag.on_failure_callback or []:
        notifier.grace_s = 0
    return dag


def run(dag, day: str, **params):
    return dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": day, **params})


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def run_report(dag_run, ds: str) -> dict:
    from pipeline.report import run_file_name

    path = Path(os.environ["PIPELINE_REPORT_DIR"]) / "demo" / ds / run_file_name(dag_run.run_id)
    return json.loads(path.read_text())


def published_rows(config, ds: str) -> int | None:
    from pipeline.stages import open_index_warehouse

    warehouse = open_index_warehouse(config)
    return warehouse.partition_stats(ds).rows if ds in warehouse.partitions() else None


@pytest.fixture
def api(airflow_db, monkeypatch, tmp_path):
    """Airflow's core REST API in-process, with the simple auth manager (as ``airflow standalone`` runs it)
    knowing two users; yields (client, {user: bearer header})."""
    from airflow.api_fastapi import app as api_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "approver:admin,bystander:admin")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp_path / "passwords.json"))
    api_app.purge_cached_app()
    client = TestClient(api_app.create_app("core"))
    manager = api_app.get_auth_manager()
    headers = {name: {"Authorization": f"Bearer {manager.generate_jwt(SimpleAuthManagerUser(username=name, role='admin'))}"}
               for name in ("approver", "bystander")}
    yield client, headers
    api_app.purge_cached_app()


def waiting_run(dag_id: str) -> str | None:
    """The run whose approval task waits for an answer, if any."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        return session.scalar(select(TaskInstance.run_id).where(
            TaskInstance.dag_id == dag_id, TaskInstance.task_id == APPROVAL, TaskInstance.state == "awaiting_input"))


def time_out(dag_id: str, run_id: str) -> None:
    """What the scheduler does once the deadline passed: the deadline is moved into the past and the
    scheduler's own sweep runs (it applies the default answer, Reject, by nobody)."""
    from datetime import timedelta

    from airflow._shared.timezones import timezone
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = session.query(TaskInstance).filter_by(dag_id=dag_id, run_id=run_id, task_id=APPROVAL).one()
        ti.trigger_timeout = timezone.utcnow() - timedelta(seconds=1)
    SchedulerJobRunner.check_awaiting_input_timeouts(SimpleNamespace(log=logging.getLogger("sweep")))


class Answer(threading.Thread):
    """Waits for the approval task to wait, then answers through the REST API as each of ``users`` in turn
    (keeping every response). Whatever happens, the wait ends: a thread that could not answer lets the
    timeout sweep reject, so ``dag.test()`` never hangs, and the test fails on ``error``."""

    def __init__(self, dag_id: str, answers: list[tuple[dict | None, str, str]], client=None) -> None:
        super().__init__(daemon=True)
        self.dag_id, self.answers, self.client = dag_id, answers, client
        self.request: dict | None = None
        self.pending: dict | None = None  # every request still waiting, as the API lists them
        self.responses: list = []
        self.error: BaseException | None = None

    def run(self) -> None:
        run_id = None
        try:
            give_up = time.monotonic() + 180
            while not (run_id := waiting_run(self.dag_id)):
                assert time.monotonic() < give_up, "the approval task never waited"
                time.sleep(0.5)
            path = f"/api/v2/dags/{self.dag_id}/dagRuns/{quote(run_id)}/taskInstances/{APPROVAL}/-1/hitlDetails"
            for headers, option, comment in self.answers:
                if headers is None:  # nobody answers: the deadline passes
                    time_out(self.dag_id, run_id)
                    continue
                if self.request is None:
                    self.request = self.client.get(path, headers=headers).json()
                    self.pending = self.client.get("/api/v2/dags/~/dagRuns/~/hitlDetails?response_received=false",
                                                   headers=headers).json()
                self.responses.append(self.client.patch(
                    path, headers=headers, json={"chosen_options": [option], "params_input": {"comment": comment}}))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc
            if run_id and waiting_run(self.dag_id):
                time_out(self.dag_id, run_id)


def test_an_approved_refusal_publishes_and_rebuilds_and_the_report_names_who_approved(api, demo_stack) -> None:
    _, stack, config = demo_stack
    client, users = api
    # No unmapped image allowed: the demo's five in catalog/misc/ refuse the `unmapped` guard.
    dag = ask_dag(config, rebuild=True, max_unmapped_fraction=0.0, approvers=["approver"])
    before = stack.opensearch.engine.live_generation_id("demo_images")
    answer = Answer(dag.dag_id, [(users["bystander"], "Approve", "not mine to say"),
                                 (users["approver"], "Approve", "misc is a new category, mapped next week")], client)
    answer.start()
    dag_run = run(dag, "2026-09-14", force_rebuild=True)
    answer.join(30)
    assert answer.error is None, answer.error

    refused_by_bystander, approved = answer.responses
    assert refused_by_bystander.status_code == 403 and "not a respondent" in refused_by_bystander.text
    assert approved.status_code == 200, approved.text
    assert approved.json()["responded_by"] == {"id": "approver", "name": "approver"}
    request = answer.request  # what the approver saw
    assert request["subject"] == ("Image index demo ds=20260914: guard unmapped refused the partition. "
                                  "Publish it anyway?")
    body = request["body"]
    assert "- **unmapped**: 5 of 325 images (1.5%) had an unmapped category (limit 0%), e.g." in body and "misc" in body
    assert "| rows | 320 |" in body and "- the load listed 336 objects, kept 320, skipped 16" in body
    assert "**Approve** publishes ds=20260914 into `demo_image_catalog`" in body and "No answer by " in body
    assert request["options"] == ["Approve", "Reject"] and request["defaults"] == ["Reject"]
    assert request["assigned_users"] == [{"id": "approver", "name": "approver"}]
    (pending,) = answer.pending["hitl_details"]
    assert (pending["task_instance"]["task_id"], pending["task_instance"]["dag_run_id"]) == (APPROVAL, dag_run.run_id)

    got = states(dag_run)
    assert dag_run.state == "success", got
    assert got["choose_approval"] == got[APPROVAL] == got["publish_partition"] == got["smoke_query"] == "success"
    assert published_rows(config, "20260914") == 320
    assert stack.opensearch.engine.live_generation_id("demo_images") != before  # approved: rebuilt
    report = run_report(dag_run, "20260914")
    approval = report["approval"]
    assert (approval["decision"], approval["by"], approval["guards"]) == (
        "approved", {"id": "approver", "name": "approver"}, ["unmapped"])
    assert approval["comment"] == "misc is a new category, mapped next week" and approval["at"] and approval["asked_at"]
    (unmapped,) = [g for g in report["guards"] if g["name"] == "unmapped"]
    assert unmapped["passed"] is False and unmapped["overridden"] is True and unmapped["approved"] is True
    from pipeline.report import summarize

    summary = summarize(report)
    assert summary.startswith("SUCCESS")
    assert "  approval: approved by approver at " in summary and "(unmapped): misc is a new category" in summary


def test_a_passing_run_goes_straight_on_and_a_rejected_one_fails_with_nothing_published(api, demo_stack,
                                                                                      monkeypatch) -> None:
    from localcloud.webhook import DINGTALK_TOKEN, LocalWebhookReceiver

    _, _, config = demo_stack
    client, users = api
    with LocalWebhookReceiver(tokens={DINGTALK_TOKEN}) as receiver:
        for name, value in receiver.environment(SLACK).items():
            monkeypatch.setenv(name, value)
        dag = ask_dag(config, rebuild=False, notify=True)
        passing = run(dag, "2026-09-15")
        got = states(passing)
        assert passing.state == "success" and got[APPROVAL] == "skipped" and got["publish_partition"] == "success"
        assert run_report(passing, "20260915")["approval"] is None and not receiver.requests

        answer = Answer(dag.dag_id, [(users["approver"], "Reject", "the listing was wrong")], client)
        answer.start()
        rejected = run(dag, "2026-09-15", prefixes=["catalog/nowhere/"])
        answer.join(30)
        assert answer.error is None, answer.error
        got = states(rejected)
        assert rejected.state == "failed"
        assert (got["check_partition"], got["choose_approval"], got[APPROVAL], got["publish_partition"]) == (
            "success", "success", "failed", "upstream_failed")
        assert published_rows(config, "20260915") == 320  # the published partition is untouched
        # The chat heard that a run waits, with the link to answer it (the rejection is a `failure`, not wanted).
        (waiting,) = receiver.received("slack")
        text = waiting.json["text"]
        assert text.splitlines()[0] == ("REFUSED image index demo ds=20260915: guard empty, shrink refused the "
                                        "partition; waiting for approval")
        assert f"/dags/{dag.dag_id}/runs/{quote(rejected.run_id)}/tasks/{APPROVAL}/required_actions" in text
    report = run_report(rejected, "20260915")
    assert (report["approval"]["decision"], report["approval"]["by"]["name"]) == ("rejected", "approver")
    assert report["outcome"] == "failed" and report["published"] is None
    (failed,) = report["failed_tasks"]
    assert failed["task_id"] == APPROVAL and failed["error_type"] == "ApprovalRejectedError"
    assert failed["message"].startswith("partition ds=20260915 of index demo was not published: the refused guards "
                                        "were rejected by approver at ")
    assert "(empty, shrink): the listing was wrong" in failed["message"]


def test_no_answer_before_the_deadline_is_a_rejection_by_nobody(api, demo_stack) -> None:
    _, _, config = demo_stack
    dag = ask_dag(config, rebuild=False, approval_timeout_hours=0.5)
    answer = Answer(dag.dag_id, [(None, "", "")])
    answer.start()
    timed_out = run(dag, "2026-09-16", prefixes=["catalog/nowhere/"])
    answer.join(30)
    assert answer.error is None, answer.error
    assert timed_out.state == "failed" and states(timed_out)["publish_partition"] == "upstream_failed"
    report = run_report(timed_out, "20260916")
    approval = report["approval"]
    assert (approval["decision"], approval["by"], approval["timeout_hours"]) == ("timed_out", None, 0.5)
    assert "timed out after 0.5 h with no answer" in report["failed_tasks"][0]["message"]
