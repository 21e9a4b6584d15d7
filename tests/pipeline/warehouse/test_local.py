"""LocalWarehouse: Parquet partitions replaced atomically, stats from the shared sql/ files via DuckDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import pipeline.warehouse.local as local_module
from pipeline.errors import CatalogError, ConnectionConfigError, SchemaMismatchError, WarehouseError
from pipeline.schema import CATALOG_SCHEMA, PartitionStats
from pipeline.warehouse import LocalWarehouse, Warehouse, open_warehouse
from tests.pipeline.warehouse.digest import reference_id_digest

DS = "20261123"
REPO = Path(__file__).resolve().parents[3]


def batch(ids: list[int], cates: list[int] | None = None) -> pa.RecordBatch:
    cates = cates if cates is not None else [i % 3 for i in ids]
    return pa.RecordBatch.from_pydict(
        {"id": ids, "source_image": [f"/img/{i}.png" for i in ids], "cate_id": cates,
         "etag": [f"{i:032X}" for i in ids]}, schema=CATALOG_SCHEMA
    )


def version(n: int, batch_rows: int = 5000) -> Iterator[pa.RecordBatch]:
    """Content that identifies itself: n rows, ids 0..n-1, every cate_id == n."""
    for start in range(0, n, batch_rows):
        ids = list(range(start, min(n, start + batch_rows)))
        yield batch(ids, [n] * len(ids))


@pytest.fixture
def wh(tmp_path: Path) -> LocalWarehouse:
    w = LocalWarehouse(tmp_path / "wh", "image_catalog", lifecycle_days=3)
    w.ensure_table()
    return w


def leftovers(w: LocalWarehouse) -> list[str]:
    return sorted(p.name for p in w.table_dir.rglob(".*"))


# -- table ----------------------------------------------------------------------------------------


def test_ensure_table_creates_metadata_and_is_idempotent(wh: LocalWarehouse) -> None:
    meta = json.loads((wh.table_dir / "_table.json").read_text())
    assert meta["columns"] == [
        {"name": "id", "type": "int64"},
        {"name": "source_image", "type": "string"},
        {"name": "cate_id", "type": "int64"},
        {"name": "etag", "type": "string"},
    ]
    assert meta["partition_columns"] == [{"name": "ds", "type": "string"}]
    assert meta["lifecycle_days"] == 3
    wh.ensure_table()
    assert wh.partitions() == []


def test_ensure_table_refuses_other_schema(wh: LocalWarehouse) -> None:
    meta_path = wh.table_dir / "_table.json"
    meta = json.loads(meta_path.read_text())
    meta["columns"][2] = {"name": "category", "type": "string"}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SchemaMismatchError) as err:
        wh.ensure_table()
    msg = str(err.value)
    assert "'category'" in msg and "'cate_id'" in msg and "only ever adds a missing nullable column" in msg


def test_write_requires_table(tmp_path: Path) -> None:
    w = LocalWarehouse(tmp_path, "image_catalog")
    with pytest.raises(WarehouseError, match="ensure_table"):
        w.write_partition(DS, [batch([1])])


def test_bad_constructor_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalWarehouse(tmp_path, "bad-name")
    with pytest.raises(ValueError):
        LocalWarehouse(tmp_path, "t", lifecycle_days=0)


# -- writing --------------------------------------------------------------------------------------


def test_write_read_and_replace(wh: LocalWarehouse) -> None:
    typed: Warehouse = wh  # satisfies the Protocol
    assert typed.write_partition(DS, [batch([1, 2]), batch([3])]) == 3
    assert wh.read_partition(DS).column("id").to_pylist() == [1, 2, 3]
    assert wh.partition_file(DS) == wh.table_dir / f"ds={DS}" / "data.parquet"

    assert wh.write_partition(DS, [batch([7])]) == 1
    table = wh.read_partition(DS)
    assert table.schema == CATALOG_SCHEMA
    assert table.to_pylist() == [{"id": 7, "source_image": "/img/7.png", "cate_id": 1, "etag": f"{7:032X}"}]
    assert sorted(p.name for p in (wh.table_dir / f"ds={DS}").iterdir()) == ["data.parquet"]


def test_partitions_sorted_and_only_complete(wh: LocalWarehouse) -> None:
    for ds in ("20261123", "20261101", "20261122"):
        wh.write_partition(ds, [batch([1])])
    (wh.table_dir / "ds=20261124").mkdir()  # a directory without data.parquet is no partition
    (wh.table_dir / "ds=20261124" / ".data-x.parquet.tmp").write_bytes(b"partial")
    assert wh.partitions() == ["20261101", "20261122", "20261123"]


def test_zero_row_partition_is_a_partition(wh: LocalWarehouse) -> None:
    assert wh.write_partition(DS, iter(())) == 0
    assert wh.partitions() == [DS]
    assert wh.read_partition(DS).num_rows == 0
    assert wh.read_partition(DS).schema == CATALOG_SCHEMA
    assert wh.partition_stats(DS) == PartitionStats(DS, 0, 0, {}, [], reference_id_digest([]))


def test_batches_are_conformed(wh: LocalWarehouse) -> None:
    reordered = pa.RecordBatch.from_pydict(
        {
            "cate_id": pa.array([5], pa.int32()),
            "id": pa.array([42], pa.int32()),
            "source_image": pa.array(["/x.png"], pa.large_string()),
            "etag": pa.array([None], pa.null()),  # a batch where no object had an ETag
        }
    )
    assert wh.write_partition(DS, [reordered, pa.Table.from_batches([batch([43])])]) == 2
    assert wh.read_partition(DS).to_pylist()[0] == {"id": 42, "source_image": "/x.png", "cate_id": 5, "etag": None}


@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (pa.RecordBatch.from_pydict({"id": [1], "source_image": ["/a"], "etag": ["E"]}), ["missing ['cate_id']"]),
        # etag may be NULL, but a producer must say so: a batch without the column is refused.
        (pa.RecordBatch.from_pydict({"id": [1], "source_image": ["/a"], "cate_id": [1]}), ["missing ['etag']"]),
        (
            pa.RecordBatch.from_pydict({"id": [1], "source_image": ["/a"], "cate_id": [1], "etag": ["E"], "extra": [1]}),
            ["unexpected ['extra']"],
        ),
        (pa.RecordBatch.from_pydict({"id": [1], "source_image": ["/a"], "cate_id": ["x"], "etag": ["E"]}),
         ["'cate_id'", "string"]),
        (pa.RecordBatch.from_pydict({"id": [1.5], "source_image": ["/a"], "cate_id": [1], "etag": ["E"]}),
         ["'id'", "double"]),
        (pa.RecordBatch.from_pydict({"id": [None], "source_image": ["/a"], "cate_id": [1], "etag": ["E"]}),
         ["'id'", "null"]),
        (pa.RecordBatch.from_pydict({"id": [1], "source_image": ["/a"], "cate_id": [1], "etag": [b"\xff"]}),
         ["'etag'", "binary"]),
    ],
)
def test_wrong_schema_is_refused_and_old_data_kept(wh: LocalWarehouse, bad: pa.RecordBatch, words: list[str]) -> None:
    wh.write_partition(DS, [batch([1, 2])])
    with pytest.raises(WarehouseError) as err:
        wh.write_partition(DS, [batch([3]), bad])
    for word in words:
        assert word in str(err.value)
    assert wh.read_partition(DS).column("id").to_pylist() == [1, 2]
    assert leftovers(wh) == []


def test_source_failure_keeps_old_partition(wh: LocalWarehouse) -> None:
    wh.write_partition(DS, [batch([1, 2])])
    refusal = CatalogError("category 7 is not mapped")

    def failing() -> Iterator[pa.RecordBatch]:
        yield batch([10, 11])
        raise refusal

    with pytest.raises(CatalogError) as err:  # a PipelineError from the source passes unchanged
        wh.write_partition(DS, failing())
    assert err.value is refusal
    assert wh.read_partition(DS).column("id").to_pylist() == [1, 2]
    assert leftovers(wh) == []


def test_unexpected_source_failure_is_wrapped(wh: LocalWarehouse) -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield batch([10])
        raise KeyError("boom")

    with pytest.raises(WarehouseError, match="batch source raised KeyError") as err:
        wh.write_partition(DS, failing())
    assert isinstance(err.value.__cause__, KeyError)
    # the partition never existed and still does not; no empty directory is left behind
    assert wh.partitions() == [] and not (wh.table_dir / f"ds={DS}").exists()


def test_streams_into_hidden_temp_file_and_replaces_at_the_end(wh: LocalWarehouse) -> None:
    wh.write_partition(DS, [batch([1])])
    part_dir = wh.table_dir / f"ds={DS}"
    seen: list[list[str]] = []

    def observed() -> Iterator[pa.RecordBatch]:
        yield batch([2])
        seen.append(sorted(p.name for p in part_dir.iterdir()))
        assert wh.read_partition(DS).column("id").to_pylist() == [1]  # old version still served
        yield batch([3])

    wh.write_partition(DS, observed())
    assert len(seen[0]) == 2 and seen[0][0].startswith(".data-") and seen[0][0].endswith(".parquet.tmp")
    assert seen[0][1] == "data.parquet"
    assert wh.read_partition(DS).column("id").to_pylist() == [2, 3]


def test_rows_reach_disk_while_batches_still_stream(wh: LocalWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_module, "_ROW_GROUP_ROWS", 100)
    part_dir = wh.table_dir / f"ds={DS}"
    sizes: list[int] = []

    def tmp_size() -> int:
        (tmp,) = part_dir.glob(".data-*.parquet.tmp")
        return tmp.stat().st_size

    def paced() -> Iterator[pa.RecordBatch]:
        for i in range(10):
            yield batch(list(range(i * 60, (i + 1) * 60)))
            sizes.append(tmp_size())

    assert wh.write_partition(DS, paced()) == 600
    assert sizes[-1] > sizes[0]  # earlier row groups were already written out, not held in memory
    assert pq.ParquetFile(wh.partition_file(DS)).metadata.num_row_groups == 5


# -- stats ----------------------------------------------------------------------------------------


def test_partition_stats(wh: LocalWarehouse) -> None:
    wh.write_partition("20261122", [batch([100, 100, 100, 100])])  # another partition: not counted
    ids = [1, 2, 3, 3, 4, 4, 4, 5, 6, 6]
    wh.write_partition(DS, [batch(ids[:5], [10] * 5), batch(ids[5:], [20, 20, 30, 30, 30])])
    stats = wh.partition_stats(DS)
    assert stats == PartitionStats(
        ds=DS, rows=10, distinct_ids=6, rows_per_category={10: 5, 20: 2, 30: 3}, duplicate_ids=[4, 3, 6],
        id_digest=reference_id_digest(ids),
    )


def test_the_id_digest_names_the_set_of_ids(wh: LocalWarehouse) -> None:
    # Order and duplicates do not move it; any id added, removed or replaced does.
    wh.write_partition("20261120", [batch([5, 1, 3])])
    wh.write_partition("20261121", [batch([1, 3, 5, 5, 1])])
    wh.write_partition("20261122", [batch([1, 3, 6])])
    wh.write_partition("20261123", [batch([1, 3])])
    digests = [wh.partition_stats(ds).id_digest for ds in ("20261120", "20261121", "20261122", "20261123")]
    assert digests[0] == digests[1] == reference_id_digest([1, 3, 5])
    assert len(set(digests[1:])) == 3


def test_duplicate_ids_capped_at_ten(wh: LocalWarehouse) -> None:
    ids = list(range(20)) * 2
    wh.write_partition(DS, [batch(ids)])
    assert wh.partition_stats(DS).duplicate_ids == list(range(10))


def test_missing_partition(wh: LocalWarehouse) -> None:
    wh.write_partition("20261122", [batch([1])])
    with pytest.raises(WarehouseError, match=f"partition ds={DS} of local table 'image_catalog' does not exist"):
        wh.partition_stats(DS)
    with pytest.raises(WarehouseError, match="does not exist"):
        wh.read_partition(DS)


# -- lifecycle ------------------------------------------------------------------------------------


def test_expire_partitions(wh: LocalWarehouse) -> None:
    for ds in ("20261119", "20261120", "20261121", "20261123"):
        wh.write_partition(ds, [batch([1])])
    assert wh.expire_partitions("20261123") == ["20261119"]  # lifecycle 3 days: keep 20261120 on
    assert wh.partitions() == ["20261120", "20261121", "20261123"]
    assert leftovers(wh) == []


# -- a reader in another process only ever sees complete versions ---------------------------------

_READER = textwrap.dedent(
    """
    import json, sys, time
    from pipeline.warehouse.local import LocalWarehouse

    root, table, ds, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    w = LocalWarehouse(root, table)
    reads, stats, errors = [], [], []
    print("ready", flush=True)
    deadline = time.monotonic() + seconds
    # Count-based, so a loaded machine only makes it slower: 20 reads that saw at least two versions.
    while (len(reads) < 20 or len({r[0] for r in reads}) < 2) and time.monotonic() < deadline:
        try:
            t = w.read_partition(ds)
            ids, cates = t.column("id").to_pylist(), t.column("cate_id").to_pylist()
            reads.append([t.num_rows, len(set(ids)), sorted(set(cates))])
            s = w.partition_stats(ds)
            stats.append([s.rows, s.distinct_ids, sorted(s.rows_per_category.items()), s.duplicate_ids])
        except Exception as exc:
            errors.append(repr(exc))
    print(json.dumps({"reads": reads, "stats": stats, "errors": errors}), flush=True)
    """
)


def test_reader_in_other_process_sees_only_complete_versions(wh: LocalWarehouse) -> None:
    sizes = [0, 1, 2500, 30000, 7, 12000]
    wh.write_partition(DS, version(sizes[-1]))
    proc = subprocess.Popen(
        [sys.executable, "-c", _READER, str(wh.root), wh.table, DS, "60"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        writes = 0
        start = time.monotonic()
        while proc.poll() is None and time.monotonic() - start < 90:
            wh.write_partition(DS, version(sizes[writes % len(sizes)]))
            writes += 1
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = json.loads(out.strip().splitlines()[-1])

    assert result["errors"] == [], "\n".join(result["errors"])
    assert writes >= 2
    assert len(result["reads"]) >= 20 and len(result["stats"]) >= 20
    for rows, distinct, cates in result["reads"]:
        assert rows in sizes and distinct == rows and cates == ([rows] if rows else [])
    for rows, distinct, per_cate, dups in result["stats"]:
        assert rows in sizes and distinct == rows and dups == []
        assert per_cate == ([[rows, rows]] if rows else [])
    # several versions were actually observed, so the reader really raced the writer
    assert len({r[0] for r in result["reads"]}) >= 2
    assert leftovers(wh) == []


# -- open_warehouse with Airflow connections from the environment ---------------------------------


def test_open_warehouse_fs_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WH_LOCAL", json.dumps({"conn_type": "fs", "extra": {"path": str(tmp_path)}}))
    w = open_warehouse("wh_local", "image_catalog", 7)
    assert isinstance(w, LocalWarehouse)
    assert (w.root, w.table, w.lifecycle_days) == (tmp_path, "image_catalog", 7)


def test_open_warehouse_fs_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WH_LOCAL", json.dumps({"conn_type": "fs", "host": str(tmp_path)}))
    w = open_warehouse("wh_local", "image_catalog", 7)
    assert isinstance(w, LocalWarehouse) and w.root == tmp_path


def test_open_warehouse_fs_without_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WH_LOCAL", json.dumps({"conn_type": "fs"}))
    with pytest.raises(ConnectionConfigError, match="'wh_local'.*extra.path"):
        open_warehouse("wh_local", "image_catalog", 7)


def test_open_warehouse_refuses_other_types_without_leaking_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_WH_PG",
        json.dumps({"conn_type": "postgres", "host": "db", "login": "u", "password": "hunter2-secret"}),
    )
    with pytest.raises(ConnectionConfigError) as err:
        open_warehouse("wh_pg", "image_catalog", 7)
    msg = str(err.value)
    assert "'wh_pg'" in msg and "'postgres'" in msg and "'maxcompute'" in msg and "'fs'" in msg
    assert "hunter2-secret" not in msg


def test_open_warehouse_missing_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_NO_SUCH_WH", raising=False)
    with pytest.raises(ConnectionConfigError, match="'no_such_wh' is not defined"):
        open_warehouse("no_such_wh", "image_catalog", 7)


def test_id_changes_between_partitions(wh: LocalWarehouse) -> None:
    wh.write_partition("20261101", [batch([1, 2, 3, 4])])
    wh.write_partition("20261102", [batch([3, 4, 5, 6, 7])])
    changes = wh.id_changes("20261102", "20261101")
    assert (changes.added, changes.removed) == (3, 2)
    assert wh.id_changes("20261101", "20261101").as_dict() == {"previous_ds": "20261101", "added": 0, "removed": 0}
    with pytest.raises(WarehouseError, match="ds=20261103 .* does not exist"):
        wh.id_changes("20261103", "20261101")


def test_sample_rows_are_the_smallest_ids(wh: LocalWarehouse) -> None:
    wh.write_partition("20261101", [batch([9, 3, 7, 1])])
    rows = wh.sample_rows("20261101", 2)
    assert [r["id"] for r in rows] == [1, 3]
    assert rows[0] == {"id": 1, "source_image": "/img/1.png", "cate_id": 1, "etag": f"{1:032X}"}


def test_sample_new_rows_are_ids_the_previous_partition_lacks(wh: LocalWarehouse) -> None:
    wh.write_partition("20261101", [batch([1, 2, 3, 4])])
    wh.write_partition("20261102", [batch([9, 3, 7, 4, 5, 1])])
    assert [r["id"] for r in wh.sample_new_rows("20261102", "20261101", 10)] == [5, 7, 9]
    assert [r["id"] for r in wh.sample_new_rows("20261102", "20261101", 2)] == [5, 7]
    assert wh.sample_new_rows("20261101", "20261101", 10) == []
    assert wh.sample_new_rows("20261102", "20261101", 1)[0] == {"id": 5, "source_image": "/img/5.png", "cate_id": 2,
                                                                 "etag": f"{5:032X}"}


def test_rows_by_id(wh: LocalWarehouse) -> None:
    wh.write_partition("20261101", [batch([9, 3, 7, 1])])
    assert [r["id"] for r in wh.rows_by_id("20261101", [7, 9, 42, 7])] == [7, 9]
    assert wh.rows_by_id("20261101", []) == []


def test_staged_rows_are_published_in_one_replace_and_the_stage_is_emptied(wh: LocalWarehouse) -> None:
    wh.write_partition("20261101", [batch([1, 2, 3])])
    staging = wh.staging()
    staging.ensure_table()
    staging.write_partition("20261101", [batch([2, 3, 4, 5])])
    changes = staging.id_changes("20261101", "20261101", previous=wh)  # staged against published
    assert (changes.added, changes.removed) == (2, 1)
    assert wh.read_partition("20261101").column("id").to_pylist() == [1, 2, 3]  # not yet published
    wh.publish("20261101", staging)
    assert wh.read_partition("20261101").column("id").to_pylist() == [2, 3, 4, 5]
    assert staging.partitions() == []
    with pytest.raises(WarehouseError, match="nothing staged"):
        wh.publish("20261101", staging)
    assert wh.read_partition("20261101").column("id").to_pylist() == [2, 3, 4, 5]


def test_expiry_by_age_removes_unpublished_days_and_litter_no_writer_owns(tmp_path: Path) -> None:
    """Issue 11: a day staged and never published, or a temp file of a write killed days ago, belonged to
    no partition any run would clean; the staging table's lifecycle (one day) now reclaims them by age,
    as MaxCompute's LIFECYCLE does, and leaves what a running backfill wrote a moment ago."""
    staging = LocalWarehouse(tmp_path, "catalog").staging()
    staging.ensure_table()
    for ds in ("20261101", "20261102", "20261103"):
        staging.write_partition(ds, [batch([1])])
    (staging.table_dir / "ds=20261104").mkdir()
    (staging.table_dir / "ds=20261104" / ".data-dead.parquet.tmp").write_bytes(b"x" * 100)
    (staging.table_dir / "ds=20261103" / ".data-fresh.parquet.tmp").write_bytes(b"x")
    two_days_ago = time.time() - 2 * 86400
    for path in (staging.partition_file("20261101"), staging.partition_file("20261102"),
                 staging.table_dir / "ds=20261104" / ".data-dead.parquet.tmp", staging.table_dir / "ds=20261104"):
        os.utime(path, (two_days_ago, two_days_ago))
    os.utime(staging.partition_file("20261102"))  # rewritten just now (a backfill of an old date): kept
    removed = staging.expire_stale()
    assert sorted(removed) == ["ds=20261101", "ds=20261104", "ds=20261104/.data-dead.parquet.tmp"]
    assert staging.partitions() == ["20261102", "20261103"]
    assert (staging.table_dir / "ds=20261103" / ".data-fresh.parquet.tmp").exists()  # maybe being written
    assert staging.expire_stale() == []


def test_litter_of_killed_writes_is_removed(wh: LocalWarehouse) -> None:
    wh.write_partition("20261101", [batch([1])])
    # What a write killed before its os.replace leaves: a temp file, and a folder with nothing else.
    (wh.table_dir / "ds=20261101" / ".data-dead.parquet.tmp").write_bytes(b"x" * 100)
    (wh.table_dir / "ds=20261102").mkdir()
    (wh.table_dir / "ds=20261102" / ".data-dead.parquet.tmp").write_bytes(b"x")
    (wh.table_dir / ".expired-20261001-dead").mkdir()
    assert sorted(wh.clean_litter("20261101")) == [".expired-20261001-dead", "ds=20261101/.data-dead.parquet.tmp"]
    assert (wh.table_dir / "ds=20261102" / ".data-dead.parquet.tmp").exists()  # another day: maybe being written
    assert sorted(wh.clean_litter("20261102")) == ["ds=20261102", "ds=20261102/.data-dead.parquet.tmp"]
    assert wh.partitions() == ["20261101"] and wh.read_partition("20261101").num_rows == 1
    wh.drop_partition("20261101")
    wh.drop_partition("20261101")  # gone already: nothing to do
    assert wh.partitions() == []
