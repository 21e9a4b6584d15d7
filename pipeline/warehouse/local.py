"""The embedded warehouse: Hive-partitioned Parquet on local disk, queried with DuckDB.

It stands in for MaxCompute when no cloud is reachable. Layout::

    <root>/<table>/_table.json                  columns, partition column, lifecycle
    <root>/<table>/ds=<YYYYMMDD>/data.parquet   exactly one file per partition

One file per partition makes replacing a partition a single ``os.replace``: readers open either the
old file or the new one, never a mix, and a failed write leaves the old file untouched.

A partition written before a nullable column existed (``etag``) lacks it in its file: every read here
gives it as NULL, as MaxCompute does for rows written before ``ADD COLUMNS``; its file is never rewritten.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import PipelineError, SchemaMismatchError, WarehouseError
from pipeline.schema import (
    CATALOG_SCHEMA,
    MAX_DELTA_PAGE_ROWS,
    PARTITION_COLUMN,
    STAGING_SUFFIX,
    DeltaBatch,
    IdChanges,
    PartitionStats,
    RowChanges,
    id_set_digest,
    validate_ds,
)
from pipeline.sql import load_sql, validate_lifecycle, validate_table_name
from pipeline.warehouse.delta import PinnedPair, check_page, delta_batch, row_changes_of
from pipeline.warehouse.rows import catalog_batches, conform_batch, iter_source, row_dict

log = logging.getLogger(__name__)

DATA_FILE = "data.parquet"
TABLE_META = "_table.json"
_PARTITION_DIR_RE = re.compile(rf"^{PARTITION_COLUMN}=(\d{{8}})$")
# The sql/ files are written in MaxCompute SQL that DuckDB also runs; CONV is the one built-in DuckDB
# lacks, and partition_stats.sql needs it only from base 16 to 10.
MAXCOMPUTE_BUILTINS = """
CREATE MACRO conv(digits, from_base, to_base) AS CASE
    WHEN from_base = 16 AND to_base = 10 THEN CAST(CAST('0x' || digits AS BIGINT) AS VARCHAR)
    ELSE error('CONV is defined here only from base 16 to 10') END
"""
_STALE_LITTER_S = 86400  # a temp file or trash untouched this long belongs to no running write
_ROW_GROUP_ROWS = 64 * 1024  # rows buffered per Parquet row group: a few MiB for catalog rows


def _schema_description() -> dict[str, Any]:
    return {
        "columns": [{"name": f.name, "type": str(f.type)} for f in CATALOG_SCHEMA],
        "partition_columns": [{"name": PARTITION_COLUMN, "type": "string"}],
    }


def _added_columns(actual: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The columns ``wanted`` adds to ``actual`` if it only appends nullable ones (the table predates them);
    else (another schema) none."""
    have, need = actual.get("columns") or [], wanted["columns"]
    if actual.get("partition_columns") != wanted["partition_columns"] or len(have) >= len(need) or need[:len(have)] != have:
        return []
    added = [column["name"] for column in need[len(have):]]
    return added if all(CATALOG_SCHEMA.field(name).nullable for name in added) else []


