"""The load and check stages through real oss2 against the local server and the local warehouse."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline.errors import CatalogError, PartitionCheckError, TransientSourceError
from pipeline.guards import GUARD_NAMES
from pipeline.retry import RetryPolicy
from pipeline.stages import check_partition, load_partition, open_index_warehouse, open_lister

EXPECTED_SKIPS = {
    "folder_marker": 4,
    "not_image": 2,
    "zero_bytes": 2,
    "too_small": 0,
    "too_large": 1,
    "bad_id": 1,
    "unmapped_category": 5,
    "archived": 1,
}


def sorted_rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def test_load_then_check_the_demo_partition(demo_stack) -> None:
    _, _, config = demo_stack
    result = load_partition(config, "20261101", publish=True)
    assert result.rows_written == 320
    assert result.counts["kept"] == 320 and result.counts["listed"] == 320 + sum(EXPECTED_SKIPS.values())
    assert result.counts["skipped"] == EXPECTED_SKIPS
    assert result.counts["unmapped_category_examples"] == {"misc": 5}
    assert result.counts["archived_examples"] == ["catalog/watches/40998.jpg"]
    stats, results = check_partition(open_index_warehouse(config), "20261101", load=result.as_dict())
    assert all(r.passed for r in results) and [r.name for r in results] == list(GUARD_NAMES)
    assert stats.rows == stats.distinct_ids == 320
    assert stats.rows_per_category == {1: 80, 2: 80, 3: 80, 4: 80}
    rows = sorted_rows(open_index_warehouse(config).read_partition("20261101"))
    etags = {row.pop("etag") for row in rows}  # each image's ETag as listed: the MD5 of its bytes
    assert len(etags) > 1 and all(len(etag) == 32 and etag == etag.upper() for etag in etags)
    assert rows[0] == {"id": 10001, "source_image": "/catalog/shoes/10001.jpg", "cate_id": 1}
    assert {"id": 10010, "source_image": "/catalog/shoes/10010.PNG", "cate_id": 1} in rows


def test_rerun_gives_an_identical_partition(demo_stack) -> None:
    _, _, config = demo_stack
    load_partition(config, "20261102", publish=True)
    first = sorted_rows(open_index_warehouse(config).read_partition("20261102"))
    load_partition(config, "20261102", publish=True)
    assert sorted_rows(open_index_warehouse(config).read_partition("20261102")) == first


def test_dry_run_writes_nothing(demo_stack) -> None:
    _, _, config = demo_stack
    result = load_partition(config, "20261103", dry_run=True)
    assert result.rows_written is None and result.counts["kept"] == 320
    assert "20261103" not in open_index_warehouse(config).partitions()


def test_prefix_override_and_empty_partition_check(demo_stack) -> None:
    _, _, config = demo_stack
    result = load_partition(config, "20261104", prefixes=["catalog/hats/"], publish=True)
    assert result.rows_written == 80 and result.prefixes == ["catalog/hats/"]
    load_partition(config, "20261105", prefixes=["nothing-here/"], publish=True)
    with pytest.raises(PartitionCheckError, match=r"ds=20261105 of demo_image_catalog has no rows"):
        check_partition(open_index_warehouse(config), "20261105")


def test_duplicate_ids_fail_the_check_with_examples(demo_stack) -> None:
    _, _, config = demo_stack
    clashing = config.model_copy(update={"id_rule": config.id_rule.model_copy(update={"regex": r"^(\d)"})})
    load_partition(clashing, "20261106", publish=True)
    with pytest.raises(PartitionCheckError, match=r"has 316 duplicate id\(s\), e.g. \[1, 2, 3, 4\]"):
        check_partition(open_index_warehouse(config), "20261106")


class FailingLister:
    """A real lister whose listing breaks after ``pages`` pages, as a dropped connection would."""

    def __init__(self, lister, pages: int) -> None:
        self._lister = lister
        self._pages = pages
        self.pages_listed = 0

    def iter_objects(self, prefixes):
        for page in self._lister.iter_objects(prefixes):
            if self.pages_listed == self._pages:
                raise TransientSourceError("listing OSS: connection reset (retries exhausted)")
            self.pages_listed += 1
            yield page


def test_a_failed_listing_leaves_the_previous_partition(demo_stack) -> None:
    _, _, config = demo_stack
    load_partition(config, "20261107", publish=True)
    before = sorted_rows(open_index_warehouse(config).read_partition("20261107"))
    small_pages = open_lister(config, page_size=50)  # several pages, so the failure lands mid-listing
    with pytest.raises(TransientSourceError):
        load_partition(config, "20261107", lister=FailingLister(small_pages, pages=3), publish=True)
    assert sorted_rows(open_index_warehouse(config).read_partition("20261107")) == before
    # ... and a rerun completes without any cleanup.
    assert load_partition(config, "20261107", publish=True).rows_written == 320


def test_unmapped_policy_fail_commits_nothing(demo_stack) -> None:
    _, _, config = demo_stack
    strict = config.model_copy(update={"category_rule": config.category_rule.model_copy(update={"unmapped": "fail"})})
    with pytest.raises(CatalogError, match="'catalog/misc/90001.jpg' has category 'misc'"):
        load_partition(strict, "20261108", publish=True)
    assert "20261108" not in open_index_warehouse(config).partitions()


def test_retry_policy_is_bounded_and_backs_off() -> None:
    sleeps: list[float] = []
    calls = []

    def flaky() -> str:
        calls.append(1)
        raise TransientSourceError("503")

    with pytest.raises(TransientSourceError):
        RetryPolicy(attempts=4, initial_wait_s=1, max_wait_s=8, sleep=sleeps.append).call("x", flaky)
    assert len(calls) == 4 and len(sleeps) == 3 and all(0 <= s <= 8 for s in sleeps)


def test_a_load_leaves_other_days_staged_since_a_backfill_may_be_staging_them(demo_stack) -> None:
    # Backfill runs of one index run side by side: one day's load must not drop another day's staged rows.
    _, _, config = demo_stack
    staging = open_index_warehouse(config).staging()
    load_partition(config, "20261110", prefixes=["catalog/hats/"])  # staged, not yet checked or published
    load_partition(config, "20261111", prefixes=["catalog/bags/"])
    assert {"20261110", "20261111"} <= set(staging.partitions())
    assert staging.partition_stats("20261110").rows == 80
    load_partition(config, "20261110", prefixes=["catalog/shoes/"])  # the same day again: replaces its own
    assert staging.read_partition("20261110").column("id").to_pylist()[0] // 10000 == 1
