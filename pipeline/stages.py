"""The pipeline's stages as plain functions: the DAG, the tests and a shell all call these.

    list OSS prefixes ─► derive catalog rows ─► write partition ds (one commit) ─► check partition

Rows stream from the listing into the warehouse's single upload; the partition is committed only after
the listing finished without error, so a failed run publishes nothing and a rerun of the same ``ds``
replaces the same partition (idempotent).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from pipeline.catalog import CatalogBuilder
from pipeline.config import IndexConfig
from pipeline.errors import PartitionCheckError
from pipeline.oss import OssConnection, OssLister
from pipeline.schema import PartitionStats, validate_ds
from pipeline.warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """What one load did. ``rows_written`` is None for a dry run (nothing was written)."""

    index: str
    ds: str
    prefixes: list[str]
    dry_run: bool
    counts: dict
    rows_written: int | None
    pages: int
    seconds: float

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "ds": self.ds,
            "prefixes": self.prefixes,
            "dry_run": self.dry_run,
            **self.counts,
            "rows_written": self.rows_written,
            "pages": self.pages,
            "seconds": round(self.seconds, 3),
        }


def open_lister(config: IndexConfig, **options) -> OssLister:
    """The lister for an index, with credentials from its Airflow ``oss`` connection."""
    conn = OssConnection.from_airflow(config.source.oss_conn_id)
    return OssLister.connect(conn, config.source.bucket, **options)


def open_index_warehouse(config: IndexConfig) -> Warehouse:
    """The catalog table for an index; the connection's type picks MaxCompute or the local warehouse."""
    wh = config.warehouse
    return open_warehouse(wh.conn_id, wh.table, wh.lifecycle_days)


def load_partition(
    config: IndexConfig,
    ds: str,
    *,
    prefixes: list[str] | None = None,
    dry_run: bool = False,
    lister: OssLister | None = None,
    warehouse: Warehouse | None = None,
) -> LoadResult:
    """List the index's prefixes and replace partition ``ds`` with the rows (or only count: ``dry_run``)."""
    validate_ds(ds)
    prefixes = list(prefixes or config.source.prefixes)
    started = time.monotonic()
    lister = lister or open_lister(config)
    builder = CatalogBuilder(config.source, config.id_rule, config.category_rule)
    batches = builder.batches(lister.iter_objects(prefixes))
    rows_written: int | None
    if dry_run:
        rows_written = None
        for _ in batches:
            pass
        log.info("dry run: listed %d objects, %d would be rows; nothing written", builder.counts.listed, builder.counts.kept)
    else:
        warehouse = warehouse or open_index_warehouse(config)
        warehouse.ensure_table()
        rows_written = warehouse.write_partition(ds, batches)
        log.info("wrote %d rows to %s partition ds=%s", rows_written, config.warehouse.table, ds)
    result = LoadResult(
        index=config.name,
        ds=ds,
        prefixes=prefixes,
        dry_run=dry_run,
        counts=builder.counts.as_dict(),
        rows_written=rows_written,
        pages=lister.pages_listed,
        seconds=time.monotonic() - started,
    )
    log.info("skipped by reason: %s", result.counts["skipped"])
    return result


def check_partition(warehouse: Warehouse, ds: str, table: str | None = None) -> PartitionStats:
    """Fail on an empty partition or duplicate ids, naming examples; return the partition's stats."""
    stats = warehouse.partition_stats(ds)
    name = table or warehouse.table
    if stats.rows == 0:
        raise PartitionCheckError(
            f"partition ds={ds} of {name} has no rows: check the prefixes and filters in the index config "
            "(the load's skipped counts say why objects were left out)"
        )
    if stats.duplicate_ids or stats.distinct_ids != stats.rows:
        raise PartitionCheckError(
            f"partition ds={ds} of {name} has {stats.rows - stats.distinct_ids} duplicate id(s), e.g. "
            f"{stats.duplicate_ids[:10]}: the id rule maps several keys to one id; narrow id_rule.regex "
            "or use kind: hash"
        )
    return stats
