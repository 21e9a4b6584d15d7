"""row_changes and iter_delta: what changed between two partitions, on both warehouses.

Why: the delta feature pushes to OpenSearch only the ids added, removed or changed, where changed includes
an image replaced under the same key (same id, path and category; another ETag). Both warehouses run the
same SQL (sql/row_changes.sql, sql/row_delta.sql): the fs one on DuckDB, MaxCompute over the wire against
the local server, whose SELECT results are truncated at 10,000 rows as the service's are.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from odps import ODPS, options

import localcloud.maxcompute.tunnel as local_tunnel
from localcloud.maxcompute.server import LocalMaxComputeServer
from pipeline.errors import WarehouseError
from pipeline.schema import CATALOG_SCHEMA, DELTA_ADD_SCHEMA, DeltaBatch, RowChanges
from pipeline.warehouse import LocalWarehouse, Warehouse
from pipeline.warehouse.maxcompute import MaxComputeWarehouse

OLD, NEW = "20261201", "20261202"
AK, SK, PROJECT, REGION = "LTAIdeltatest", "delta-secret", "delta_proj", "cn-hangzhou"

# id: (source_image, cate_id, etag) before and after; None: the id is absent on that side.
CASES: dict[int, tuple[tuple | None, tuple | None]] = {
    1: (("/a/1.jpg", 1, "AAA1"), ("/a/1.jpg", 1, "AAA1")),    # unchanged
    2: (("/a/2.jpg", 1, "AAA2"), ("/a/2.jpg", 1, "BBB2")),    # the image replaced under the same key
    3: (("/a/3.jpg", 1, "AAA3"), ("/a/3.jpg", 2, "AAA3")),    # moved to another category
    4: (("/a/4.jpg", 1, "AAA4"), ("/b/4.jpg", 1, "AAA4")),    # another path, same id
    5: (("/a/5.jpg", 1, None), ("/a/5.jpg", 1, "AAA5")),      # no etag before: cannot rule out a replacement
    6: (("/a/6.jpg", 1, "AAA6"), ("/a/6.jpg", 1, None)),      # no etag now: likewise
    7: (("/a/7.jpg", 1, None), ("/a/7.jpg", 1, None)),        # no etag on either side: likewise
    8: (("/a/8.jpg", 1, "aaa8"), ("/a/8.jpg", 1, "AAA8")),    # the same ETag in another case: unchanged
    9: (("/a/9.jpg", 1, "AAA9"), None),                       # removed
    10: (None, ("/a/10.jpg", 3, "AAA10")),                    # added
    2**62: (None, ("/big.jpg", 1, "BIG")),                    # added, a large id
    0: (("/zero.jpg", 1, "Z"), None),                         # removed, the smallest id
}
EXPECTED_CHANGES = {"added": 2, "removed": 2, "changed": 6, "unchanged": 2, "previous_without_etag": 2}
EXPECTED_DELTA = [  # (id, reason, the row it adds)
    (0, "removed", None), (2, "changed", ("/a/2.jpg", 1, "BBB2")), (3, "changed", ("/a/3.jpg", 2, "AAA3")),
    (4, "changed", ("/b/4.jpg", 1, "AAA4")), (5, "changed", ("/a/5.jpg", 1, "AAA5")),
    (6, "changed", ("/a/6.jpg", 1, None)), (7, "changed", ("/a/7.jpg", 1, None)), (9, "removed", None),
    (10, "added", ("/a/10.jpg", 3, "AAA10")), (2**62, "added", ("/big.jpg", 1, "BIG")),
]


def catalog(rows: dict[int, tuple]) -> pa.RecordBatch:
    ordered = sorted(rows.items(), key=lambda item: (item[0] * 7919) % 1000)  # not in id order
    return pa.RecordBatch.from_pylist(
        [{"id": i, "source_image": row[0], "cate_id": row[1], "etag": row[2]} for i, row in ordered],
        schema=CATALOG_SCHEMA)


def side(index: int) -> dict[int, tuple]:
    return {i: rows[index] for i, rows in CASES.items() if rows[index] is not None}


def flatten(pages: list[DeltaBatch]) -> list[tuple]:
    """The pages as (id, reason, row added) in page order: adds and deletes merged by id within a page."""
    out = []
    for page in pages:
        assert page.adds.schema == DELTA_ADD_SCHEMA and len(page) == page.adds.num_rows + len(page.deletes)
        items = [(r["id"], r["reason"], (r["source_image"], r["cate_id"], r["etag"])) for r in page.adds.to_pylist()]
        items += [(i, "removed", None) for i in page.deletes]
        items.sort(key=lambda item: item[0])
        assert page.last_id == items[-1][0]
        out += items
    return out


# -- both warehouses -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalMaxComputeServer]:
    with LocalMaxComputeServer(tmp_path_factory.mktemp("mc"), {AK: SK}, projects=[PROJECT], region=REGION) as running:
        yield running


@pytest.fixture(params=["fs", "maxcompute"])
def make(request, tmp_path: Path):
    """A factory of fresh, empty catalog tables of one warehouse kind."""
    if request.param == "fs":
        def local(name: str = "") -> Warehouse:
            wh = LocalWarehouse(tmp_path, name or f"catalog_{uuid.uuid4().hex[:8]}", 30)
            wh.ensure_table()
            return wh
        return local
    server = request.getfixturevalue("server")
    odps = ODPS(AK, SK, project=PROJECT, endpoint=server.endpoint, region_name=REGION, overwrite_global=False)

    def maxcompute(name: str = "") -> Warehouse:
        wh = MaxComputeWarehouse(odps, name or f"catalog_{uuid.uuid4().hex[:8]}", 30)
        wh.ensure_table()
        return wh
    return maxcompute


@pytest.fixture
def cases(make) -> Warehouse:
    wh = make()
    wh.write_partition(OLD, [catalog(side(0))])
    wh.write_partition(NEW, [catalog(side(1))])
    return wh


def test_row_changes_count_every_kind_of_change(cases: Warehouse) -> None:
    changes = cases.row_changes(NEW, OLD)
    assert changes == RowChanges(NEW, OLD, **EXPECTED_CHANGES)
    assert changes.as_dict() == {"previous_ds": OLD, **EXPECTED_CHANGES} and changes.delta_rows == 10


@pytest.mark.parametrize("batch_rows", [1, 3, 10, 10_000])
def test_the_delta_lists_each_changed_id_once_in_id_order_in_bounded_pages(cases: Warehouse, batch_rows: int) -> None:
    pages = list(cases.iter_delta(NEW, OLD, batch_rows=batch_rows))
    assert all(1 <= len(page) <= batch_rows for page in pages)
    assert len(pages) == -(-len(EXPECTED_DELTA) // batch_rows)
    got = flatten(pages)
    assert got == EXPECTED_DELTA
    ids = [i for i, _, _ in got]
    assert ids == sorted(set(ids))  # ascending, and no id twice: never both added and deleted


def test_the_delta_resumes_after_any_id(cases: Warehouse) -> None:
    full = flatten(list(cases.iter_delta(NEW, OLD)))
    for after in (-1, 0, 1, 4, 9, 10, 2**62 - 1):
        assert flatten(list(cases.iter_delta(NEW, OLD, after_id=after, batch_rows=4))) == [
            item for item in full if item[0] > after]
    assert list(cases.iter_delta(NEW, OLD, after_id=2**62)) == []
    first = next(iter(cases.iter_delta(NEW, OLD, batch_rows=3)))  # a reader stopped after one page
    rest = flatten(list(cases.iter_delta(NEW, OLD, after_id=first.last_id, batch_rows=3)))
    assert flatten([first]) + rest == full


def test_identical_and_empty_partitions_give_an_empty_delta(make) -> None:
    wh = make()
    with_etags = {i: (path, cate, etag or f"E{i}") for i, (path, cate, etag) in side(0).items()}
    wh.write_partition(OLD, [catalog(with_etags)])
    wh.write_partition(NEW, [catalog(with_etags)])
    assert list(wh.iter_delta(NEW, OLD)) == []
    assert wh.row_changes(NEW, OLD) == RowChanges(NEW, OLD, 0, 0, 0, len(with_etags), 0)
    same = wh.row_changes(OLD, OLD)
    assert (same.changed, same.unchanged) == (0, len(with_etags))
    # Rows without an etag are never unchanged, even against themselves: nothing rules out a replacement.
    wh.write_partition("20261205", [catalog(side(0))])
    itself = wh.row_changes("20261205", "20261205")
    assert (itself.added, itself.removed, itself.changed, itself.unchanged) == (0, 0, 2, 8)
    wh.write_partition("20261203", [])
    wh.write_partition("20261204", [])
    assert list(wh.iter_delta("20261204", "20261203")) == []
    assert wh.row_changes("20261204", "20261203") == RowChanges("20261204", "20261203", 0, 0, 0, 0, 0)
    everything = flatten(list(wh.iter_delta("20261203", OLD)))  # an empty partition: every id removed
    assert everything == [(i, "removed", None) for i in sorted(with_etags)]


def test_a_staged_partition_against_the_published_one(make) -> None:
    published = make()
    staging = make(f"{published.table}__staging")
    published.write_partition(OLD, [catalog(side(0))])
    staging.write_partition(OLD, [catalog(side(1))])  # the same day, staged again
    assert staging.row_changes(OLD, OLD, previous=published) == RowChanges(OLD, OLD, **EXPECTED_CHANGES)
    assert flatten(list(staging.iter_delta(OLD, OLD, previous=published, batch_rows=4))) == EXPECTED_DELTA


def test_an_id_with_several_rows_is_refused(make) -> None:
    wh = make()
    wh.write_partition(OLD, [catalog(side(0))])
    wh.write_partition(NEW, [catalog(side(1)), catalog({2: ("/dup.jpg", 1, "D")})])
    with pytest.raises(WarehouseError, match=r"1 id\(s\) have more than one row \(e.g. id 2\)"):
        wh.row_changes(NEW, OLD)
    with pytest.raises(WarehouseError, match=r"e.g. id 2\).*rebuild the index"):
        list(wh.iter_delta(NEW, OLD))


def test_a_missing_partition_is_an_error_not_an_empty_side(cases: Warehouse) -> None:
    with pytest.raises(WarehouseError, match="20261130.*(does not exist|no )"):
        cases.row_changes(NEW, "20261130")
    pages = cases.iter_delta("20261130", OLD)  # arguments checked now, partitions when iterated
    with pytest.raises(WarehouseError, match="20261130.*(does not exist|no )"):
        next(iter(pages))
    with pytest.raises(WarehouseError, match="20261130"):
        list(cases.iter_delta(NEW, "20261130", after_id=5))


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"batch_rows": 0}, "batch_rows must be 1..10000"), ({"batch_rows": 10_001}, "batch_rows"),
    ({"batch_rows": True}, "batch_rows"), ({"after_id": "5"}, "after_id"), ({"after_id": 2**63}, "after_id"),
    ({"after_id": -2**63}, "after_id"),
])
def test_bad_arguments_are_refused_at_the_call(cases: Warehouse, kwargs: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        cases.iter_delta(NEW, OLD, **kwargs)
    with pytest.raises(ValueError, match="YYYYMMDD"):
        cases.iter_delta("2026-12-02", OLD)


# -- MaxCompute: pages across the result limit -------------------------------------------------------


def test_maxcompute_pages_cross_the_10000_row_result_limit(server: LocalMaxComputeServer, request: pytest.FixtureRequest,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A delta of 25,000 ids, with every SELECT result limited to 10,000 rows (what projects with the
    limit on answer), then to 3,000 (a project's READ_TABLE_MAX_ROW below the page size): every row
    arrives, each once, in id order."""
    odps = ODPS(AK, SK, project=PROJECT, endpoint=server.endpoint, region_name=REGION, overwrite_global=False)
    wh = MaxComputeWarehouse(odps, f"catalog_{uuid.uuid4().hex[:8]}", 30)
    wh.ensure_table()

    def rows(ids: range, etag: str) -> Iterator[pa.RecordBatch]:
        for start in range(ids.start, ids.stop, 5000):
            chunk = range(start, min(start + 5000, ids.stop))
            yield pa.RecordBatch.from_pydict({"id": list(chunk), "source_image": [f"/p/{i}.jpg" for i in chunk],
                                              "cate_id": [1] * len(chunk), "etag": [f"{etag}{i}" for i in chunk]},
                                             schema=CATALOG_SCHEMA)

    # 0..8,999 removed; 9,000..11,999 unchanged; 12,000..19,999 replaced; 20,000..27,999 added.
    wh.write_partition(OLD, itertools.chain(rows(range(0, 12_000), "A"), rows(range(12_000, 20_000), "A")))
    wh.write_partition(NEW, itertools.chain(rows(range(9_000, 12_000), "A"), rows(range(12_000, 20_000), "B"),
                                            rows(range(20_000, 28_000), "A")))
    monkeypatch.setattr(local_tunnel, "INSTANCE_LIMIT", 10_000)  # restored after the test, like the option below
    request.addfinalizer(lambda saved=options.tunnel.limit_instance_tunnel: setattr(
        options.tunnel, "limit_instance_tunnel", saved))
    options.tunnel.limit_instance_tunnel = True  # pyodps asks for the limited result (monkeypatch cannot set it)
    with odps.execute_sql(f"SELECT id FROM {wh.table} WHERE ds = '{NEW}'").open_reader() as reader:
        assert len(list(reader)) == 10_000  # the limit is on: a plain SELECT is cut
    assert wh.row_changes(NEW, OLD).as_dict() == {"previous_ds": OLD, "added": 8_000, "removed": 9_000,
                                                  "changed": 8_000, "unchanged": 3_000, "previous_without_etag": 0}
    expected = ([(i, "removed") for i in range(9_000)] + [(i, "changed") for i in range(12_000, 20_000)]
                + [(i, "added") for i in range(20_000, 28_000)])
    for limit, page_sizes in ((10_000, [10_000, 10_000, 5_000]), (3_000, [3_000] * 8 + [1_000])):
        monkeypatch.setattr(local_tunnel, "INSTANCE_LIMIT", limit)
        pages = list(wh.iter_delta(NEW, OLD))
        assert [len(page) for page in pages] == page_sizes
        assert [(i, reason) for i, reason, _ in flatten(pages)] == expected
        changed = next(row for page in pages for row in page.adds.to_pylist() if row["reason"] == "changed")
        assert changed == {"id": 12_000, "source_image": "/p/12000.jpg", "cate_id": 1, "etag": "B12000",
                           "reason": "changed"}


def test_a_maxcompute_delta_that_fails_midway_says_where_to_resume(server: LocalMaxComputeServer) -> None:
    """A failure between pages is transient and names the last id delivered: resuming there loses nothing
    and repeats nothing."""
    odps = ODPS(AK, SK, project=PROJECT, endpoint=server.endpoint, region_name=REGION, overwrite_global=False)
    wh = MaxComputeWarehouse(odps, f"catalog_{uuid.uuid4().hex[:8]}", 30)
    wh.ensure_table()
    wh.write_partition(OLD, [catalog(side(0))])
    wh.write_partition(NEW, [catalog(side(1))])
    server.faults.reset()
    got: list[DeltaBatch] = []
    try:
        with pytest.raises(WarehouseError, match=r"resume with after_id=3\b") as failed:
            for page in wh.iter_delta(NEW, OLD, batch_rows=3):
                got.append(page)
                server.faults.error_burst = 1  # the next request (the next page's SQL) answers 500
    finally:
        server.faults.reset()
    assert failed.value.transient is True and [page.last_id for page in got] == [3]
    rest = list(wh.iter_delta(NEW, OLD, after_id=got[-1].last_id, batch_rows=3))
    assert flatten(got + rest) == EXPECTED_DELTA
