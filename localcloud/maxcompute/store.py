"""The local MaxCompute's storage: projects, tables, partitions and their data as Parquet files.

Layout on disk (one server process per root)
    ``<root>/<project>/<table>/table.json``     the table's schema, lifecycle and comment
    ``<root>/<project>/<table>/manifest.json``  its partitions: spec, times, rows, bytes, data files
    ``<root>/<project>/<table>/data/*.parquet`` the data columns of each write (never the partition keys)

Schema changes
    ``ADD COLUMNS`` (:meth:`MaxComputeStore.add_columns`) appends to ``table.json`` only: data files are
    never rewritten, so a file written before holds fewer columns than the table, and every reader gives
    the ones it lacks as NULL (:func:`stored_columns`, :func:`with_columns`), as MaxCompute reads rows
    written before a column was added.

Atomicity
    A write streams its batches into a new Parquet file, then replaces ``manifest.json`` (temp file,
    fsync, ``os.replace``): a reader sees the partition before or after, never half of it, and a write
    that fails before the swap leaves only an orphan file. Files a manifest no longer names are deleted
    after :data:`ORPHAN_GRACE_S`, so a snapshot taken by :meth:`MaxComputeStore.parquet_files` stays
    readable while a query runs; on open, every orphan goes (no reader survives a restart).

Lifecycle
    :meth:`MaxComputeStore.expire` reclaims what MaxCompute would: a partition whose data has not changed
    for ``lifecycle`` days, and an unpartitioned table likewise. The service runs this once a day; the
    server runs it at start and on a timer.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from localcloud.maxcompute.errors import (
    NOT_SUPPORTED, MaxComputeError, SqlError, invalid_parameter, no_such_object, object_already_exists,
)
from localcloud.maxcompute.types import MAX_CELL_BYTES, Column, arrow_schema, oversized_cell

ORPHAN_GRACE_S = 15 * 60
# MaxCompute's SQL limits (none adjustable): partitions per table, partition levels, columns per
# table, bytes of a table or column comment, bytes of a partition value.
MAX_PARTITIONS = 60000
MAX_PARTITION_LEVELS = 6
MAX_COLUMNS = 1200
MAX_COMMENT_BYTES = 1024
MAX_PARTITION_VALUE_BYTES = 128
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,127}$")
# MaxCompute refuses these in partition values (they break the partition path); so do we. Double-byte
# characters (Chinese, ...) are refused too: the service does not support them in partition values.
_BAD_PARTITION_VALUE = re.compile(r"[/\\=,'\"\x00-\x1f]")
_DAY_S = 86400


@dataclass(frozen=True)
class TableMeta:
    project: str
    name: str
    columns: tuple[Column, ...]
    partition_columns: tuple[Column, ...]
    lifecycle: int | None
    comment: str
    created: float
    last_modified: float  # the last DDL or data change
    external: dict[str, Any] | None = None  # an OSS external table: handler, location, properties (external.py)

    @property
    def is_partitioned(self) -> bool:
        return bool(self.partition_columns)

    @property
    def schema(self) -> pa.Schema:
        """Arrow schema of the data columns (what the data files hold)."""
        return arrow_schema(list(self.columns))


@dataclass(frozen=True)
class PartitionMeta:
    spec: tuple[tuple[str, str], ...]
    created: float
    last_modified: float
    record_num: int
    size: int

    @property
    def spec_text(self) -> str:
        return format_spec(self.spec)

    @property
    def spec_dict(self) -> dict[str, str]:
        return dict(self.spec)


def format_spec(spec: Iterable[tuple[str, str]]) -> str:
    """``ds=20261201`` (levels comma-joined, as pyodps and the service write a partition spec)."""
    return ",".join(f"{k}={v}" for k, v in spec)


def parse_spec(text: str) -> dict[str, str]:
    """``ds=20261201,hh=01`` or ``ds='20261201'`` -> ``{"ds": "20261201", "hh": "01"}``."""
    spec: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise invalid_parameter(f"invalid partition spec {text!r}: expected name=value[,name=value]")
        spec[key.strip().lower()] = value.strip().strip("'\"")
    return spec


def check_partition_value(key: str, value: str) -> None:
    """Raise InvalidParameter unless ``value`` may name a partition: non-empty ASCII, at most 128 bytes,
    none of the characters that break a partition path."""
    if (not value or not value.isascii() or _BAD_PARTITION_VALUE.search(value)
            or len(value.encode()) > MAX_PARTITION_VALUE_BYTES):
        raise invalid_parameter(f"invalid partition value {key}={value!r}: a partition value is ASCII (no "
                                f"double-byte characters), at most {MAX_PARTITION_VALUE_BYTES} bytes, without "
                                "/ \\ = , quotes or control characters")


def too_many_partitions(where: str) -> SqlError:
    return SqlError("ODPS-0123031", f"ODPS partition exception - maximum {MAX_PARTITIONS} partitions allowed "
                    f"(table {where})")


def check_name(kind: str, name: str) -> str:
    if not _NAME.match(name or ""):
        raise invalid_parameter(f"invalid {kind} name {name!r}: letters, digits and _ , starting with a "
                                "letter, at most 128 characters")
    return name.lower()


class MaxComputeStore:
    """Projects of the local server under ``root``; thread-safe within one process."""

    def __init__(self, root: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._lock = threading.RLock()
        self._collect_orphans(grace_s=0)

    # -- projects -----------------------------------------------------------------------------------

    def create_project(self, project: str) -> None:
        (self.root / check_name("project", project)).mkdir(parents=True, exist_ok=True)

    def project_exists(self, project: str) -> bool:
        return bool(_NAME.match(project or "")) and (self.root / project.lower()).is_dir()

    def _project_dir(self, project: str) -> Path:
        if not self.project_exists(project):
            raise no_such_object(f"ODPS-0420111: Project not found - '{project}'")
        return self.root / project.lower()

    # -- tables -------------------------------------------------------------------------------------

    def _table_dir(self, project: str, name: str) -> Path:
        return self._project_dir(project) / check_name("table", name)

    def create_table(self, project: str, name: str, columns: Iterable[Column],
                     partition_columns: Iterable[Column] = (), lifecycle: int | None = None,
                     comment: str = "", if_not_exists: bool = False,
                     external: dict[str, Any] | None = None) -> TableMeta:
        columns, partition_columns = tuple(columns), tuple(partition_columns)
        names = [c.name for c in columns + partition_columns]
        if not columns:
            raise invalid_parameter(f"table {name} needs at least one column")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise invalid_parameter(f"duplicate column name(s) {', '.join(duplicates)} in table {name}")
        for column in columns + partition_columns:
            check_name("column", column.name)
        for column in partition_columns:
            if column.type not in ("STRING", "BIGINT", "INT", "SMALLINT", "TINYINT") and not column.type.startswith(("VARCHAR", "CHAR")):
                raise invalid_parameter(f"partition column {column.name} cannot be of type {column.type}")
        if len(partition_columns) > MAX_PARTITION_LEVELS:
            raise invalid_parameter(f"table {name} has {len(partition_columns)} partition levels; at most "
                                    f"{MAX_PARTITION_LEVELS} are allowed")
        if len(names) > MAX_COLUMNS:
            raise invalid_parameter(f"table {name} has {len(names)} columns; at most {MAX_COLUMNS} are allowed")
        for what, text in [("table", comment), *((f"column {c.name}", c.comment) for c in columns + partition_columns)]:
            if len((text or "").encode()) > MAX_COMMENT_BYTES:
                raise invalid_parameter(f"the comment of {what} is {len(text.encode())} bytes; at most "
                                        f"{MAX_COMMENT_BYTES} are allowed")
        if lifecycle is not None and lifecycle <= 0:
            raise invalid_parameter(f"lifecycle must be a positive number of days, not {lifecycle}")
        with self._lock:
            folder = self._table_dir(project, name)
            if (folder / "table.json").exists():
                if if_not_exists:
                    return self.get_table(project, name)
                raise object_already_exists(f"Table or view already exists - table {project}.{name.lower()} is already exists")
            now = self.clock()
            meta = TableMeta(project.lower(), name.lower(), columns, partition_columns, lifecycle, comment, now, now,
                             external)
            (folder / "data").mkdir(parents=True, exist_ok=True)
            _write_json(folder / "manifest.json", {"partitions": {}})
            _write_json(folder / "table.json", _meta_json(meta))
            return meta

    def table_exists(self, project: str, name: str) -> bool:
        try:
            return (self._table_dir(project, name) / "table.json").exists()
        except MaxComputeError:
            return False

    def get_table(self, project: str, name: str) -> TableMeta:
        folder = self._table_dir(project, name)
        try:
            data = json.loads((folder / "table.json").read_text())
        except FileNotFoundError:
            raise no_such_object(f"Table not found - table {project.lower()}.{name.lower()} cannot be resolved") from None
        return _meta_from_json(data)

    def list_tables(self, project: str) -> list[TableMeta]:
        folder = self._project_dir(project)
        return [self.get_table(project, d.name) for d in sorted(folder.iterdir()) if (d / "table.json").exists()]

    def drop_table(self, project: str, name: str, if_exists: bool = False) -> None:
        with self._lock:
            if not self.table_exists(project, name):
                if if_exists:
                    return
                self.get_table(project, name)  # raises NoSuchObject
            folder = self._table_dir(project, name)
            # Rename first: the table vanishes at once; removing the files may take a while.
            trash = folder.with_name(f".dropped-{folder.name}-{uuid.uuid4().hex}")
            os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)

    def touch_table(self, project: str, name: str, **changes: Any) -> TableMeta:
        """Change ``lifecycle`` or ``comment`` (ALTER TABLE); the table's last-modified time moves."""
        with self._lock:
            meta = self.get_table(project, name)
            data = {**_meta_json(meta), **changes, "last_modified": self.clock()}
            _write_json(self._table_dir(project, name) / "table.json", data)
            return _meta_from_json(data)

    def add_columns(self, project: str, name: str, columns: Iterable[Column], if_not_exists: bool = False) -> TableMeta:
        """``ALTER TABLE ... ADD COLUMNS [IF NOT EXISTS] (...)``: append data columns (never before another
        one, never a partition key). Existing rows read NULL in them; no data file is touched. A column the
        table has is an error, or skipped with ``if_not_exists``."""
        with self._lock:
            meta = self.get_table(project, name)
            where = f"{meta.project}.{meta.name}"
            if meta.external is not None:
                raise SqlError(NOT_SUPPORTED, f"[1,1] Semantic analysis exception - ADD COLUMNS on the external "
                               f"table {where} is not supported by the local MaxCompute server")
            have = {c.name for c in meta.columns + meta.partition_columns}
            added: list[Column] = []
            for column in columns:
                check_name("column", column.name)
                if column.name in {c.name for c in added}:
                    raise invalid_parameter(f"duplicate column name {column.name} in ADD COLUMNS of table {where}")
                if column.name in have:
                    if if_not_exists:
                        continue
                    raise invalid_parameter(f"column {column.name} already exists in table {where}")
                if len(column.comment.encode()) > MAX_COMMENT_BYTES:
                    raise invalid_parameter(f"the comment of column {column.name} is {len(column.comment.encode())} "
                                            f"bytes; at most {MAX_COMMENT_BYTES} are allowed")
                added.append(column)
            if len(have) + len(added) > MAX_COLUMNS:
                raise invalid_parameter(f"table {where} would have {len(have) + len(added)} columns; at most "
                                        f"{MAX_COLUMNS} are allowed")
            if not added:
                return meta
            return self.touch_table(project, name, columns=_columns_json((*meta.columns, *added)))

    # -- partitions ---------------------------------------------------------------------------------

    def _manifest(self, project: str, table: str) -> dict[str, Any]:
        return json.loads((self._table_dir(project, table) / "manifest.json").read_text())

    def _spec(self, meta: TableMeta, spec: Mapping[str, str] | str | None) -> tuple[tuple[str, str], ...]:
        """Validate ``spec`` against the table's partition columns: every level, in order."""
        if isinstance(spec, str):
            spec = parse_spec(spec)
        elif isinstance(spec, tuple):  # a PartitionMeta.spec
            spec = dict(spec)
        spec = {k.lower(): str(v) for k, v in (spec or {}).items()}
        where = f"{meta.project}.{meta.name}"
        if not meta.is_partitioned:
            if spec:
                raise invalid_parameter(f"table {where} is not partitioned, but a partition {format_spec(spec.items())} was given")
            return ()
        wanted = [c.name for c in meta.partition_columns]
        if sorted(spec) != sorted(wanted):
            raise invalid_parameter(f"partition spec {format_spec(spec.items()) or '(none)'} does not match the "
                                    f"partition columns ({', '.join(wanted)}) of table {where}")
        for key, value in spec.items():
            check_partition_value(key, value)
        return tuple((name, spec[name]) for name in wanted)

    def list_partitions(self, project: str, table: str) -> list[PartitionMeta]:
        meta = self.get_table(project, table)
        if not meta.is_partitioned:
            raise invalid_parameter(f"table {meta.project}.{meta.name} is not partitioned")
        entries = self._manifest(project, table)["partitions"].values()
        return sorted((_partition(e) for e in entries), key=lambda p: p.spec)

    def get_partition(self, project: str, table: str, spec: Mapping[str, str] | str | tuple) -> PartitionMeta:
        meta = self.get_table(project, table)
        key = format_spec(self._spec(meta, spec))
        entry = self._manifest(project, table)["partitions"].get(key)
        if entry is None or not meta.is_partitioned:
            raise no_such_object(f"Partition not found - partition {key} of table {meta.project}.{meta.name} does not exist")
        return _partition(entry)

    def add_partition(self, project: str, table: str, spec: Mapping[str, str] | str, if_not_exists: bool = False) -> None:
        with self._lock:
            meta = self.get_table(project, table)
            key_spec = self._spec(meta, spec)
            if not key_spec:
                raise invalid_parameter(f"table {meta.project}.{meta.name} is not partitioned")
            manifest = self._manifest(project, table)
            key = format_spec(key_spec)
            if key in manifest["partitions"]:
                if if_not_exists:
                    return
                raise object_already_exists(f"Partition already exists - partition {key} of table {meta.project}.{meta.name}")
            if len(manifest["partitions"]) >= MAX_PARTITIONS:
                raise too_many_partitions(f"{meta.project}.{meta.name}")
            now = self.clock()
            manifest["partitions"][key] = _entry(key_spec, now, now, [], 0, 0)
            self._save(project, table, manifest)

    def drop_partition(self, project: str, table: str, spec: Mapping[str, str] | str, if_exists: bool = False) -> None:
        with self._lock:
            meta = self.get_table(project, table)
            key = format_spec(self._spec(meta, spec))
            manifest = self._manifest(project, table)
            if manifest["partitions"].pop(key, None) is None:
                if if_exists:
                    return
                raise no_such_object(f"Partition not found - partition {key} of table {meta.project}.{meta.name} does not exist")
            self._save(project, table, manifest)

    def rename_partition(self, project: str, table: str, old: Mapping[str, str] | str, new: Mapping[str, str] | str) -> None:
        with self._lock:
            meta = self.get_table(project, table)
            old_spec, new_spec = self._spec(meta, old), self._spec(meta, new)
            manifest = self._manifest(project, table)
            entry = manifest["partitions"].pop(format_spec(old_spec), None)
            if entry is None:
                raise no_such_object(f"Partition not found - partition {format_spec(old_spec)} of table {meta.project}.{meta.name} does not exist")
            if format_spec(new_spec) in manifest["partitions"]:
                raise object_already_exists(f"Partition already exists - partition {format_spec(new_spec)} of table {meta.project}.{meta.name}")
            entry["spec"] = [list(kv) for kv in new_spec]
            manifest["partitions"][format_spec(new_spec)] = entry
            self._save(project, table, manifest)

    # -- data ---------------------------------------------------------------------------------------

    def parquet_files(self, project: str, table: str, spec: Mapping[str, str] | str | None = None
                      ) -> list[tuple[dict[str, str], list[Path]]]:
        """A consistent snapshot of the data files: one (spec, files) pair per partition (or the one
        asked for); ``[({}, files)]`` for an unpartitioned table."""
        with self._lock:
            meta = self.get_table(project, table)
            data_dir = self._table_dir(project, table) / "data"
            manifest = self._manifest(project, table)
            if meta.is_partitioned and spec is not None:
                entries = [manifest["partitions"].get(format_spec(self._spec(meta, spec)))]
                if entries[0] is None:
                    self.get_partition(project, table, spec)  # raises NoSuchObject
            else:
                entries = [manifest["partitions"][k] for k in sorted(manifest["partitions"])]
            return [(dict(map(tuple, e["spec"])), [data_dir / f for f in e["files"]]) for e in entries]

    def write(self, project: str, table: str, spec: Mapping[str, str] | str | None,
              data: Iterable[pa.RecordBatch | pa.Table], *, overwrite: bool, create_partition: bool = False) -> int:
        """Write ``data`` (the table's data columns) to the table or one partition, atomically: replace
        it (``overwrite``) or add to it. Returns the rows written."""
        meta = self.get_table(project, table)
        if meta.external is not None:   # its data lives in OSS; the local server does not write there
            raise SqlError(NOT_SUPPORTED, f"[1,1] Semantic analysis exception - writing to the external table "
                           f"{meta.project}.{meta.name} is not supported by the local MaxCompute server")
        key_spec = self._spec(meta, spec)
        if meta.is_partitioned and not key_spec:
            raise invalid_parameter(f"table {meta.project}.{meta.name} is partitioned: a write needs a partition")
        key = format_spec(key_spec)
        if meta.is_partitioned and not create_partition and key not in self._manifest(project, table)["partitions"]:
            self.get_partition(project, table, key_spec)  # raises NoSuchObject
        schema = meta.schema
        name = f"{uuid.uuid4().hex}.parquet"
        path = self._table_dir(project, table) / "data" / name
        rows = 0
        try:
            with pq.ParquetWriter(path, schema, compression="zstd") as writer:
                for item in data:
                    conformed = _conform(item, schema, f"{meta.project}.{meta.name}")
                    if conformed.num_rows:
                        writer.write(conformed)
                        rows += conformed.num_rows
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        size = path.stat().st_size
        with self._lock:
            manifest = self._manifest(project, table)  # re-read: another write may have landed meanwhile
            old = manifest["partitions"].get(key)
            now = self.clock()
            if old is None and meta.is_partitioned and not create_partition:
                path.unlink(missing_ok=True)
                raise no_such_object(f"Partition not found - partition {key} of table {meta.project}.{meta.name} does not exist")
            if old is None and meta.is_partitioned and len(manifest["partitions"]) >= MAX_PARTITIONS:
                path.unlink(missing_ok=True)
                raise too_many_partitions(f"{meta.project}.{meta.name}")
            if overwrite or old is None:
                entry = _entry(key_spec, old["created"] if old else now, now, [name], rows, size)
            else:
                entry = _entry(key_spec, old["created"], now, old["files"] + [name], old["record_num"] + rows, old["size"] + size)
            manifest["partitions"][key] = entry
            self._save(project, table, manifest)
            self.touch_table(project, table)
        return rows

    def _save(self, project: str, table: str, manifest: dict[str, Any]) -> None:
        _write_json(self._table_dir(project, table) / "manifest.json", manifest)
        self._collect_orphans(self._table_dir(project, table))

    # -- housekeeping -------------------------------------------------------------------------------

    def expire(self, now: float | None = None) -> list[str]:
        """Reclaim what the tables' lifecycles say is due; return what went (``project.table[/spec]``)."""
        now = self.clock() if now is None else now
        gone: list[str] = []
        with self._lock:
            for project_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for meta in self.list_tables(project_dir.name):
                    if meta.lifecycle is None:
                        continue
                    cutoff = now - meta.lifecycle * _DAY_S
                    if not meta.is_partitioned:
                        if meta.last_modified < cutoff:
                            self.drop_table(meta.project, meta.name)
                            gone.append(f"{meta.project}.{meta.name}")
                        continue
                    for partition in self.list_partitions(meta.project, meta.name):
                        if partition.last_modified < cutoff:
                            self.drop_partition(meta.project, meta.name, partition.spec_dict)
                            gone.append(f"{meta.project}.{meta.name}/{partition.spec_text}")
        return gone

    def _collect_orphans(self, table_dir: Path | None = None, grace_s: float = ORPHAN_GRACE_S) -> None:
        """Delete data files no manifest names, once older than ``grace_s`` (a running query may hold them)."""
        folders = [table_dir] if table_dir else [t for p in self.root.iterdir() if p.is_dir() for t in p.iterdir() if t.is_dir()]
        for folder in folders:
            if folder.name.startswith(".dropped-"):
                shutil.rmtree(folder, ignore_errors=True)
                continue
            manifest_path, data_dir = folder / "manifest.json", folder / "data"
            if not manifest_path.exists() or not data_dir.is_dir():
                continue
            named = {f for e in json.loads(manifest_path.read_text())["partitions"].values() for f in e["files"]}
            cutoff = time.time() - grace_s
            for path in data_dir.iterdir():
                if path.name not in named and path.stat().st_mtime <= cutoff:
                    path.unlink(missing_ok=True)


