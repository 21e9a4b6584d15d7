"""Waiting for the shared local OpenSearch to be idle, so tests that start builds do not overlap."""

from __future__ import annotations

import json
import time

TABLE = "demo_images"


def settle(engine, table: str = TABLE) -> None:
    """Wait (bounded) until every task has finished; a built generation held from its switch is forced in."""
    for _ in range(300):
        unfinished = [t for t in engine.list_tasks() if t["status"] in ("running", "waiting")]
        if not unfinished:
            return
        for task in unfinished:
            if engine.get_generation(table, json.loads(task["extraAttribute"])["generationId"])["status"] == "ready":
                engine.force_switch(task["fsmId"])
        time.sleep(0.05)
    raise AssertionError("a build did not settle within 15 s")
