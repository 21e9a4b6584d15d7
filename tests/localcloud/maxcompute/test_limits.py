"""MaxCompute's documented limits, hit through the real pyodps client: what the service refuses, the
local server refuses too (a run that passes here must not fail in the cloud on a limit).

Sources: "MaxCompute SQL limits" (cell size 8 MB, 60,000 partitions per table, 6 partition levels,
1,200 columns, 1,024-byte comments, 2 MB statements, 10,000 partitions read per query), "ODPS-0123031"
(60,000 partitions; 10,000 output partitions per job), "Partition" (no double-byte partition values),
"Reserved words and keywords" (a keyword names a table, column or partition only when escaped).
"""

from __future__ import annotations

import time
import uuid

import pyarrow as pa
import pytest
import requests
from odps import ODPS, errors
from odps.models import TableSchema
from odps.types import Column, Partition

from localcloud.maxcompute.types import MAX_CELL_BYTES

SCHEMA = TableSchema(columns=[Column("id", "bigint"), Column("source_image", "string")],
                     partitions=[Partition("ds", "string")])


def fresh(odps: ODPS):
    return odps.create_table(f"limits_{uuid.uuid4().hex[:8]}", SCHEMA, lifecycle=1)


def rows(table, partition: str) -> int:
    with table.open_reader(partition=partition) as reader:
        return reader.count


def test_a_string_over_8_mib_is_refused_by_the_arrow_writer_upload(odps):
    table = fresh(odps)
    big = "x" * (MAX_CELL_BYTES + 1)
    batch = pa.record_batch({"id": pa.array([1, 2], pa.int64()), "source_image": ["/ok.jpg", big]})
    with pytest.raises(errors.InvalidArgument, match="MaxFieldSize"):
        with table.open_writer(partition="ds=20261201", create_partition=True, arrow=True) as writer:
            writer.write(batch)
    assert rows(table, "ds=20261201") == 0  # pyodps made the partition; nothing was committed to it
    # exactly 8 MiB still fits
    edge = pa.record_batch({"id": pa.array([1], pa.int64()), "source_image": ["y" * MAX_CELL_BYTES]})
    with table.open_writer(partition="ds=20261201", create_partition=True, arrow=True) as writer:
        writer.write(edge)
    assert rows(table, "ds=20261201") == 1


def test_a_string_over_8_mib_is_refused_by_the_record_writer_before_it_is_sent(odps):
    table = fresh(odps)
    with pytest.raises(ValueError, match="more than 8"):   # pyodps checks the session's MaxFieldSize
        with table.open_writer(partition="ds=1", create_partition=True) as writer:
            writer.write([[1, "x" * (MAX_CELL_BYTES + 1)]])


def test_sql_cannot_write_a_cell_over_8_mib(odps):
    table = fresh(odps)
    with pytest.raises(errors.ODPSError, match="bytes a cell may hold"):
        odps.execute_sql(f"INSERT OVERWRITE TABLE {table.name} PARTITION (ds='1') "
                         f"SELECT 1, repeat('x', {MAX_CELL_BYTES + 1})")
    assert not table.exist_partition("ds=1")


def test_a_table_holds_at_most_60000_partitions(odps, monkeypatch):
    monkeypatch.setattr("localcloud.maxcompute.store.MAX_PARTITIONS", 2)  # the check, not 60,000 round trips
    table = fresh(odps)
    table.create_partition("ds=1")
    odps.write_table(table.name, [[1, "/a"]], partition="ds=2", create_partition=True)
    with pytest.raises(errors.ODPSError, match="ODPS-0123031.*maximum 2 partitions"):
        table.create_partition("ds=3")
    with pytest.raises(errors.ODPSError, match="ODPS-0123031"):   # pyodps' writer creates it by SQL
        odps.write_table(table.name, [[3, "/c"]], partition="ds=3", create_partition=True)
    with pytest.raises(errors.ODPSError, match="ODPS-0123031"):   # the tunnel's own create_partition
        from odps.tunnel import TableTunnel
        session = TableTunnel(odps).create_upload_session(table.name, partition_spec="ds=3",
                                                          create_partition=True)
        with session.open_arrow_writer(0) as writer:
            writer.write(pa.record_batch({"id": pa.array([3], pa.int64()), "source_image": ["/c"]}))
        session.commit([0])
    with pytest.raises(errors.ODPSError, match="ODPS-0123031"):
        odps.execute_sql(f"INSERT OVERWRITE TABLE {table.name} PARTITION (ds='3') SELECT 3, '/c'")
    odps.execute_sql(f"INSERT OVERWRITE TABLE {table.name} PARTITION (ds='2') SELECT 2, '/b'")  # existing: fine
    assert sorted(p.partition_spec["ds"] for p in table.partitions) == ["1", "2"]


