"""The warehouse interface: one catalog table partitioned by ``ds``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Protocol

import pyarrow as pa

from pipeline.config import CategoryRule, IdRule, SourceConfig
from pipeline.schema import MAX_DELTA_PAGE_ROWS, DeltaBatch, IdChanges, PartitionStats, RowChanges


class Warehouse(Protocol):
    """A partitioned catalog table.

    ``write_partition`` consumes ``batches`` (each matching ``CATALOG_SCHEMA``) and replaces partition
    ``ds`` with exactly those rows, atomically: if the iterable raises, or anything fails before the
    commit, the partition keeps its previous content (or stays absent) and no reader ever sees a mix.
    """

    table: str

    @property
    def location(self) -> str:
        """Where the table lives and how it is written, for logs and the run report."""

    def ensure_table(self) -> None:
        """Create the table if missing; raise SchemaMismatchError if it exists with another schema."""

    def write_partition(self, ds: str, batches: Iterable[pa.RecordBatch]) -> int:
        """Replace partition ``ds`` with ``batches``; return the number of rows committed."""

    def partition_stats(self, ds: str) -> PartitionStats:
        """Rows, distinct ids, rows per category and duplicate-id examples of partition ``ds``."""

    def id_changes(self, ds: str, previous_ds: str, previous: Warehouse | None = None) -> IdChanges:
        """How many ids ``ds`` added and removed against ``previous_ds`` of ``previous`` (default: this
        table; sql/id_changes.sql)."""

    def row_changes(self, ds: str, previous_ds: str, previous: Warehouse | None = None) -> RowChanges:
        """How the rows of ``ds`` differ, id by id, from those of ``previous_ds`` of ``previous`` (default: this
        table; sql/row_changes.sql): ids added, removed, changed (source_image, cate_id or etag; a NULL etag on
        either side counts as changed), unchanged, and the previous rows without an etag. WarehouseError if
        either partition is missing or holds an id twice."""

    def iter_delta(self, ds: str, previous_ds: str, previous: Warehouse | None = None, *,
                   after_id: int | None = None, batch_rows: int = MAX_DELTA_PAGE_ROWS) -> Iterator[DeltaBatch]:
        """What turns ``previous_ds`` of ``previous`` (default: this table) into ``ds`` in an index, page by page
        (sql/row_delta.sql): the rows of added and changed ids to add, the removed ids to delete, ids ascending,
        at most ``batch_rows`` (1..10,000) a page, starting after ``after_id`` (a page's ``last_id`` resumes
        after it). Arguments are checked at the call (ValueError); the partitions when it is iterated."""

    def sample_rows(self, ds: str, limit: int) -> list[dict]:
        """Up to ``limit`` rows of ``ds`` (smallest ids first), as dicts of the catalog columns."""

    def sample_new_rows(self, ds: str, previous_ds: str, limit: int) -> list[dict]:
        """Up to ``limit`` rows of ``ds`` whose id is not in ``previous_ds`` (smallest ids first)."""

    def rows_by_id(self, ds: str, ids: list[int]) -> list[dict]:
        """The rows of ``ds`` with these ids (at most 1000 ids)."""

    def partitions(self) -> list[str]:
        """The ``ds`` values of existing partitions, sorted ascending."""

    def load_inventory(self, ds: str, location: str, file_schema: str, source: SourceConfig, id_rule: IdRule,
                       category_rule: CategoryRule, role_arn: str, prefixes: list[str] | None = None) -> dict:
        """Stage partition ``ds`` from the OSS Bucket Inventory files under ``location`` with the index's
        rules (``source.mode: inventory``); return the listing load's counts. MaxCompute only."""

    def staging(self) -> Warehouse:
        """A table of the same kind and schema where runs write before their checks (nothing reads it)."""

    def publish(self, ds: str, staging: Warehouse) -> None:
        """Replace partition ``ds`` with ``staging``'s partition ``ds`` atomically, then drop the staged one;
        on failure the published partition is unchanged."""

    def drop_partition(self, ds: str) -> None:
        """Remove partition ``ds`` if it exists."""

    def clean_litter(self, ds: str) -> list[str]:
        """Remove what killed writes of partition ``ds`` left behind (only while no run of that ``ds`` writes)."""

    def expire_stale(self, now: float | None = None) -> list[str]:
        """Remove partitions not modified for the table's lifecycle and litter no writer can still own,
        by age as MaxCompute's LIFECYCLE does (never by partition date: a backfill writes old dates)."""
