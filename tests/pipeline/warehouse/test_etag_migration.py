"""Tables created before the ``etag`` column existed: ``ensure_table`` adds it, and what was written before
stays readable by everything, with NULL etags.

Why: the catalog table outlives the code that writes it. A table from before the column has partitions
without it (the live one among them); the next run must be able to write, check, compare and publish
against them, and OpenSearch (which reads only id, source_image and cate_id) must keep building from them.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from odps import ODPS

from localcloud.maxcompute.server import LocalMaxComputeServer
from pipeline.errors import SchemaMismatchError
from pipeline.schema import CATALOG_SCHEMA
from pipeline.warehouse import LocalWarehouse
from pipeline.warehouse.maxcompute import BEFORE_ETAG, EXPECTED_COLUMNS, MaxComputeWarehouse

OLD, NEW = "20261101", "20261102"
AK, SK, PROJECT, REGION = "LTAImigrationtest", "migration-secret", "migration_proj", "cn-hangzhou"
OLD_COLUMNS = [{"name": "id", "type": "int64"}, {"name": "source_image", "type": "string"},
               {"name": "cate_id", "type": "int64"}]
OLD_SCHEMA = pa.schema([CATALOG_SCHEMA.field(name) for name in ("id", "source_image", "cate_id")])


def rows(ids: list[int], etag: bool = True, cate: int = 1) -> pa.RecordBatch:
    data = {"id": ids, "source_image": [f"/img/{i}.png" for i in ids], "cate_id": [cate] * len(ids)}
    if etag:
        return pa.RecordBatch.from_pydict({**data, "etag": [f"E{i}" for i in ids]}, schema=CATALOG_SCHEMA)
    return pa.RecordBatch.from_pydict(data, schema=OLD_SCHEMA)


# -- the fs warehouse ---------------------------------------------------------------------------------


def old_local_table(root: Path, table: str = "image_catalog") -> LocalWarehouse:
    """A table as the code before the etag column left it: its _table.json and one partition's file."""
    folder = root / table
    (folder / f"ds={OLD}").mkdir(parents=True)
    (folder / "_table.json").write_text(json.dumps({
        "table": table, "columns": OLD_COLUMNS, "partition_columns": [{"name": "ds", "type": "string"}],
        "lifecycle_days": 30}))
    pq.write_table(pa.Table.from_batches([rows([1, 2, 3], etag=False)]), folder / f"ds={OLD}" / "data.parquet")
    return LocalWarehouse(root, table, 30)


def test_ensure_table_adds_the_column_to_an_old_fs_table_and_keeps_its_files(tmp_path: Path) -> None:
    wh = old_local_table(tmp_path)
    data = wh.partition_file(OLD).read_bytes()
    wh.ensure_table()
    meta = json.loads((wh.table_dir / "_table.json").read_text())
    assert meta["columns"] == [*OLD_COLUMNS, {"name": "etag", "type": "string"}] and meta["lifecycle_days"] == 30
    assert wh.partition_file(OLD).read_bytes() == data  # the old partition is never rewritten
    wh.ensure_table()  # the second time there is nothing to add
    assert json.loads((wh.table_dir / "_table.json").read_text()) == meta


