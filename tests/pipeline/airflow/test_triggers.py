"""The rebuild trigger serializes to an importable path and JSON kwargs, and back."""

from __future__ import annotations

import json

from airflow.sdk.module_loading import import_string

from pipeline.airflow.triggers import RebuildTrigger
from pipeline.opensearch.rebuild import RebuildHandle, RebuildSettings

HANDLE = RebuildHandle("os_conn", "ha-cn-x", "images", "20261123", 7, [5, 6], 1000.0, 5000.0).as_dict()
SETTINGS = {"poll_interval_s": 5.0, "stall_timeout_s": 60.0, "deadline_s": 4000.0, "new_generation_timeout_s": 30.0}


def test_serialize_round_trip() -> None:
    trigger = RebuildTrigger(HANDLE, SETTINGS, {"fingerprint": "x", "last_progress_at": 1200.0})
    path, kwargs = trigger.serialize()
    assert path == "pipeline.airflow.triggers.RebuildTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs  # JSON-able: the triggerer stores it in the DB
    again = import_string(path)(**kwargs)
    assert again.serialize() == (path, kwargs)
    assert RebuildHandle.from_dict(kwargs["handle"]).generation_id == 7
    assert RebuildSettings(**kwargs["settings"]).stall_timeout_s == 60.0
