"""The catalog table in MaxCompute (ODPS), through pyodps.

Writes go through one Table Tunnel upload session per partition with ``overwrite=True``: blocks are
uploaded as the batches stream in, and the partition is replaced only by the final ``commit``. Nothing
is committed if the batches (or an upload) fail, so the old partition keeps serving.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import requests
from odps import errors as odps_errors
from odps.tunnel import TableTunnel
from odps.tunnel.errors import TunnelError

from pipeline.connections import extras, get_connection
from pipeline.credentials import CredentialSettings, CredentialSource, credential_source
from pipeline.errors import (
    CatalogError,
    ConfigError,
    ConnectionConfigError,
    PipelineError,
    SchemaMismatchError,
    TransientWarehouseError,
    WarehouseError,
)
from pipeline.redact import register_secrets
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
from pipeline.warehouse.delta import check_page, delta_batch, row_changes_of
from pipeline.warehouse.inventory_sql import compile_inventory, inventory_counts
from pipeline.warehouse.rows import conform_batch, iter_source, row_dict

if TYPE_CHECKING:
    from odps import ODPS

    from pipeline.config import CategoryRule, IdRule, SourceConfig

log = logging.getLogger(__name__)

# Arrow type of each catalog column -> the MaxCompute type the DDL in sql/ declares.
_ODPS_TYPES: dict[pa.DataType, str] = {pa.int64(): "BIGINT", pa.string(): "STRING"}
EXPECTED_COLUMNS: list[tuple[str, str]] = [(f.name, _ODPS_TYPES[f.type]) for f in CATALOG_SCHEMA]
# What a table created before the etag column has (sql/add_etag_column.sql appends etag: it stays last).
BEFORE_ETAG = EXPECTED_COLUMNS[:-1]
EXPECTED_PARTITION_COLUMNS: list[tuple[str, str]] = [(PARTITION_COLUMN, "STRING")]

# Failures a bounded retry may cure: server-side 5xx, throttling, network trouble. Rewriting a
# partition with overwrite=True is idempotent, so retrying a whole write is safe.
_TRANSIENT: tuple[type[BaseException], ...] = (
    odps_errors.InternalServerError,
    odps_errors.RequestQuotaExceeded,
    odps_errors.ConnectTimeout,
    requests.ConnectionError,
    requests.Timeout,
)
# What pyodps raises for service and transport problems (programming errors are left alone).
_SERVICE_ERRORS: tuple[type[BaseException], ...] = (odps_errors.ODPSError, requests.RequestException)


# Tunnel errors carry a code but no HTTP status (pyodps' TunnelError.parse drops it): these are the
# documented ones whose advice is "try again later", plus the 5xx codes.
_TRANSIENT_TUNNEL_CODES = frozenset({
    "InternalServerError", "ServiceUnavailable", "CorruptedDataStream", "DataUnderReplication",
    "DataVersionConflict", "FlowExceeded", "SlotExceeded", "RequestTimeout", "TooManyRequests",
})


def _is_transient(cause: BaseException) -> bool:
    if isinstance(cause, _TRANSIENT) or (isinstance(cause, PipelineError) and cause.transient):
        return True
    status = getattr(cause, "status_code", None)
    if isinstance(status, int) and (status >= 500 or status == 429):
        return True
    return isinstance(cause, TunnelError) and getattr(cause, "code", None) in _TRANSIENT_TUNNEL_CODES


def _warehouse_error(message: str, cause: BaseException) -> WarehouseError:
    kind = TransientWarehouseError if _is_transient(cause) else WarehouseError
    return kind(f"{message}: {type(cause).__name__}: {cause}")


class _PyodpsCredentials:
    """pyodps' ``CredentialProviderAccount`` asks this before signing each request."""

    def __init__(self, source: CredentialSource) -> None:
        self._source = source

    def get_credential(self) -> _KeyTriple:
        current = self._source.get()
        return _KeyTriple(current.access_key_id, current.access_key_secret, current.security_token)


class _KeyTriple:
    def __init__(self, access_key_id: str, access_key_secret: str, security_token: str | None) -> None:
        self._values = (access_key_id, access_key_secret, security_token)

    def get_access_key_id(self) -> str:
        return self._values[0]

    def get_access_key_secret(self) -> str:
        return self._values[1]

    def get_security_token(self) -> str | None:
        return self._values[2]


