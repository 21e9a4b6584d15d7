"""Deltas between two partitions, so that only what changed need be pushed to OpenSearch.

Both warehouses run the same two files: sql/row_changes.sql (the counts, as :class:`RowChanges`) and
sql/row_delta.sql (one page of the changed ids, as a :class:`DeltaBatch`). A delta is paged by keyset:
each page is the next ``batch_rows`` changed ids after the last one (``after_id``), ordered by id, so a
page is one bounded query whatever the partition's size (on MaxCompute a SELECT answers at most 10,000
rows) and a reader can resume after any id. A delta pushes a document per id, so an id with several rows
on either side is refused (the guards refuse such a partition before it is published anyway).

The fs warehouse's side lives here too (:class:`PinnedPair`): both partitions' files opened once for a
whole delta, so all of its pages read the same versions, streamed into DuckDB for each query, with a
memory limit past which DuckDB spills to a temporary folder instead of growing with the partitions.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, BinaryIO, NoReturn

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import WarehouseError
from pipeline.schema import (
    CATALOG_SCHEMA,
    DELTA_ADD_SCHEMA,
    MAX_DELTA_PAGE_ROWS,
    PARTITION_COLUMN,
    DeltaBatch,
    RowChanges,
    validate_ds,
)
from pipeline.sql import BIGINT_MAX, load_sql
from pipeline.warehouse.rows import catalog_batches

#: What DuckDB may hold of a delta query before it spills (the grouped ids of both partitions).
DUCKDB_MEMORY_LIMIT = "256MB"
_CURRENT, _PREVIOUS = "delta_current", "delta_previous"  # the fs delta's two views


def check_page(after_id: int | None, batch_rows: int) -> None:
    """Refuse a page size or resume point no page could use (ValueError)."""
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or not 1 <= batch_rows <= MAX_DELTA_PAGE_ROWS:
        raise ValueError(f"batch_rows must be 1..{MAX_DELTA_PAGE_ROWS} (what one MaxCompute SELECT answers), "
                         f"got {batch_rows!r}")
    if after_id is not None and (isinstance(after_id, bool) or not isinstance(after_id, int)
                                 or not -BIGINT_MAX <= after_id <= BIGINT_MAX):
        raise ValueError(f"after_id must be None or a BIGINT id, got {after_id!r:.80}")


def _refuse_duplicates(what: str, first_id: Any, count: int) -> NoReturn:
    raise WarehouseError(
        f"{what}: {count} id(s) have more than one row (e.g. id {first_id}); a delta pushes one document per id, "
        "so it needs unique ids on both sides (the duplicate-ids guard refuses such a partition before it is "
        "published): rebuild the index from the partition instead")


def row_changes_of(row: Mapping[str, Any], ds: str, previous_ds: str, what: str) -> RowChanges:
    """sql/row_changes.sql's answer as RowChanges; WarehouseError if an id has several rows on a side."""
    if int(row["duplicated_ids"] or 0):
        _refuse_duplicates(what, row["first_duplicated_id"], int(row["duplicated_ids"]))
    return RowChanges(ds, previous_ds, *(int(row[name] or 0) for name in (
        "added", "removed", "changed", "unchanged", "previous_without_etag")))


def delta_batch(rows: Sequence[Mapping[str, Any]], after_id: int | None, what: str) -> DeltaBatch:
    """One page of sql/row_delta.sql (non-empty, ids ascending, all after ``after_id``) as a DeltaBatch."""
    ids = [int(row["id"]) for row in rows]
    if any(b <= a for a, b in zip(ids, ids[1:])) or (after_id is not None and ids[0] <= after_id):
        raise WarehouseError(f"{what}: a delta page came back out of id order after id {after_id}: {ids[:5]}...")
    duplicated = [row["id"] for row in rows if int(row["copies"] or 0) > 1 or int(row["previous_copies"] or 0) > 1]
    if duplicated:
        _refuse_duplicates(what, duplicated[0], len(duplicated))
    adds = [row for row in rows if row["reason"] != "removed"]
    columns = {name: [row[name] for row in adds] for name in DELTA_ADD_SCHEMA.names}
    return DeltaBatch(
        adds=pa.RecordBatch.from_pydict(columns, schema=DELTA_ADD_SCHEMA),
        deletes=[int(row["id"]) for row in rows if row["reason"] == "removed"],
        last_id=ids[-1],
    )


class PinnedPair:
    """Partition ``ds`` of one local table and ``previous_ds`` of another (or the same), each through one
    open handle for the pair's whole life: every query reads those versions, whatever is published meanwhile.
    The caller opens the handles (with the warehouse's errors for a missing partition); :meth:`close` closes
    them."""

    def __init__(self, current: BinaryIO, ds: str, previous: BinaryIO, previous_ds: str, what: str) -> None:
        self._handles = (current, previous)
        self._ds, self._previous_ds, self.what = validate_ds(ds), validate_ds(previous_ds), what  # spliced into SQL
        try:
            self._files = (pq.ParquetFile(current), pq.ParquetFile(previous))
        except (OSError, pa.ArrowException) as exc:
            self.close()
            raise WarehouseError(f"{what}: cannot read a partition file: {exc}") from exc

    def close(self) -> None:
        for handle in self._handles:
            handle.close()

    def query(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """Run sql/``name``.sql with ``{table}`` the current partition's view and ``{previous_table}`` the
        previous one's: each a stream of its file, read once per query, never whole in memory."""
        spill = tempfile.mkdtemp(prefix="fs-delta-")
        con = duckdb.connect(":memory:")
        try:
            con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
            con.execute(f"SET temp_directory = '{spill}'")
            for view, parquet, ds in ((_CURRENT, self._files[0], self._ds), (_PREVIOUS, self._files[1], self._previous_ds)):
                con.register(f"_{view}", pa.RecordBatchReader.from_batches(CATALOG_SCHEMA, catalog_batches(parquet)))
                con.execute(f"CREATE VIEW {view} AS SELECT *, '{ds}' AS {PARTITION_COLUMN} FROM _{view}")
            sql = load_sql(name, table=_CURRENT, previous_table=_PREVIOUS, ds=self._ds, previous_ds=self._previous_ds,
                           **params)
            cursor = con.execute(sql)
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            raise WarehouseError(f"{self.what} failed: {exc}") from exc
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
