"""Pushed documents across rebuilds and restarts: what a new generation keeps of them.

Why: the pipeline rebuilds nightly from the warehouse while documents are also pushed; a push that
the warehouse partition does not hold yet must survive the rebuild, and it does only when the reindex
names the time to replay from (``dataTimeSec``), within the 3 days the service keeps increments.
A push that lands while the build runs, or after it is built but before it switches in, must not fall
between the old generation and the new one. A restart must keep what queries saw.
"""

from __future__ import annotations

import time

import pytest
from alibabacloud_searchengine20211025 import models as se_models
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.localcloud.opensearch.test_push import _add, _applied, _lookup, _push
from tests.localcloud.opensearch.test_server import (  # noqa: F401 - oss and stack are fixtures
    IID,
    TABLE,
    Stack,
    _build,
    _generation_ids,
    _ids,
    _make_server,
    _nodes,
    _poll,
    _search,
    _task,
    _wait_final,
    oss,
    stack,
)


def _reindex_at(stack: Stack, ds: str, data_time_sec: int | None) -> int:
    """Reindex ``ds`` with this dataTimeSec (None: without one) and return the new generation id."""
    client = stack.client()
    before = set(_generation_ids(client))
    client.reindex(IID, TABLE, se_models.ReindexRequest(partition=f"ds={ds}", data_time_sec=data_time_sec))
    (gen_id,) = _poll("a new generation", lambda: set(_generation_ids(client)) - before)
    return gen_id


def _rebuild(stack: Stack, ds: str, data_time_sec: int | None) -> int:
    gen_id = _reindex_at(stack, ds, data_time_sec)
    assert _wait_final(stack.client(), gen_id) == "ready"
    assert stack.engine.live_generation_id(TABLE) == gen_id
    return gen_id


def _after_this_second() -> int:
    """A dataTimeSec later than everything received so far (the next whole second), once it has come."""
    second = int(time.time()) + 1
    time.sleep(max(0.0, second - time.time()) + 0.01)
    return second


def test_a_reindex_with_data_time_sec_replays_the_pushes_since_then_and_only_those(stack: Stack) -> None:
    base, early, late = stack.images[:4], stack.images[4], stack.images[5]
    _build(stack, "20261122", base)
    stack.write_partition("20261123", base)  # the warehouse never learns of the pushed documents
    t0 = int(time.time())
    _push(stack, [_add(early), {"cmd": "delete", "fields": {"id": base[0].id}}])
    _applied(stack)
    t1 = _after_this_second()
    _push(stack, [_add(late)])
    _applied(stack)

    _rebuild(stack, "20261123", t0)
    assert set(_lookup(stack, early.id, late.id, base[0].id, base[1].id)) == {early.id, late.id, base[1].id}
    assert _ids(_search(stack, early.data, sort=["+RANK"]))[0] == early.id
    assert stack.engine.vectorized_images(TABLE)["replay"] == 2  # both adds, embedded again for the new generation

    _rebuild(stack, "20261123", t1)  # from t1: the delete and the early add are not replayed
    assert set(_lookup(stack, early.id, late.id, base[0].id)) == {late.id, base[0].id}

    _rebuild(stack, "20261123", None)  # without dataTimeSec: nothing pushed is in the new generation
    assert set(_lookup(stack, early.id, late.id, base[0].id)) == {base[0].id}
    assert _search(stack, base[1].data, n=50)["result"]["totalHits"] == 4
    assert stack.engine.get_generation(TABLE, stack.engine.live_generation_id(TABLE))["replayFromMs"] is None


def test_pushes_during_the_build_are_not_lost_across_the_switch(stack: Stack) -> None:
    """One push lands while the build runs (before the replay), one after the replay while the built
    generation waits for its switch: both must be in the new generation."""
    base, during_build, while_held = stack.images[:4], stack.images[6], stack.images[7]
    _build(stack, "20261122", base)
    stack.write_partition("20261123", base)
    client = stack.client()
    stack.engine.faults.stall_next_build = True
    stack.engine.faults.hold_switch_next_build = True
    gen_id = _reindex_at(stack, "20261123", int(time.time()))
    _poll("the build to stall", lambda: _nodes(_task(client, gen_id))["build_index"] == "running")
    _push(stack, [_add(during_build)])
    _applied(stack)
    stack.engine.release_stalled_builds()
    _poll("the build to wait for its switch", lambda: _nodes(_task(client, gen_id))["switch"] == "running"
          and _task(client, gen_id).tags[-1].msg.startswith("switch: the engine has not received"))
    _push(stack, [_add(while_held), {"cmd": "delete", "fields": {"id": base[3].id}}])
    _applied(stack)
    assert stack.engine.live_generation_id(TABLE) != gen_id
    assert set(_lookup(stack, during_build.id, while_held.id, base[3].id)) == {during_build.id, while_held.id}

    client.force_switch(IID, _task(client, gen_id).fsm_id)
    assert _wait_final(client, gen_id) == "ready" and stack.engine.live_generation_id(TABLE) == gen_id
    assert set(_lookup(stack, during_build.id, while_held.id, base[3].id)) == {during_build.id, while_held.id}
    _push(stack, [{"cmd": "delete", "fields": {"id": during_build.id}}])  # and the applier goes on, on the new one
    _applied(stack)
    assert set(_lookup(stack, during_build.id, while_held.id)) == {while_held.id}