class MaxComputeWarehouse:
    """The catalog table ``table`` in the project of ``odps``."""

    def __init__(self, odps: ODPS, table: str, lifecycle_days: int) -> None:
        self._odps = odps
        self.table = validate_table_name(table)
        self.lifecycle_days = validate_lifecycle(lifecycle_days)

    def __repr__(self) -> str:
        return f"MaxComputeWarehouse(project={self.project!r}, table={self.table!r})"

    @property
    def project(self) -> str:
        return str(self._odps.project)

    @property
    def location(self) -> str:
        return f"MaxCompute table {self.project}.{self.table} at {self._odps.endpoint} (pyodps, Arrow tunnel upload)"

    @classmethod
    def from_airflow(cls, conn_id: str, table: str, lifecycle_days: int) -> MaxComputeWarehouse:
        """Build the ODPS entry from an Airflow ``maxcompute`` connection: extras ``project``,
        ``endpoint`` and the credentials of :mod:`pipeline.credentials` (``auth_type`` and its fields;
        plain ``access_key_id`` / ``access_key_secret`` as the provider's hook reads them); optional
        ``region`` (pyodps then signs with V4; without it, with the legacy HMAC-SHA1 form, and derives
        the region from a ``service.<region>.maxcompute.aliyun.com`` endpoint itself) and
        ``tunnel_endpoint`` (else pyodps asks the project for its tunnel address).

        Not through ``MaxComputeHook``: it knows access keys only, and production runs with RAM roles.
        Constructing the entry makes no network call.
        """
        from odps import ODPS
        from odps.accounts import CredentialProviderAccount

        conn = get_connection(conn_id, "type 'maxcompute'")
        extra = extras(conn, conn_id)
        missing = [name for name in ("project", "endpoint") if not extra.get(name)]
        if missing:
            raise ConnectionConfigError(
                f"Airflow connection {conn_id!r} (type maxcompute) lacks extra field(s) {', '.join(missing)}"
            )
        settings = CredentialSettings.from_extras(conn_id, extra)
        register_secrets(*settings.secrets())
        account = CredentialProviderAccount(_PyodpsCredentials(credential_source(settings)))
        odps = ODPS(account=account, project=extra["project"], endpoint=extra["endpoint"],
                    region_name=extra.get("region") or None, tunnel_endpoint=extra.get("tunnel_endpoint") or None)
        return cls(odps, table, lifecycle_days)

    def _where(self, ds: str | None = None) -> str:
        where = f"MaxCompute table {self.project}.{self.table}"
        return f"{where} partition {PARTITION_COLUMN}={ds}" if ds else where

    # -- table ------------------------------------------------------------------------------------

    def ensure_table(self) -> None:
        """Create the table with sql/create_catalog_table.sql if missing; give a table created before the
        ``etag`` column existed that column (sql/add_etag_column.sql: ``ADD COLUMNS``, rows written before
        read NULL); refuse a table with any other schema."""
        try:
            if not self._odps.exist_table(self.table):
                self._odps.execute_sql(
                    load_sql("create_catalog_table", table=self.table, lifecycle=self.lifecycle_days)
                )
                log.info("created %s (lifecycle %s days)", self._where(), self.lifecycle_days)
                return
            columns, partition_columns, lifecycle = self._schema()
            if partition_columns == EXPECTED_PARTITION_COLUMNS and columns == BEFORE_ETAG:
                columns = self._add_etag_column()
        except PipelineError:
            raise
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"checking or creating {self._where()} failed", exc) from exc

        if columns != EXPECTED_COLUMNS or partition_columns != EXPECTED_PARTITION_COLUMNS:
            raise SchemaMismatchError(
                f"{self._where()} exists with columns {columns} partitioned by {partition_columns}, "
                f"but the catalog needs columns {EXPECTED_COLUMNS} partitioned by {EXPECTED_PARTITION_COLUMNS}; "
                "the pipeline only ever adds the etag column to a table: drop or rename it, or configure "
                "another table name"
            )
        if lifecycle is not None and lifecycle != self.lifecycle_days:
            log.warning("%s has lifecycle %s days (configured: %s); left as it is",
                        self._where(), lifecycle, self.lifecycle_days)

    def _schema(self, reload: bool = False) -> tuple[list[tuple[str, str]], list[tuple[str, str]], int | None]:
        """(columns, partition columns, lifecycle) of the table as the service describes it now."""
        table = self._odps.get_table(self.table)
        if reload:  # pyodps may hand back the object it described before a DDL statement
            table.reload()
        schema = table.table_schema
        columns = [(c.name.lower(), str(c.type).upper()) for c in schema.simple_columns]
        # an unpartitioned table has partitions None, not []
        partition_columns = [(c.name.lower(), str(c.type).upper()) for c in schema.partitions or []]
        return columns, partition_columns, getattr(table, "lifecycle", None)

    def _add_etag_column(self) -> list[tuple[str, str]]:
        """``ALTER TABLE ... ADD COLUMNS (etag ...)`` on a table the column predates; its columns afterwards.
        Another run may add it at the same moment: if the statement fails and the column is there, fine."""
        try:
            self._odps.execute_sql(load_sql("add_etag_column", table=self.table))
        except _SERVICE_ERRORS as exc:
            columns = self._schema(reload=True)[0]
            if columns != EXPECTED_COLUMNS:
                raise
            log.info("%s got the etag column from another run meanwhile (%s)", self._where(), exc)
            return columns
        log.info("added the etag column to %s: partitions written before read it as NULL", self._where())
        return self._schema(reload=True)[0]

    # -- partitions -------------------------------------------------------------------------------

    def partitions(self) -> list[str]:
        """``ds`` values of the table's partitions, sorted."""
        try:
            table = self._odps.get_table(self.table)
            return sorted(str(p.partition_spec[PARTITION_COLUMN]) for p in table.iterate_partitions())
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"listing partitions of {self._where()} failed", exc) from exc

    def write_partition(self, ds: str, batches: Iterable[pa.RecordBatch]) -> int:
        """Replace partition ``ds`` with ``batches`` in one tunnel upload session; return rows committed.

        The session is opened with ``overwrite=True, create_partition=True``; ``commit`` is called only
        after the iterable is exhausted without error. Uncommitted blocks simply expire on the server.
        """
        ds = validate_ds(ds)
        spec = f"{PARTITION_COLUMN}={ds}"
        where = self._where(ds)
        rows = 0
        try:
            session = TableTunnel(self._odps).create_upload_session(
                self.table, partition_spec=spec, overwrite=True, create_partition=True
            )
            # The buffered writer (no block id) uploads a block per 20 MiB with retries; a fixed-block
            # writer would hold one HTTP stream for the whole listing, which the server cuts off.
            writer = session.open_arrow_writer()
            with writer:  # on an exception pyodps leaves the writer unclosed: nothing more is sent
                for batch in iter_source(batches, f"writing {where}"):
                    conformed = conform_batch(batch)
                    writer.write(conformed)
                    rows += conformed.num_rows
            session.commit(writer.get_blocks_written())
        except PipelineError:
            raise
        except Exception as exc:
            raise _warehouse_error(
                f"writing {where} failed after {rows} rows; nothing was committed", exc
            ) from exc
        log.info("committed %s rows to %s", rows, where)
        return rows

    def read_partition(self, ds: str) -> pa.Table:
        """The rows of partition ``ds`` with ``CATALOG_SCHEMA``, through a tunnel download (Arrow)."""
        ds = validate_ds(ds)
        try:
            table = self._odps.get_table(self.table)
            with table.open_reader(partition=f"{PARTITION_COLUMN}={ds}", arrow=True) as reader:
                data = reader.read_all()
        except _SERVICE_ERRORS + (TunnelError,) as exc:
            raise _warehouse_error(f"reading {self._where(ds)} failed", exc) from exc
        return data.select(CATALOG_SCHEMA.names).cast(CATALOG_SCHEMA)

    def _query(self, name: str, ds: str, **params: Any) -> list[Any]:
        instance = self._odps.execute_sql(load_sql(name, table=self.table, ds=ds, **params))
        with instance.open_reader() as reader:
            return list(reader)

    def partition_stats(self, ds: str) -> PartitionStats:
        """Run the sql/ stats queries on partition ``ds``; a missing partition is a WarehouseError."""
        ds = validate_ds(ds)
        where = self._where(ds)
        try:
            # An absent partition would just count 0 rows; say it is missing instead, like LocalWarehouse.
            if not self._odps.get_table(self.table).exist_partition(f"{PARTITION_COLUMN}={ds}"):
                raise WarehouseError(f"{where} does not exist")
            (totals,) = self._query("partition_stats", ds)
            per_category = self._query("rows_per_category", ds)
            duplicates = self._query("duplicate_ids", ds)
        except PipelineError:
            raise
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"stats queries on {where} failed", exc) from exc
        except ValueError as exc:  # unpacking: the count query did not return exactly one row
            raise WarehouseError(f"stats query on {where} returned an unexpected result: {exc}") from exc
        return PartitionStats(
            ds=ds,
            rows=int(totals["row_count"] or 0),
            distinct_ids=int(totals["distinct_ids"]),
            rows_per_category={int(r["cate_id"]): int(r["row_count"]) for r in per_category},
            duplicate_ids=[int(r["id"]) for r in duplicates],
            id_digest=id_set_digest(totals["distinct_ids"], totals["id_digest_high"], totals["id_digest_low"]),
        )

    def id_changes(self, ds: str, previous_ds: str, previous: MaxComputeWarehouse | None = None) -> IdChanges:
        """Ids added and removed between partition ``previous_ds`` of ``previous`` (default: this table)
        and partition ``ds`` of this one (sql/id_changes.sql)."""
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        try:
            (row,) = self._query("id_changes", ds, previous_ds=previous_ds, previous_table=(previous or self).table)
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"id comparison of {self._where(ds)} with ds={previous_ds} failed", exc) from exc
        return IdChanges(ds, previous_ds, int(row["added"] or 0), int(row["removed"] or 0))

    def row_changes(self, ds: str, previous_ds: str, previous: MaxComputeWarehouse | None = None) -> RowChanges:
        """How the rows of ``ds`` differ, id by id, from those of ``previous_ds`` of ``previous`` (default: this
        table): added, removed, changed, unchanged (sql/row_changes.sql, see :mod:`pipeline.warehouse.delta`)."""
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        previous = previous or self
        what = f"comparing the rows of {self._where(ds)} with {previous._where(previous_ds)}"
        try:
            self._require_partitions((self, ds), (previous, previous_ds))
            (row,) = self._query("row_changes", ds, previous_ds=previous_ds, previous_table=previous.table)
        except PipelineError:
            raise
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"{what} failed", exc) from exc
        return row_changes_of(row, ds, previous_ds, what)

    def iter_delta(self, ds: str, previous_ds: str, previous: MaxComputeWarehouse | None = None, *,
                   after_id: int | None = None, batch_rows: int = MAX_DELTA_PAGE_ROWS) -> Iterator[DeltaBatch]:
        """The delta from ``previous_ds`` of ``previous`` (default: this table) to ``ds`` in pages of at most
        ``batch_rows`` (at most 10,000) ids, ids ascending, starting after ``after_id``: one SELECT per page
        (sql/row_delta.sql), so a page is never cut by the result limit, and only an empty page ends the delta
        (a project whose READ_TABLE_MAX_ROW cuts pages shorter still gets every row, in more pages). Each page
        reads the partitions as they are then: run a delta while nothing writes them."""
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        check_page(after_id, batch_rows)
        return self._delta_pages(ds, previous_ds, previous or self, after_id, batch_rows)

    def _delta_pages(self, ds: str, previous_ds: str, previous: MaxComputeWarehouse, after_id: int | None,
                     batch_rows: int) -> Iterator[DeltaBatch]:
        what = f"reading the delta of {self._where(ds)} from {previous._where(previous_ds)}"
        first = True
        while True:
            try:
                if first:  # before any page, resumed or not
                    self._require_partitions((self, ds), (previous, previous_ds))
                    first = False
                rows = self._query("row_delta", ds, previous_ds=previous_ds, previous_table=previous.table,
                                   after_id=after_id, limit=batch_rows)
            except PipelineError:
                raise
            except _SERVICE_ERRORS as exc:
                raise _warehouse_error(f"{what} failed (resume with after_id={after_id})", exc) from exc
            if not rows:
                return
            batch = delta_batch(rows, after_id, what)
            yield batch
            after_id = batch.last_id

    @staticmethod
    def _require_partitions(*partitions: tuple[MaxComputeWarehouse, str]) -> None:
        """A missing partition would read as empty: say it is missing (a delta would delete every id)."""
        for warehouse, ds in partitions:
            if not warehouse._odps.get_table(warehouse.table).exist_partition(f"{PARTITION_COLUMN}={ds}"):
                raise WarehouseError(f"{warehouse._where(ds)} does not exist")

    def sample_rows(self, ds: str, limit: int) -> list[dict]:
        """Up to ``limit`` rows of ``ds`` with the smallest ids (sql/sample_rows.sql)."""
        ds = validate_ds(ds)
        try:
            rows = self._query("sample_rows", ds, limit=limit)
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"sampling {self._where(ds)} failed", exc) from exc
        return [row_dict(r["id"], r["source_image"], r["cate_id"], r["etag"]) for r in rows]

    def sample_new_rows(self, ds: str, previous_ds: str, limit: int) -> list[dict]:
        """Up to ``limit`` rows of ``ds`` whose id is not in ``previous_ds`` (sql/sample_new_rows.sql)."""
        ds, previous_ds = validate_ds(ds), validate_ds(previous_ds)
        try:
            rows = self._query("sample_new_rows", ds, previous_ds=previous_ds, limit=limit)
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"sampling ids of {self._where(ds)} new against ds={previous_ds} failed", exc) from exc
        return [row_dict(r["id"], r["source_image"], r["cate_id"], r["etag"]) for r in rows]

    def rows_by_id(self, ds: str, ids: list[int]) -> list[dict]:
        """The rows of ``ds`` with these ids (sql/rows_by_id.sql)."""
        ds = validate_ds(ds)
        if not ids:
            return []
        try:
            rows = self._query("rows_by_id", ds, ids=sorted(set(ids)), limit=len(set(ids)) * 10)
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"reading ids {sorted(set(ids))[:5]} of {self._where(ds)} failed", exc) from exc
        return [row_dict(r["id"], r["source_image"], r["cate_id"], r["etag"]) for r in rows]

    def load_inventory(self, ds: str, location: str, file_schema: str, source: SourceConfig, id_rule: IdRule,
                       category_rule: CategoryRule, role_arn: str, prefixes: list[str] | None = None) -> dict:
        """Stage partition ``ds`` of this table's :meth:`staging` table from the Bucket Inventory files under
        ``location`` (``oss://<endpoint>/<bucket>/<folder>/``, gzip CSV with fields ``file_schema``, read
        by MaxCompute as RAM role ``role_arn``) with the index's rules, inside MaxCompute; return the counts
        a listing of the same objects reports (``CatalogCounts.as_dict()``: listed, kept, skipped, ...).

        The statements are pipeline/warehouse/inventory_sql.py's: a temporary external table, one
        ``INSERT OVERWRITE`` of the staged partition, the count queries, and the external table dropped
        whatever happens (never the files). ``unmapped: fail`` raises CatalogError after the staging write
        (a query cannot raise), naming the first such key; nothing is published either way.
        """
        ds = validate_ds(ds)
        staging = self.staging()
        # <table>__inventory_<ds> would pass MaxCompute's 128 characters for long table names (and a cut
        # would drop the ds): a short digest of the table keeps names distinct per table and day.
        digest = hashlib.sha1(self.table.encode(), usedforsecurity=False).hexdigest()[:12]
        external = f"{self.table[:64]}__inv_{digest}_{ds}"
        try:
            statements = compile_inventory(source, id_rule, category_rule, file_schema=file_schema, location=location,
                                           role_arn=role_arn, external_table=external, staging_table=staging.table,
                                           ds=ds, prefixes=prefixes)
        except ValueError as exc:  # what SQL cannot express from this config: a retry cannot help
            raise ConfigError(f"the inventory route cannot load {staging.table} ds={ds}: {exc}") from exc
        where = staging._where(ds)
        if "etag" not in (name.strip().lower() for name in file_schema.split(",")):
            log.warning("the inventory under %s has no ETag field: the rows of %s get NULL etags, so a delta counts "
                        "every one of their ids as changed; add ETag to the inventory rule's fields", location, where)
        try:
            staging.ensure_table()
            self._odps.execute_sql(statements.drop_objects)  # a killed run's tables, if any
            self._odps.execute_sql(statements.drop_external)
            self._odps.execute_sql(statements.create_external)
            try:
                self._odps.execute_sql(statements.create_objects)  # the one scan of the files
                self._odps.execute_sql(statements.insert_staging)
                counts = inventory_counts(*(self._rows(sql) for sql in (
                    statements.counts, statements.unmapped_examples, statements.archived_examples)))
                (staged,) = self._rows(statements.staged_rows)
            finally:  # each drop on its own: one failing must neither skip the other nor hide the error
                for drop in (statements.drop_objects, statements.drop_external):
                    try:
                        self._odps.execute_sql(drop)
                    except _SERVICE_ERRORS as exc:
                        log.warning("could not drop a table of the inventory load (the next load of this day drops "
                                    "it first): %s: %s", drop, exc)
        except PipelineError:
            raise
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"loading the inventory under {location} into {where} failed", exc) from exc
        unmapped, first_key = counts.pop("unmapped_total"), counts.pop("unmapped_first_key")
        if int(staged["row_count"] or 0) != counts["kept"]:  # the files changed between the statements
            raise WarehouseError(f"{where} holds {staged['row_count']} rows but the counts say {counts['kept']} "
                                 f"were kept: did the files under {location} change during the load?")
        if unmapped and category_rule.unmapped == "fail":
            name = next(iter(counts["unmapped_category_examples"]))
            raise CatalogError(
                f"object {first_key!r} has category {name!r}, which the category rule does not map to an id "
                f"({unmapped} objects in all); add it to category_rule.mapping, or set category_rule.unmapped "
                "to 'skip' or 'default'")
        log.info("staged %d rows of %d inventoried objects in %s", counts["kept"], counts["listed"], where)
        return counts

    def _rows(self, sql: str) -> list[Any]:
        """The records a query answers (``record["column"]``)."""
        with self._odps.execute_sql(sql).open_reader() as reader:
            return list(reader)

    # -- write, audit, publish ---------------------------------------------------------------------

    def staging(self) -> MaxComputeWarehouse:
        """The table runs write into before their checks: ``<table>__staging`` in the same project, with a
        one-day lifecycle, so MaxCompute itself reclaims what a killed run left behind."""
        return MaxComputeWarehouse(self._odps, f"{self.table}{STAGING_SUFFIX}", 1)

    def publish(self, ds: str, staging: MaxComputeWarehouse) -> None:
        """Replace partition ``ds`` with the staged one in one statement (sql/publish_partition.sql:
        ``INSERT OVERWRITE ... SELECT``, which MaxCompute commits atomically), then drop the staged one."""
        ds = validate_ds(ds)
        try:
            self._odps.execute_sql(load_sql("publish_partition", table=self.table, source_table=staging.table, ds=ds))
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"publishing {staging._where(ds)} into {self._where(ds)} failed; "
                                   "the published partition is unchanged", exc) from exc
        staging.drop_partition(ds)
        log.info("published %s from %s", self._where(ds), staging.table)

    def drop_partition(self, ds: str) -> None:
        """Drop partition ``ds`` if it exists."""
        ds = validate_ds(ds)
        try:
            self._odps.get_table(self.table).delete_partition(f"{PARTITION_COLUMN}={ds}", if_exists=True)
        except _SERVICE_ERRORS as exc:
            raise _warehouse_error(f"dropping {self._where(ds)} failed", exc) from exc

    def clean_litter(self, ds: str) -> list[str]:
        """Nothing beyond the staged partitions (see :meth:`staging`): a killed upload session commits nothing."""
        return []

    def expire_stale(self, now: float | None = None) -> list[str]:
        """Nothing to do: the service applies the table's LIFECYCLE itself (one day on the staging table)."""
        return []

    def expire_partitions(self, today_ds: str) -> list[str]:
        """Nothing to do: MaxCompute drops partitions itself per the table's LIFECYCLE."""
        validate_ds(today_ds)
        return []
