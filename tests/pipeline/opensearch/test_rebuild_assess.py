"""The rebuild verdicts, judged by the pure ``assess`` that the trigger and the sync wait share."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pipeline.errors import (
    RebuildDeadlineError,
    RebuildFailedError,
    RebuildIncompleteError,
    RebuildNotSwitchedError,
    RebuildStalledError,
)
from pipeline.opensearch.rebuild import (
    Observation,
    RebuildHandle,
    RebuildSettings,
    WaitState,
    active_pauses,
    assess,
    pick_task,
    raise_for,
    rebuild_decision,
    task_state,
)

SETTINGS = RebuildSettings(poll_interval_s=10, stall_timeout_s=600, deadline_s=3600)
HANDLE = RebuildHandle("os", "ha-cn-test", "images", "20261123", 42, [41], started_at=1000.0, deadline_at=4600.0)
TASK = {"fsmId": "fsm-7", "name": "reindex ds=20261123", "status": "running", "time": 1001000,
        "taskNodes": [{"name": "build_index", "status": "running"}]}


DONE = {**TASK, "status": "success", "taskNodes": [{"name": "build_index", "status": "success"},
                                                   {"name": "switch", "status": "success"}]}


def test_ready_failed_and_stopped() -> None:
    assert assess(HANDLE, Observation("ready", DONE), WaitState(), 1100, SETTINGS).outcome == "ready"
    failed = assess(HANDLE, Observation("failed", TASK), WaitState(), 1100, SETTINGS)
    assert failed.outcome == "failed" and "generation 42" in failed.message and "task fsm-7" in failed.message
    with pytest.raises(RebuildFailedError, match="is failed; change history: task fsm-7"):
        raise_for(failed)
    stopped = assess(HANDLE, Observation("stopped", None), WaitState(), 1100, SETTINGS)
    with pytest.raises(RebuildFailedError, match="is stopped; no change-history task found"):
        raise_for(stopped)


def test_progress_resets_the_stall_clock_and_silence_stalls() -> None:
    first = assess(HANDLE, Observation("building", TASK), WaitState(), 1100, SETTINGS)
    assert first.outcome == "waiting" and first.state.last_progress_at == 1100
    same = assess(HANDLE, Observation("building", TASK), first.state, 1600, SETTINGS)
    assert same.outcome == "waiting" and same.state.last_progress_at == 1100
    moved = {**TASK, "taskNodes": [{"name": "build_index", "status": "done"}, {"name": "switch", "status": "running"}]}
    progressed = assess(HANDLE, Observation("building", moved), same.state, 1650, SETTINGS)
    assert progressed.state.last_progress_at == 1650
    stalled = assess(HANDLE, Observation("building", moved), progressed.state, 2250, SETTINGS)
    assert stalled.outcome == "stalled"
    with pytest.raises(RebuildStalledError, match=r"no progress for 10 min .*ForceSwitch\(instanceId=ha-cn-test, fsmId=fsm-7\)"):
        raise_for(stalled)


def test_deadline_is_absolute() -> None:
    busy = {**TASK, "taskNodes": [{"name": "build_index", "status": "running 99%"}]}
    verdict = assess(HANDLE, Observation("building", busy), WaitState(), 4600, SETTINGS)
    assert verdict.outcome == "deadline"
    with pytest.raises(RebuildDeadlineError, match="at the deadline .*old index keeps serving"):
        raise_for(verdict)
    # ... but a generation that is ready and switched in at the deadline is live,
    assert assess(HANDLE, Observation("ready", DONE), WaitState(), 9999, SETTINGS).outcome == "ready"
    # and one that is built but still unswitched there says so.
    unswitched = assess(HANDLE, Observation("ready", busy), WaitState(), 9999, SETTINGS)
    with pytest.raises(RebuildNotSwitchedError, match="built \\(ready\\) but was not switched in at the deadline"):
        raise_for(unswitched)


def test_ready_alone_is_not_live_until_the_task_has_switched_it_in() -> None:
    switching = {**TASK, "taskNodes": [{"name": "build_index", "status": "success"}, {"name": "switch", "status": "running"}]}
    first = assess(HANDLE, Observation("ready", switching), WaitState(), 1100, SETTINGS)
    assert first.outcome == "waiting" and "built (ready); waiting for its switch" in first.message
    assert assess(HANDLE, Observation("ready", switching), first.state, 1600, SETTINGS).outcome == "waiting"
    never = assess(HANDLE, Observation("ready", switching), first.state, 1100 + 600, SETTINGS)
    assert never.outcome == "unswitched" and never.fsm_id == "fsm-7"
    with pytest.raises(
        RebuildNotSwitchedError,
        match=r"is built \(ready\) but was not switched in after 10 min without progress; change history: task fsm-7 .*"
        r"switch=running.*old index keeps serving.*ModifyPausePolicy.*ForceSwitch\(instanceId=ha-cn-test, fsmId=fsm-7\)",
    ):
        raise_for(never)
    assert isinstance(RebuildNotSwitchedError("x"), RebuildStalledError)  # a stall, of a special kind
    # No task found at all: nothing proves the switch, so the wait cannot end in "ready".
    assert assess(HANDLE, Observation("ready", None), WaitState(), 1100, SETTINGS).outcome == "waiting"
    failed_switch = assess(HANDLE, Observation("ready", {**switching, "status": "failed"}), WaitState(), 1100, SETTINGS)
    with pytest.raises(RebuildFailedError, match="built \\(ready\\) but its change-history task ended badly"):
        raise_for(failed_switch)


def test_a_live_generation_is_judged_by_its_figures_against_the_partition() -> None:
    judged = replace(HANDLE, partition_rows=200, live_ds_before="20261122")
    full = assess(judged, Observation("ready", DONE, {"status": "ready", "docCount": 200}), WaitState(), 1100, SETTINGS)
    assert full.outcome == "ready" and full.figures["unindexed"] == 0 and full.message.endswith("200 of 200 rows indexed")
    # 2 of 200 = 1% is at the limit, not over it; 3 are over it. Counts may come as strings.
    gen = {"status": "ready", "docCount": "198", "failures": 2, "failureExamples": [{"pk": 7, "image": "/a/7.jpg", "reason": "x"}]}
    assert assess(judged, Observation("ready", DONE, gen), WaitState(), 1100, SETTINGS).outcome == "ready"
    short = assess(judged, Observation("ready", DONE, {**gen, "docCount": 197}), WaitState(), 1100, SETTINGS)
    assert short.outcome == "incomplete" and short.figures["unindexed_fraction"] == 0.015 and short.fsm_id == "fsm-7"
    with pytest.raises(RebuildIncompleteError, match=r"generation 42 .* went live lacking too many of the partition's "
                       r"rows: 197 of 200 rows indexed \(3 = 1.5% not indexed\); the build left out 2 .* e.g. 7 /a/7.jpg "
                       r"\(x\); that is more than guards.max_unindexed_fraction \(1.0%\).*ALREADY SWITCHED IN.*task fsm-7.*"
                       r"partition_date=20261122 .* force_rebuild=true"):
        raise_for(short)
    # A handle from before the figures (no partition rows), or a service that reports none: never failed.
    old = assess(HANDLE, Observation("ready", DONE, {"status": "ready", "docCount": 5}), WaitState(), 1100, SETTINGS)
    assert old.outcome == "ready" and "5 documents indexed (the partition's row count was not handed" in old.message
    silent = assess(judged, Observation("ready", DONE, {"status": "ready"}), WaitState(), 1100, SETTINGS)
    assert silent.outcome == "ready" and "reported no document count" in silent.message
    assert RebuildSettings().max_unindexed_fraction == 0.01


@pytest.mark.parametrize(
    ("task", "state"),
    [
        ({"status": "success"}, "finished"),
        ({"status": "SUCCESS"}, "finished"),
        ({"status": "running", "taskNodes": [{"name": "switch", "status": "success"}]}, "unfinished"),
        ({"status": "waiting"}, "unfinished"),
        ({"status": "failed"}, "failed"),
        ({"status": "stopped"}, "failed"),
        # the docs' example status is "2": then the nodes decide, flat or nested in nodeInfo
        ({"status": "2", "taskNodes": [{"nodeInfo": {"name": "build", "status": "SUCCESS"}},
                                       {"nodeInfo": {"name": "switch", "status": "SUCCESS"}}]}, "finished"),
        ({"status": "2", "taskNodes": [{"nodeInfo": {"name": "switch", "status": "RETRY"}}]}, "unfinished"),
        ({"status": "2", "taskNodes": [{"name": "switch", "status": "FAILED"}]}, "failed"),
        ({"status": "2"}, "unfinished"),
        (None, "unfinished"),
    ],
)
def test_task_states_are_read_defensively(task: dict | None, state: str) -> None:
    assert task_state(task) == state


def test_pick_task_prefers_the_one_naming_the_generation() -> None:
    older = {**TASK, "fsmId": "old", "time": 10}
    newer = {**TASK, "fsmId": "new", "time": 1002}
    tagged = {**TASK, "fsmId": "mine", "time": 999, "tags": {"generationId": "42"}}
    assert pick_task([older, newer, tagged], HANDLE)["fsmId"] == "mine"
    assert pick_task([older, newer], HANDLE)["fsmId"] == "new"
    assert pick_task([older], HANDLE) is None
    # generation 42 is not generation 420; a task of our table beats a newer one of another table
    other_gen = {**TASK, "fsmId": "other", "time": 1003, "tags": [{"msg": "generation 420 written"}]}
    other_table = {**TASK, "fsmId": "x@ha-cn-test_shoes@MANUAL-ha-cn-test_shoes@1", "name": "general", "time": 1005}
    our_table = {**TASK, "fsmId": "x@ha-cn-test_images@MANUAL-ha-cn-test_images@1", "name": "general", "time": 1004}
    assert pick_task([other_gen, other_table, our_table], HANDLE)["fsmId"] == our_table["fsmId"]


def test_rebuild_decision_never_rolls_back_silently() -> None:
    assert rebuild_decision("20261123", ["20261122", "20261123"])[0] is True
    go, reason = rebuild_decision("20261120", ["20261120", "20261123"])
    assert go is False and "older than the newest partition ds=20261123" in reason and "force_rebuild" in reason
    assert rebuild_decision("20261120", ["20261120", "20261123"], force=True)[0] is True
    assert rebuild_decision("20261123", ["20261123"], skip=True) == (
        False, "the skip_rebuild Param is set: the partition is written, the index left as it is"
    )


def test_active_pauses() -> None:
    assert active_pauses({"images": {"pauseIndex": True, "pauseBiz": True}, "other": {"pauseAll": False}}) == ["images.pauseIndex"]
    assert active_pauses({}) == []