@pytest.mark.parametrize("offset", [-(3 * 86400 + 60), 3600])
def test_data_time_sec_outside_the_kept_increments_is_refused_at_once(stack: Stack, offset: int) -> None:
    stack.write_partition("20261123", stack.images[:2])
    when = int(time.time()) + offset
    with pytest.raises(ClientException) as info:
        stack.client().reindex(IID, TABLE, se_models.ReindexRequest(partition="ds=20261123", data_time_sec=when))
    assert (info.value.status_code, info.value.code) == (400, "InvalidParameter")
    if offset < 0:
        assert "keeps pushed increments for 3 days" in info.value.message
        assert str(when) in info.value.message and "at the earliest" in info.value.message
    else:
        assert "in the future" in info.value.message and str(when) in info.value.message
    assert _generation_ids(stack.client()) == []  # nothing was started


def test_a_restart_keeps_the_realtime_layer(stack: Stack, tmp_path) -> None:
    base = stack.images[:4]
    _build(stack, "20261123", base)
    added, replaced, gone = stack.images[8], base[1], base[2]
    _push(stack, [_add(added), _add(stack.images[9], pk=replaced.id, cate_id=5),
                  {"cmd": "delete", "fields": {"id": gone.id}}])
    _applied(stack)
    before = _lookup(stack, added.id, replaced.id, gone.id, base[0].id)

    stack.server.stop()
    restarted = _make_server(stack.oss, tmp_path / "warehouse", stack.state_dir)
    stack.server, stack.engine = restarted, restarted.engine  # the fixture stops this one
    assert _lookup(stack, added.id, replaced.id, gone.id, base[0].id) == before  # at once: no waiting
    assert before[replaced.id]["source_image"] == "/" + stack.images[9].key and gone.id not in before
    assert _ids(_search(stack, stack.images[9].data, sort=["+RANK"]))[0] == replaced.id
    assert stack.engine.vectorized_images(TABLE) == {"build": 0, "push": 0, "replay": 2}
    _push(stack, [{"cmd": "delete", "fields": {"id": added.id}}])  # numbering and applying go on
    _applied(stack)
    assert stack.engine.push_status(TABLE)["lastSeq"] == 4 and added.id not in _lookup(stack, added.id)


def _prune_with_retention(stack: Stack, seconds: float, pk: int) -> dict:
    """Make everything logged so far older than a ``seconds`` retention, push once (pruning runs on a
    push), and restore a retention long enough for the rest of the test; the push status after it."""
    stack.engine.configure_pushes(retention_s=seconds)
    time.sleep(seconds + 0.1)
    _push(stack, [{"cmd": "delete", "fields": {"id": pk}}])
    status = stack.engine.push_status(TABLE)
    stack.engine.configure_pushes(retention_s=3600)
    return status


def test_old_increments_are_pruned_unless_the_live_layer_needs_them(stack: Stack, tmp_path) -> None:
    base, kept, dropped = stack.images[:3], stack.images[3], stack.images[4]
    _build(stack, "20261123", base)
    _push(stack, [_add(kept)])
    _applied(stack)
    status = _prune_with_retention(stack, 0.3, pk=1)
    assert status["logEntries"] == 2  # older than the retention, but the live layer needs it

    _rebuild(stack, "20261123", _after_this_second())  # the new generation's layer starts after both
    _push(stack, [_add(dropped)])
    _applied(stack)
    status = _prune_with_retention(stack, 0.3, pk=2)
    assert status["logEntries"] == 2 and status["lastSeq"] == 4  # seq 3 (in the live layer) and 4 stay
    stack.engine.configure_pushes(retention_s=0.3)
    with pytest.raises(ClientException, match="keeps pushed increments for 0.3 s"):
        stack.client().reindex(IID, TABLE, se_models.ReindexRequest(partition="ds=20261123",
                                                                    data_time_sec=int(time.time()) - 5))
    stack.server.stop()
    restarted = _make_server(stack.oss, tmp_path / "warehouse", stack.state_dir)
    stack.server, stack.engine = restarted, restarted.engine
    assert set(_lookup(stack, kept.id, dropped.id)) == {dropped.id}
