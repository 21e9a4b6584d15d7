"""The local MaxCompute's storage: atomic partition writes, partition DDL, lifecycle, restarts."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from localcloud.maxcompute.errors import MaxComputeError
from localcloud.maxcompute.store import MaxComputeStore, parse_spec
from localcloud.maxcompute.types import Column

COLUMNS = [Column("id", "BIGINT"), Column("source_image", "STRING")]
DS = [Column("ds", "STRING")]


def batch(ids: list[int]) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(ids, pa.int64()), "source_image": [f"/k/{i}.jpg" for i in ids]})


def rows(store: MaxComputeStore, spec: dict | None = None) -> list[int]:
    return sorted(i for _, files in store.parquet_files("p", "t", spec) for f in files
                  for i in pq.read_table(f).column("id").to_pylist())


@pytest.fixture
def store(tmp_path):
    s = MaxComputeStore(tmp_path)
    s.create_project("p")
    s.create_table("p", "t", COLUMNS, DS, lifecycle=3, comment="c")
    return s


def test_a_write_replaces_the_partition_only_when_it_completes(store):
    store.write("p", "t", {"ds": "1"}, [batch([1, 2])], overwrite=True, create_partition=True)

    def failing():
        yield batch([7])
        raise RuntimeError("listing broke")

    with pytest.raises(RuntimeError):
        store.write("p", "t", {"ds": "1"}, failing(), overwrite=True)
    assert rows(store, {"ds": "1"}) == [1, 2]
    assert store.write("p", "t", "ds=1", [batch([3]), batch([4])], overwrite=True) == 2
    assert rows(store, {"ds": "1"}) == [3, 4]
    store.write("p", "t", "ds=1", [batch([5])], overwrite=False)
    assert rows(store, {"ds": "1"}) == [3, 4, 5]
    assert store.get_partition("p", "t", "ds=1").record_num == 3


def test_writing_a_missing_partition_needs_create_partition(store):
    with pytest.raises(MaxComputeError) as info:
        store.write("p", "t", {"ds": "2"}, [batch([1])], overwrite=True)
    assert info.value.code == "NoSuchObject"
    with pytest.raises(MaxComputeError, match="does not match the partition columns"):
        store.write("p", "t", {"dt": "2"}, [batch([1])], overwrite=True, create_partition=True)
    with pytest.raises(MaxComputeError, match="does not fit"):
        store.write("p", "t", {"ds": "2"}, [pa.record_batch({"id": ["x"], "source_image": ["y"]})],
                    overwrite=True, create_partition=True)
    assert store.list_partitions("p", "t") == []


def test_partition_ddl_and_snapshots_survive_a_restart(store, tmp_path):
    store.add_partition("p", "t", {"ds": "a"})
    with pytest.raises(MaxComputeError) as info:
        store.add_partition("p", "t", {"ds": "a"})
    assert info.value.code == "ObjectAlreadyExists"
    store.add_partition("p", "t", {"ds": "a"}, if_not_exists=True)
    store.write("p", "t", {"ds": "a"}, [batch([1])], overwrite=True)
    store.rename_partition("p", "t", "ds=a", "ds=b")
    reopened = MaxComputeStore(tmp_path)
    assert [p.spec_text for p in reopened.list_partitions("p", "t")] == ["ds=b"]
    assert rows(reopened, {"ds": "b"}) == [1]
    reopened.drop_partition("p", "t", {"ds": "b"})
    with pytest.raises(MaxComputeError):
        reopened.drop_partition("p", "t", {"ds": "b"})
    reopened.drop_partition("p", "t", {"ds": "b"}, if_exists=True)
    meta = reopened.get_table("p", "T")
    assert (meta.lifecycle, meta.comment, [c.name for c in meta.partition_columns]) == (3, "c", ["ds"])


def test_lifecycle_reclaims_partitions_untouched_for_that_many_days(tmp_path):
    now = [1_000_000.0]
    store = MaxComputeStore(tmp_path, clock=lambda: now[0])
    store.create_project("p")
    store.create_table("p", "t", COLUMNS, DS, lifecycle=3)
    store.create_table("p", "plain", COLUMNS, lifecycle=1)
    store.write("p", "t", {"ds": "old"}, [batch([1])], overwrite=True, create_partition=True)
    store.write("p", "plain", None, [batch([1])], overwrite=True)
    now[0] += 2 * 86400
    store.write("p", "t", {"ds": "new"}, [batch([2])], overwrite=True, create_partition=True)
    assert store.expire() == ["p.plain"]
    now[0] += 1.5 * 86400
    assert store.expire() == ["p.t/ds=old"]
    assert [p.spec_text for p in store.list_partitions("p", "t")] == ["ds=new"]
    assert not store.table_exists("p", "plain")


def test_tables_and_projects_are_checked(store):
    with pytest.raises(MaxComputeError) as info:
        store.get_table("p", "missing")
    assert (info.value.status, info.value.code) == (404, "NoSuchObject")
    with pytest.raises(MaxComputeError, match="Project not found"):
        store.get_table("nope", "t")
    with pytest.raises(MaxComputeError) as info:
        store.create_table("p", "t", COLUMNS)
    assert info.value.code == "ObjectAlreadyExists"
    with pytest.raises(MaxComputeError, match="invalid table name"):
        store.create_table("p", "bad-name", COLUMNS)
    store.drop_table("p", "t")
    assert not store.table_exists("p", "t")
    store.drop_table("p", "t", if_exists=True)
    assert parse_spec("ds='20261201', hh=01") == {"ds": "20261201", "hh": "01"}
