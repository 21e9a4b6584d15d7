"""Reading OSS external tables: every object under the table's LOCATION (sub-folders included, as
MaxCompute scans them), fetched over HTTP with oss2 as the RAM role named in ``odps.properties.rolearn``,
parsed as the built-in text handler does and converted to the declared column types.

The read streams: each object's body goes through Arrow's gzip decoder and its streaming CSV reader in
blocks of :data:`BLOCK_BYTES`, and every block lands, typed, in one Parquet file per partition in the
query's scratch folder, which DuckDB then scans like any partition. A query over ten million inventory
rows holds a few blocks in memory, never the table.

Credentials: the server is given ``assume_role(role_arn, session_name) -> TemporaryCredential`` (the stack
passes :class:`localcloud.ram.ServiceRoles`, which mints the STS tokens the local OSS verifies) and keeps
each role's token until shortly before it expires. ``oss_endpoints`` maps the endpoints a LOCATION names
(``oss-cn-hangzhou-internal.aliyuncs.com``) to the local OSS (``http://127.0.0.1:PORT``); a loopback
``host:port`` written in the LOCATION is used as it is, over HTTP (MaxCompute's default:
``odps.sql.unstructured.data.oss.use.https`` is off). Nothing else is reached.

Errors are ``ODPS-0123131`` (MaxCompute's code for a failure inside the text handler, documented for a
schema mismatch); their wording past the code is ours.
"""

from __future__ import annotations

import io
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

import oss2
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from localcloud.maxcompute.external import GZIP_INPUT, IGNORE_EMPTY_LINES, USE_QUOTE, ExternalTable
from localcloud.maxcompute.errors import SqlError
from localcloud.maxcompute.store import TableMeta
from localcloud.ram import RoleRefused, TemporaryCredential

EXTERNAL_ERROR = "ODPS-0123131"   # "User defined function exception": the handler failed while reading
BLOCK_BYTES = 4 << 20
#: A cached role token is renewed when it has less than this left (a long read outlives nothing shorter).
RENEW_BEFORE_S = 300
_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d+$")
_MISMATCH = re.compile(r"Expected (\d+) columns, got (\d+): ?(.*)", re.S)

AssumeRole = Callable[[str, str], TemporaryCredential]


def _failed(what: str) -> SqlError:
    return SqlError(EXTERNAL_ERROR, f"User defined function exception - Traceback: {what}")


class _Body(io.RawIOBase):
    """An oss2 object body as a raw stream (what Arrow's PythonFile reads from)."""

    def __init__(self, result: oss2.models.GetObjectResult) -> None:
        self.result = result

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:   # noqa: ANN001 - a writable buffer
        data = self.result.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


