"""The pipeline's push path (pipeline/opensearch/push.py) through the real HA3 SDK against the local
OpenSearch server: documents applied and verified, throttling survived, lost and late pushes detected,
a retried task resuming after the last answered request, a full rebuild replaying the pushes."""

from __future__ import annotations

import time

import pytest

from pipeline.config import OpenSearchConfig, PushConfig
from pipeline.errors import DeltaNotAppliedError, OpenSearchAccessError
from pipeline.opensearch.connection import OpenSearchConnection
from pipeline.opensearch.push import Change, OpenSearchPush, PushProgress, lookup, push_changes, verify_changes
from pipeline.opensearch.search import OpenSearchQuery
from pipeline.retry import RetryPolicy
from tests.localcloud.opensearch.test_server import (  # noqa: F401 - oss and stack are fixtures
    AK,
    IID,
    QUERY_PASSWORD,
    QUERY_USER,
    SK,
    TABLE,
    Stack,
    _build,
    _ids,
    _reindex,
    _search,
    _wait_final,
    oss,
    stack,
)

SETTINGS = OpenSearchConfig(conn_id="os_test", table=TABLE)


def conn(stack: Stack, password: str = QUERY_PASSWORD) -> OpenSearchConnection:
    endpoint = stack.server.endpoint
    return OpenSearchConnection.from_fields(
        "os_test", {"instance_id": IID, "endpoint": endpoint, "protocol": "http", "access_key_id": AK,
                    "access_key_secret": SK, "query_endpoint": endpoint, "query_protocol": "http"},
        QUERY_USER, password)


def pusher(stack: Stack, **kwargs) -> OpenSearchPush:
    return OpenSearchPush(conn(stack, **kwargs), f"{IID}_{TABLE}", "id")


def changes_for(stack: Stack, adds: list, deletes: list, cate_id: int = 9) -> list[Change]:
    rows = [Change("add", im.id, {"id": im.id, "source_image": "/" + im.key, "cate_id": cate_id}, "added") for im in adds]
    rows += [Change("delete", im.id, None, "removed") for im in deletes]
    return sorted(rows, key=lambda c: c.pk)


def no_sleep(_seconds: float) -> None:
    pass


def small(max_request_bytes: int, **kwargs) -> PushConfig:
    """Limits below the config's floor (1 KiB), so a test's few documents need several requests."""
    return PushConfig.model_construct(**{**PushConfig().model_dump(), "max_request_bytes": max_request_bytes, **kwargs})


def test_pushes_are_packed_applied_and_verified_by_primary_key(stack: Stack) -> None:
    base, new = stack.images[:8], stack.images[8:12]
    _build(stack, "20261123", base)
    changes = changes_for(stack, new, base[:3])
    settings = small(200)  # several requests for 7 documents
    progress = push_changes(pusher(stack), changes, settings, PushProgress("20261124", "20261123"))
    assert (progress.adds, progress.deletes) == (4, 3) and progress.requests >= 2
    assert progress.after_pk == changes[-1].pk and progress.bytes < progress.document_bytes + 2 * progress.requests + 7
    query = OpenSearchQuery(conn(stack))
    figures = verify_changes(query, SETTINGS, changes, timeout_s=20, poll_s=0.05)
    assert (figures["verified_adds"], figures["verified_deletes"]) == (4, 3)
    found = lookup(query, SETTINGS, [im.id for im in base + new])
    assert set(found) == {im.id for im in base[3:] + new}
    assert found[new[0].id]["cate_id"] == "9"
    assert _ids(_search(stack, new[1].data, sort=["+RANK"]))[0] == new[1].id


def test_lost_pushes_are_named_when_the_bound_passes(stack: Stack) -> None:
    base, new = stack.images[:6], stack.images[6:9]
    _build(stack, "20261123", base)
    stack.engine.faults.drop_next_pushes = 1  # answered OK, never applied
    changes = changes_for(stack, new, base[:1])
    progress = push_changes(pusher(stack), changes, PushConfig(), PushProgress("20261124", "20261123"))
    assert progress.requests == 1  # the service said OK
    with pytest.raises(DeltaNotAppliedError) as info:
        verify_changes(OpenSearchQuery(conn(stack)), SETTINGS, changes, timeout_s=1.0, poll_s=0.1)
    message = str(info.value)
    assert "3 of 3 pushed documents do not answer as pushed" in message and f"{new[0].id} (not found)" in message
    assert f"1 of 1 deleted documents still answer: {base[0].id}" in message
    assert "rebuild_mode=full" in message