def test_old_fs_partitions_read_as_null_etags_everywhere(tmp_path: Path) -> None:
    wh = old_local_table(tmp_path)
    wh.ensure_table()
    table = wh.read_partition(OLD)
    assert table.schema == CATALOG_SCHEMA and table.column("etag").to_pylist() == [None] * 3
    wh.write_partition(NEW, [rows([2, 3, 4])])
    assert wh.partition_stats(OLD).rows == 3 and wh.partition_stats(OLD).rows_per_category == {1: 3}
    assert wh.sample_rows(OLD, 1) == [{"id": 1, "source_image": "/img/1.png", "cate_id": 1, "etag": None}]
    assert wh.rows_by_id(OLD, [3])[0]["etag"] is None
    assert wh.sample_new_rows(NEW, OLD, 5) == [{"id": 4, "source_image": "/img/4.png", "cate_id": 1, "etag": "E4"}]
    assert wh.sample_new_rows(OLD, NEW, 5) == [{"id": 1, "source_image": "/img/1.png", "cate_id": 1, "etag": None}]
    assert wh.id_changes(NEW, OLD).as_dict() == {"previous_ds": OLD, "added": 1, "removed": 1}
    # Against a partition without etags every id in both is a change: a replacement cannot be ruled out.
    assert wh.row_changes(NEW, OLD).as_dict() == {"previous_ds": OLD, "added": 1, "removed": 1, "changed": 2,
                                                  "unchanged": 0, "previous_without_etag": 3}
    assert [(page.deletes, page.adds.column("id").to_pylist()) for page in wh.iter_delta(NEW, OLD)] == [([1], [2, 3, 4])]
    staging = wh.staging()
    staging.ensure_table()
    staging.write_partition(OLD, [rows([1, 2, 3])])
    assert staging.id_changes(OLD, OLD, previous=wh).as_dict() == {"previous_ds": OLD, "added": 0, "removed": 0}
    wh.publish(OLD, staging)
    assert wh.read_partition(OLD).column("etag").to_pylist() == ["E1", "E2", "E3"]


def test_an_fs_table_with_another_schema_is_still_refused(tmp_path: Path) -> None:
    wh = old_local_table(tmp_path)
    meta_path = wh.table_dir / "_table.json"
    meta = json.loads(meta_path.read_text())
    for columns in ([*OLD_COLUMNS, {"name": "etag", "type": "int64"}], OLD_COLUMNS[:2],
                    [*OLD_COLUMNS, {"name": "etag", "type": "string"}, {"name": "more", "type": "string"}]):
        meta_path.write_text(json.dumps({**meta, "columns": columns}))
        with pytest.raises(SchemaMismatchError, match="only ever adds a missing nullable column"):
            wh.ensure_table()
        assert json.loads(meta_path.read_text())["columns"] == columns  # left as it was


# -- MaxCompute, over the wire against the local server ------------------------------------------------

OLD_DDL = ("(id BIGINT COMMENT 'primary key of the image document', source_image STRING, cate_id BIGINT) "
           "PARTITIONED BY (ds STRING) LIFECYCLE 30")


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalMaxComputeServer]:
    with LocalMaxComputeServer(tmp_path_factory.mktemp("mc"), {AK: SK}, projects=[PROJECT], region=REGION) as running:
        yield running


@pytest.fixture
def odps(server: LocalMaxComputeServer) -> ODPS:
    return ODPS(AK, SK, project=PROJECT, endpoint=server.endpoint, region_name=REGION, overwrite_global=False)


def old_maxcompute_table(odps: ODPS) -> MaxComputeWarehouse:
    """A catalog table as the code before the etag column created and wrote it, staging table included."""
    wh = MaxComputeWarehouse(odps, f"catalog_{uuid.uuid4().hex[:8]}", 30)
    for table in (wh.table, wh.staging().table):
        odps.execute_sql(f"CREATE TABLE {table} {OLD_DDL}")
    odps.write_table(wh.table, [[1, "/img/1.png", 1], [2, "/img/2.png", 1], [3, "/img/3.png", 1]],
                     partition=f"ds={OLD}", create_partition=True)
    return wh


def test_etag_is_the_last_column_so_add_columns_gives_old_tables_the_new_layout() -> None:
    assert EXPECTED_COLUMNS == [*BEFORE_ETAG, ("etag", "STRING")]
    assert [name for name, _ in BEFORE_ETAG] == [f["name"] for f in OLD_COLUMNS]


def test_ensure_table_adds_the_column_to_an_old_maxcompute_table(odps: ODPS) -> None:
    wh = old_maxcompute_table(odps)
    wh.ensure_table()
    table = odps.get_table(wh.table)
    table.reload()
    assert [(c.name, str(c.type).upper()) for c in table.table_schema.simple_columns] == EXPECTED_COLUMNS
    assert table.table_schema.simple_columns[-1].comment.endswith("not read by OpenSearch")
    wh.ensure_table()  # nothing left to add: no statement fails the second time
    assert [c.name for c in odps.get_table(wh.table).table_schema.simple_columns] == CATALOG_SCHEMA.names


