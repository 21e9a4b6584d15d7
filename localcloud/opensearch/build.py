"""The data steps of a local index build: read the partition, fetch and embed images, write/open a generation.

Why a module of its own: :mod:`localcloud.opensearch.engine` is the state machine (statuses, tasks, pause
policy, switching); these are the steps it runs, with no state of their own, so each can be read
against what the service does:

* :func:`read_partition_rows`: the partition's rows from MaxCompute (read with pyodps' table tunnel, as
  the service reads its ODPS data source) or from a local ``fs`` warehouse, reduced to the schema's
  stored fields; a later row with the same primary key replaces an earlier one (a primary key index).
* :func:`fetch_and_vectorize`: every image read with oss2 from the local OSS server (the stand-in for
  the service-linked role OpenSearch uses to read OSS), embedded by the vectorizer; images that cannot
  be fetched or decoded are left out and reported with a reason.
* :func:`write_generation` / :func:`open_generation`: ``vectors.npy`` (float32, N x 512),
  ``attributes.parquet`` (stored fields, row-aligned) and ``meta.json``, written into a temp folder
  and renamed into place, so a generation folder is either complete or absent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import oss2
import pyarrow as pa
import pyarrow.parquet as pq

from localcloud.opensearch.schema import FLOAT_TYPES, INTEGER_TYPES, TableSchema
from localcloud.opensearch.search import LiveGeneration
from localcloud.opensearch.vectorizer import DIMENSION, ImageDecodeError, Vectorizer
from pipeline.warehouse.local import LocalWarehouse

__all__ = [
    "BuildFailed",
    "BuildInterrupted",
    "TableSource",
    "fetch_and_vectorize",
    "fetch_image_vector",
    "image_bucket",
    "open_generation",
    "read_partition_rows",
    "write_generation",
]

MAX_EXAMPLES = 5
_BYTESIO_RE = re.compile(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>")

Rows = dict[str, list[Any]]  # stored field name -> values, row-aligned


class BuildFailed(Exception):
    """Ends a build with ``status`` (``failed`` or ``stopped``); the message goes to the task."""

    def __init__(self, message: str, status: str = "failed") -> None:
        super().__init__(message)
        self.status = status


class BuildInterrupted(Exception):
    """The engine is closing: the build stops where it is (a restart marks it failed)."""


@dataclass(frozen=True)
class MaxComputeSource:
    """The ODPS data source of a table: a MaxCompute project read with pyodps (the key pair stands in
    for the AccessKey or service-linked role the cloud's data source is configured with)."""

    endpoint: str
    project: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    region: str | None = None  # given: pyodps signs with V4

    def read_partition(self, table: str, partition: str) -> pa.Table:
        from odps import ODPS

        odps = ODPS(self.access_key_id, self.access_key_secret, project=self.project, endpoint=self.endpoint,
                    region_name=self.region)
        with odps.get_table(table).open_reader(partition=partition, arrow=True) as reader:
            return reader.read_all()


@dataclass(frozen=True)
class TableSource:
    """Where a table's documents come from. The OSS key pair stands in for the service-linked role."""

    schema: TableSchema
    warehouse_root: Path | None  # a local fs warehouse, or None with ``maxcompute``
    warehouse_table: str
    oss_endpoint: str  # e.g. http://127.0.0.1:PORT (the schema's oss_endpoint is the cloud one)
    oss_access_key_id: str
    oss_access_key_secret: str = field(repr=False)
    oss_region: str = "cn-hangzhou"  # signed with V4, as the service's role reads a V4-only bucket
    maxcompute: MaxComputeSource | None = None

    @property
    def project(self) -> str:
        return self.maxcompute.project if self.maxcompute else "local"

    def read_partition(self, partition: str) -> pa.Table:
        if self.maxcompute is not None:
            return self.maxcompute.read_partition(self.warehouse_table, partition)
        assert self.warehouse_root is not None, "a table source needs a MaxCompute project or a warehouse root"
        return LocalWarehouse(self.warehouse_root, self.warehouse_table).read_partition(partition.split("=", 1)[1])


def read_partition_rows(source: TableSource, partition: str) -> tuple[Rows, int]:
    """The stored fields of ``partition`` (``ds=YYYYMMDD``), one row per primary key; and the duplicates."""
    try:
        data = source.read_partition(partition)
    except Exception as exc:
        raise BuildFailed(f"read_partition: partition {partition} of warehouse table "
                          f"{source.warehouse_table!r} cannot be read: {exc}") from exc
    schema = source.schema
    names = [f.name for f in schema.stored_fields]
    missing = [n for n in names if n not in data.column_names]
    if missing:
        raise BuildFailed(f"read_partition: schema field(s) {missing} have no column in {partition} of "
                          f"{source.warehouse_table!r} (columns: {data.column_names})")
    raw = {n: data.column(n).to_pylist() for n in names}
    last: dict[Any, int] = {}
    for i, pk in enumerate(raw[schema.primary_key]):
        if pk is None:
            raise BuildFailed(f"read_partition: row {i} has a null primary key {schema.primary_key!r}")
        last.pop(pk, None)  # re-insert: the document takes the position of its last row
        last[pk] = i
    order = list(last.values())
    return {n: [raw[n][i] for i in order] for n in names}, len(raw[schema.primary_key]) - len(order)


def image_bucket(source: TableSource, workers: int) -> oss2.Bucket:
    """The table's image bucket, read with oss2 and V4 signatures, as the service's role reads it."""
    return oss2.Bucket(oss2.AuthV4(source.oss_access_key_id, source.oss_access_key_secret), source.oss_endpoint,
                       source.schema.oss_bucket, session=oss2.Session(pool_size=workers), connect_timeout=30,
                       region=source.oss_region)


def fetch_image_vector(bucket: oss2.Bucket, path: object, vectorizer: Vectorizer) -> np.ndarray | str:
    """One image field's vector, or why there is none (a missing object, a fetch error, undecodable bytes)."""
    key = str(path or "").lstrip("/")
    if not key:
        return "empty image path"
    try:
        data = bucket.get_object(key).read()
    except oss2.exceptions.NoSuchKey:
        return f"NoSuchKey: oss://{bucket.bucket_name}/{key} does not exist"
    except oss2.exceptions.OssError as exc:
        return f"fetch failed: {exc.code or exc.status}: {(exc.message or '')[:120]}"
    except Exception as exc:  # connection errors and the like
        return f"fetch failed: {type(exc).__name__}: {str(exc)[:120]}"
    try:
        return vectorizer.embed_image(data)
    except ImageDecodeError as exc:  # its messages say "not a decodable image: ..." already
        return _BYTESIO_RE.sub("", f"decode failed: {exc}")[:200]


def fetch_and_vectorize(
    source: TableSource,
    rows: Mapping[str, list[Any]],
    vectorizer: Vectorizer,
    *,
    workers: int,
    closing: threading.Event,
    on_progress: Callable[[int, int], None],
) -> tuple[np.ndarray, list[int], list[dict[str, Any]]]:
    """Embed every row's image: (vectors of the kept rows, kept row indices, failures with reasons)."""
    schema = source.schema
    paths, pks = rows[schema.image_field], rows[schema.primary_key]
    bucket = image_bucket(source, workers)

    def one(path: object) -> np.ndarray | str:
        if closing.is_set():
            return "interrupted"
        return fetch_image_vector(bucket, path, vectorizer)

    total = len(paths)
    step = max(1, total // 10)
    vectors: list[np.ndarray] = []
    keep: list[int] = []
    failures: list[dict[str, Any]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as pool:
        for i, result in enumerate(pool.map(one, paths)):
            if closing.is_set():
                raise BuildInterrupted()
            if isinstance(result, str):
                failures.append({"pk": pks[i], "image": paths[i], "reason": result})
            else:
                keep.append(i)
                vectors.append(result)
            if (i + 1) % step == 0 and i + 1 < total:
                on_progress(i + 1, total)
    matrix = np.vstack(vectors).astype(np.float32) if vectors else np.zeros((0, DIMENSION), np.float32)
    return matrix, keep, failures


def _arrow_type(field_type: str) -> pa.DataType:
    if field_type in INTEGER_TYPES:
        return pa.int64()
    if field_type in FLOAT_TYPES:
        return pa.float64()
    return pa.string()


def write_generation(
    folder: Path,
    gen_id: int,
    meta: Mapping[str, Any],
    schema: TableSchema,
    rows: Mapping[str, list[Any]],
    keep: list[int],
    vectors: np.ndarray,
) -> Path:
    """Write ``<folder>/<gen_id>/`` via a temp folder and one rename; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{gen_id}-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        np.save(tmp / "vectors.npy", vectors, allow_pickle=False)
        arrays = {f.name: pa.array([rows[f.name][i] for i in keep], _arrow_type(f.type)) for f in schema.stored_fields}
        pq.write_table(pa.table(arrays), tmp / "attributes.parquet")
        full_meta = {**meta, "generationId": gen_id, "createTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "docCount": len(keep), "schema": schema.to_dict()}
        (tmp / "meta.json").write_text(json.dumps(full_meta, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, folder / str(gen_id))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder / str(gen_id)


def open_generation(folder: Path, gen_id: int, schema: TableSchema) -> LiveGeneration:
    """Load a written generation into memory; refuse one that does not fit the current schema."""
    vectors = np.load(folder / "vectors.npy", allow_pickle=False)
    columns = pq.read_table(folder / "attributes.parquet").to_pydict()
    if vectors.ndim != 2 or vectors.shape[1] != DIMENSION:
        raise ValueError(f"{folder}/vectors.npy has shape {vectors.shape}, expected (N, {DIMENSION})")
    missing = [f.name for f in schema.stored_fields if f.name not in columns]
    if missing:  # the schema changed since this generation was built: it needs a rebuild
        raise ValueError(f"{folder} lacks the field(s) {missing} of the current schema; reindex the table")
    return LiveGeneration(gen_id, vectors.astype(np.float32, copy=False), columns)
