"""Tables created before the ``etag`` column existed: ``ensure_table`` adds it, and what was written before
stays readable by everything, with NULL etags.

Why: the catalog table outlives the code that writes it. A table from before the column has partitions
without it (the live one among them); the next run must be able to write, check, compare and publish
against them, and OpenSearch (which reads only id, source_image and cate_id) must keep building from them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.errors import SchemaMismatchError
from pipeline.schema import CATALOG_SCHEMA
from pipeline.warehouse import LocalWarehouse

OLD, NEW = "20261101", "20261102"
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