def test_one_job_writes_and_reads_at_most_10000_partitions(odps, monkeypatch):
    monkeypatch.setattr("localcloud.maxcompute.sql.MAX_OUTPUT_PARTITIONS", 2)
    monkeypatch.setattr("localcloud.maxcompute.sql.MAX_INPUT_PARTITIONS", 2)
    table = fresh(odps)
    with pytest.raises(errors.ODPSError, match="cannot output data to more than 2 partitions"):
        odps.execute_sql(f"INSERT OVERWRITE TABLE {table.name} PARTITION (ds) "
                         "SELECT 1, '/a', 'a' UNION ALL SELECT 2, '/b', 'b' UNION ALL SELECT 3, '/c', 'c'")
    assert list(table.partitions) == []
    odps.execute_sql(f"INSERT OVERWRITE TABLE {table.name} PARTITION (ds) SELECT 1, '/a', 'a' UNION ALL "
                     "SELECT 2, '/b', 'b'")
    table.create_partition("ds=c")
    odps.execute_sql(f"SELECT COUNT(*) FROM {table.name} WHERE ds IN ('a', 'b')")
    with pytest.raises(errors.ODPSError, match="at most 2 may be read"):
        odps.execute_sql(f"SELECT COUNT(*) FROM {table.name} WHERE ds >= 'a'")


def test_partition_values_refused_by_the_service(odps):
    table = fresh(odps)
    for bad in ("中文", "x" * 129, "a/b"):
        with pytest.raises(errors.ODPSError, match="invalid partition value"):
            table.create_partition(f"ds={bad}")
    from odps.tunnel import TableTunnel
    with pytest.raises(errors.ODPSError, match="partitionspec is not valid"):
        TableTunnel(odps).create_upload_session(table.name, partition_spec="ds=中文", create_partition=True)
    with pytest.raises(errors.ODPSError, match="invalid dynamic partition value"):
        odps.execute_sql(f"INSERT OVERWRITE TABLE {table.name} PARTITION (ds) SELECT 1, '/a', '中文'")
    table.create_partition("ds=2026-12-01 00:00:00")   # letters, digits, space, - and : are fine
    assert [p.partition_spec["ds"] for p in table.partitions] == ["2026-12-01 00:00:00"]


def test_table_shape_limits(odps):
    name = f"limits_{uuid.uuid4().hex[:8]}"
    seven = TableSchema(columns=[Column("id", "bigint")], partitions=[Partition(f"p{i}", "string") for i in range(7)])
    with pytest.raises(errors.ODPSError, match="at most 6"):
        odps.create_table(name, seven)
    wide = TableSchema(columns=[Column(f"c{i}", "bigint") for i in range(1201)])
    with pytest.raises(errors.ODPSError, match="at most 1200"):
        odps.create_table(name, wide)
    with pytest.raises(errors.ODPSError, match="at most 1024"):
        odps.create_table(name, SCHEMA, comment="x" * 1025)
    assert not odps.exist_table(name)


def test_a_reserved_word_names_a_table_or_column_only_when_quoted(odps):
    name = f"limits_{uuid.uuid4().hex[:8]}"
    with pytest.raises(errors.ParseError, match="ODPS-0130161.*DATE is a reserved word"):
        odps.execute_sql(f"CREATE TABLE {name} (id BIGINT, date STRING) PARTITIONED BY (ds STRING)")
    with pytest.raises(errors.ParseError, match="TABLE is a reserved word"):
        odps.execute_sql("CREATE TABLE table (id BIGINT)")
    odps.execute_sql(f"CREATE TABLE {name} (id BIGINT, `date` STRING) PARTITIONED BY (ds STRING)")
    odps.execute_sql(f"INSERT OVERWRITE TABLE {name} PARTITION (ds='1') SELECT 1, '2026-12-01'")
    with pytest.raises(errors.ParseError, match="DATE is a reserved word"):
        odps.execute_sql(f"SELECT date FROM {name} WHERE ds = '1'")
    with odps.execute_sql(f"SELECT `date` FROM {name} WHERE ds = '1'").open_reader() as reader:
        assert [r["date"] for r in reader] == ["2026-12-01"]
    # pyodps quotes the names in the DDL it writes, so its schemas may use reserved words
    quoted = odps.create_table(f"limits_{uuid.uuid4().hex[:8]}",
                               TableSchema(columns=[Column("order", "bigint")], partitions=[Partition("date", "string")]))
    assert [c.name for c in quoted.table_schema.simple_columns] == ["order"]


def test_a_block_upload_idle_past_the_tunnel_timeout_is_cut_off(odps, server, monkeypatch):
    monkeypatch.setattr(server, "tunnel_idle_timeout_s", 0.5)   # the service's is 120 s
    table = fresh(odps)
    from odps.tunnel import TableTunnel
    session = TableTunnel(odps).create_upload_session(table.name, partition_spec="ds=1", create_partition=True)
    batch = pa.record_batch({"id": pa.array([1], pa.int64()), "source_image": ["/a"]})
    with pytest.raises(requests.ConnectionError, match="closed connection"):
        with session.open_arrow_writer(0) as writer:   # one HTTP stream for the block
            writer.write(batch)
            time.sleep(1.5)                             # the source stalls: nothing flows
            writer.write(batch)
    with pytest.raises(errors.ODPSError):
        session.commit([0])                             # the block never arrived
    fast = TableTunnel(odps).create_upload_session(table.name, partition_spec="ds=1", create_partition=True)
    with fast.open_arrow_writer(0) as writer:           # a block that keeps flowing is unaffected
        writer.write(batch)
    fast.commit([0])
    assert rows(table, "ds=1") == 1


def test_a_statement_over_2_mb_is_refused(odps):
    table = fresh(odps)
    ids = ", ".join(str(i) for i in range(400_000))   # a generated IN list: ~2.7 MB of SQL
    with pytest.raises(errors.ParseError, match="at most 2097152 bytes"):
        odps.execute_sql(f"SELECT id FROM {table.name} WHERE ds = '1' AND id IN ({ids})")
