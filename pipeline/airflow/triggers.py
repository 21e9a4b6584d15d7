"""The deferrable wait for a rebuild: polls the change history in the triggerer, holding no worker slot.

``run()`` never raises: every ending, good or bad, is a TriggerEvent whose ``outcome`` the sensor's
``execute_complete`` turns into success or the right exception. An ``error`` event says whether a retry
of the sensor may cure it (``transient``: the API kept failing) or not (refused credentials, a bad
connection): the DAG's retry policy fails the latter at once (pipeline/airflow/failures.py). The
absolute deadline lives in the handle (``deadline_at``), because ``airflow dags test`` does not enforce
``defer(timeout=...)``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from pipeline.airflow.failures import is_terminal
from pipeline.opensearch.rebuild import RebuildHandle, RebuildSettings, WaitState

# Consecutive failed polls (after which the API has been failing for several intervals) that end the wait.
MAX_CONSECUTIVE_ERRORS = 10


class RebuildTrigger(BaseTrigger):
    """Polls one generation until it is ready, fails, stops, stalls or the deadline passes."""

    def __init__(self, handle: dict, settings: dict, state: dict | None = None,
                 waiting_since: float | None = None) -> None:
        super().__init__()
        self.handle = handle
        self.settings = settings
        self.state = state or {}
        # When the sensor began waiting: every event carries it back, for the wait_seconds metric (a
        # defer(kwargs=...) would not survive `airflow dags test`, which resumes with the event alone).
        self.waiting_since = waiting_since

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"handle": self.handle, "settings": self.settings, "state": self.state,
             "waiting_since": self.waiting_since},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async for event in self._run():
            event.payload["waiting_since"] = self.waiting_since
            yield event

    async def _run(self) -> AsyncIterator[TriggerEvent]:
        handle = RebuildHandle.from_dict(self.handle)
        settings = RebuildSettings(**self.settings)
        state = WaitState(**self.state)
        errors = 0
        try:
            from pipeline.opensearch.connection import OpenSearchConnection
            from pipeline.opensearch.management import OpenSearchManagement
            from pipeline.opensearch.rebuild import assess, observe_async

            mgmt = OpenSearchManagement(await OpenSearchConnection.from_airflow_async(handle.conn_id))
            while True:
                now = time.time()
                try:
                    verdict = assess(handle, await observe_async(mgmt, handle), state, now, settings)
                    errors = 0
                except Exception as exc:  # a failed poll is not the end: the API may recover...
                    if is_terminal(exc):
                        # ...unless it cannot: refused credentials, an expired static token.
                        yield TriggerEvent(_event("error", f"{type(exc).__name__}: {exc}", state, transient=False))
                        return
                    errors += 1
                    self.log.warning("poll %d of generation %s failed: %s", errors, handle.generation_id, exc)
                    if errors >= MAX_CONSECUTIVE_ERRORS or now >= handle.deadline_at:
                        message = f"gave up polling after {errors} failed polls: {exc}"
                        # A retry re-checks the generation (the API may be back), unless the deadline passed.
                        yield TriggerEvent(_event("error", message, state, transient=now < handle.deadline_at))
                        return
                    await asyncio.sleep(min(settings.poll_interval_s, max(0.0, handle.deadline_at - now)) or 0.1)
                    continue
                state = verdict.state
                if verdict.outcome != "waiting":
                    yield TriggerEvent(_event(verdict.outcome, verdict.message, state, verdict.fsm_id, verdict.figures))
                    return
                self.log.info("%s", verdict.message)
                await asyncio.sleep(max(0.0, min(settings.poll_interval_s, handle.deadline_at - time.time())))
        except Exception as exc:  # never raise out of run(): report it as an event instead
            yield TriggerEvent(_event("error", f"{type(exc).__name__}: {exc}", state, transient=not is_terminal(exc)))


def _event(
    outcome: str, message: str, state: WaitState, fsm_id: str | None = None, figures: dict | None = None, *,
    transient: bool = False,
) -> dict:
    event = {"outcome": outcome, "message": message, "state": asdict(state), "fsm_id": fsm_id, "figures": figures,
             "at": time.time()}
    if outcome == "error":
        event["transient"] = transient
    return event
