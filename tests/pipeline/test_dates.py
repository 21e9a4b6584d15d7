"""Partition date resolution: Param first, else the logical date (or run_after) in the index's zone."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.dates import parse_partition_param, resolve_partition_date


@pytest.mark.parametrize("value", ["2026-11-23", "20261123", " 2026-11-23 "])
def test_param_formats(value: str) -> None:
    assert parse_partition_param(value) == "20261123"


@pytest.mark.parametrize("value", ["2026-02-30", "26-11-23", "yesterday", "2026/11/23", ""])
def test_bad_params_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="partition_date"):
        parse_partition_param(value)


def test_param_wins_over_dates() -> None:
    moment = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)
    assert resolve_partition_date("2026-01-02", moment, moment, "UTC") == "20260102"


def test_logical_date_is_read_in_the_index_time_zone() -> None:
    # 18:00 UTC on the 23rd is 02:00 on the 24th in Shanghai: the nightly run there loads the 24th.
    moment = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
    assert resolve_partition_date(None, moment, None, "Asia/Shanghai") == "20261124"
    assert resolve_partition_date(None, moment, None, "UTC") == "20261123"


def test_manual_runs_fall_back_to_run_after() -> None:
    run_after = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    assert resolve_partition_date(None, None, run_after, "America/Los_Angeles") == "20261123"


def test_no_date_at_all_or_naive_dates_are_refused() -> None:
    with pytest.raises(ValueError, match="pass the partition_date Param"):
        resolve_partition_date(None, None, None, "UTC")
    with pytest.raises(ValueError, match="naive datetime"):
        resolve_partition_date(None, datetime(2026, 1, 1), None, "UTC")