def test_old_maxcompute_partitions_read_as_null_etags_everywhere(odps: ODPS) -> None:
    wh = old_maxcompute_table(odps)
    staging = wh.staging()
    wh.ensure_table()
    staging.ensure_table()
    assert wh.read_partition(OLD).column("etag").to_pylist() == [None] * 3  # the tunnel reader, as OpenSearch's
    wh.write_partition(NEW, [rows([2, 3, 4])])
    stats = wh.partition_stats(OLD)
    assert (stats.rows, stats.distinct_ids, stats.rows_per_category) == (3, 3, {1: 3})
    assert wh.sample_rows(OLD, 1) == [{"id": 1, "source_image": "/img/1.png", "cate_id": 1, "etag": None}]
    assert wh.rows_by_id(OLD, [3])[0]["etag"] is None
    assert wh.sample_new_rows(OLD, NEW, 5) == [{"id": 1, "source_image": "/img/1.png", "cate_id": 1, "etag": None}]
    assert wh.id_changes(NEW, OLD).as_dict() == {"previous_ds": OLD, "added": 1, "removed": 1}
    assert wh.row_changes(NEW, OLD).as_dict() == {"previous_ds": OLD, "added": 1, "removed": 1, "changed": 2,
                                                  "unchanged": 0, "previous_without_etag": 3}
    assert [(page.deletes, page.adds.column("id").to_pylist()) for page in wh.iter_delta(NEW, OLD)] == [([1], [2, 3, 4])]
    staging.write_partition(OLD, [rows([1, 2, 3])])
    wh.publish(OLD, staging)  # INSERT OVERWRITE ... SELECT of all four columns over the old partition
    assert wh.read_partition(OLD).column("etag").to_pylist() == ["E1", "E2", "E3"]


def test_a_column_added_meanwhile_by_another_run_is_fine(odps: ODPS, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Two runs may both see the table without the column; the second ALTER then fails, and that is fine."""
    wh = old_maxcompute_table(odps)
    MaxComputeWarehouse(odps, wh.table, 30).ensure_table()  # the other run
    stale = MaxComputeWarehouse._schema

    def seen_before_the_other_run(self, reload: bool = False):  # type: ignore[no-untyped-def]
        columns, partitions, lifecycle = stale(self, reload)
        return (columns if reload else BEFORE_ETAG), partitions, lifecycle

    monkeypatch.setattr(MaxComputeWarehouse, "_schema", seen_before_the_other_run)
    with caplog.at_level(logging.INFO, logger="pipeline.warehouse.maxcompute"):
        wh.ensure_table()
    assert "got the etag column from another run meanwhile" in caplog.text and "already exists" in caplog.text


@pytest.mark.parametrize("ddl", [
    "(id BIGINT, source_image STRING, cate_id BIGINT, etag BIGINT) PARTITIONED BY (ds STRING)",
    "(id BIGINT, source_image STRING) PARTITIONED BY (ds STRING)",
    "(id BIGINT, source_image STRING, cate_id BIGINT) PARTITIONED BY (pt STRING)",
    "(id BIGINT, source_image STRING, cate_id BIGINT, etag STRING, more STRING) PARTITIONED BY (ds STRING)",
])
def test_a_maxcompute_table_with_another_schema_is_still_refused(odps: ODPS, ddl: str) -> None:
    wh = MaxComputeWarehouse(odps, f"catalog_{uuid.uuid4().hex[:8]}", 30)
    odps.execute_sql(f"CREATE TABLE {wh.table} {ddl}")
    with pytest.raises(SchemaMismatchError, match="only ever adds the etag column"):
        wh.ensure_table()
    table = odps.get_table(wh.table)
    table.reload()
    assert ", ".join(f"{c.name} {str(c.type).upper()}" for c in table.table_schema.simple_columns) in ddl  # untouched
