"""What the run report needs from Airflow itself: the run, its Params, each task's state and, for a task
that failed, its error message.

Airflow 3 keeps no error text on a task instance (the metadata DB has state, dates, try number; the
message is only in the task's log, which may be remote). So every task gets :func:`record_failure` as
an ``on_failure_callback``: the task runner calls it in the failing task's own process, after the
final failed try, with the exception in the context, and it pushes ``{error_type, message, try}`` as
the XCom ``pipeline_failure``. Retries and reruns start by clearing a task's XComs, so a message never
outlives the try that raised it. A task that never reached its callback (killed, out of memory, timed
out by the scheduler) has no message: the report says so and points at its log.

States come from the Execution API (``get_task_breadcrumbs``: every finished task instance of the
run), as a task may not read the metadata DB in Airflow 3.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from pipeline.errors import PartitionCheckError

log = logging.getLogger(__name__)

FAILURE_XCOM_KEY = "pipeline_failure"
MESSAGE_LIMIT = 4000  # characters kept of an error message
# The failing task's callback runs right after its failed state is recorded, in its own process; under
# a real scheduler the report could in principle start first. Missing messages are polled this long.
FAILURE_GRACE_S = 10.0
FAILED_STATES = ("failed", "upstream_failed")


def _bounded(text: str) -> str:
    from pipeline.redact import redact_text

    text = redact_text(text)
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + f"... ({len(text) - MESSAGE_LIMIT} more characters in the task's log)"
    return text


def failure_record(error: BaseException | str | None, try_number: int | None = None) -> dict:
    """The JSON pushed for a failed task: exception type and text (secrets masked, bounded); for a guard's
    refusal also ``refused_guards``, each guard's name and message (the alerts list them)."""
    if isinstance(error, BaseException):
        error_type, text = type(error).__name__, str(error) or repr(error)
    else:
        error_type, text = None, str(error or "")
    record = {"error_type": error_type, "message": _bounded(text), "try_number": try_number}
    refused = getattr(error, "refused", None) if isinstance(error, PartitionCheckError) else None
    if refused:
        record["refused_guards"] = [{"name": str(name), "message": _bounded(str(message))} for name, message in refused]
    return record


def record_failure(context: Any) -> None:
    """``on_failure_callback``: keep the exception's text where the report can read it (an XCom).

    Only in the failing task's own process, where the context holds the exception. A task that never
    got that far (killed, or failed by the executor before it ran) has its failure callbacks run by the
    DAG processor instead, with no exception and no way to store an XCom: Airflow 3.3's processor
    cannot decode the request and never answers, so the push hung the processor until it was killed
    (50 s), losing the run's own failure callback (the alerts) with it. There is nothing to record."""
    if context.get("exception") is None:
        log.info("no exception in this failure callback (the task failed outside its own process): "
                 "nothing to record; the run report says so and points at the task's log")
        return
    try:
        ti = context["ti"]
        ti.xcom_push(FAILURE_XCOM_KEY, failure_record(context.get("exception"), getattr(ti, "try_number", None)))
    except Exception:  # a callback must never hide the task's own failure
        log.exception("could not record the failure for the run report")


