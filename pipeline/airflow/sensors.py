"""The sensor that waits until a rebuilt index is live, deferring to :class:`RebuildTrigger`.

A live generation lacking too many of the partition's rows (``incomplete``) fails the task without
retries: a retry would judge the same generation again, and the index is already switched in.
A wait that ends ready sends the index's ``build_seconds`` and ``wait_seconds`` (pipeline/airflow/metrics.py).
"""

from __future__ import annotations

import time
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowSkipException

from pipeline.airflow.triggers import RebuildTrigger


class RebuildSensor(BaseSensorOperator):
    """Cheap check first (an already-finished generation needs no deferral), then defer."""

    template_fields = ("handle",)
    ui_color = "#cfe8ff"

    def __init__(self, *, handle: Any, settings: dict, index: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.handle = handle
        self.settings = settings
        self.index = index  # the index the metrics are sent for (None: none are sent)

    def _send_wait_metrics(self, ready_at: float | None, waiting_since: float | None) -> None:
        from pipeline.airflow.metrics import send_gauges, wait_metrics

        if self.index:
            send_gauges(self.index, wait_metrics(self.handle, ready_at, waiting_since))

    def execute(self, context: Any) -> dict:
        from pipeline.opensearch.connection import OpenSearchConnection
        from pipeline.opensearch.management import OpenSearchManagement
        from pipeline.opensearch.rebuild import RebuildHandle, RebuildSettings, WaitState, assess, observe, raise_for

        if not self.handle:
            raise AirflowSkipException("no rebuild was started for this run")
        waiting_since = time.time()
        handle = RebuildHandle.from_dict(self.handle)
        settings = RebuildSettings(**self.settings)
        mgmt = OpenSearchManagement(OpenSearchConnection.from_airflow(handle.conn_id))
        verdict = assess(handle, observe(mgmt, handle), WaitState(), time.time(), settings)
        if verdict.outcome == "ready":
            self.log.info("%s", verdict.message)
            ready = {"outcome": "ready", "message": verdict.message, "fsm_id": verdict.fsm_id,
                     "figures": verdict.figures, "at": time.time()}
            self._send_wait_metrics(ready["at"], waiting_since)
            return ready
        raise_for(verdict)  # an incomplete generation is terminal: the DAG's retry policy fails it at once
        self.defer(
            trigger=RebuildTrigger(handle.as_dict(), self.settings, {"fingerprint": verdict.state.fingerprint, "last_progress_at": verdict.state.last_progress_at},
                                   waiting_since=waiting_since),  # back in the event: the wait's length
            method_name="execute_complete",
        )

    def execute_complete(self, context: Any, event: dict) -> dict:
        from pipeline.errors import RebuildError, TransientOpenSearchError
        from pipeline.opensearch.rebuild import Verdict, WaitState, raise_for

        outcome = event.get("outcome")
        if outcome == "ready":
            self.log.info("%s", event.get("message"))
            self._send_wait_metrics(event.get("at"), event.get("waiting_since"))
            return event
        if outcome == "error":
            # Terminal (credentials refused, ...) fails at once; transient (the API kept failing) retries
            # and the retry re-checks the generation. Events without the flag predate it: retry, as before.
            error = TransientOpenSearchError if event.get("transient", True) else RebuildError
            raise error(f"waiting for the rebuild failed: {event.get('message')}")
        raise_for(Verdict(outcome, event.get("message", ""), WaitState(**event.get("state", {})), event.get("fsm_id")))
        raise RebuildError(f"unexpected trigger event {event!r}")

