"""Which path a run takes (full rebuild or delta), and when a full rebuild replays pushes from."""

from __future__ import annotations

import pytest

from pipeline.config import RebuildConfig
from pipeline.errors import ReplayWindowError
from pipeline.opensearch.modes import choose_rebuild_mode
from pipeline.opensearch.rebuild import REPLAY_MARGIN_S, replay_from

NOW = 1_800_000_000.0
DAY = 86400.0


def checked(added: int = 5, removed: int = 3, changed: int = 2, *, live_ds: str = "20261130",
            without_etag: int = 0, partitions: tuple[str, ...] = ("20261130", "20261201")) -> dict:
    return {"dry_run": False, "live_ds": live_ds, "partitions": list(partitions),
            "row_changes": {"added": added, "removed": removed, "changed": changed, "unchanged": 990,
                            "previous_without_etag": without_etag}}


def live(ds: str = "20261130", rows: int = 1000, last_full_days_ago: float | None = 1.0) -> dict:
    record = {"ds": ds, "stats": {"ds": ds, "rows": rows, "distinct_ids": rows}}
    if last_full_days_ago is not None:
        record.update(last_full_at=NOW - last_full_days_ago * DAY, last_full_ds="20261129")
    return record


def decide(settings: RebuildConfig, check: dict, record: dict | None, **kwargs) -> dict:
    return choose_rebuild_mode(settings, "20261201", check, record, now=NOW, **kwargs)


def test_auto_pushes_a_small_change_when_a_full_rebuild_is_recent() -> None:
    decision = decide(RebuildConfig(mode="auto", max_change_fraction=0.05), checked(), live())
    assert decision["mode"] == "delta" and decision["task_id"] == "push_changes"
    assert decision["fraction"] == pytest.approx(0.01)
    assert "10 of 1000 live rows changed" in decision["reason"] and "delta" in decision["reason"]


def test_auto_rebuilds_when_too_much_changed() -> None:
    decision = decide(RebuildConfig(mode="auto", max_change_fraction=0.05), checked(added=40, removed=20), live())
    assert decision["mode"] == "full" and decision["task_id"] == "start_rebuild"
    assert "more than max_change_fraction 5.00%" in decision["reason"]


def test_auto_rebuilds_when_the_last_full_rebuild_is_too_old_or_unknown() -> None:
    settings = RebuildConfig(mode="auto", full_every_days=7)
    old = decide(settings, checked(), live(last_full_days_ago=8))
    assert old["mode"] == "full" and "8.0 days ago, more than full_every_days 7" in old["reason"]
    unknown = decide(settings, checked(), live(last_full_days_ago=None))
    assert unknown["mode"] == "full" and "no full rebuild is on record" in unknown["reason"]


@pytest.mark.parametrize(("check", "record", "words"), [
    (checked(), None, "no partition has gone live"),
    (checked(live_ds="20261201"), live("20261201"), "is the live partition itself"),
    (checked(partitions=("20261201",)), live(), "no longer exists"),
    (checked(partitions=("20261130", "20261201", "20261205")), live(), "older than the newest partition ds=20261205"),
    (checked(without_etag=1000), live(), "have no ETag"),
    ({**checked(), "row_changes": None}, live(), "were not computed"),
])
def test_a_delta_needs_the_live_partition_intact_and_with_etags(check: dict, record: dict | None, words: str) -> None:
    decision = decide(RebuildConfig(mode="delta"), check, record)
    assert decision["mode"] == "full" and words in decision["reason"], decision["reason"]
    assert decision["reason"].startswith("rebuild.mode is delta, but")


def test_the_param_overrides_the_config_and_skip_force_dry_run_take_the_full_path() -> None:
    settings = RebuildConfig(mode="full")
    assert decide(settings, checked(), live(), requested="delta")["mode"] == "delta"
    assert "the run's rebuild_mode Param is delta" in decide(settings, checked(), live(), requested="delta")["reason"]
    assert decide(RebuildConfig(mode="delta"), checked(), live(), requested="full")["mode"] == "full"
    assert decide(RebuildConfig(mode="delta"), checked(), live(), skip=True)["reason"] == "skip_rebuild is set"
    assert decide(RebuildConfig(mode="delta"), checked(), live(), force=True)["mode"] == "full"
    assert decide(RebuildConfig(mode="delta"), {"dry_run": True}, live())["mode"] == "full"


def test_delta_mode_pushes_even_a_large_change() -> None:
    decision = decide(RebuildConfig(mode="delta", max_change_fraction=0.01), checked(added=500), live())
    assert decision["mode"] == "delta"


def test_a_full_rebuild_replays_pushes_from_the_partitions_snapshot() -> None:
    retention = 72 * 3600
    assert replay_from(NOW - 3600, None, retention, NOW) == int(NOW - 3600)
    assert replay_from(NOW - 3600, NOW - 60, retention, NOW) == int(NOW - 3600)


def test_a_snapshot_older_than_the_service_keeps_is_refused_only_when_pushes_would_be_lost() -> None:
    retention = 72 * 3600
    old = NOW - 4 * DAY
    with pytest.raises(ReplayWindowError, match="would drop them"):
        replay_from(old, NOW - DAY, retention, NOW)
    assert replay_from(old, old - 60, retention, NOW) is None  # nothing pushed since the snapshot
    assert replay_from(old, None, retention, NOW) is None
    inside = NOW - retention + REPLAY_MARGIN_S + 1
    assert replay_from(inside, NOW, retention, NOW) == int(inside)


def test_an_unknown_snapshot_replays_as_far_back_as_allowed_when_anything_was_pushed() -> None:
    retention = 72 * 3600
    assert replay_from(None, None, retention, NOW) is None
    assert replay_from(None, NOW - 60, retention, NOW) == int(NOW - retention + REPLAY_MARGIN_S)
