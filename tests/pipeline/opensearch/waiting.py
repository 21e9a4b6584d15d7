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


def leave_as_found(stack) -> None:
    """Leave the shared local OpenSearch as tests found it: no pending fault, no pause, nothing building."""
    engine = stack.opensearch.engine
    faults = engine.faults
    faults.fail_next_build = None
    faults.stop_next_generation = faults.stall_next_build = False
    faults.hold_switch_next_build = faults.switch_during_next_query = False
    faults.phase_delay_s = faults.register_delay_s = 0.0
    engine.auto_build_index.discard(TABLE)
    stack.opensearch.http_faults.lose_reindex_answer_next = 0
    stack.opensearch.report_build_figures = True
    engine.release_stalled_builds()
    engine.modify_pause_policy({"general": {"pauseIndex": False, "pauseAll": False}})
    settle(engine)
