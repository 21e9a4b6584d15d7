"""Catalog rows as both warehouses take and give them: batches conformed to ``CATALOG_SCHEMA`` on the way in,
partition files read with the table's current columns, rows as dicts on the way out."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import PipelineError, WarehouseError
from pipeline.schema import CATALOG_SCHEMA


def conform_batch(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
    """Return ``batch`` as a RecordBatch with exactly ``CATALOG_SCHEMA`` (column order, types, no nulls where a column allows none).

    Columns are matched by name and cast safely (e.g. int32 ids widen to int64; lossy casts fail).
    Raises WarehouseError naming the offending columns.
    """
    if isinstance(batch, pa.Table):  # accepted for convenience; one batch per table
        batch = pa.record_batch([c.combine_chunks() for c in batch.columns], names=batch.column_names)
    if not isinstance(batch, pa.RecordBatch):
        raise WarehouseError(f"expected a pyarrow RecordBatch, got {type(batch).__name__}")

    expected = CATALOG_SCHEMA.names
    actual = batch.schema.names
    missing = [n for n in expected if n not in actual]
    unexpected = [n for n in actual if n not in expected]
    if missing or unexpected or len(set(actual)) != len(actual):
        raise WarehouseError(
            f"batch columns {actual} do not match the catalog schema {expected}: "
            f"missing {missing}, unexpected {unexpected}"
        )

    arrays: list[pa.Array] = []
    for field in CATALOG_SCHEMA:
        column = batch.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise WarehouseError(
                    f"column {field.name!r} has type {column.type}, which does not cast to {field.type}: {exc}"
                ) from exc
        if not field.nullable and column.null_count:
            raise WarehouseError(f"column {field.name!r} has {column.null_count} null values; it must have none")
        arrays.append(column)
    return pa.RecordBatch.from_arrays(arrays, schema=CATALOG_SCHEMA)


def iter_source(batches: Iterable[pa.RecordBatch], what: str) -> Iterator[pa.RecordBatch]:
    """Iterate ``batches``; a non-pipeline error raised by the source becomes a WarehouseError.

    PipelineErrors (e.g. a CatalogError from the producer) pass through unchanged so the caller sees
    the real reason; anything else is wrapped so the message says the source, not the warehouse, failed.
    """
    iterator = iter(batches)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except PipelineError:
            raise
        except Exception as exc:
            raise WarehouseError(
                f"{what}: the batch source raised {type(exc).__name__}: {exc}; nothing was committed"
            ) from exc
        yield batch


def catalog_batches(parquet: pq.ParquetFile, columns: list[str] | None = None, **kwargs: Any) -> Iterator[pa.RecordBatch]:
    """The batches of a partition's file with exactly the catalog's ``columns`` (default: all), in order:
    a nullable column the file predates reads as NULL. ``kwargs`` go to ``iter_batches``."""
    names = list(columns or CATALOG_SCHEMA.names)
    present = set(parquet.schema_arrow.names)
    stored = [n for n in names if n in present]
    missing = [n for n in names if n not in present]
    for name in missing:
        if not CATALOG_SCHEMA.field(name).nullable:
            raise WarehouseError(f"a partition file has no column {name!r} (columns: {sorted(present)})")
    schema = pa.schema([CATALOG_SCHEMA.field(n) for n in names])
    for batch in parquet.iter_batches(columns=stored, **kwargs):
        if not missing:
            yield batch
            continue
        arrays = [batch.column(n) if n in present else pa.nulls(batch.num_rows, schema.field(n).type) for n in names]
        yield pa.RecordBatch.from_arrays(arrays, schema=schema)


def row_dict(row_id: Any, source_image: Any, cate_id: Any, etag: Any) -> dict:
    """A row of the catalog columns as a dict (what the samples return)."""
    return {"id": int(row_id), "source_image": str(source_image), "cate_id": int(cate_id),
            "etag": None if etag is None else str(etag)}
