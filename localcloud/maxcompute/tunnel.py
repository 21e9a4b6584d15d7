"""The MaxCompute Tunnel: upload and download sessions as pyodps' TableTunnel / InstanceTunnel use them.

pyodps addresses the tunnel with the REST paths themselves, on the tunnel endpoint
(``http://{answer of GET /projects/{p}/tunnel?service}``), told apart by their query:

* ``POST   /projects/{p}/tables/{t}?uploads=1[&partition=k=v,..][&overwrite=true][&create_partition=true]``
* ``GET    /projects/{p}/tables/{t}?uploadid=ID`` (status, block list; pyodps' reload and commit check)
* ``PUT    /projects/{p}/tables/{t}?uploadid=ID&blockid=N[&arrow]`` (body: record or arrow format)
* ``POST   /projects/{p}/tables/{t}?uploadid=ID`` (commit: every uploaded block, in block id order)
* ``POST   /projects/{p}/tables/{t}?downloads[&partition=..][&asyncmode=true]``
* ``GET    /projects/{p}/tables/{t}?data[&arrow]&downloadid=ID&rowrange=(start,count)[&columns=a,b]``
* ``POST   /projects/{p}/instances/{id}?downloads``, ``GET ...?downloadid=ID[&data&rowrange=..]``

Session state lives under ``state_dir`` (one JSON per session, uploaded blocks as Arrow IPC files),
so a restart between upload and commit loses nothing and a 10M-row upload never sits in memory.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from localcloud.maxcompute import tunnel_wire as wire
from localcloud.maxcompute.errors import MaxComputeError
from localcloud.maxcompute.store import check_partition_value, with_columns
from localcloud.maxcompute.types import MAX_CELL_BYTES, Column, arrow_schema, oversized_cell

MAX_BLOCK_ID = 20000          # the service's documented block id range is [0, 20000)
INSTANCE_LIMIT = 10000        # rows an instance tunnel serves when the client asks for the limit
MAX_FIELD_SIZE = MAX_CELL_BYTES  # announced as the session's MaxFieldSize, and enforced on every block
_ID = re.compile(r"^[0-9a-f]{16,64}$")  # session ids are ours: anything else is unknown, never a path
_TIMESTAMP_STRUCT = pa.struct([("sec", pa.int64()), ("nano", pa.int32())])


@dataclass
class TunnelRequest:
    method: str
    project: str
    table: str | None
    instance_id: str | None
    params: dict[str, str]
    headers: Mapping[str, str]
    body: BinaryIO


@dataclass
class TunnelResponse:
    status: int
    headers: dict[str, str]
    body: bytes | Iterable[bytes]


class ConnectionResetFault(Exception):
    """The block PUT's connection is to be reset: the HTTP layer closes the socket, answering nothing."""


@dataclass
class TunnelFaults:
    fail_next_commit: int = 0       # that many commits answer 500 InternalServerError and commit nothing
    reset_next_block_put: int = 0   # that many block PUTs raise ConnectionResetFault before storing

    def reset(self) -> None:
        self.fail_next_commit = self.reset_next_block_put = 0


def _err(status: int, code: str, message: str) -> MaxComputeError:
    return MaxComputeError(status, code, message)


def _status_conflict(message: str) -> MaxComputeError:
    return _err(409, "StatusConflict", message)


def _json_response(obj: dict[str, Any], status: int = 200) -> TunnelResponse:
    return TunnelResponse(status, {"Content-Type": "application/json"}, json.dumps(obj).encode())


def _columns_json(columns: list[Column]) -> list[dict[str, Any]]:
    # a bare DECIMAL is stored as decimal(38,18): say so, or pyodps would pick its own default precision
    return [{"name": c.name, "type": ("decimal(38,18)" if c.type == "DECIMAL" else c.type.lower()),
             "comment": c.comment, "isNullable": True} for c in columns]


def _cols_from(raw: list[list[str]]) -> list[Column]:
    return [Column(name, typ) for name, typ in raw]


def _cols_to(columns: Iterable[Column]) -> list[list[str]]:
    return [[c.name, c.type] for c in columns]


