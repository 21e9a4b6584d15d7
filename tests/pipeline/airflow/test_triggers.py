"""The rebuild trigger serializes to an importable path and JSON kwargs, and back."""

from __future__ import annotations

import json

from airflow.sdk.module_loading import import_string

from pipeline.airflow.triggers import RebuildTrigger
from pipeline.opensearch.rebuild import RebuildHandle, RebuildSettings

HANDLE = RebuildHandle("os_conn", "ha-cn-x", "images", "20261123", 7, [5, 6], 1000.0, 5000.0).as_dict()
SETTINGS = {"poll_interval_s": 5.0, "stall_timeout_s": 60.0, "deadline_s": 4000.0, "new_generation_timeout_s": 30.0}


def test_serialize_round_trip() -> None:
    trigger = RebuildTrigger(HANDLE, SETTINGS, {"fingerprint": "x", "last_progress_at": 1200.0}, waiting_since=900.5)
    path, kwargs = trigger.serialize()
    assert path == "pipeline.airflow.triggers.RebuildTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # JSON-able: the triggerer stores it in the DB
    again = import_string(path)(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert RebuildHandle.from_dict(kwargs["handle"]).generation_id == 7
    assert RebuildSettings(**kwargs["settings"]).stall_timeout_s == 60.0
    assert kwargs["waiting_since"] == 900.5  # every event carries it back: the sensor's wait_seconds


def test_an_api_that_keeps_failing_ends_the_wait_retryably_unless_the_deadline_passed(monkeypatch) -> None:
    """Ten failed polls in a row end the wait; the sensor's retry may find the API back, so the event is
    transient, unless the deadline passed meanwhile (a retry could only fail again)."""
    import asyncio
    import time

    from pipeline.airflow import triggers
    from pipeline.errors import TransientOpenSearchError
    from pipeline.opensearch.connection import OpenSearchConnection

    async def connection(conn_id: str) -> object:
        return object()

    async def failing_poll(mgmt: object, handle: object) -> None:
        raise TransientOpenSearchError("management API answered 503 ServiceUnavailable")

    monkeypatch.setattr(triggers, "MAX_CONSECUTIVE_ERRORS", 2)
    monkeypatch.setattr(OpenSearchConnection, "from_airflow_async", connection)
    monkeypatch.setattr("pipeline.opensearch.management.OpenSearchManagement", lambda conn: object())
    monkeypatch.setattr("pipeline.opensearch.rebuild.observe_async", failing_poll)
    settings = {**SETTINGS, "poll_interval_s": 0.01}

    async def events(handle: dict) -> list[dict]:
        return [event.payload async for event in RebuildTrigger(handle, settings, waiting_since=12.5).run()]

    (event,) = asyncio.run(events({**HANDLE, "deadline_at": time.time() + 3600}))
    assert event["outcome"] == "error" and event["transient"] is True
    assert event["waiting_since"] == 12.5
    assert "gave up polling after 2 failed polls" in event["message"] and "503" in event["message"]
    (event,) = asyncio.run(events({**HANDLE, "deadline_at": time.time() - 1}))
    assert event["outcome"] == "error" and event["transient"] is False
