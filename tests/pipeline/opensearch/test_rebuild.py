"""The rebuild and the wait through the real management SDK against the local OpenSearch server.

Each way a rebuild can go wrong ends with its own error and message: a failed build, a stopped
generation, a stall, an active pause policy, the deadline. Fault knobs of the local server stand in
for the real service's failures.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.airflow.triggers import RebuildTrigger
from pipeline.errors import (
    OpenSearchAccessError,
    PreflightError,
    RebuildDeadlineError,
    RebuildFailedError,
    RebuildNotSwitchedError,
    RebuildStalledError,
    ReindexNotStartedError,
    TransientOpenSearchError,
)
from pipeline.opensearch.connection import OpenSearchConnection
from pipeline.opensearch.management import OpenSearchManagement
from pipeline.opensearch.rebuild import (
    RebuildAttempt,
    RebuildSettings,
    preflight,
    resume_rebuild,
    start_rebuild,
    wait_until_ready,
)
from pipeline.retry import RetryPolicy
from pipeline.stages import load_partition

FAST = RebuildSettings(poll_interval_s=0.1, stall_timeout_s=30, deadline_s=60, new_generation_timeout_s=10)
TABLE = "demo_images"
DS = "20261201"


@pytest.fixture(scope="module")
def conn(demo_stack) -> OpenSearchConnection:
    _, stack, config = demo_stack
    load_partition(config, DS, publish=True)
    return OpenSearchConnection.from_airflow("opensearch_local")


def no_sleep() -> RetryPolicy:
    return RetryPolicy(attempts=4, sleep=lambda _s: None)


def test_management_calls_through_the_sdk(conn, engine) -> None:
    mgmt = OpenSearchManagement(conn)
    assert mgmt.instance()["status"] == "READY"
    assert mgmt.table(TABLE)["status"] == "IN_USE"
    assert preflight(mgmt, TABLE) == {"instance_status": "READY", "table_status": "IN_USE", "pauses": [], "warnings": []}
    assert isinstance(mgmt.generation_ids(TABLE), list)
    assert "general" in mgmt.pause_policies()


def test_wrong_secret_is_a_clear_signature_error(conn) -> None:
    bad = OpenSearchConnection.from_fields(
        "os_bad",
        {**_extra(conn), "access_key_secret": "definitely-wrong"},
        conn.query_user,
        conn.query_password,
    )
    with pytest.raises(OpenSearchAccessError) as err:
        OpenSearchManagement(bad, no_sleep()).instance()
    assert "SignatureDoesNotMatch" in str(err.value) and "connection 'os_bad'" in str(err.value)
    assert "definitely-wrong" not in str(err.value)


def test_5xx_and_throttling_are_retried_honouring_retry_after(conn, demo_stack) -> None:
    _, stack, _ = demo_stack
    faults = stack.opensearch.http_faults
    slept: list[float] = []
    mgmt = OpenSearchManagement(conn, RetryPolicy(attempts=4, initial_wait_s=0.01, max_wait_s=0.02, sleep=slept.append))
    faults.unavailable_next = 1
    faults.throttle_next = 1
    faults.throttle_retry_after = 1500  # milliseconds, as the SDK reads x-acs-retry-after
    assert mgmt.instance()["status"] == "READY"
    assert len(slept) == 2 and max(slept) >= 1.5
    faults.unavailable_next = 10
    with pytest.raises(TransientOpenSearchError, match="answered 503"):
        OpenSearchManagement(conn, no_sleep()).instance()
    faults.unavailable_next = 0


def test_rebuild_goes_live(conn, engine) -> None:
    mgmt = OpenSearchManagement(conn)
    handle = start_rebuild(mgmt, TABLE, DS, FAST)
    assert handle.generation_id not in handle.previous_generation_ids
    verdict = wait_until_ready(mgmt, handle, FAST)
    assert verdict.outcome == "ready" and verdict.fsm_id


def test_the_wait_says_so_when_the_build_is_already_live(conn, engine, caplog, capsys) -> None:
    """The sensor's first, cheap check finds the generation live: it ends without deferring, and its log
    says what it found (issue 11: it used to end silently)."""
    from dataclasses import asdict

    from pipeline.airflow.sensors import RebuildSensor

    mgmt = OpenSearchManagement(conn)
    handle = start_rebuild(mgmt, TABLE, DS, FAST)
    assert wait_until_ready(mgmt, handle, FAST).outcome == "ready"
    sensor = RebuildSensor(task_id="wait_until_searchable", handle=handle.as_dict(), settings=asdict(FAST))
    with caplog.at_level("INFO"):
        result = sensor.execute({})
    assert result["outcome"] == "ready"
    # The operator's logger is the task SDK's (structlog): outside a task it writes to stdout.
    logged = caplog.text + capsys.readouterr().out
    assert f"generation {handle.generation_id}" in result["message"] and "is ready" in logged
    assert result["message"][:80] in logged


def test_failed_build(conn, engine) -> None:
    engine.faults.fail_next_build = "disk full on the build node"
    mgmt = OpenSearchManagement(conn)
    handle = start_rebuild(mgmt, TABLE, DS, FAST)
    with pytest.raises(RebuildFailedError, match=rf"generation {handle.generation_id} .* is failed; change history: task") as err:
        wait_until_ready(mgmt, handle, FAST)
    assert "disk full on the build node" in str(err.value)  # the change history's own words


def test_stopped_generation(conn, engine) -> None:
    engine.faults.stop_next_generation = True
    mgmt = OpenSearchManagement(conn)
    handle = start_rebuild(mgmt, TABLE, DS, FAST)
    with pytest.raises(RebuildFailedError, match="is stopped"):
        wait_until_ready(mgmt, handle, FAST)


def test_stall_names_the_task_and_the_force_switch(conn, engine) -> None:
    engine.faults.stall_next_build = True
    mgmt = OpenSearchManagement(conn)
    settings = RebuildSettings(poll_interval_s=0.1, stall_timeout_s=1.0, deadline_s=60)
    handle = start_rebuild(mgmt, TABLE, DS, settings)
    with pytest.raises(RebuildStalledError, match=r"made no progress .* ForceSwitch\(instanceId=ha-cn-local-demo, fsmId=\S+\)"):
        wait_until_ready(mgmt, handle, settings)


def test_a_built_generation_that_is_never_switched_in_ends_the_wait(conn, engine) -> None:
    """``ready`` is not live: the wait ends within the stall timeout, saying built-not-switched and the remedy."""
    engine.faults.hold_switch_next_build = True
    mgmt = OpenSearchManagement(conn)
    live_before = engine.live_generation_id(TABLE)
    settings = RebuildSettings(poll_interval_s=0.1, stall_timeout_s=4.0, deadline_s=60)  # the build moves on
    handle = start_rebuild(mgmt, TABLE, DS, settings)
    with pytest.raises(
        RebuildNotSwitchedError,
        match=rf"generation {handle.generation_id} .* is built \(ready\) but was not switched in after .* without "
        r"progress; change history: task \S+ .* is running \[.*switch=running\].*old index keeps serving"
        r".*ForceSwitch\(instanceId=ha-cn-local-demo, fsmId=\S+\)",
    ):
        wait_until_ready(mgmt, handle, settings)
    assert engine.live_generation_id(TABLE) == live_before  # the old generation still answers

    # The trigger, too: it finds the generation built and its task still at the switch (1 s of silence).
    trigger_settings = {"poll_interval_s": 0.1, "stall_timeout_s": 1.0, "deadline_s": 60.0, "new_generation_timeout_s": 10.0}
    (event,) = asyncio.run(_events(RebuildTrigger(handle.as_dict(), trigger_settings)))
    assert event["outcome"] == "unswitched" and "not switched in" in event["message"] and event["fsm_id"]


def test_active_pause_policy_stops_the_run_before_reindex(conn, engine) -> None:
    engine.modify_pause_policy({"general": {"pauseIndex": True}})
    mgmt = OpenSearchManagement(conn)
    before = mgmt.generation_ids(TABLE)
    with pytest.raises(PreflightError, match=r"pause switches on \(general.pauseIndex\).*never go live"):
        preflight(mgmt, TABLE)
    assert mgmt.generation_ids(TABLE) == before  # nothing was started


def test_deadline_bounds_the_wait(conn, engine) -> None:
    engine.faults.phase_delay_s = 0.5
    mgmt = OpenSearchManagement(conn)
    settings = RebuildSettings(poll_interval_s=0.1, stall_timeout_s=30, deadline_s=0.3)
    handle = start_rebuild(mgmt, TABLE, DS, settings)
    with pytest.raises(RebuildDeadlineError, match="at the deadline"):
        wait_until_ready(mgmt, handle, settings)


async def _events(trigger: RebuildTrigger) -> list[dict]:
    return [event.payload async for event in trigger.run()]


def test_trigger_events_ready_failed_and_error(conn, engine) -> None:
    mgmt = OpenSearchManagement(conn)
    settings = {"poll_interval_s": 0.1, "stall_timeout_s": 30.0, "deadline_s": 60.0, "new_generation_timeout_s": 10.0}
    ready = start_rebuild(mgmt, TABLE, DS, FAST)
    (event,) = asyncio.run(_events(RebuildTrigger(ready.as_dict(), settings)))
    assert event["outcome"] == "ready" and "is ready" in event["message"]

    engine.faults.fail_next_build = "bad partition data"
    failing = start_rebuild(mgmt, TABLE, DS, FAST)
    (event,) = asyncio.run(_events(RebuildTrigger(failing.as_dict(), settings)))
    assert event["outcome"] == "failed" and str(failing.generation_id) in event["message"]

    orphan = {**failing.as_dict(), "conn_id": "no_such_connection"}
    (event,) = asyncio.run(_events(RebuildTrigger(orphan, settings)))  # never raises: an error event
    assert event["outcome"] == "error" and "no_such_connection" in event["message"]
    assert event["transient"] is False  # a missing connection: the sensor fails without retry


# -- one build at a time (issue 9, item 5) ---------------------------------------------------------


def test_preflight_refuses_while_a_build_of_the_table_is_under_way(conn, engine) -> None:
    mgmt = OpenSearchManagement(conn)
    engine.faults.stall_next_build = True
    building = start_rebuild(mgmt, TABLE, DS, FAST)
    # Just started, the generation may still be starting (a loaded machine) or already building.
    with pytest.raises(PreflightError, match=rf"already building generation {building.generation_id} "
                       r"\((starting|building)\); one build at a time per table"):
        preflight(mgmt, TABLE)
    assert engine.wait_for(lambda: any(n["name"] == "build_index" and n["status"] == "running"
                                       for t in engine.list_tasks() for n in t["taskNodes"]), 30)
    engine.release_stalled_builds()  # (a release before the stall does not count)
    wait_until_ready(mgmt, building, FAST)

    engine.faults.hold_switch_next_build = True  # built, never switched in: still this table's build
    held = start_rebuild(mgmt, TABLE, DS, FAST)
    while mgmt.generation(TABLE, held.generation_id).get("status") != "ready":
        time.sleep(0.05)
    with pytest.raises(PreflightError, match=r"has an unfinished change: change history: task (\S+) .*switch=running.*"
                       r"ForceSwitch\(instanceId=ha-cn-local-demo, fsmId=\1\)"):
        preflight(mgmt, TABLE)


def test_preflight_warns_when_the_data_source_builds_by_itself(conn, engine) -> None:
    engine.auto_build_index.add(TABLE)  # GetTable: dataSource.autoBuildIndex = true
    seen = preflight(OpenSearchManagement(conn), TABLE)
    (warning,) = seen["warnings"]
    assert "Automatic Index Rebuild on (autoBuildIndex)" in warning and "racing" in warning


def test_a_reindex_whose_answer_is_lost_is_never_repeated(conn, engine, demo_stack) -> None:
    """The build started, the answer never came, the generation registers late: follow it, one build."""
    _, stack, _ = demo_stack
    mgmt = OpenSearchManagement(conn)
    before = set(mgmt.generation_ids(TABLE))
    stack.opensearch.http_faults.lose_reindex_answer_next = 1
    engine.faults.register_delay_s = 1.5
    remembered: list[RebuildAttempt] = []
    handle = start_rebuild(mgmt, TABLE, DS, FAST, remember=remembered.append)
    assert set(mgmt.generation_ids(TABLE)) - before == {handle.generation_id}  # exactly one build
    assert remembered[-1].reindex_sent_at is not None and remembered[-1].previous_generation_ids == sorted(before)
    assert wait_until_ready(mgmt, handle, FAST).outcome == "ready"


def test_a_reindex_that_certainly_started_nothing_is_repeated(conn, engine) -> None:
    closed = OpenSearchConnection.from_fields("os_closed", {**_extra(conn), "endpoint": f"127.0.0.1:{_free_port()}"},
                                              conn.query_user, conn.query_password)
    with pytest.raises(ReindexNotStartedError, match="cannot reach .*the request started nothing"):
        OpenSearchManagement(closed, no_sleep()).reindex(TABLE, f"ds={DS}")

    # The local server cannot refuse one connection and accept the next: the first call goes to a
    # closed port (a real refused connection through the SDK), the second to the server.
    mgmt = OpenSearchManagement(conn)
    refused = OpenSearchManagement(closed, no_sleep())
    calls: list[str] = []

    def reindex(table: str, spec: str, data_time_sec: int | None = None) -> None:
        calls.append(spec)
        (refused if len(calls) == 1 else OpenSearchManagement(conn)).reindex(table, spec, data_time_sec)

    mgmt.reindex = reindex  # type: ignore[method-assign]
    before = set(mgmt.generation_ids(TABLE))
    handle = start_rebuild(mgmt, TABLE, DS, FAST, sleep=lambda _s: None)
    assert len(calls) == 2 and set(mgmt.generation_ids(TABLE)) - before == {handle.generation_id}
    wait_until_ready(mgmt, handle, FAST)


def test_a_rerun_follows_the_build_an_earlier_attempt_started(conn, engine) -> None:
    mgmt = OpenSearchManagement(conn)
    remembered: list[RebuildAttempt] = []
    first = start_rebuild(mgmt, TABLE, DS, FAST, remember=remembered.append)
    again = resume_rebuild(mgmt, remembered[-1], FAST)  # e.g. start_rebuild retried after a timeout
    assert again is not None and again.generation_id == first.generation_id and again.started_at == first.started_at
    wait_until_ready(mgmt, first, FAST)
    assert resume_rebuild(mgmt, remembered[-1], FAST).generation_id == first.generation_id  # even once live

    engine.faults.fail_next_build = "disk full"  # an earlier build that failed is not followed: start anew
    failed_attempt: list[RebuildAttempt] = []
    failed = start_rebuild(mgmt, TABLE, DS, FAST, remember=failed_attempt.append)
    with pytest.raises(RebuildFailedError):
        wait_until_ready(mgmt, failed, FAST)
    assert resume_rebuild(mgmt, failed_attempt[-1], FAST) is None

    # An earlier reindex that may have been sent just now: wait for its late generation, then follow it.
    engine.faults.register_delay_s = 1.0
    snapshot = sorted(mgmt.generation_ids(TABLE))
    mgmt.reindex(TABLE, f"ds={DS}")
    sent = RebuildAttempt(TABLE, DS, snapshot, time.time(), reindex_sent_at=time.time())
    late = resume_rebuild(mgmt, sent, FAST)
    assert late is not None and late.generation_id not in snapshot
    nothing_sent = RebuildAttempt(TABLE, DS, sorted(mgmt.generation_ids(TABLE)), time.time())
    assert resume_rebuild(mgmt, nothing_sent, FAST) is None  # nothing new, nothing sent: start a build


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _extra(conn: OpenSearchConnection) -> dict:
    return {
        "instance_id": conn.instance_id,
        "endpoint": conn.endpoint,
        "protocol": conn.protocol,
        **conn.credentials.values,
        "query_endpoint": conn.query_endpoint,
        "query_protocol": conn.query_protocol,
    }
