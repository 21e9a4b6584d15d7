"""The MaxCompute Tunnel's wire formats, as pyodps (``odps/tunnel/io``) writes and reads them.

Two body formats travel in both directions:

* **record** (protobuf-like): per record, fields ``tag(index, wiretype) value`` for each non-null
  column (index = 1-based position in the column list), then ``tag(TUNNEL_END_RECORD) uint32 crc``
  where crc is CRC32C over ``<i index`` and each value's fixed-width little-endian bytes (strings:
  their bytes). The stream ends with ``tag(TUNNEL_META_COUNT) sint64 count`` and
  ``tag(TUNNEL_META_CHECKSUM) uint32 crc`` - the CRC32C over each record's crc as ``<i``.
* **arrow**: ``uint32be chunk_size``, then the payload (Arrow IPC record-batch messages without the
  schema, which both sides know) cut into chunks; each full chunk is followed by ``uint32be
  crc32c(chunk)``; the last, shorter chunk is followed by ``uint32be crc32c(whole payload)``.

Anything that does not check out is refused as ``MalformedDataStream`` (400), as the service
documents it for a stream that does not parse. Content encodings: identity and ``deflate`` always;
``zstd`` / ``x-lz4-frame`` / ``x-odps-lz4-frame`` when pyarrow has the codec; others are refused.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Iterable, Iterator
from decimal import Decimal, InvalidOperation
from typing import BinaryIO

import pyarrow as pa

# pyodps is a dependency of the local cloud: its C CRC32C runs at ~350 MB/s where a Python one
# would crawl; the tests pin it to the standard check value so it is not just "the client's crc".
from odps.crc import Crc32c

from localcloud.maxcompute.errors import MaxComputeError
from localcloud.maxcompute.types import Column

END_RECORD = 33553408
META_COUNT = 33554430
META_CHECKSUM = 33554431
VARINT, FIXED64, LENGTH_DELIMITED, FIXED32 = 0, 1, 2, 5
READ_SIZE = 1 << 20
MAX_CHUNK_SIZE = 64 << 20  # a larger announced chunk is a garbled header, not data

_INTEGERS = {"BIGINT", "INT", "SMALLINT", "TINYINT"}


def malformed(message: str) -> MaxComputeError:
    return MaxComputeError(400, "MalformedDataStream", message)


class Crc:
    """CRC32C with the update helpers pyodps' Checksum uses (signed ``<i``/``<q`` packing)."""

    def __init__(self) -> None:
        self._crc = Crc32c()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._crc.update(data if type(data) is bytearray else bytearray(data))

    def update_int(self, value: int) -> None:
        self._crc.update(bytearray(struct.pack("<i", value)))

    def update_long(self, value: int) -> None:
        self._crc.update(bytearray(struct.pack("<q", value)))

    @property
    def value(self) -> int:
        return self._crc.getvalue() & 0xFFFFFFFF

    def reset(self) -> None:
        self._crc.reset()


# Combining CRCs (zlib's crc32_combine, for the reflected Castagnoli polynomial): the register after
# ``n`` zero bytes is a linear map of the one before, a 32x32 bit matrix, one int per column.
_CASTAGNOLI = 0x82F63B78


def _gf2_times(matrix: tuple[int, ...] | list[int], vector: int) -> int:
    out, i = 0, 0
    while vector:
        if vector & 1:
            out ^= matrix[i]
        vector >>= 1
        i += 1
    return out


@functools.lru_cache(maxsize=8)
def _zero_bytes_operator(n: int) -> tuple[int, ...]:
    operator = [_CASTAGNOLI] + [1 << i for i in range(31)]  # one zero bit
    for _ in range(3):  # squared thrice: one zero byte
        operator = [_gf2_times(operator, column) for column in operator]
    result = [1 << i for i in range(32)]  # identity
    while n:
        if n & 1:
            result = [_gf2_times(operator, column) for column in result]
        n >>= 1
        if n:
            operator = [_gf2_times(operator, column) for column in operator]
    return tuple(result)


def crc32c_combine(crc_a: int, crc_b: int, length_b: int) -> int:
    """CRC32C of ``a + b`` from the CRCs of ``a`` and ``b``: the stream checksum without reading each
    chunk a second time (the C CRC32C runs at ~350 MB/s; it was half of a block upload's time)."""
    return _gf2_times(_zero_bytes_operator(length_b), crc_a) ^ crc_b