def _fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable. Not possible on every platform (Windows): best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sql_string(value: str) -> str:
    """A SQL string literal (DuckDB): single quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


class LocalWarehouse:
    """A catalog table as Parquet files under ``root``; see the module docstring for the layout."""

    def __init__(self, root: str | Path, table: str, lifecycle_days: int = 30) -> None:
        self.root = Path(root)
        self.table = validate_table_name(table)
        self.lifecycle_days = validate_lifecycle(lifecycle_days)

    def __repr__(self) -> str:
        return f"LocalWarehouse(root={str(self.root)!r}, table={self.table!r})"

    @property
    def location(self) -> str:
        return f"local fs warehouse table {self.table} under {self.root} (Parquet; no MaxCompute)"

    @property
    def table_dir(self) -> Path:
        return self.root / self.table

    def partition_file(self, ds: str) -> Path:
        """Path of the single data file of partition ``ds`` (it may not exist)."""
        return self.table_dir / f"{PARTITION_COLUMN}={validate_ds(ds)}" / DATA_FILE

    # -- table ------------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create ``<root>/<table>/`` and its ``_table.json``; give a table written before the ``etag`` column
        existed that column (its partitions read it as NULL); refuse a table with another schema."""
        meta_path = self.table_dir / TABLE_META
        wanted = _schema_description()
        if meta_path.exists():
            try:
                existing = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise WarehouseError(f"cannot read {meta_path}: {exc}") from exc
            actual = {k: existing.get(k) for k in wanted}
            if actual != wanted:
                added = _added_columns(actual, wanted)
                if not added:
                    raise SchemaMismatchError(
                        f"local table {self.table!r} at {self.table_dir} has columns {actual['columns']} "
                        f"partitioned by {actual['partition_columns']}, but the catalog needs columns "
                        f"{wanted['columns']} partitioned by {wanted['partition_columns']}; the pipeline only ever "
                        "adds a missing nullable column (etag) to a table: move that directory away or use "
                        "another table name"
                    )
                self._write_meta({**existing, **wanted})
                log.info("added column(s) %s to local table %s at %s; partitions written before read them as NULL",
                         added, self.table, self.table_dir)
            if existing.get("lifecycle_days") != self.lifecycle_days:
                log.warning(
                    "local table %s keeps lifecycle_days=%s from %s (configured: %s)",
                    self.table, existing.get("lifecycle_days"), meta_path, self.lifecycle_days,
                )
            return

        self._write_meta({"table": self.table, **wanted, "lifecycle_days": self.lifecycle_days})
        log.info("created local table %s at %s", self.table, self.table_dir)

    def _write_meta(self, meta: dict[str, Any]) -> None:
        """Write ``_table.json`` atomically, so a concurrent ensure_table never reads a half-written file."""
        try:
            self.table_dir.mkdir(parents=True, exist_ok=True)
            tmp = self.table_dir / f".{TABLE_META}-{uuid.uuid4().hex}.tmp"
            tmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
            os.replace(tmp, self.table_dir / TABLE_META)
        except OSError as exc:
            raise WarehouseError(f"cannot write the metadata of local table {self.table!r} under {self.root}: {exc}") from exc

    def _require_table(self) -> None:
        if not (self.table_dir / TABLE_META).exists():
            raise WarehouseError(
                f"local table {self.table!r} does not exist under {self.root}; run ensure_table() first"
            )

    # -- partitions -------------------------------------------------------------------------------

    def partitions(self) -> list[str]:
        """Sorted ``ds`` values that have a complete data file."""
        if not self.table_dir.is_dir():
            return []
        found = []
        for entry in self.table_dir.iterdir():
            match = _PARTITION_DIR_RE.match(entry.name)
            if match and (entry / DATA_FILE).is_file():
                found.append(match.group(1))
        return sorted(found)

    def write_partition(self, ds: str, batches: Iterable[pa.RecordBatch]) -> int:
        """Stream ``batches`` into a hidden temp file, then atomically replace the partition's file.

        Batches are written as they come (never all in memory). On any error the temp file is removed
        and the previous partition, if any, stays exactly as it was.
        """
        ds = validate_ds(ds)
        self._require_table()
        final = self.partition_file(ds)
        part_dir = final.parent
        what = f"writing partition {PARTITION_COLUMN}={ds} of local table {self.table!r}"
        created_dir = not part_dir.exists()
        tmp = part_dir / f".data-{uuid.uuid4().hex}.parquet.tmp"
        rows = 0
        try:
            part_dir.mkdir(exist_ok=True)
            with pq.ParquetWriter(str(tmp), CATALOG_SCHEMA) as writer:
                # Every write makes at least one row group; gather small batches (bounded) so an
                # OSS listing's 1000-key pages do not turn into thousands of tiny row groups.
                pending: list[pa.RecordBatch] = []
                pending_rows = 0
                for batch in iter_source(batches, what):
                    conformed = conform_batch(batch)
                    pending.append(conformed)
                    pending_rows += conformed.num_rows
                    rows += conformed.num_rows
                    if pending_rows >= _ROW_GROUP_ROWS:
                        writer.write_table(pa.Table.from_batches(pending, CATALOG_SCHEMA))
                        pending, pending_rows = [], 0
                if pending_rows:
                    writer.write_table(pa.Table.from_batches(pending, CATALOG_SCHEMA))
            # Data must be on disk before the rename makes it visible, or a crash could expose a
            # truncated file under the final name.
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            _fsync_dir(part_dir)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if created_dir:
                try:
                    part_dir.rmdir()  # only succeeds if empty: never removes a concurrent writer's data
                except OSError:
                    pass
            if isinstance(exc, PipelineError) or not isinstance(exc, Exception):
                raise
            raise WarehouseError(
                f"{what} failed after {rows} rows ({type(exc).__name__}: {exc}); the previous partition is unchanged"
            ) from exc
        log.info("wrote %s rows to local table %s partition %s=%s", rows, self.table, PARTITION_COLUMN, ds)
        return rows

    def _open_partition(self, ds: str) -> BinaryIO:
        """Open the partition's file. Reading only through this handle pins one version of it."""
        path = self.partition_file(ds)
        try:
            return open(path, "rb")  # the caller closes it
        except FileNotFoundError:
            raise WarehouseError(
                f"partition {PARTITION_COLUMN}={ds} of local table {self.table!r} does not exist "
                f"(no {path}); latest partitions: {self.partitions()[-5:]}"
            ) from None
        except OSError as exc:
            raise WarehouseError(f"cannot open {path}: {exc}") from exc

    def read_partition(self, ds: str) -> pa.Table:
        """The rows of partition ``ds`` as an Arrow table with ``CATALOG_SCHEMA``."""
        ds = validate_ds(ds)
        with self._open_partition(ds) as handle:
            try:
                return pq.read_table(handle, schema=CATALOG_SCHEMA)  # a column the file predates: NULL
            except (OSError, pa.ArrowException) as exc:
                raise WarehouseError(
                    f"cannot read partition {PARTITION_COLUMN}={ds} of {self.table!r}: {exc}"
                ) from exc

    def _queries(
        self, partitions: list[str], names: list[str], columns: list[str] | None = None,
        others: list[tuple[LocalWarehouse, str]] = (), **params: Any,
    ) -> list[list[tuple[Any, ...]]]:
        """Run sql/ files with DuckDB against a view of ``self.table`` over ``partitions`` only (and a view
        of each other table over its partitions in ``others``: a staged partition against a published one).

        DuckDB's read_parquet(path) opens the path more than once per query (metadata at bind time,
        data at execution), so a concurrent os.replace could pair one version's footer with another's
        bytes. Instead every query streams the batches of ONE open handle per partition: one version,
        never a mix, and never more than a row group per partition in memory.

        Queries that scan the table more than once (a self-join) pass ``columns``: those columns are
        then read into memory once per partition, since a stream can be scanned only once.
        """
        sources = list(dict.fromkeys([(self, ds) for ds in partitions] + list(others)))
        handles = [warehouse._open_partition(ds) for warehouse, ds in sources]
        con = duckdb.connect(":memory:")
        try:
            con.execute(MAXCOMPUTE_BUILTINS)
            files = [pq.ParquetFile(handle) for handle in handles]
            for i in range(len(files)):
                con.register(f"_partition_{i}", CATALOG_SCHEMA.empty_table())
            # The views bind to the names; each query re-registers fresh readers under them, because a
            # RecordBatchReader is consumed by one scan.
            for table in dict.fromkeys(warehouse.table for warehouse, _ in sources):
                con.execute(
                    f"CREATE VIEW {table} AS "
                    + " UNION ALL ".join(
                        f"SELECT *, {_sql_string(ds)} AS {PARTITION_COLUMN} FROM _partition_{i}"
                        for i, (warehouse, ds) in enumerate(sources) if warehouse.table == table
                    )
                )
            results = []
            if columns is not None:
                for i, parquet in enumerate(files):
                    con.register(f"_partition_{i}", pa.Table.from_batches(
                        list(catalog_batches(parquet, columns)), pa.schema([CATALOG_SCHEMA.field(c) for c in columns])))
            for name in names:
                if columns is None:
                    for i, parquet in enumerate(files):
                        con.register(
                            f"_partition_{i}", pa.RecordBatchReader.from_batches(CATALOG_SCHEMA, catalog_batches(parquet))
                        )
                results.append(con.execute(load_sql(name, table=self.table, **params)).fetchall())
            return results
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            raise WarehouseError(
                f"query on partitions {[f'{w.table}/{ds}' for w, ds in sources]} of the local warehouse failed: {exc}"
            ) from exc
        finally:
            con.close()
            for handle in handles:
                handle.close()

    def partition_stats(self, ds: str) -> PartitionStats:
        """Rows, distinct ids, rows per category and duplicate ids, from the sql/ stats queries."""
        ds = validate_ds(ds)
        totals, per_category, duplicates = self._queries(
            [ds], ["partition_stats", "rows_per_category", "duplicate_ids"], ds=ds
        )
        ((row_count, distinct_ids, digest_high, digest_low),) = totals
        return PartitionStats(
            ds=ds,
            rows=int(row_count or 0),
            distinct_ids=int(distinct_ids),
            rows_per_category={int(cate): int(n) for cate, n in per_category},
            duplicate_ids=[int(i) for i, _ in duplicates],
            id_digest=id_set_digest(distinct_ids, digest_high, digest_low),
        )

    def id_changes(self, ds: str, previous_ds: str, previous: LocalWarehouse | None = None) -> IdChanges:
        """Ids in ``ds`` but not in ``previous_ds`` of ``previous`` (default: this table; added) and the
        reverse (removed)."""
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        previous = previous or self
        ((row,),) = self._queries([ds], ["id_changes"], columns=["id"], others=[(previous, previous_ds)],
                                  ds=ds, previous_ds=previous_ds, previous_table=previous.table)
        return IdChanges(ds, previous_ds, int(row[0] or 0), int(row[1] or 0))

    def row_changes(self, ds: str, previous_ds: str, previous: LocalWarehouse | None = None) -> RowChanges:
        """How the rows of ``ds`` differ, id by id, from those of ``previous_ds`` of ``previous`` (default: this
        table): added, removed, changed, unchanged (sql/row_changes.sql, see :mod:`pipeline.warehouse.delta`)."""
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        pair = self._pair(ds, previous_ds, previous, "comparing the rows")
        try:
            (row,) = pair.query("row_changes")
        finally:
            pair.close()
        return row_changes_of(row, ds, previous_ds, pair.what)

    def iter_delta(self, ds: str, previous_ds: str, previous: LocalWarehouse | None = None, *,
                   after_id: int | None = None, batch_rows: int = MAX_DELTA_PAGE_ROWS) -> Iterator[DeltaBatch]:
        """The delta from ``previous_ds`` of ``previous`` (default: this table) to ``ds`` in pages of at most
        ``batch_rows`` ids, ids ascending, starting after ``after_id`` (sql/row_delta.sql). Both partitions are
        opened once: every page reads the same versions. Memory: a page here; DuckDB spills past its limit."""
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        check_page(after_id, batch_rows)
        return self._delta_pages(ds, previous_ds, previous, after_id, batch_rows)

    def _delta_pages(self, ds: str, previous_ds: str, previous: LocalWarehouse | None, after_id: int | None,
                     batch_rows: int) -> Iterator[DeltaBatch]:
        pair = self._pair(ds, previous_ds, previous, "reading the delta")
        try:
            while True:
                rows = pair.query("row_delta", after_id=after_id, limit=batch_rows)
                if not rows:
                    return
                batch = delta_batch(rows, after_id, pair.what)
                yield batch
                if len(rows) < batch_rows:  # DuckDB answers whole pages: a short one is the last
                    return
                after_id = batch.last_id
        finally:
            pair.close()

    def _pair(self, ds: str, previous_ds: str, previous: LocalWarehouse | None, doing: str) -> PinnedPair:
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        previous = previous or self
        current = self._open_partition(ds)
        try:
            old = previous._open_partition(previous_ds)
        except BaseException:
            current.close()
            raise
        return PinnedPair(current, ds, old, previous_ds, f"{doing} of local table {self.table!r} partition "
                          f"{PARTITION_COLUMN}={ds} with {previous.table!r} {PARTITION_COLUMN}={previous_ds}")

    def sample_rows(self, ds: str, limit: int) -> list[dict]:
        """Up to ``limit`` rows of ``ds`` with the smallest ids (sql/sample_rows.sql)."""
        ds = validate_ds(ds)
        (rows,) = self._queries([ds], ["sample_rows"], ds=ds, limit=limit)
        return [row_dict(*row) for row in rows]

    def sample_new_rows(self, ds: str, previous_ds: str, limit: int) -> list[dict]:
        """Up to ``limit`` rows of ``ds`` whose id is not in ``previous_ds`` (sql/sample_new_rows.sql)."""
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        (rows,) = self._queries([ds, previous_ds], ["sample_new_rows"], columns=CATALOG_SCHEMA.names,
                                ds=ds, previous_ds=previous_ds, limit=limit)
        return [row_dict(*row) for row in rows]

    def rows_by_id(self, ds: str, ids: list[int]) -> list[dict]:
        """The rows of ``ds`` with these ids (sql/rows_by_id.sql)."""
        ds = validate_ds(ds)
        if not ids:
            return []
        (rows,) = self._queries([ds], ["rows_by_id"], ds=ds, ids=sorted(set(ids)), limit=len(set(ids)) * 10)
        return [row_dict(*row) for row in rows]

    def load_inventory(self, ds: str, location: str, file_schema: str, source: Any, id_rule: Any,
                       category_rule: Any, role_arn: str, prefixes: list[str] | None = None) -> dict:
        """Refused: the inventory route runs its rules as SQL over an OSS external table inside MaxCompute,
        which Parquet files under a folder cannot do."""
        raise WarehouseError(
            f"{self.location} cannot load an OSS inventory (source.mode: inventory): the rules run as SQL over "
            "an OSS external table inside MaxCompute. Point warehouse.conn_id at a maxcompute connection, or "
            "set source.mode: list")

    # -- write, audit, publish ---------------------------------------------------------------------

    def staging(self) -> LocalWarehouse:
        """Where runs write before their checks: ``<table>__staging`` under the same root."""
        return LocalWarehouse(self.root, f"{self.table}{STAGING_SUFFIX}", 1)

    def publish(self, ds: str, staging: LocalWarehouse) -> None:
        """Move the staged partition's file over partition ``ds``: one ``os.replace`` on one filesystem,
        so readers open the old file or the new one."""
        ds = validate_ds(ds)
        self._require_table()
        source, final = staging.partition_file(ds), self.partition_file(ds)
        if not source.is_file():
            raise WarehouseError(f"nothing staged for partition {PARTITION_COLUMN}={ds} of local table "
                                 f"{self.table!r} (no {source}): load the partition first")
        final.parent.mkdir(exist_ok=True)
        try:
            os.replace(source, final)
            _fsync_dir(final.parent)
        except OSError as exc:
            raise WarehouseError(f"publishing partition {PARTITION_COLUMN}={ds} of {self.table!r} failed: {exc}; "
                                 "the published partition is unchanged") from exc
        staging.drop_partition(ds)
        log.info("published partition %s=%s of local table %s", PARTITION_COLUMN, ds, self.table)

    def drop_partition(self, ds: str) -> None:
        """Remove partition ``ds`` if it exists (renamed away first: it disappears at once)."""
        part_dir = self.partition_file(validate_ds(ds)).parent
        trash = self.table_dir / f".dropped-{ds}-{uuid.uuid4().hex}"
        try:
            os.replace(part_dir, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def clean_litter(self, ds: str) -> list[str]:
        """Remove what killed writes of partition ``ds`` left (temp files, an empty partition folder) and
        half-removed trash. Other partitions are left alone: a backfill may be writing them right now."""
        removed: list[str] = []
        if not self.table_dir.is_dir():
            return removed
        for entry in self.table_dir.iterdir():
            if entry.name.startswith((".expired-", ".dropped-")) and entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)  # renamed away already: nobody reads it
                removed.append(entry.name)
        part_dir = self.partition_file(validate_ds(ds)).parent
        if part_dir.is_dir():
            for tmp in part_dir.glob(".data-*.parquet.tmp"):
                tmp.unlink(missing_ok=True)
                removed.append(f"{part_dir.name}/{tmp.name}")
            if not any(part_dir.iterdir()):
                part_dir.rmdir()
                removed.append(part_dir.name)
        if removed:
            log.info("removed litter of killed writes from local table %s: %s", self.table, removed)
        return removed

    # -- lifecycle --------------------------------------------------------------------------------

    def expire_stale(self, now: float | None = None) -> list[str]:
        """What MaxCompute's LIFECYCLE does to a table, by last modification: partitions untouched for
        ``lifecycle_days`` go, and so does litter (temp files, empty partition folders, trash) of any day
        older than a day, which no running write can own. Partition dates play no part: a backfill
        staging an old date right now keeps its fresh files."""
        now = time.time() if now is None else now
        removed: list[str] = []
        if not self.table_dir.is_dir():
            return removed
        for entry in self.table_dir.iterdir():
            match = _PARTITION_DIR_RE.match(entry.name)
            if entry.name.startswith((".expired-", ".dropped-")) and entry.is_dir():
                if now - entry.stat().st_mtime > _STALE_LITTER_S:
                    shutil.rmtree(entry, ignore_errors=True)
                    removed.append(entry.name)
            elif match and entry.is_dir():
                folder_age = now - entry.stat().st_mtime  # before removing temp files touches it
                data = entry / DATA_FILE
                for tmp in entry.glob(".data-*.parquet.tmp"):
                    if now - tmp.stat().st_mtime > _STALE_LITTER_S:
                        tmp.unlink(missing_ok=True)
                        removed.append(f"{entry.name}/{tmp.name}")
                if data.is_file() and now - data.stat().st_mtime > self.lifecycle_days * 86400:
                    self.drop_partition(match.group(1))
                    removed.append(entry.name)
                elif not data.exists() and not any(entry.iterdir()) and folder_age > _STALE_LITTER_S:
                    entry.rmdir()
                    removed.append(entry.name)
        if removed:
            log.info("lifecycle of local table %s (%s days, by age) removed %s", self.table, self.lifecycle_days, removed)
        return removed

    def expire_partitions(self, today_ds: str) -> list[str]:
        """Delete partitions whose date is more than ``lifecycle_days`` before ``today_ds``.

        MaxCompute expires by last modification time; here the partition date decides, which is
        deterministic and what a daily full rebuild amounts to. Returns the expired ``ds`` values.
        """
        today = dt.datetime.strptime(validate_ds(today_ds), "%Y%m%d").date()
        cutoff = (today - dt.timedelta(days=self.lifecycle_days)).strftime("%Y%m%d")
        expired = [ds for ds in self.partitions() if ds < cutoff]
        for ds in expired:
            part_dir = self.partition_file(ds).parent
            # Rename first so the partition disappears atomically; readers holding the file keep it.
            trash = self.table_dir / f".expired-{ds}-{uuid.uuid4().hex}"
            try:
                os.replace(part_dir, trash)
            except FileNotFoundError:
                continue  # expired concurrently
            except OSError as exc:
                raise WarehouseError(
                    f"cannot expire partition {PARTITION_COLUMN}={ds} of {self.table!r}: {exc}"
                ) from exc
            shutil.rmtree(trash, ignore_errors=True)
            log.info("expired local table %s partition %s=%s (older than %s days)",
                     self.table, PARTITION_COLUMN, ds, self.lifecycle_days)
        return expired
