"""Fail fast on what retries cannot fix: the DAG's retry policy, read from our error hierarchy.

``pipeline/errors.py`` already says which errors a retry may cure (``PipelineError.transient``). This
module hands that verdict to Airflow through the task SDK's retry policy (``retry_policy``, Airflow
3.3; set once in the DAG's ``default_args``, so every task has it, the deferrable sensor's
``execute_complete`` included, and so does any task added later):

* a terminal :class:`~pipeline.errors.PipelineError` (a bad Param, refused credentials, a failed guard,
  a failed build, ...) fails the task on the spot, whatever ``retries`` says: a retry would only repeat
  the failure hours later, after the delays;
* a transient one (5xx, throttling, an unreachable service) and any exception we did not raise on
  purpose fall through to the task's ``retries`` with their delays, as before.

The exception itself is untouched: the task log shows it with its own message (what happened and what
to do) and cause chain, then the policy's decision and reason (``Retry policy decision action=fail``).
This replaces wrapping each task in a ``try/except`` that re-raises ``AirflowFailException``: the SDK
consults the policy on every failure path (``_handle_current_task_failed`` in
``airflow/sdk/execution_time/task_runner.py``), and it never sees ``AirflowFailException`` at all.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import RetryDecision, RetryPolicy

from pipeline.errors import PipelineError


def is_terminal(exc: BaseException) -> bool:
    """True when repeating the task cannot help: a PipelineError not marked ``transient``."""
    return isinstance(exc, PipelineError) and not exc.transient


class FailFastPolicy(RetryPolicy):
    """Terminal pipeline errors fail at once; transient ones retry; anything else follows ``retries``."""

    def evaluate(
        self, exception: BaseException, try_number: int, max_tries: int, context: Any = None
    ) -> RetryDecision:
        name = type(exception).__name__
        if is_terminal(exception):
            return RetryDecision.fail(
                reason=f"{name} is terminal: a retry cannot fix it (try {try_number}); see the error above for what to do"
            )
        if isinstance(exception, PipelineError):
            return RetryDecision.retry(reason=f"{name} is transient: retrying within the task's retries")
        return RetryDecision.default()  # not ours: we cannot tell, so the task's retries decide

    def serialize(self) -> dict[str, Any]:
        # Never stored (Airflow keeps only a has_retry_policy flag, the worker re-parses the DAG); here
        # for completeness of the interface.
        return {"__type": f"{type(self).__module__}.{type(self).__qualname__}"}

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> FailFastPolicy:
        return cls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