@functools.lru_cache(maxsize=65536)
def stored_columns(path: str) -> frozenset[str]:
    """The columns a data file holds: the table's when it was written (a file is never rewritten, so its
    answer never changes; a table's ``ADD COLUMNS`` since then is not in it)."""
    return frozenset(pq.read_schema(path).names)


def with_columns(batch: pa.RecordBatch, columns: Sequence[Column]) -> pa.RecordBatch:
    """``batch`` (read from one data file) as exactly ``columns``, in order: a column its file predates is
    NULL, as MaxCompute reads rows written before ``ADD COLUMNS``."""
    if batch.schema.names == [c.name for c in columns]:
        return batch
    arrays = [batch.column(c.name) if c.name in batch.schema.names else pa.nulls(batch.num_rows, c.arrow_type)
              for c in columns]
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])


def _conform(item: pa.RecordBatch | pa.Table, schema: pa.Schema, where: str) -> pa.Table:
    table = pa.Table.from_batches([item]) if isinstance(item, pa.RecordBatch) else item
    names = [n.lower() for n in table.column_names]
    if names != schema.names:
        raise invalid_parameter(f"data for {where} has columns {names}, the table has {schema.names}")
    table = table.rename_columns(schema.names)
    try:
        table = table.cast(schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise invalid_parameter(f"data for {where} does not fit the table's column types: {exc}") from exc
    found = oversized_cell(table)
    if found is not None:
        raise invalid_parameter(f"data for {where}: a value of column {found[0]} is {found[2]} bytes, over the "
                                f"{MAX_CELL_BYTES} bytes a cell may hold")
    return table


def _entry(spec: tuple[tuple[str, str], ...], created: float, modified: float, files: list[str], rows: int, size: int) -> dict:
    return {"spec": [list(kv) for kv in spec], "created": created, "last_modified": modified,
            "files": files, "record_num": rows, "size": size}


def _partition(entry: dict[str, Any]) -> PartitionMeta:
    return PartitionMeta(tuple(tuple(kv) for kv in entry["spec"]), entry["created"], entry["last_modified"],
                         entry["record_num"], entry["size"])


def _columns_json(columns: Iterable[Column]) -> list[dict[str, str]]:
    return [{"name": c.name, "type": c.type, "comment": c.comment} for c in columns]


def _meta_json(meta: TableMeta) -> dict[str, Any]:
    data = {"project": meta.project, "name": meta.name, "columns": _columns_json(meta.columns),
            "partition_columns": _columns_json(meta.partition_columns), "lifecycle": meta.lifecycle,
            "comment": meta.comment, "created": meta.created, "last_modified": meta.last_modified}
    if meta.external is not None:
        data["external"] = meta.external
    return data


def _meta_from_json(data: dict[str, Any]) -> TableMeta:
    return TableMeta(data["project"], data["name"], tuple(Column(**c) for c in data["columns"]),
                     tuple(Column(**c) for c in data["partition_columns"]), data["lifecycle"], data["comment"],
                     data["created"], data["last_modified"], data.get("external"))


def _write_json(path: Path, data: Any) -> None:
    """Temp file in the same folder, fsync, os.replace: readers see the old or the new, whole."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