class ExternalReader:
    """Reads external tables for the SQL engine; shared by every query of one server."""

    def __init__(self, assume_role: AssumeRole | None, oss_endpoints: Mapping[str, str] | None, region: str,
                 *, connect_timeout: float = 30, clock: Callable[[], float] = time.time) -> None:
        self.assume_role = assume_role
        self.oss_endpoints = dict(oss_endpoints or {})
        self.region = region
        self.connect_timeout = connect_timeout
        self.clock = clock
        self._tokens: dict[str, TemporaryCredential] = {}
        self._lock = threading.Lock()

    # -- reaching OSS ---------------------------------------------------------------------------------

    def credential(self, role_arn: str) -> TemporaryCredential:
        with self._lock:
            token = self._tokens.get(role_arn)
            if token is None or token.expiration - self.clock() < RENEW_BEFORE_S:
                if self.assume_role is None:
                    raise RoleRefused("NoPermission", "the local MaxCompute server was started without a way to "
                                      "assume RAM roles (assume_role), so it cannot read OSS")
                token = self._tokens[role_arn] = self.assume_role(role_arn, "maxcompute-external-table")
            return token

    def endpoint(self, written: str) -> str:
        name = written or f"oss-{self.region}-internal.aliyuncs.com"
        if name in self.oss_endpoints:
            return self.oss_endpoints[name]
        if _LOOPBACK.match(name):
            return f"http://{name}"
        raise _failed(f"cannot reach the OSS endpoint '{name}' from the local MaxCompute server (known: "
                      f"{', '.join(sorted(self.oss_endpoints)) or 'none'}; or write a loopback host:port)")

    def bucket(self, table: ExternalTable) -> oss2.Bucket:
        location = table.oss
        try:
            token = self.credential(table.role_arn)
        except RoleRefused as refused:
            raise _failed(f"MaxCompute could not assume the role {table.role_arn} to read OSS (STS "
                          f"AssumeRole: {refused.code}: {refused.message})") from None
        auth = oss2.StsAuth(token.access_key_id, token.access_key_secret, token.security_token,
                            auth_version=oss2.AUTH_VERSION_4)
        return oss2.Bucket(auth, self.endpoint(location.endpoint), location.bucket, region=self.region,
                           connect_timeout=self.connect_timeout)

    # -- reading --------------------------------------------------------------------------------------

    def read_parts(self, meta: TableMeta, parts: list[tuple[dict[str, str], list]], folder: Path) -> list:
        """(spec, Parquet files) of the selected partitions of an external table (or of the table)."""
        specs = [spec for spec, _ in parts] if meta.is_partitioned else [{}]
        return [(spec, self.materialize(meta, spec, folder)) for spec in specs]

    def materialize(self, meta: TableMeta, spec: dict[str, str], folder: Path) -> list[Path]:
        """One typed Parquet file of the rows under the partition's (or table's) folder; [] if none."""
        table = ExternalTable.from_json(meta.external)
        assert table is not None
        bucket = self.bucket(table)
        prefix = table.oss.folder(spec)
        schema = pa.schema([pa.field(c.name, c.arrow_type) for c in meta.columns])
        path = folder / f"{meta.name}-{uuid.uuid4().hex}.parquet"
        rows = 0
        with pq.ParquetWriter(path, schema) as writer:
            for key in self._keys(bucket, prefix):
                for batch in self._batches(bucket, key, table, meta):
                    writer.write_batch(batch)
                    rows += batch.num_rows
        if rows == 0:
            path.unlink(missing_ok=True)
            return []
        return [path]

    def _keys(self, bucket: oss2.Bucket, prefix: str):
        try:
            for info in oss2.ObjectIteratorV2(bucket, prefix=prefix, max_keys=1000):
                if not info.key.endswith("/"):   # a "folder" marker holds no rows
                    yield info.key
        except oss2.exceptions.OssError as exc:
            raise _oss_failed(exc, bucket.bucket_name, prefix) from None
        except oss2.exceptions.RequestError as exc:
            raise _failed(f"cannot list oss://{bucket.bucket_name}/{prefix}: {str(exc)[:200]}") from None

    def _batches(self, bucket: oss2.Bucket, key: str, table: ExternalTable, meta: TableMeta):
        names = [c.name for c in meta.columns]
        where = f"oss://{bucket.bucket_name}/{key}"
        try:
            body = bucket.get_object(key)
        except oss2.exceptions.OssError as exc:
            raise _oss_failed(exc, bucket.bucket_name, key) from None
        except oss2.exceptions.RequestError as exc:
            raise _failed(f"cannot read {where}: {str(exc)[:200]}") from None
        stream: pa.NativeFile = pa.PythonFile(io.BufferedReader(_Body(body), BLOCK_BYTES), mode="r")
        if table.flag(GZIP_INPUT):
            stream = pa.CompressedInputStream(stream, "gzip")
        quote = table.flag(USE_QUOTE)
        try:
            reader = pcsv.open_csv(
                stream,
                read_options=pcsv.ReadOptions(column_names=names, skip_rows=table.header_lines,
                                              block_size=BLOCK_BYTES, use_threads=False),
                parse_options=pcsv.ParseOptions(delimiter=table.delimiter, quote_char='"' if quote else False,
                                                double_quote=True, escape_char=False, newlines_in_values=quote,
                                                ignore_empty_lines=table.flag(IGNORE_EMPTY_LINES)),
                convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                                    null_values=[table.null_indicator], strings_can_be_null=True,
                                                    quoted_strings_can_be_null=True))
            for batch in reader:
                yield _typed(batch, meta, where)
        except pa.ArrowInvalid as exc:
            raise _parse_failed(str(exc), where, len(names), table.delimiter) from None
        except (OSError, pa.ArrowException) as exc:   # a corrupt gzip stream, a broken connection
            if isinstance(exc, oss2.exceptions.OssError):
                raise _oss_failed(exc, bucket.bucket_name, key) from None
            raise _failed(f"cannot read {where}: {_first_line(str(exc))}"
                          + (" (is it gzip? odps.text.option.gzip.input.enabled is true)"
                             if table.flag(GZIP_INPUT) else "")) from None
        finally:
            body.close()


class Scratch:
    """One query's scratch folder, made on first use under ``root`` (the system's temporary folder by
    default) and deleted with everything in it when the query ends."""

    def __init__(self, root: Path | None) -> None:
        self.root, self._path = root, None

    def path(self) -> Path:
        if self._path is None:
            if self.root is not None:
                self.root.mkdir(parents=True, exist_ok=True)
            self._path = Path(tempfile.mkdtemp(prefix="mc-external-", dir=self.root))
        return self._path

    def close(self) -> None:
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)


def _typed(batch: pa.RecordBatch, meta: TableMeta, where: str) -> pa.RecordBatch:
    arrays = []
    for column, values in zip(meta.columns, batch.columns):
        if pa.types.is_string(column.arrow_type):
            arrays.append(values)
            continue
        try:
            arrays.append(pc.cast(values, column.arrow_type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = next((v for v in values.to_pylist() if v is not None and not _casts(v, column.arrow_type)), "?")
            raise _failed(f"the value '{bad}' of column {column.name} in {where} is not a valid "
                          f"{column.type}") from None
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in meta.columns])


def _casts(value: str, arrow_type: pa.DataType) -> bool:
    try:
        pc.cast(pa.array([value]), arrow_type, safe=True)
        return True
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False


def _parse_failed(message: str, where: str, expected: int, delimiter: str) -> SqlError:
    match = _MISMATCH.search(message)
    if match:
        line = _first_line(match[3])[:300]
        return _failed(f"java.lang.RuntimeException: SCHEMA MISMATCH: External Table schema specified a total "
                       f"of [{expected}] columns, but current text line parsed into [{match[2]}] columns "
                       f"delimited by [{delimiter}]. Current line is read as: {line} (in {where})")
    return _failed(f"cannot parse {where}: {_first_line(message)}")


def _oss_failed(exc: oss2.exceptions.OssError, bucket: str, key: str) -> SqlError:
    return _failed(f"OSS answered {exc.status} {exc.code} for oss://{bucket}/{key}: "
                   f"{_first_line(exc.message or '')[:200]} (RequestId {exc.request_id})")


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text
