"""Guards before a rebuild: each failure names itself, says why, and can be overridden on purpose."""

from __future__ import annotations

import pytest

from pipeline.config import GuardsConfig
from pipeline.errors import PartitionCheckError
from pipeline.guards import GUARD_NAMES, enforce, evaluate
from pipeline.schema import PartitionStats

LIMITS = GuardsConfig(max_shrink_fraction=0.10, max_unmapped_fraction=0.05, max_skipped_fraction=0.5)
LOAD = {"listed": 110, "kept": 100, "skipped_total": 10, "skipped": {"not_image": 10, "unmapped_category": 0}}


def stats(ds: str, rows: int, distinct: int | None = None, dupes: list[int] | None = None) -> PartitionStats:
    return PartitionStats(ds, rows, rows if distinct is None else distinct, {1: rows}, dupes or [])


def verdicts(*args, **kwargs) -> dict[str, bool]:
    return {r.name: r.passed for r in evaluate(*args, **kwargs)}


def test_a_healthy_partition_passes_every_guard() -> None:
    got = verdicts(stats("20261124", 100), LOAD, stats("20261123", 105), LIMITS, table="t", id_rule="hash")
    assert got == dict.fromkeys(GUARD_NAMES, True)


def test_shrink_against_the_live_partition() -> None:
    results = evaluate(stats("20261124", 80), LOAD, stats("20261120", 100), LIMITS, table="t", id_rule="hash")
    (shrink,) = [r for r in results if r.name == "shrink"]
    assert not shrink.passed
    assert "80 rows, 20.0% fewer than the 100 of ds=20261120, the partition that last went live (limit 10%)" in shrink.message
    with pytest.raises(PartitionCheckError, match=r"\[shrink\].*override_guards Param including 'shrink'") as err:
        enforce(results, set())
    assert err.value.refused == (("shrink", shrink.message),)  # each refusing guard, for the alerts
    marked = enforce(results, {"shrink"})
    assert [r.name for r in marked if r.overridden] == ["shrink"]


def test_the_shrink_verdict_says_whether_the_ids_are_the_live_ones() -> None:
    from dataclasses import replace

    live = replace(stats("20261120", 100), id_digest="a" * 32)
    same = replace(stats("20261124", 100), id_digest="a" * 32)
    other = replace(stats("20261124", 100), id_digest="b" * 32)
    unknown = stats("20261124", 100)  # figures recorded before digests existed: nothing claimed

    def shrink_message(staged: PartitionStats) -> str:
        (shrink,) = [r for r in evaluate(staged, LOAD, live, LIMITS, table="t", id_rule="hash") if r.name == "shrink"]
        return shrink.message

    assert shrink_message(same).endswith("100 rows against 100 live (ds=20261120), the same ids")
    assert shrink_message(other).endswith("(ds=20261120), a different set of ids")
    assert shrink_message(unknown).endswith("(ds=20261120)")


def test_empty_duplicates_and_hash_collisions() -> None:
    results = evaluate(stats("20261124", 0), LOAD, None, LIMITS, table="t", id_rule="filename_digits")
    with pytest.raises(PartitionCheckError, match=r"\[empty\] partition ds=20261124 of t has no rows"):
        enforce(results, set())
    dup = evaluate(stats("20261124", 5, 3, [7, 9]), LOAD, None, LIMITS, table="t", id_rule="filename_digits")
    with pytest.raises(PartitionCheckError, match=r"has 2 duplicate id\(s\), e\.g\. \[7, 9\]: the id rule maps"):
        enforce(dup, set())
    collision = evaluate(stats("20261124", 5, 4, [11]), LOAD, None, LIMITS, table="t", id_rule="hash")
    with pytest.raises(PartitionCheckError, match="a collision"):
        enforce(collision, set())


def test_too_many_unmapped_or_skipped() -> None:
    load = {"listed": 100, "kept": 40, "skipped_total": 60, "skipped": {"unmapped_category": 10, "not_image": 50},
            "unmapped_category_examples": {"socks": 10}}
    got = evaluate(stats("20261124", 40), load, None, LIMITS, table="t", id_rule="hash")
    failed = {r.name: r.message for r in got if not r.passed}
    assert set(failed) == {"unmapped", "skipped"}
    assert "10 of 50 images (20.0%) had an unmapped category (limit 5%), e.g. {'socks': 10}" in failed["unmapped"]
    assert "60 of 100 listed objects (60.0%) were skipped (limit 50%)" in failed["skipped"]
    with pytest.raises(PartitionCheckError) as err:
        enforce(got, {"skipped"})
    assert "[unmapped]" in str(err.value) and "[skipped]" not in str(err.value)


def test_unknown_override_names_are_refused() -> None:
    with pytest.raises(PartitionCheckError, match=r"unknown guards \['shrinkage'\]"):
        enforce([], {"shrinkage"})


def test_with_on_refusal_ask_a_refusal_is_returned_for_an_approval_to_decide() -> None:
    from pipeline.guards import refused

    results = evaluate(stats("20261124", 80), LOAD, stats("20261120", 100), LIMITS, table="t", id_rule="hash")
    kept = enforce(results, set(), refuse=False)
    assert refused([r.as_dict() for r in kept]) == ["shrink"]
    assert refused([r.as_dict() for r in enforce(results, {"shrink"}, refuse=False)]) == []  # overridden: passes
    with pytest.raises(PartitionCheckError, match="override_guards names unknown guards"):
        enforce(results, {"shrnk"}, refuse=False)  # a typo in the Param is refused either way
