"""``ALTER TABLE ... ADD COLUMNS`` on the local MaxCompute, with MaxCompute's semantics.

Why: the pipeline gives catalog tables created before the ``etag`` column that column (sql/add_etag_column.sql),
and everything must then read the partitions written before it, with NULL in the new column, exactly as
MaxCompute does: SQL, the table tunnel (record and Arrow readers), pyodps' schema. The store never rewrites a
data file, so a partition may hold files from before and after the change.
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest
from odps import ODPS, errors
from odps.models import TableSchema
from odps.types import Column, Partition

from localcloud.maxcompute.errors import NOT_SUPPORTED, PARSE_ERROR, SEMANTIC_ERROR, SqlError
from localcloud.maxcompute.sql import SqlEngine
from localcloud.maxcompute.store import MaxComputeStore
from pipeline.sql import load_sql

OLD, NEW = "20261201", "20261202"


@pytest.fixture
def engine(tmp_path) -> SqlEngine:
    store = MaxComputeStore(tmp_path)
    store.create_project("p")
    engine = SqlEngine(store)
    engine.execute("p", "CREATE TABLE t (id BIGINT COMMENT 'key', path STRING) PARTITIONED BY (ds STRING) LIFECYCLE 9")
    engine.execute("p", f"INSERT OVERWRITE TABLE t PARTITION (ds='{OLD}') VALUES (1, 'a'), (2, 'b')")
    return engine


def rows(engine: SqlEngine, sql: str) -> list[tuple]:
    return [tuple(r.values()) for r in engine.execute("p", sql).table.to_pylist()]


def fails(engine: SqlEngine, sql: str) -> SqlError:
    with pytest.raises(SqlError) as caught:
        engine.execute("p", sql)
    return caught.value


def test_added_columns_come_last_and_read_null_in_rows_written_before(engine: SqlEngine) -> None:
    store = engine.store
    files_before = store.parquet_files("p", "t", {"ds": OLD})
    engine.execute("p", "ALTER TABLE t ADD COLUMNS (etag STRING COMMENT 'the ETag', n BIGINT)")
    meta = store.get_table("p", "t")
    assert [(c.name, c.type, c.comment) for c in meta.columns] == [
        ("id", "BIGINT", "key"), ("path", "STRING", ""), ("etag", "STRING", "the ETag"), ("n", "BIGINT", "")]
    assert meta.lifecycle == 9 and [c.name for c in meta.partition_columns] == ["ds"]
    assert store.parquet_files("p", "t", {"ds": OLD}) == files_before  # no data file is rewritten
    assert rows(engine, f"SELECT * FROM t WHERE ds = '{OLD}' ORDER BY id LIMIT 9") == [
        (1, "a", None, None, OLD), (2, "b", None, None, OLD)]
    # A partition holding files from before and after the change reads each file's rows right.
    engine.execute("p", f"INSERT INTO TABLE t PARTITION (ds='{OLD}') VALUES (3, 'c', 'E3', 7)")
    engine.execute("p", f"INSERT OVERWRITE TABLE t PARTITION (ds='{NEW}') SELECT id, path, 'E' || path, id FROM t "
                        f"WHERE ds = '{OLD}'")
    assert rows(engine, f"SELECT id, etag, n FROM t WHERE ds = '{OLD}' ORDER BY id LIMIT 9") == [
        (1, None, None), (2, None, None), (3, "E3", 7)]
    assert rows(engine, f"SELECT COUNT(etag), SUM(n) FROM t WHERE ds = '{NEW}'") == [(3, 6)]
    assert rows(engine, f"SELECT id FROM t WHERE ds = '{OLD}' AND etag IS NULL ORDER BY id LIMIT 9") == [(1,), (2,)]


def test_if_not_exists_skips_the_columns_the_table_has(engine: SqlEngine) -> None:
    engine.execute("p", "ALTER TABLE t ADD COLUMNS (etag STRING)")
    engine.execute("p", "ALTER TABLE t ADD COLUMNS IF NOT EXISTS (etag STRING COMMENT 'other', extra STRING)")
    assert [(c.name, c.comment) for c in engine.store.get_table("p", "t").columns][2:] == [("etag", ""), ("extra", "")]
    error = fails(engine, "ALTER TABLE t ADD COLUMNS (etag STRING)")
    assert error.code == SEMANTIC_ERROR and "column etag already exists in table p.t" in error.message


@pytest.mark.parametrize(("sql", "code", "words"), [
    ("ALTER TABLE t ADD COLUMNS (ds STRING)", SEMANTIC_ERROR, "column ds already exists"),
    ("ALTER TABLE t ADD COLUMNS (a STRING, a BIGINT)", SEMANTIC_ERROR, "duplicate column name a"),
    ("ALTER TABLE t ADD COLUMNS (`order` STRING COMMENT '" + "x" * 1025 + "')", SEMANTIC_ERROR, "at most 1024"),
    ("ALTER TABLE t ADD COLUMNS (a ARRAY<STRING>)", NOT_SUPPORTED, "ARRAY<STRING>"),
    ("ALTER TABLE t ADD COLUMNS (order STRING)", PARSE_ERROR, "reserved word"),
    ("ALTER TABLE t ADD COLUMNS ()", PARSE_ERROR, "Parse exception"),
    ("ALTER TABLE no_such ADD COLUMNS (a STRING)", "ODPS-0130131", "cannot be resolved"),
])
def test_what_add_columns_refuses(engine: SqlEngine, sql: str, code: str, words: str) -> None:
    error = fails(engine, sql)
    assert error.code == code and words in error.message
    assert [c.name for c in engine.store.get_table("p", "t").columns] == ["id", "path"]  # nothing half-added


# -- over the wire, through pyodps ----------------------------------------------------------------


def test_pyodps_sees_the_column_and_reads_old_partitions_with_null(odps: ODPS) -> None:
    name = f"old_catalog_{uuid.uuid4().hex[:8]}"
    old = TableSchema(columns=[Column("id", "bigint"), Column("source_image", "string"), Column("cate_id", "bigint")],
                      partitions=[Partition("ds", "string")])
    table = odps.create_table(name, old, lifecycle=7)
    odps.write_table(name, [[1, "/a", 5], [2, "/b", 6]], partition=f"ds={OLD}", create_partition=True)
    odps.execute_sql(load_sql("add_etag_column", table=name))
    table.reload()
    assert [(c.name, str(c.type).lower()) for c in table.table_schema.simple_columns][-1] == ("etag", "string")
    assert "not read by OpenSearch" in table.table_schema.simple_columns[-1].comment
    with table.open_reader(partition=f"ds={OLD}") as reader:  # the record reader
        assert sorted(list(r.values) for r in reader) == [[1, "/a", 5, None, OLD], [2, "/b", 6, None, OLD]]
    with table.open_reader(partition=f"ds={OLD}", arrow=True) as reader:
        assert reader.read_all().column("etag").to_pylist() == [None, None]
    with table.open_writer(partition=f"ds={NEW}", create_partition=True, arrow=True) as writer:
        writer.write(pa.record_batch({"id": pa.array([3], pa.int64()), "source_image": ["/c"],
                                      "cate_id": pa.array([7], pa.int64()), "etag": ["E3"]}))
    sql = f"SELECT id, etag FROM {name} WHERE ds IN ('{OLD}', '{NEW}') ORDER BY id LIMIT 9"
    with odps.execute_sql(sql).open_reader() as reader:
        assert [list(r.values) for r in reader] == [[1, None], [2, None], [3, "E3"]]
    with pytest.raises(errors.ODPSError, match="column etag already exists"):
        odps.execute_sql(load_sql("add_etag_column", table=name))
