"""The failure callback and the facts the report reads from Airflow, without running a DAG (the DAG
tests in tests/dags/test_image_index_dag.py run them for real)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from pipeline.airflow.outcome import (
    FAILURE_XCOM_KEY,
    MESSAGE_LIMIT,
    attach_failure_recorder,
    failed_tasks,
    failure_record,
    record_failure,
    run_facts,
    task_states,
)


class FakeTI:
    def __init__(self, pushed: dict | None = None, crumbs: list | None = None, task_id: str = "report") -> None:
        self.pushed = pushed if pushed is not None else {}
        self.crumbs = crumbs or []
        self.task_id, self.try_number = task_id, 2

    def xcom_push(self, key: str, value) -> None:
        self.pushed[(self.task_id, key)] = value

    def xcom_pull(self, task_ids: str, key: str):
        return self.pushed.get((task_ids, key))

    def get_task_breadcrumbs(self, dag_id: str, run_id: str):
        return self.crumbs


def test_the_failure_callback_pushes_type_and_message() -> None:
    ti = FakeTI(task_id="check_partition")
    record_failure({"ti": ti, "exception": ValueError("partition ds=20261201 is empty")})
    assert ti.pushed[("check_partition", FAILURE_XCOM_KEY)] == {
        "error_type": "ValueError", "message": "partition ds=20261201 is empty", "try_number": 2,
    }


def test_the_failure_callback_never_raises() -> None:
    class Broken(FakeTI):
        def xcom_push(self, key, value):
            raise ConnectionError("API server gone")

    record_failure({"ti": Broken(), "exception": RuntimeError("x")})  # logged, not raised
    record_failure({})


def test_without_an_exception_nothing_is_pushed() -> None:
    """The DAG processor runs the failure callbacks of a task killed before it ran, with no exception; it
    cannot store an XCom (Airflow 3.3 leaves the request unanswered: the push hung it until killed)."""

    class Unanswered(FakeTI):
        def xcom_push(self, key, value):
            raise AssertionError("pushed from the DAG processor")

    record_failure({"ti": Unanswered(task_id="load_partition"), "reason": "task_failure"})


def test_messages_are_masked_and_bounded() -> None:
    from airflow.sdk.log import mask_secret

    mask_secret("s3cret-value-xyz")
    got = failure_record(RuntimeError("login with s3cret-value-xyz refused " + "x" * (MESSAGE_LIMIT + 50)))
    assert "s3cret-value-xyz" not in got["message"] and "***" in got["message"]
    assert got["message"].endswith("more characters in the task's log)") and len(got["message"]) < MESSAGE_LIMIT + 80
    assert failure_record(KeyError())["message"] == "KeyError()"  # an empty str() still says something


def test_a_guards_refusal_records_each_refusing_guard_masked() -> None:
    from airflow.sdk.log import mask_secret

    from pipeline.errors import PartitionCheckError

    mask_secret("guard-secret-abc")
    error = PartitionCheckError("[empty] ...; [skipped] .... Nothing was rebuilt",
                                refused=(("empty", "no rows"), ("skipped", "9 of 10 skipped guard-secret-abc")))
    got = failure_record(error, 1)
    assert got["error_type"] == "PartitionCheckError"
    assert got["refused_guards"] == [{"name": "empty", "message": "no rows"},
                                     {"name": "skipped", "message": "9 of 10 skipped ***"}]
    assert "refused_guards" not in failure_record(PartitionCheckError("override_guards names unknown guards"))
    assert "refused_guards" not in failure_record(RuntimeError("x"))


def test_the_recorder_is_added_once_beside_existing_callbacks() -> None:
    def mine(context) -> None:
        pass

    tasks = [SimpleNamespace(on_failure_callback=[mine]), SimpleNamespace(on_failure_callback=())]
    attach_failure_recorder(tasks)
    attach_failure_recorder(tasks)
    assert tasks[0].on_failure_callback == [mine, record_failure] and tasks[1].on_failure_callback == [record_failure]


def test_states_follow_the_dags_task_order() -> None:
    crumbs = [
        {"task_id": "smoke_query", "map_index": -1, "state": "upstream_failed", "duration": None},
        {"task_id": "check_partition", "map_index": -1, "state": "failed", "duration": 1.23456},
        {"task_id": "load_partition", "map_index": -1, "state": "success", "duration": 2},
        {"task_id": "publish", "map_index": 3, "state": "success", "duration": 0.5},
    ]
    got = task_states(crumbs, ["load_partition", "check_partition", "smoke_query"])
    assert list(got) == ["load_partition", "check_partition", "smoke_query", "publish[3]"]
    assert got["check_partition"] == {"state": "failed", "seconds": 1.235}


def test_a_missing_message_is_awaited_briefly_then_reported_missing() -> None:
    now = [0.0]
    pulls = []

    def pull(task_id: str):
        pulls.append(task_id)
        if task_id == "load_partition" and now[0] >= 2:  # its callback lands two seconds late
            return {"error_type": "OssError", "message": "AccessDenied", "try_number": 3}
        return None

    states = {"load_partition": {"state": "failed"}, "start_rebuild": {"state": "failed"}, "ok": {"state": "success"}}
    got = failed_tasks(states, pull, grace_s=5, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert got[0] == {"task_id": "load_partition", "state": "failed", "error_type": "OssError", "message": "AccessDenied", "try_number": 3}
    assert got[1]["task_id"] == "start_rebuild" and got[1]["message"].startswith("no message recorded")
    assert now[0] == 5 and "ok" not in pulls  # gave up after the grace; never asked about a task that succeeded


def test_run_facts() -> None:
    crumbs = [
        {"task_id": "check_partition", "map_index": -1, "state": "failed", "duration": 1.0},
        {"task_id": "report", "map_index": -1, "state": "running", "duration": None},
    ]
    ti = FakeTI({("check_partition", FAILURE_XCOM_KEY): {"error_type": "E", "message": "m", "try_number": 1}}, crumbs)
    dag_run = SimpleNamespace(
        dag_id="image_index_demo", run_id="manual__x", run_type=SimpleNamespace(value="manual"),
        triggering_user_name="alice", clear_number=1, logical_date=None,
        run_after=datetime(2026, 12, 1, tzinfo=UTC), start_date=datetime(2026, 12, 1, 0, 0, 5, tzinfo=UTC),
    )
    got = run_facts({"ti": ti, "dag_run": dag_run, "params": {"dry_run": False, "prefixes": ("a/",)}}, grace_s=0)
    assert got["run"]["run_id"] == "manual__x" and got["run"]["run_type"] == "manual"
    assert got["run"]["triggering_user"] == "alice" and got["run"]["clear_number"] == 1
    assert got["run"]["started_at"] == "2026-12-01T00:00:05+00:00" and got["run"]["finished_at"]
    assert got["params"] == {"dry_run": False, "prefixes": ["a/"]}
    assert list(got["tasks"]) == ["check_partition"]  # not the report itself
    assert got["failed_tasks"] == [{"task_id": "check_partition", "state": "failed", "error_type": "E", "message": "m", "try_number": 1}]


def test_run_facts_survive_an_unreadable_run() -> None:
    class NoApi(FakeTI):
        def get_task_breadcrumbs(self, dag_id, run_id):
            raise ConnectionError("execution API unreachable")

    dag_run = SimpleNamespace(dag_id="d", run_id="r", run_type="manual", start_date=None)
    got = run_facts({"ti": NoApi(), "dag_run": dag_run, "params": {}})
    assert got["tasks"] is None and got["tasks_error"] == "ConnectionError: execution API unreachable"
