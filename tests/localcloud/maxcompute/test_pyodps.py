"""pyodps, used the way its documentation shows, against the local MaxCompute server.

Each test is a documented pyodps call sequence; the assertions are what MaxCompute answers.
"""

from __future__ import annotations

import uuid

import pandas as pd
import pyarrow as pa
import pytest
from odps import ODPS, errors
from odps.models import TableSchema
from odps.types import Column, Partition

from pipeline.sql import load_sql
from tests.localcloud.maxcompute.conftest import ACCESS_KEY_ID, PROJECT, REGION
from tests.pipeline.warehouse.digest import reference_digest_sums

CATALOG = TableSchema(columns=[Column("id", "bigint"), Column("source_image", "string"), Column("cate_id", "bigint"),
                               Column("etag", "string")],
                      partitions=[Partition("ds", "string")])


def fresh(odps: ODPS, lifecycle: int = 7):
    name = f"catalog_{uuid.uuid4().hex[:8]}"
    return odps.create_table(name, CATALOG, lifecycle=lifecycle, if_not_exists=True)


def arrow_rows(ids: list[int], cate: int = 1) -> pa.RecordBatch:
    return pa.record_batch({"id": pa.array(ids, pa.int64()), "source_image": [f"/c/{i}.jpg" for i in ids],
                            "cate_id": pa.array([cate] * len(ids), pa.int64()), "etag": [f"E{i}" for i in ids]})


def ids(table, partition: str) -> list[int]:
    with table.open_reader(partition=partition) as reader:
        return sorted(r["id"] for r in reader)


def test_create_a_partitioned_table_with_lifecycle(odps):
    table = fresh(odps, lifecycle=30)
    assert odps.exist_table(table.name)
    loaded = odps.get_table(table.name)
    assert [(c.name, str(c.type).lower()) for c in loaded.table_schema.simple_columns] == \
        [("id", "bigint"), ("source_image", "string"), ("cate_id", "bigint"), ("etag", "string")]
    assert [c.name for c in loaded.table_schema.partitions] == ["ds"]
    assert loaded.lifecycle == 30
    with pytest.raises(errors.ODPSError, match="already exists"):
        odps.create_table(table.name, CATALOG)


def test_upload_with_the_record_writer_and_the_arrow_writer(odps):
    table = fresh(odps)
    with table.open_writer(partition="ds=20261201", create_partition=True) as writer:
        writer.write([[1, "/c/1.jpg", 1, "E1"], [2, "/c/2.jpg", 2, None]])
    with table.open_writer(partition="ds=20261202", create_partition=True, arrow=True) as writer:
        writer.write(arrow_rows([3, 4, 5]))
    assert ids(table, "ds=20261201") == [1, 2]
    assert ids(table, "ds=20261202") == [3, 4, 5]
    odps.write_table(table.name, [[6, "/c/6.jpg", 1, "E6"]], partition="ds=20261203", create_partition=True)
    assert ids(table, "ds=20261203") == [6]


def test_overwrite_replaces_a_partition_and_append_adds(odps):
    table = fresh(odps)
    odps.write_table(table.name, [[1, "/a", 1, "E1"]], partition="ds=1", create_partition=True)
    odps.write_table(table.name, [[2, "/b", 1, "E2"]], partition="ds=1")
    assert ids(table, "ds=1") == [1, 2]
    with table.open_writer(partition="ds=1", overwrite=True, arrow=True) as writer:
        writer.write(arrow_rows([7]))
    assert ids(table, "ds=1") == [7]


def test_list_check_create_and_drop_partitions(odps, server):
    table = fresh(odps)
    for ds in ("20261130", "20261201", "20261202"):
        table.create_partition(f"ds={ds}")
    server.page_size = 2  # three partitions need two pages: pyodps must follow the marker
    try:
        assert [str(p.partition_spec) for p in table.iterate_partitions()] == \
            ["ds='20261130'", "ds='20261201'", "ds='20261202'"]
    finally:
        server.page_size = 1000
    assert table.exist_partition("ds=20261201") and not table.exist_partition("ds=20991231")
    table.delete_partition("ds=20261201")
    assert not table.exist_partition("ds=20261201")
    with pytest.raises(errors.ODPSError):
        table.delete_partition("ds=20261201")
    table.delete_partition("ds=20261201", if_exists=True)
    odps.execute_sql(f"ALTER TABLE {table.name} PARTITION (ds='20261130') RENAME TO PARTITION (ds='20261129')")
    assert sorted(p.partition_spec["ds"] for p in table.partitions) == ["20261129", "20261202"]