def _signed32(value: int) -> int:
    return value - (1 << 32) if value >= 1 << 31 else value


# ---------------------------------------------------------------- content encodings

_ARROW_CODECS = {"zstd": "zstd", "x-lz4-frame": "lz4", "x-odps-lz4-frame": "lz4"}


def decoded_body(body: BinaryIO, encoding: str | None) -> BinaryIO:
    """The request body with its Content-Encoding undone, still streamed."""
    enc = (encoding or "identity").strip().lower()
    if enc == "identity":
        return body
    if enc == "deflate":
        return _Inflater(body)
    codec = _ARROW_CODECS.get(enc)
    if codec is not None and pa.Codec.is_available(codec):
        return _ArrowDecompressed(pa.CompressedInputStream(pa.PythonFile(body, mode="r"), codec))
    raise MaxComputeError(400, "InvalidArgument",
                          f"Content-Encoding {encoding!r} is not supported by the local tunnel "
                          f"(supported: deflate{''.join(', ' + e for e, c in _ARROW_CODECS.items() if pa.Codec.is_available(c))})")


class _Inflater:
    """zlib-wrapped deflate (what pyodps' DeflateOutputStream writes); a stream that stops before the
    zlib trailer is truncated and refused."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._z = zlib.decompressobj()
        self._pending = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._pending) < n:
            if self._z.eof:
                if self._z.unused_data or self._raw.read(1):
                    raise malformed("data after the end of the deflate stream")
                break
            raw = self._raw.read(READ_SIZE)
            if not raw:
                raise malformed("deflate stream truncated: the body ended before the stream did")
            try:
                self._pending += self._z.decompress(raw)
            except zlib.error as exc:
                raise malformed(f"corrupt deflate stream: {exc}") from None
        if n < 0:
            out, self._pending = self._pending, b""
        else:
            out, self._pending = self._pending[:n], self._pending[n:]
        return out


class _ArrowDecompressed:
    def __init__(self, stream: pa.CompressedInputStream) -> None:
        self._stream = stream

    def read(self, n: int = -1) -> bytes:
        try:
            return self._stream.read() if n < 0 else self._stream.read(n)
        except TimeoutError:
            raise
        except (OSError, pa.ArrowException) as exc:
            if isinstance(exc.__context__, TimeoutError) or "timed out" in str(exc):
                raise TimeoutError(str(exc)) from None
            raise malformed(f"corrupt compressed stream: {exc}") from None


def response_encoding(accept_encoding: str | None) -> str | None:
    """The Content-Encoding to answer with. pyodps asks with one token (``deflate``, ``zstd``) only
    when compression is on; requests' own default list (``gzip, deflate``) must stay unanswered, or
    pyodps would be handed a compressed stream it never asked for."""
    token = (accept_encoding or "").strip().lower()
    if token == "deflate":
        return "deflate"
    if token == "zstd" and pa.Codec.is_available("zstd"):
        return "zstd"
    return None


def encode_body(chunks: Iterable[bytes], encoding: str | None) -> Iterator[bytes]:
    if encoding is None:
        yield from chunks
        return
    if encoding == "deflate":
        z = zlib.compressobj(1)
        for chunk in chunks:
            out = z.compress(chunk)
            if out:
                yield out
        yield z.flush()
        return
    sink = pa.BufferOutputStream()
    stream = pa.CompressedOutputStream(sink, "zstd")
    for chunk in chunks:  # zstd through pyarrow: drain the sink as it fills to stay streamed
        stream.write(chunk)
        if sink.tell() >= READ_SIZE:
            stream.flush()
            buf = sink.getvalue()
            yield buf.to_pybytes()
            sink = pa.BufferOutputStream()
            stream = pa.CompressedOutputStream(sink, "zstd")
    stream.close()
    yield sink.getvalue().to_pybytes()


# ---------------------------------------------------------------- record format: decoding

class _NeedMore(Exception):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _NeedMore
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 70:
            raise malformed("varint longer than 10 bytes")


def _zigzag_decode(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


_WIRE_TYPES: dict[str, int] = {t: VARINT for t in _INTEGERS | {"BOOLEAN", "DATETIME", "DATE"}}
_WIRE_TYPES |= {"DOUBLE": FIXED64, "FLOAT": FIXED32}


def _wire_type(odps_type: str) -> int:
    return _WIRE_TYPES.get(odps_type, LENGTH_DELIMITED)


def _family(odps_type: str) -> str:
    if odps_type.startswith(("VARCHAR", "CHAR")):
        return "STRING"
    if odps_type.startswith("DECIMAL"):
        return "DECIMAL"
    if odps_type in _INTEGERS:
        return "INTEGER"
    return odps_type


def decode_records(stream: BinaryIO, columns: list[Column], batch_rows: int = 65536) -> Iterator[pa.RecordBatch]:
    """Verified record batches of a record-format upload body, ``batch_rows`` at a time."""
    families = [_family(c.type) for c in columns]
    wires = [_wire_type(c.type) for c in columns]
    n_cols = len(columns)
    crc, crccrc = Crc(), Crc()
    buf, pos, eof, count = b"", 0, False, 0
    values: list[list] = [[] for _ in columns]

    def flush() -> pa.RecordBatch:
        batch = _to_batch(values, columns)
        for v in values:
            v.clear()
        return batch

    while True:
        start = pos
        try:
            row: list = [None] * n_cols
            crc.reset()
            while True:
                tag, pos = _varint(buf, pos)
                field, wire = tag >> 3, tag & 7
                if field == END_RECORD:
                    got, pos = _varint(buf, pos)
                    # uint32 as protobuf reads it: pyodps' C writer sign-extends crcs >= 2**31 to 10 bytes
                    if wire != VARINT or got & 0xFFFFFFFF != crc.value:
                        raise malformed(f"record {count}: checksum mismatch")
                    crccrc.update_int(_signed32(crc.value))
                    break
                if field == META_COUNT:
                    if any(v is not None for v in row):
                        raise malformed(f"record {count}: stream footer inside a record")
                    declared, pos = _varint(buf, pos)
                    tag, pos = _varint(buf, pos)
                    total, pos = _varint(buf, pos)
                    if _zigzag_decode(declared) != count:
                        raise malformed(f"footer counts {_zigzag_decode(declared)} records, stream has {count}")
                    if tag >> 3 != META_CHECKSUM or total & 0xFFFFFFFF != crccrc.value:
                        raise malformed("stream checksum mismatch")
                    if pos != len(buf) or stream.read(1):
                        raise malformed("data after the stream footer")
                    if values and values[0]:
                        yield flush()
                    return
                if not 1 <= field <= n_cols:
                    raise malformed(f"record {count}: field {field} is not a column (table has {n_cols})")
                i = field - 1
                if wire != wires[i]:
                    raise malformed(f"record {count}: wire type {wire} for column {columns[i].name}")
                crc.update_int(field)
                row[i], pos = _read_value(buf, pos, families[i], crc)
        except _NeedMore:
            if eof:
                raise malformed(f"stream truncated in record {count} (no footer)") from None
            more = stream.read(READ_SIZE)
            eof = not more
            buf, pos = buf[start:] + more, 0
            continue
        for v, value in zip(values, row):
            v.append(value)
        count += 1
        if len(values[0]) >= batch_rows:
            yield flush()


def _read_value(buf: bytes, pos: int, family: str, crc: Crc):
    if family == "INTEGER" or family == "DATETIME" or family == "DATE":
        raw, pos = _varint(buf, pos)
        value = _zigzag_decode(raw)
        crc.update_long(value)
        return value, pos
    if family == "DOUBLE" or family == "FLOAT":
        width = 8 if family == "DOUBLE" else 4
        if pos + width > len(buf):
            raise _NeedMore
        raw_bytes = buf[pos:pos + width]
        crc.update(raw_bytes)
        return struct.unpack("<d" if width == 8 else "<f", raw_bytes)[0], pos + width
    if family == "BOOLEAN":
        raw, pos = _varint(buf, pos)
        if raw > 1:
            raise malformed(f"boolean value {raw}")
        crc.update(b"\x01" if raw else b"\x00")
        return bool(raw), pos
    if family == "TIMESTAMP":
        secs, pos = _varint(buf, pos)
        nanos, pos = _varint(buf, pos)
        secs, nanos = _zigzag_decode(secs), _zigzag_decode(nanos)
        crc.update_long(secs)
        crc.update_int(nanos)
        return secs * 1_000_000_000 + nanos, pos
    length, pos = _varint(buf, pos)  # STRING, BINARY, DECIMAL: length-delimited bytes
    if pos + length > len(buf):
        raise _NeedMore
    data = buf[pos:pos + length]
    crc.update(data)
    return data, pos + length


def _to_batch(values: list[list], columns: list[Column]) -> pa.RecordBatch:
    arrays = []
    for vals, col in zip(values, columns):
        family, target = _family(col.type), col.arrow_type
        try:
            if family in ("STRING",):
                arr = pa.array(vals, pa.binary()).cast(pa.string())  # the cast checks UTF-8
            elif family == "DECIMAL":
                arr = pa.array([None if v is None else Decimal(v.decode()) for v in vals], target)
            elif family == "DATETIME":
                arr = pa.array(vals, pa.int64()).cast(target)
            elif family == "DATE":
                arr = pa.array(vals, pa.int32()).cast(target)
            elif family == "TIMESTAMP":
                arr = pa.array(vals, pa.int64()).cast(target)
            else:
                arr = pa.array(vals, target)
        except (pa.ArrowException, InvalidOperation, UnicodeDecodeError, OverflowError) as exc:
            raise malformed(f"column {col.name}: value does not fit {col.type}: {exc}") from None
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, names=[c.name for c in columns])


# ---------------------------------------------------------------- record format: encoding

def _enc_varint(n: int, out: bytearray) -> None:
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _enc_tag(field: int, wire: int, out: bytearray) -> None:
    _enc_varint((field << 3) | wire, out)


def _enc_zigzag(n: int, out: bytearray) -> None:
    _enc_varint(((n << 1) ^ (n >> 63)) & 0xFFFFFFFFFFFFFFFF, out)


def _raw_column(array: pa.Array, family: str) -> list:
    """A column as the Python values the record format carries (temporal types as integers)."""
    if family in ("DATETIME", "TIMESTAMP"):
        return array.cast(pa.int64()).to_pylist()
    if family == "DATE":
        return array.cast(pa.int32()).to_pylist()
    if family == "DECIMAL":
        return [None if v is None else str(v).encode() for v in array.to_pylist()]
    if family == "STRING":
        return array.cast(pa.binary()).to_pylist()
    return array.to_pylist()


def encode_records(batches: Iterable[pa.RecordBatch], columns: list[Column],
                   flush_bytes: int = 1 << 16) -> Iterator[bytes]:
    """The record-format body of ``batches`` (their columns in ``columns`` order)."""
    families = [_family(c.type) for c in columns]
    crc, crccrc = Crc(), Crc()
    out = bytearray()
    count = 0
    for batch in batches:
        cols = [_raw_column(batch.column(i), families[i]) for i in range(len(columns))]
        for row in zip(*cols):
            crc.reset()
            for i, value in enumerate(row):
                if value is None:
                    continue
                field, family = i + 1, families[i]
                crc.update_int(field)
                _enc_tag(field, _wire_type(columns[i].type), out)
                _write_value(value, family, out, crc)
            record_crc = crc.value
            _enc_tag(END_RECORD, VARINT, out)
            _enc_varint(record_crc, out)
            crccrc.update_int(_signed32(record_crc))
            count += 1
            if len(out) >= flush_bytes:
                yield bytes(out)
                out.clear()
    _enc_tag(META_COUNT, VARINT, out)
    _enc_zigzag(count, out)
    _enc_tag(META_CHECKSUM, VARINT, out)
    _enc_varint(crccrc.value, out)
    yield bytes(out)


def _write_value(value, family: str, out: bytearray, crc: Crc) -> None:
    if family in ("INTEGER", "DATETIME", "DATE"):
        crc.update_long(value)
        _enc_zigzag(value, out)
    elif family == "DOUBLE" or family == "FLOAT":
        raw = struct.pack("<d" if family == "DOUBLE" else "<f", value)
        crc.update(raw)
        out += raw
    elif family == "BOOLEAN":
        crc.update(b"\x01" if value else b"\x00")
        out.append(1 if value else 0)
    elif family == "TIMESTAMP":
        secs, nanos = divmod(value, 1_000_000_000)
        crc.update_long(secs)
        crc.update_int(nanos)
        _enc_zigzag(secs, out)
        _enc_zigzag(nanos, out)
    else:
        crc.update(value)
        _enc_varint(len(value), out)
        out += value


# ---------------------------------------------------------------- arrow format

class ArrowFrameReader:
    """The verified payload of an arrow-format body, as a file-like ``read(n)``."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._chunk_size: int | None = None
        self._stream_crc = 0  # CRC32C of the payload so far, combined from the chunks' CRCs
        self._pending = memoryview(b"")
        self.finished = False

    def _read_exact(self, n: int) -> bytes:
        parts, got = [], 0
        while got < n:
            data = self._raw.read(n - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def _next_chunk(self) -> None:
        if self._chunk_size is None:
            head = self._read_exact(4)
            rest = self._read_exact(1)
            if len(head) == 4 and not rest:
                # a writer closed without data sends only the (empty) stream checksum
                if struct.unpack("!I", head)[0] != 0:
                    raise malformed("empty arrow stream with a non-empty checksum")
                self.finished = True
                return
            if len(head) < 4:
                raise malformed("arrow stream truncated before its chunk size")
            self._chunk_size = struct.unpack("!I", head)[0]
            if not 0 < self._chunk_size <= MAX_CHUNK_SIZE:
                raise malformed(f"arrow chunk size {self._chunk_size}")
            block = rest + self._read_exact(self._chunk_size + 3)
        else:
            block = self._read_exact(self._chunk_size + 4)
        if len(block) < 4:
            raise malformed("arrow stream truncated: no stream checksum")
        data, (crc,) = block[:-4], struct.unpack("!I", block[-4:])
        chunk_crc = Crc()
        chunk_crc.update(data)
        self._stream_crc = crc32c_combine(self._stream_crc, chunk_crc.value, len(data))
        if len(block) == self._chunk_size + 4:
            if chunk_crc.value != crc:
                raise malformed("arrow chunk checksum mismatch")
        else:
            if self._stream_crc != crc:
                raise malformed("arrow stream checksum mismatch")
            if self._raw.read(1):
                raise malformed("data after the arrow stream checksum")
            self.finished = True
        self._pending = memoryview(data)

    def read(self, n: int = -1) -> bytes:
        parts = []
        while n != 0:
            if not self._pending:
                if self.finished:
                    break
                self._next_chunk()
                continue
            take = self._pending if n < 0 else self._pending[:n]
            parts.append(bytes(take))
            self._pending = self._pending[len(take):]
            if n > 0:
                n -= len(take)
        return b"".join(parts)


class _Prefixed:
    def __init__(self, prefix: bytes, rest: ArrowFrameReader) -> None:
        self._prefix, self._rest = prefix, rest
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        if self._prefix:
            take = self._prefix if n < 0 else self._prefix[:n]
            self._prefix = self._prefix[len(take):]
            return take + (self._rest.read(n - len(take)) if n > len(take) else b"")
        return self._rest.read(n)


def decode_arrow(stream: BinaryIO, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """Verified record batches of an arrow-format upload body (record batches without a schema)."""
    frames = ArrowFrameReader(stream)
    source = _Prefixed(schema.serialize().to_pybytes(), frames)
    try:
        reader = pa.ipc.open_stream(pa.PythonFile(source, mode="r"))
        for batch in reader:
            batch.validate(full=True)
            yield batch
    except (MaxComputeError, TimeoutError):  # a stalled body is the connection's failure, not the data's
        raise
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc.__context__, TimeoutError) or "timed out" in str(exc):
            raise TimeoutError(str(exc)) from None
        cause = exc.__context__ if isinstance(exc.__context__, MaxComputeError) else None
        if cause is not None:
            raise cause from None
        raise malformed(f"arrow payload does not parse against the table schema: {exc}") from None
    if frames.read(1) or not frames.finished:
        raise malformed("arrow stream not ended by its stream checksum")


def encode_arrow(batches: Iterable[pa.RecordBatch], chunk_size: int = 65536) -> Iterator[bytes]:
    """The arrow-format body of ``batches``: framed, checksummed IPC record-batch messages."""
    crccrc = Crc()
    out = bytearray(struct.pack("!I", chunk_size))
    pending = bytearray()
    for batch in batches:
        pending += batch.serialize().to_pybytes()
        while len(pending) >= chunk_size:
            chunk = pending[:chunk_size]
            del pending[:chunk_size]
            chunk_crc = Crc()
            chunk_crc.update(chunk)
            crccrc.update(chunk)
            out += chunk
            out += struct.pack("!I", chunk_crc.value)
        if len(out) >= READ_SIZE:
            yield bytes(out)
            out.clear()
    crccrc.update(pending)
    out += pending
    out += struct.pack("!I", crccrc.value)
    yield bytes(out)