def test_a_push_applied_late_is_waited_for_within_the_bound(stack: Stack) -> None:
    base, new = stack.images[:6], stack.images[6:8]
    _build(stack, "20261123", base)
    stack.engine.faults.push_apply_delay_s = 0.8
    changes = changes_for(stack, new, [])
    push_changes(pusher(stack), changes, PushConfig(), PushProgress("20261124", "20261123"))
    started = time.monotonic()
    figures = verify_changes(OpenSearchQuery(conn(stack)), SETTINGS, changes, timeout_s=20, poll_s=0.1)
    assert figures["rounds"] > 1 and time.monotonic() - started >= 0.5


def test_throttled_requests_are_retried_with_backoff_and_the_rate_is_kept(stack: Stack) -> None:
    base, new = stack.images[:6], stack.images[6:12]
    _build(stack, "20261123", base)
    stack.engine.faults.throttle_next_pushes = 2  # 429 / 3013, twice
    stack.engine.configure_pushes(max_bytes_per_s=1500)  # the service's rate, far below ours: 429s too
    slept: list[float] = []
    retry = RetryPolicy(attempts=10, initial_wait_s=0.05, max_wait_s=0.3, sleep=lambda s: (slept.append(s), time.sleep(s)))
    changes = changes_for(stack, new, base[:2])
    progress = push_changes(pusher(stack), changes, small(200, max_bytes_per_second=4096),
                            PushProgress("20261124", "20261123"), retry=retry)
    assert progress.retried_requests >= 2 and slept
    assert (progress.adds, progress.deletes) == (6, 2)
    verify_changes(OpenSearchQuery(conn(stack)), SETTINGS, changes, timeout_s=20, poll_s=0.05)
    assert stack.engine.push_status(TABLE)["throttled"] >= 2


def test_a_retried_push_resumes_after_the_last_answered_request(stack: Stack) -> None:
    base, new = stack.images[:6], stack.images[6:12]
    _build(stack, "20261123", base)
    changes = changes_for(stack, new, [])
    remembered: list[dict] = []
    stack.engine.faults.throttle_next_pushes = 100  # the third request never gets through
    sent = {"n": 0}
    real = pusher(stack)

    class Once:
        data_source, key_field = real.data_source, real.key_field

        def push(self, body: str) -> dict:
            sent["n"] += 1
            if sent["n"] <= 2:
                stack.engine.faults.throttle_next_pushes = 0
            else:
                stack.engine.faults.throttle_next_pushes = 100
            return real.push(body)

    with pytest.raises(Exception, match="throttled or failing"):
        push_changes(Once(), changes, small(150), PushProgress("20261124", "20261123"),
                     remember=lambda p: remembered.append(p.as_dict()),
                     retry=RetryPolicy(attempts=2, initial_wait_s=0.01, max_wait_s=0.01, sleep=no_sleep))
    earlier = PushProgress.from_dict(remembered[-1])
    assert earlier.requests == 2 and earlier.after_pk is not None and earlier.first_push_at
    stack.engine.faults.throttle_next_pushes = 0
    resumed = push_changes(real, changes, small(150), earlier)
    assert resumed.adds == len(new) and resumed.requests > 2  # the first two requests were not sent again
    assert stack.engine.push_status(TABLE)["received"] == len(new)
    verify_changes(OpenSearchQuery(conn(stack)), SETTINGS, changes, timeout_s=20, poll_s=0.05)


def test_a_wrong_query_password_is_refused_at_once(stack: Stack) -> None:
    with pytest.raises(OpenSearchAccessError, match="refused the query user/password"):
        pusher(stack, password="wrong").push('[{"cmd":"delete","fields":{"id":1}}]')


def test_a_full_rebuild_after_pushes_replays_them_from_the_partitions_snapshot(stack: Stack) -> None:
    base, new = stack.images[:6], stack.images[6:8]
    _build(stack, "20261123", base)
    stack.write_partition("20261124", base)  # captured before the pushes: it lacks them
    snapshot = int(time.time())
    time.sleep(1.1)
    changes = changes_for(stack, new, base[:1])
    push_changes(pusher(stack), changes, PushConfig(), PushProgress("20261124", "20261123"))
    verify_changes(OpenSearchQuery(conn(stack)), SETTINGS, changes, timeout_s=20, poll_s=0.05)

    from pipeline.opensearch.management import OpenSearchManagement

    mgmt = OpenSearchManagement(conn(stack))
    before = set(mgmt.generation_ids(TABLE))
    mgmt.reindex(TABLE, "ds=20261124", data_time_sec=snapshot)
    client = stack.client()
    generation = None
    for _ in range(200):
        generation = next(iter(set(mgmt.generation_ids(TABLE)) - before), None)
        if generation:
            break
        time.sleep(0.05)
    assert generation and _wait_final(client, generation) == "ready"
    assert stack.engine.live_generation_id(TABLE) == generation
    found = lookup(OpenSearchQuery(conn(stack)), SETTINGS, [im.id for im in base + new])
    assert set(found) == {im.id for im in base[1:] + new}  # the partition, plus the pushes replayed over it