def test_the_queries_of_sql_run_unchanged(odps):
    table = fresh(odps)
    with table.open_writer(partition="ds=20261130", create_partition=True, arrow=True) as writer:
        writer.write(arrow_rows([1, 2, 3], cate=1))
    with table.open_writer(partition="ds=20261201", create_partition=True, arrow=True) as writer:
        writer.write(arrow_rows([2, 3, 4, 4], cate=2))

    def query(name: str, **params) -> list:
        with odps.execute_sql(load_sql(name, table=table.name, ds="20261201", **params)).open_reader() as reader:
            return [dict(zip(reader._schema.names, r.values)) for r in reader]

    high, low = reference_digest_sums([2, 3, 4])
    assert query("partition_stats") == [{"row_count": 4, "distinct_ids": 3, "id_digest_high": high, "id_digest_low": low}]
    assert query("rows_per_category") == [{"cate_id": 2, "row_count": 4}]
    assert query("duplicate_ids") == [{"id": 4, "n": 2}]
    assert query("id_changes", previous_ds="20261130", previous_table=table.name) == [{"added": 1, "removed": 1}]
    assert [r["id"] for r in query("sample_rows", limit=2)] == [2, 3]
    assert [r["id"] for r in query("sample_new_rows", previous_ds="20261130", limit=5)] == [4, 4]
    assert [r["id"] for r in query("rows_by_id", ids=[3, 4], limit=10)] == [3, 4, 4]


def test_results_read_through_the_instance_tunnel_and_the_result_path(odps):
    table = fresh(odps)
    odps.write_table(table.name, [[1, "/a", 5, None], [2, None, 6, "E2"]], partition="ds=1", create_partition=True)
    instance = odps.execute_sql(f"SELECT id, source_image FROM {table.name} WHERE ds = '1' ORDER BY id LIMIT 10")
    with instance.open_reader(tunnel=True) as reader:
        assert [list(r.values) for r in reader] == [[1, "/a"], [2, None]]
    with instance.open_reader(tunnel=False) as reader:
        assert [list(r.values) for r in reader] == [[1, "/a"], [2, None]]


def test_maxcompute_refusals(odps):
    table = fresh(odps)
    with pytest.raises(errors.ODPSError, match="ORDER BY must be used with a LIMIT"):
        odps.execute_sql(f"SELECT id FROM {table.name} WHERE ds = '1' ORDER BY id")
    with pytest.raises(errors.ODPSError, match="full scan with all partitions"):
        odps.execute_sql(f"SELECT COUNT(*) FROM {table.name}")
    odps.execute_sql(f"SELECT COUNT(*) FROM {table.name}", hints={"odps.sql.allow.fullscan": "true"})
    with pytest.raises(errors.ParseError, match="ODPS-0130161"):
        odps.execute_sql("SELEC 1")
    with pytest.raises(errors.NoSuchTable, match="ODPS-0130131"):
        odps.execute_sql("SELECT * FROM no_such_table WHERE ds = '1'")


def test_read_a_table_into_pandas_and_drop_it(odps):
    table = fresh(odps)
    odps.write_table(table.name, [[1, "/a", 5, "E1"], [2, "/b", 6, None]], partition="ds=1", create_partition=True)
    with table.open_reader(partition="ds=1", arrow=True) as reader:
        frame = reader.to_pandas()
    pd.testing.assert_frame_equal(frame.sort_values("id").reset_index(drop=True),
                                  pd.DataFrame({"id": [1, 2], "source_image": ["/a", "/b"], "cate_id": [5, 6], "etag": ["E1", None]}),
                                  check_dtype=False)
    odps.delete_table(table.name)
    assert not odps.exist_table(table.name)
    with pytest.raises(errors.NoSuchObject):
        odps.get_table(table.name).reload()


def test_wrong_keys_are_refused(server):
    wrong = ODPS(ACCESS_KEY_ID, "not-the-secret", project=PROJECT, endpoint=server.endpoint, region_name=REGION)
    with pytest.raises(errors.SignatureNotMatch):
        wrong.exist_table("anything")
    unknown = ODPS("LTAIunknown", "x", project=PROJECT, endpoint=server.endpoint)
    with pytest.raises(errors.ODPSError, match="accessKeyId not found"):
        unknown.exist_table("anything")
    elsewhere = ODPS(ACCESS_KEY_ID, "x", project="no_such_project", endpoint=server.endpoint)
    with pytest.raises(errors.ODPSError):
        elsewhere.exist_table("anything")


def test_tables_and_partitions_survive_a_restart(tmp_path):
    from localcloud.maxcompute.server import LocalMaxComputeServer
    from tests.localcloud.maxcompute.conftest import ACCESS_KEY_SECRET

    def entry(server: LocalMaxComputeServer) -> ODPS:
        return ODPS(ACCESS_KEY_ID, ACCESS_KEY_SECRET, project=PROJECT, endpoint=server.endpoint, region_name=REGION)

    with LocalMaxComputeServer(tmp_path, {ACCESS_KEY_ID: ACCESS_KEY_SECRET}, projects=[PROJECT]) as first:
        table = fresh(entry(first), lifecycle=3)
        with table.open_writer(partition="ds=1", create_partition=True, arrow=True) as writer:
            writer.write(arrow_rows([1, 2]))
    with LocalMaxComputeServer(tmp_path, {ACCESS_KEY_ID: ACCESS_KEY_SECRET}, projects=[PROJECT]) as second:
        again = entry(second).get_table(table.name)
        assert again.lifecycle == 3 and ids(again, "ds=1") == [1, 2]
