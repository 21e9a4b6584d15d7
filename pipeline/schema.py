"""The catalog table: one row per image, the shape OpenSearch's image table reads (plus ``etag``,
which OpenSearch does not read: its table schema maps only ``id``, ``source_image`` and ``cate_id``)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import pyarrow as pa

CATALOG_SCHEMA = pa.schema(
    [
        pa.field("id", pa.int64(), nullable=False),
        pa.field("source_image", pa.string(), nullable=False),
        pa.field("cate_id", pa.int64(), nullable=False),
        # The image object's ETag, without quotes, as OSS lists it: a replaced image changes it, so a
        # delta can tell it from an unchanged one. Nullable: partitions written before the column existed
        # (and inventories without the ETag field) have none. Not read by OpenSearch.
        pa.field("etag", pa.string(), nullable=True),
    ]
)
PARTITION_COLUMN = "ds"
#: Runs write into ``<table>__staging`` first; only checked partitions are published into ``<table>``.
STAGING_SUFFIX = "__staging"
_DS_RE = re.compile(r"^\d{8}$")


def validate_ds(ds: str) -> str:
    """Return ``ds`` if it is a YYYYMMDD partition value; it is spliced into SQL, so be strict."""
    if not isinstance(ds, str) or not _DS_RE.match(ds):
        raise ValueError(f"partition date must be YYYYMMDD, got {ds!r}")
    return ds


@dataclass(frozen=True)
class PartitionStats:
    """What a written partition holds. ``duplicate_ids`` lists up to 10 ids that occur more than once;
    ``id_digest`` (see :func:`id_set_digest`) is equal for two partitions exactly when, barring a 2^-64
    accident, they hold the same set of ids (None in figures recorded before it existed)."""

    ds: str
    rows: int
    distinct_ids: int
    rows_per_category: dict[int, int]
    duplicate_ids: list[int]
    id_digest: str | None = None

    @property
    def spec(self) -> str:
        return f"{PARTITION_COLUMN}={self.ds}"

    @classmethod
    def from_dict(cls, data: dict) -> PartitionStats:
        """The inverse of :meth:`as_dict` (figures recorded when a partition went live)."""
        return cls(str(data["ds"]), int(data["rows"]), int(data["distinct_ids"]),
                   {int(k): int(v) for k, v in (data.get("rows_per_category") or {}).items()},
                   [int(i) for i in data.get("duplicate_ids") or []], data.get("id_digest"))

    def as_dict(self) -> dict:
        return {
            "ds": self.ds,
            "rows": self.rows,
            "distinct_ids": self.distinct_ids,
            "rows_per_category": {str(k): v for k, v in sorted(self.rows_per_category.items())},
            "duplicate_ids": self.duplicate_ids,
            "id_digest": self.id_digest,
        }


def id_set_digest(distinct_ids: int, high_sum: int | None, low_sum: int | None) -> str:
    """The digest of a partition's id set from sql/partition_stats.sql's two order-independent sums
    (the engine reduces any number of ids to them): 32 hex digits, the same on every warehouse."""
    text = f"{int(distinct_ids)}:{int(high_sum or 0)}:{int(low_sum or 0)}"
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class IdChanges:
    """How the ids of partition ``ds`` differ from those of ``previous_ds``."""

    ds: str
    previous_ds: str
    added: int
    removed: int

    def as_dict(self) -> dict:
        return {"previous_ds": self.previous_ds, "added": self.added, "removed": self.removed}


@dataclass(frozen=True)
class RowChanges:
    """How the rows of partition ``ds`` differ, id by id, from those of ``previous_ds`` (sql/row_changes.sql):
    ``added`` ids only in ``ds``, ``removed`` ids only in ``previous_ds``, ``changed`` ids in both whose
    ``source_image``, ``cate_id`` or ``etag`` differ (a NULL etag on either side counts as changed: a replaced
    image cannot be ruled out), ``unchanged`` the other ids in both; ``previous_without_etag`` the rows of
    ``previous_ds`` with no etag (written before the column existed, or from an inventory without ETags)."""

    ds: str
    previous_ds: str
    added: int
    removed: int
    changed: int
    unchanged: int
    previous_without_etag: int

    @property
    def delta_rows(self) -> int:
        """What a delta pushes: a document per added or changed id, a deletion per removed one."""
        return self.added + self.changed + self.removed

    def as_dict(self) -> dict:
        return {"previous_ds": self.previous_ds, "added": self.added, "removed": self.removed,
                "changed": self.changed, "unchanged": self.unchanged,
                "previous_without_etag": self.previous_without_etag}


#: The most rows a delta page holds: what one MaxCompute SELECT answers before its result is truncated
#: (READ_TABLE_MAX_ROW: 10,000 by default and at most).
MAX_DELTA_PAGE_ROWS = 10_000
#: The rows a delta adds: the catalog's columns and why (``added``: a new id; ``changed``: a new row for an id).
DELTA_ADD_SCHEMA = pa.schema([*CATALOG_SCHEMA, pa.field("reason", pa.string(), nullable=False)])


@dataclass(frozen=True)
class DeltaBatch:
    """One page of a delta (see ``Warehouse.iter_delta``), ids ascending across both parts: ``adds``, the
    rows to add to the index or to replace there (``DELTA_ADD_SCHEMA``), and ``deletes``, the ids to remove.
    ``last_id`` is the page's largest id: ``iter_delta(..., after_id=last_id)`` resumes after this page."""

    adds: pa.RecordBatch
    deletes: list[int]
    last_id: int

    def __len__(self) -> int:
        return self.adds.num_rows + len(self.deletes)