def parse_partition(text: str | None, partition_columns: list[Column]) -> dict[str, str] | None:
    """``ds=2024-01-01,hr=01`` (pyodps strips the quotes) checked against the table's partition keys."""
    keys = [c.name for c in partition_columns]
    if not text:
        if keys:
            raise _err(400, "MissingPartitionSpec", f"You need to specify a partitionspec along with the "
                       f"specified table (partition keys: {', '.join(keys)})")
        return None
    spec: dict[str, str] = {}
    for part in text.split(","):
        name, eq, value = part.partition("=")
        if not eq:
            raise _err(400, "InvalidPartitionSpec", f"The specified partitionspec is not valid: {text}")
        spec[name.strip().lower()] = value.strip().strip("'\"")
        try:
            check_partition_value(name.strip().lower(), spec[name.strip().lower()])
        except MaxComputeError as exc:
            raise _err(400, "InvalidPartitionSpec", f"The specified partitionspec is not valid: {exc.message}") from None
    if list(spec) != keys:
        raise _err(400, "InvalidPartitionSpec", f"The specified partitionspec is not valid: {text} "
                   f"(partition keys: {', '.join(keys) or 'none, the table is not partitioned'})")
    return spec


class _SessionFiles:
    """One session's JSON on disk: written whole to a temp file and renamed, so a crash leaves the old or
    the new state, never half of one."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, sid: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(sid, threading.Lock())

    def dir(self, sid: str) -> Path:
        return self.root / sid

    def load(self, sid: str) -> dict[str, Any] | None:
        if not _ID.match(sid or ""):
            return None
        try:
            return json.loads((self.root / sid / "session.json").read_text())
        except FileNotFoundError:
            return None

    def save(self, state: dict[str, Any]) -> None:
        d = self.root / state["id"]
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".session.{secrets.token_hex(4)}.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, d / "session.json")

    def new_id(self) -> str:
        return time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(8)

    def ids(self) -> list[str]:
        return [p.name for p in self.root.iterdir() if _ID.match(p.name)] if self.root.exists() else []


class TunnelService:
    def __init__(self, store, state_dir: Path, *,
                 instance_results: Callable[[str, str], tuple[list[Column], pa.Table]] | None = None,
                 clock: Callable[[], float] = time.time, session_ttl_s: float = 24 * 3600) -> None:
        self.store = store
        self.instance_results = instance_results
        self.clock = clock
        self.ttl = session_ttl_s
        self.faults = TunnelFaults()
        root = Path(state_dir)
        self.uploads = _SessionFiles(root / "upload")
        self.downloads = _SessionFiles(root / "download")

    # ------------------------------------------------------------------ routing

    def handles(self, params: Mapping[str, str], *, instance: bool) -> bool:
        keys = {"downloads", "downloadid"} if instance else {"uploads", "uploadid", "downloads", "downloadid"}
        return any(k in params for k in keys)

    def handle(self, request: TunnelRequest) -> TunnelResponse:
        p, m = request.params, request.method.upper()
        if request.instance_id is not None:
            if m == "POST" and "downloads" in p:
                return self._create_instance_download(request)
            if m == "GET" and "downloadid" in p:
                return self._download(request)
        elif request.table is not None:
            if m == "POST" and "uploads" in p:
                return self._create_upload(request)
            if "uploadid" in p:
                if m == "GET":
                    return self._upload_status(request)
                if m == "PUT":
                    return self._put_block(request)
                if m == "POST":
                    return self._commit(request)
            if m == "POST" and "downloads" in p:
                return self._create_table_download(request)
            if m == "GET" and "downloadid" in p:
                return self._download(request)
        raise _err(405, "MethodNotAllowed", f"{m} with query {sorted(p)} is not a tunnel operation")

    # ------------------------------------------------------------------ shared

    def _table(self, project: str, name: str):
        try:
            meta = self.store.get_table(project, name)
        except MaxComputeError as exc:
            if exc.status == 404:
                raise _err(404, "NoSuchTable", f"The specified table name does not exist: {project}.{name}") from None
            raise
        if meta.external is not None:   # hedged wording: the tunnel serves tables stored in MaxCompute only
            raise _err(400, "InvalidArgument", f"{project}.{name} is an external table: the tunnel cannot read "
                       "or write it (query it with SQL)")
        return meta

    def _require_partition(self, project: str, table: str, spec: dict[str, str] | None) -> None:
        if spec is None:
            return
        try:
            self.store.get_partition(project, table, spec)
        except MaxComputeError as exc:
            if exc.status == 404:
                raise _err(404, "NoSuchPartition", f"The specified partition does not exist: "
                           f"{','.join(f'{k}={v}' for k, v in spec.items())}") from None
            raise

    def _expired(self, state: dict[str, Any]) -> bool:
        return self.clock() > state["created"] + self.ttl

    def _sweep(self, files: _SessionFiles) -> None:
        """Expired sessions give their staged data back at once and vanish after a second ttl."""
        now = self.clock()
        for sid in files.ids():
            state = files.load(sid)
            if state is None or now <= state["created"] + self.ttl:
                continue
            if now > state["created"] + 2 * self.ttl:
                shutil.rmtree(files.dir(sid), ignore_errors=True)
            else:
                shutil.rmtree(files.dir(sid) / "blocks", ignore_errors=True)

    def _belongs(self, state: dict[str, Any] | None, request: TunnelRequest, kind: str) -> bool:
        if state is None or state["project"] != request.project:
            return False
        if kind == "instance":
            return state.get("instance_id") == request.instance_id
        return state.get("table") == (request.table or "").lower()

    # ------------------------------------------------------------------ uploads

    def _upload_json(self, state: dict[str, Any]) -> dict[str, Any]:
        status = {"normal": "normal", "committing": "closing", "committed": "closed"}[state["status"]]
        if state["status"] == "normal" and self._expired(state):
            status = "expired"
        blocks = sorted(int(b) for b in state["blocks"])
        return {"UploadID": state["id"], "Status": status,
                "UploadedBlockList": [{"BlockID": b, "RecordCount": state["blocks"][str(b)]} for b in blocks],
                "Schema": {"columns": _columns_json(_cols_from(state["columns"])),
                           "partitionKeys": _columns_json(_cols_from(state["partition_columns"]))},
                "MaxFieldSize": MAX_FIELD_SIZE, "QuotaName": ""}

    def _create_upload(self, request: TunnelRequest) -> TunnelResponse:
        self._sweep(self.uploads)
        meta = self._table(request.project, request.table)
        spec = parse_partition(request.params.get("partition"), list(meta.partition_columns))
        create = request.params.get("create_partition", "").lower() == "true"
        if not create:
            self._require_partition(request.project, meta.name, spec)
        state = {"id": self.uploads.new_id(), "project": request.project, "table": meta.name.lower(),
                 "spec": spec, "overwrite": request.params.get("overwrite", "").lower() == "true",
                 "create_partition": create, "created": self.clock(), "status": "normal", "blocks": {},
                 "columns": _cols_to(meta.columns), "partition_columns": _cols_to(meta.partition_columns)}
        self.uploads.save(state)
        return _json_response(self._upload_json(state), 201)

    def _upload(self, request: TunnelRequest) -> dict[str, Any]:
        sid = request.params.get("uploadid", "")
        state = self.uploads.load(sid)
        if not self._belongs(state, request, "table"):
            raise _err(404, "NoSuchUpload", f"The specified upload id does not exist: {sid}")
        return state

    def _require_normal(self, state: dict[str, Any]) -> None:
        if state["status"] == "committed":
            raise _status_conflict(f"The upload session {state['id']} is already committed")
        if state["status"] == "committing":
            raise _status_conflict(f"The upload session {state['id']} is being committed")
        if self._expired(state):
            raise _status_conflict(f"The upload session {state['id']} is expired")

    def _upload_status(self, request: TunnelRequest) -> TunnelResponse:
        return _json_response(self._upload_json(self._upload(request)))

    def _put_block(self, request: TunnelRequest) -> TunnelResponse:
        state = self._upload(request)
        self._require_normal(state)
        raw_id = request.params.get("blockid", "")
        if not raw_id.isdigit() or not 0 <= int(raw_id) < MAX_BLOCK_ID:
            raise _err(400, "InvalidBlockID", f"The specified block id is not valid: {raw_id!r} "
                       f"(0 <= id < {MAX_BLOCK_ID})")
        if self.faults.reset_next_block_put > 0:
            self.faults.reset_next_block_put -= 1
            raise ConnectionResetFault(f"injected connection reset on block {raw_id} of {state['id']}")
        block_id = int(raw_id)
        columns = _cols_from(state["columns"])
        body = wire.decoded_body(request.body, request.headers.get("Content-Encoding"))
        batches = _within_field_size(wire.decode_arrow(body, arrow_schema(columns)) if "arrow" in request.params
                                     else wire.decode_records(body, columns), block_id)
        blocks = self.uploads.dir(state["id"]) / "blocks"
        blocks.mkdir(parents=True, exist_ok=True)
        tmp = blocks / f".{block_id}.{secrets.token_hex(4)}.tmp"
        try:
            rows = _write_block(tmp, arrow_schema(columns), batches)
            with self.uploads.lock(state["id"]):
                state = self.uploads.load(state["id"])  # a commit may have run while the body streamed
                self._require_normal(state)
                os.replace(tmp, blocks / f"{block_id}.arrow")  # a re-sent block replaces the old one
                state["blocks"][str(block_id)] = rows
                self.uploads.save(state)
        finally:
            tmp.unlink(missing_ok=True)
        return TunnelResponse(200, {"Content-Type": "application/json"}, b"")

    def _commit(self, request: TunnelRequest) -> TunnelResponse:
        state = self._upload(request)
        sid = state["id"]
        with self.uploads.lock(sid):
            state = self.uploads.load(sid)
            self._require_normal(state)
            if self.faults.fail_next_commit > 0:
                self.faults.fail_next_commit -= 1
                raise _err(500, "InternalServerError", "Service internal error, please try again later "
                           "(injected commit failure: nothing was committed)")
            # a restart that finds "committing" refuses the session rather than risk committing twice
            state["status"] = "committing"
            self.uploads.save(state)
        blocks_dir = self.uploads.dir(sid) / "blocks"
        paths = [blocks_dir / f"{b}.arrow" for b in sorted(int(b) for b in state["blocks"])]
        try:
            self.store.write(state["project"], state["table"], state["spec"], _read_blocks(paths),
                             overwrite=state["overwrite"], create_partition=state["create_partition"])
        except BaseException as exc:
            with self.uploads.lock(sid):
                state["status"] = "normal"
                self.uploads.save(state)
            if isinstance(exc, MaxComputeError) and exc.status == 404 and state["spec"]:
                raise _err(404, "NoSuchPartition", f"The specified partition does not exist: {exc.message}") from None
            raise
        with self.uploads.lock(sid):
            state["status"] = "committed"
            self.uploads.save(state)
        shutil.rmtree(blocks_dir, ignore_errors=True)
        return _json_response(self._upload_json(state))

    # ------------------------------------------------------------------ downloads

    def _download_json(self, state: dict[str, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = {"columns": _columns_json(_cols_from(state["columns"]))}
        if state["kind"] == "table":
            schema["partitionKeys"] = _columns_json(_cols_from(state["partition_columns"]))
        return {"DownloadID": state["id"], "Status": "expired" if self._expired(state) else "normal",
                "RecordCount": state["count"], "Schema": schema, "QuotaName": "",
                "SupportReadByRawSize": False}

    def _create_table_download(self, request: TunnelRequest) -> TunnelResponse:
        self._sweep(self.downloads)
        meta = self._table(request.project, request.table)
        spec = parse_partition(request.params.get("partition"), list(meta.partition_columns))
        self._require_partition(request.project, meta.name, spec)
        files = [[str(path), pq.ParquetFile(path).metadata.num_rows, os.path.getsize(path)]
                 for _, paths in self.store.parquet_files(request.project, meta.name, spec) for path in paths]
        state = {"id": self.downloads.new_id(), "kind": "table", "project": request.project,
                 "table": meta.name.lower(), "spec": spec, "created": self.clock(),
                 "columns": _cols_to(meta.columns), "partition_columns": _cols_to(meta.partition_columns),
                 "files": files, "count": sum(f[1] for f in files)}
        self.downloads.save(state)
        return _json_response(self._download_json(state), 201)

    def _create_instance_download(self, request: TunnelRequest) -> TunnelResponse:
        if self.instance_results is None:
            raise _err(404, "NoSuchObject", "this local tunnel serves no instance results")
        self._sweep(self.downloads)
        columns, table = self.instance_results(request.project, request.instance_id)
        sid = self.downloads.new_id()
        path = self.downloads.dir(sid) / "result.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        # the result is materialised once: the reader's row ranges then cost what a table's do
        rows = _write_parquet(path, arrow_schema(list(columns)), table.to_batches(max_chunksize=65536))
        count = min(rows, INSTANCE_LIMIT) if "instance_tunnel_limit_enabled" in request.params else rows
        state = {"id": sid, "kind": "instance", "project": request.project, "instance_id": request.instance_id,
                 "created": self.clock(), "columns": _cols_to(columns), "files": [[str(path), rows, os.path.getsize(path)]],
                 "count": count}
        self.downloads.save(state)
        return _json_response(self._download_json(state), 201)

    def _download(self, request: TunnelRequest) -> TunnelResponse:
        sid = request.params.get("downloadid", "")
        state = self.downloads.load(sid)
        if not self._belongs(state, request, "instance" if request.instance_id is not None else "table"):
            raise _err(404, "NoSuchDownload", f"The specified download id does not exist: {sid}")
        if "data" not in request.params:
            return _json_response(self._download_json(state))
        if self._expired(state):
            raise _status_conflict(f"The download session {sid} is expired")
        start, count = _row_range(request.params.get("rowrange", ""), state["count"])
        columns = _cols_from(state["columns"])
        wanted = _column_subset(request.params.get("columns"), columns)
        for path, _, size in state["files"]:
            if not os.path.exists(path) or os.path.getsize(path) != size:
                raise _err(409, "TableModified", f"The data of the download session {sid} was modified "
                           "since the session was created; create a new session")
        arrow = "arrow" in request.params
        if arrow:  # pyodps reads arrow columns in the table's order, whatever order it asked them in
            wanted = [c for c in columns if c in wanted]
        batches = _read_range(state["files"], start, count, wanted)
        if arrow:
            structs = state["kind"] == "instance"  # the instance reader expects TIMESTAMP as struct(sec, nano)
            body = wire.encode_arrow(_wire_batch(b, wanted, structs) for b in batches)
        else:
            body = wire.encode_records(batches, wanted)
        encoding = wire.response_encoding(request.headers.get("Accept-Encoding"))
        headers = {"Content-Type": "application/octet-stream"}
        if encoding:
            headers["Content-Encoding"] = encoding
        return TunnelResponse(200, headers, wire.encode_body(body, encoding))


# ---------------------------------------------------------------------- data files

def _within_field_size(batches: Iterable[pa.RecordBatch], block_id: int) -> Iterator[pa.RecordBatch]:
    """``batches``, refusing the block at the first value over MaxFieldSize. pyodps' record writer checks
    this itself; its Arrow writer sends whatever it is given, so the limit has to hold here."""
    seen = 0
    for batch in batches:
        found = oversized_cell(batch, MAX_FIELD_SIZE)
        if found is not None:
            column, row, size = found
            raise _err(400, "InvalidArgument", f"The field size exceeds the limit: column {column} of record "
                       f"{seen + row} in block {block_id} is {size} bytes, MaxFieldSize is {MAX_FIELD_SIZE}")
        seen += batch.num_rows
        yield batch


def _ours(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema != schema:  # tz-aware timestamps etc. from the client: same values, our type
        batch = pa.RecordBatch.from_arrays([c.cast(f.type) for c, f in zip(batch.columns, schema)], schema=schema)
    return batch


def _write_parquet(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    rows = 0
    with pq.ParquetWriter(path, schema) as writer:
        for batch in batches:
            writer.write_batch(_ours(batch, schema))
            rows += batch.num_rows
    return rows


def _write_block(path: Path, schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> int:
    """Stage an uploaded block as an Arrow IPC file: the commit re-encodes it once, into the table's
    Parquet; staging it as Parquet too cost as much again (encode here, decode at the commit)."""
    rows = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            writer.write_batch(_ours(batch, schema))
            rows += batch.num_rows
    return rows


def _read_blocks(paths: list[Path], rows_per_write: int = 65536) -> Iterator[pa.Table]:
    """The staged blocks' rows in order, gathered into tables of ``rows_per_write``: one Parquet row
    group each, whatever size of batches the client sent. Read, not mapped: RSS stays a batch or so."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for path in paths:
        with pa.OSFile(str(path)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                while held + batch.num_rows >= rows_per_write:
                    take = rows_per_write - held
                    yield pa.Table.from_batches([*pending, batch.slice(0, take)])
                    pending, held, batch = [], 0, batch.slice(take)
                if batch.num_rows:
                    pending.append(batch)
                    held += batch.num_rows
    if pending:
        yield pa.Table.from_batches(pending)


def _row_range(text: str, total: int) -> tuple[int, int]:
    match = re.fullmatch(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)", text)
    if not match:
        raise _err(400, "InvalidRowRange", f"The specified row range is not valid: {text!r}")
    start, count = int(match.group(1)), int(match.group(2))
    if count <= 0 or start + count > total:
        raise _err(400, "InvalidRowRange", f"The specified row range is not valid: ({start},{count}) "
                   f"of {total} records")
    return start, count


def _column_subset(text: str | None, columns: list[Column]) -> list[Column]:
    if not text:
        return columns
    by_name = {c.name: c for c in columns}
    wanted = []
    for name in text.split(","):
        col = by_name.get(name.strip().lower())
        if col is None:
            raise _err(400, "InvalidColumnSpec", f"The specified columns is not valid: {name}")
        wanted.append(col)
    return wanted


def _read_range(files: list[list], start: int, count: int, columns: list[Column]) -> Iterator[pa.RecordBatch]:
    """Rows [start, start+count) of the files in order, a batch at a time, reading from the first row
    group that holds any of them (never the whole partition)."""
    names = [c.name for c in columns]
    end = start + count
    file_start = 0
    for path, rows, _ in files:
        if file_start >= end:
            return
        if file_start + rows > start:
            pf = pq.ParquetFile(path)
            groups, first_row, group_start = [], None, file_start
            for i in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(i).num_rows
                if group_start + n > start and group_start < end:
                    first_row = group_start if first_row is None else first_row
                    groups.append(i)
                group_start += n
            pos = first_row
            for batch in (pf.iter_batches(batch_size=65536, row_groups=groups, columns=names) if groups else ()):
                lo, hi = max(start - pos, 0), min(end - pos, batch.num_rows)
                pos += batch.num_rows
                if hi > lo:   # a column the file predates (ADD COLUMNS since) reads NULL
                    yield with_columns(batch.slice(lo, hi - lo), columns)
                if pos >= end:
                    return
        file_start += rows


def _wire_batch(batch: pa.RecordBatch, columns: list[Column], timestamp_structs: bool) -> pa.RecordBatch:
    arrays = []
    for array, col in zip(batch.columns, columns):
        if timestamp_structs and col.type == "TIMESTAMP":
            ns = array.cast(pa.int64())
            secs = pc.divide(ns, 1_000_000_000)  # integer division truncates: floor it for pre-1970
            nanos = pc.subtract(ns, pc.multiply(secs, 1_000_000_000))
            negative = pc.less(nanos, 0)
            secs = pc.if_else(negative, pc.subtract(secs, 1), secs)
            nanos = pc.if_else(negative, pc.add(nanos, 1_000_000_000), nanos).cast(pa.int32())
            array = pa.StructArray.from_arrays([secs, nanos], fields=list(_TIMESTAMP_STRUCT),
                                               mask=array.is_null())
        else:
            array = array.cast(col.arrow_type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])