def attach_failure_recorder(tasks: Iterable[Any]) -> None:
    """Add :func:`record_failure` to each task's failure callbacks (keeping any it has)."""
    for task in tasks:
        callbacks = list(task.on_failure_callback or ())
        if record_failure not in callbacks:
            task.on_failure_callback = [*callbacks, record_failure]


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _plain(value: Any) -> Any:
    """Params as JSON: Airflow hands them over as a ParamsDict of resolved values."""
    if isinstance(value, dict) or hasattr(value, "keys"):
        return {str(k): _plain(value[k]) for k in value.keys()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def task_states(breadcrumbs: Iterable[dict], order: Iterable[str] = ()) -> dict[str, dict]:
    """``{task_id: {state, seconds}}`` from the Execution API's breadcrumbs (mapped tasks as ``id[i]``),
    in ``order`` (the DAG's task order), then any other task by name."""
    rank = {task_id: i for i, task_id in enumerate(order)}
    states = {}
    for crumb in sorted(breadcrumbs, key=lambda c: (rank.get(str(c["task_id"]), len(rank)), str(c["task_id"]))):
        task_id = str(crumb["task_id"])
        if (crumb.get("map_index") or -1) >= 0:
            task_id = f"{task_id}[{crumb['map_index']}]"
        state = crumb.get("state")
        duration = crumb.get("duration")
        states[task_id] = {
            "state": getattr(state, "value", state),
            "seconds": round(duration, 3) if isinstance(duration, int | float) else None,
        }
    return states


def failed_tasks(
    states: dict[str, dict], pull: Callable[[str], dict | None], *, grace_s: float = FAILURE_GRACE_S,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> list[dict]:
    """The tasks that failed (ran and raised), in task order, each with its recorded message, if any.

    ``pull(task_id)`` reads the XCom :func:`record_failure` pushed; a missing one is read again for up
    to ``grace_s`` seconds in all (the callback may still be running), then reported as missing."""
    failed = [task_id for task_id, seen in states.items() if seen.get("state") == "failed"]
    found: dict[str, dict] = {}
    give_up = clock() + grace_s
    while True:
        for task_id in failed:
            if task_id not in found:
                record = pull(task_id)
                if isinstance(record, dict):
                    found[task_id] = record
        if len(found) == len(failed) or clock() >= give_up:
            break
        sleep(1.0)
    return [
        {"task_id": task_id, "state": "failed", **found.get(task_id, {
            "error_type": None, "try_number": None,
            "message": "no message recorded: the task did not reach its failure callback (killed, out of memory, "
                       "or failed by the scheduler); its log says what happened",
        })}
        for task_id in failed
    ]


def run_facts(context: Any, *, grace_s: float = FAILURE_GRACE_S) -> dict:
    """The run, its Params and its tasks' outcomes, for :func:`pipeline.report.build_report`.

    Never raises: what cannot be read is reported as unavailable, since the report must be written
    whatever happened."""
    dag_run, ti = context["dag_run"], context["ti"]
    facts: dict[str, Any] = {
        "run": {
            "dag_id": dag_run.dag_id,
            "run_id": dag_run.run_id,
            "run_type": getattr(getattr(dag_run, "run_type", None), "value", getattr(dag_run, "run_type", None)),
            # Airflow 3.3 hands tasks the triggering user, not `triggered_by` (cli, ui, rest_api, ...).
            "triggering_user": getattr(dag_run, "triggering_user_name", None),
            "clear_number": getattr(dag_run, "clear_number", None),
            "logical_date": _iso(getattr(dag_run, "logical_date", None)),
            "run_after": _iso(getattr(dag_run, "run_after", None)),
            "started_at": _iso(getattr(dag_run, "start_date", None)),
            "finished_at": datetime.now(UTC).isoformat(),
        },
        "params": _plain(context.get("params") or {}),
    }
    try:
        order = getattr(context.get("dag"), "task_ids", None) or ()
        states = task_states(ti.get_task_breadcrumbs(dag_run.dag_id, dag_run.run_id), order)
    except Exception as exc:
        log.exception("could not read the task states of run %s", dag_run.run_id)
        facts.update(tasks=None, failed_tasks=[], tasks_error=f"{type(exc).__name__}: {exc}")
        return facts
    states.pop(ti.task_id, None)  # the report itself is running

    def pull(task_id: str) -> dict | None:
        try:
            return ti.xcom_pull(task_ids=task_id, key=FAILURE_XCOM_KEY)
        except Exception:
            log.exception("could not read the failure of %s", task_id)
            return None

    facts.update(tasks=states, failed_tasks=failed_tasks(states, pull, grace_s=grace_s))
    return facts
