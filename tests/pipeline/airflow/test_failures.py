"""The DAG's retry policy: terminal pipeline errors fail at once, transient ones and strangers retry.

The whole path (task SDK, retries left on) runs in tests/dags/test_fail_fast.py; here the decisions
themselves, that every task carries the policy, and how the sensor turns trigger events into errors.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.sdk import RetryAction

from pipeline.airflow.failures import FailFastPolicy, is_terminal
from pipeline.errors import (
    ConnectionConfigError,
    ParamError,
    PartitionCheckError,
    RebuildError,
    RebuildFailedError,
    ReindexNotStartedError,
    SourceAccessError,
    TransientOpenSearchError,
    TransientSourceError,
)

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    "error", [ParamError("x"), PartitionCheckError("x"), RebuildFailedError("x"), SourceAccessError("x"),
              ConnectionConfigError("x")],
)
def test_terminal_pipeline_errors_fail_without_retry(error: Exception) -> None:
    decision = FailFastPolicy().evaluate(error, try_number=1, max_tries=3)
    assert is_terminal(error)
    assert decision.action is RetryAction.FAIL
    assert type(error).__name__ in decision.reason and "a retry cannot fix it" in decision.reason


@pytest.mark.parametrize("error", [TransientSourceError("x"), TransientOpenSearchError("x"), ReindexNotStartedError("x")])
def test_transient_pipeline_errors_retry(error: Exception) -> None:
    decision = FailFastPolicy().evaluate(error, try_number=1, max_tries=3)
    assert not is_terminal(error)
    assert decision.action is RetryAction.RETRY and decision.retry_delay is None  # the task's own delay
    assert "transient" in decision.reason


@pytest.mark.parametrize("error", [RuntimeError("x"), OSError("x"), KeyError("x")])
def test_exceptions_we_did_not_raise_follow_the_tasks_retries(error: Exception) -> None:
    assert not is_terminal(error)
    assert FailFastPolicy().evaluate(error, try_number=1, max_tries=3).action is RetryAction.DEFAULT


def test_every_task_of_every_dag_carries_the_policy() -> None:
    """Set once in default_args: a task added later (and the sensor) gets it too. A task that sets its
    own retry_policy must say why here."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    # The index DAGs; not dags/example_downstream.py, which plays another team's DAG (README: Assets).
    indexes = [dag for dag_id, dag in bag.dags.items() if dag_id.startswith("image_index_")]
    assert indexes
    for dag in indexes:
        assert isinstance(dag.default_args["retry_policy"], FailFastPolicy), dag.dag_id
        for task in dag.tasks:
            assert isinstance(task.retry_policy, FailFastPolicy), f"{dag.dag_id}.{task.task_id}"
            assert task.retries >= 1, f"{dag.dag_id}.{task.task_id}: retries stay on for transient errors"


def _sensor():
    from pipeline.airflow.sensors import RebuildSensor

    return RebuildSensor(task_id="wait", handle=None, settings={})


def _raised(event: dict) -> Exception:
    with pytest.raises(Exception) as info:
        _sensor().execute_complete({}, event)
    return info.value


@pytest.mark.parametrize(
    ("event", "error", "action"),
    [
        ({"outcome": "failed", "message": "generation 7 failed: disk"}, RebuildFailedError, RetryAction.FAIL),
        ({"outcome": "error", "message": "InvalidSecurityToken", "transient": False}, RebuildError, RetryAction.FAIL),
        ({"outcome": "error", "message": "gave up polling", "transient": True}, TransientOpenSearchError, RetryAction.RETRY),
        ({"outcome": "error", "message": "from an older trigger"}, TransientOpenSearchError, RetryAction.RETRY),
    ],
)
def test_the_sensor_turns_trigger_events_into_errors_the_policy_reads(event: dict, error: type, action: RetryAction) -> None:
    raised = _raised(event)
    assert type(raised) is error and event["message"] in str(raised)
    assert FailFastPolicy().evaluate(raised, try_number=1, max_tries=3).action is action
