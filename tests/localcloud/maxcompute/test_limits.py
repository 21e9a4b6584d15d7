"""MaxCompute's documented limits, hit through the real pyodps client: what the service refuses, the
local server refuses too (a run that passes here must not fail in the cloud on a limit).

Sources: "MaxCompute SQL limits" (cell size 8 MB, 60,000 partitions per table, 6 partition levels,
1,200 columns, 1,024-byte comments, 2 MB statements, 10,000 partitions read per query), "ODPS-0123031"
(60,000 partitions; 10,000 output partitions per job), "Partition" (no double-byte partition values),
"Reserved words and keywords" (a keyword names a table, column or partition only when escaped).
"""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest
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
