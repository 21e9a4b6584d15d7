"""MaxCompute column types and the Arrow types the local server stores them as.

The type strings are MaxCompute's own (``BIGINT``, ``STRING``, ``DECIMAL(10,2)``, ``ARRAY<STRING>``
are out of scope): what the table's schema JSON shows and what DDL declares.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from localcloud.maxcompute.errors import SqlError, NOT_SUPPORTED

#: The largest STRING/BINARY value a table cell holds (MaxCompute's SQL limits: "cell size 8 MB"; the
#: tunnel announces it as the session's ``MaxFieldSize``, which pyodps' record writer checks but its
#: Arrow writer does not, so the server must).
MAX_CELL_BYTES = 8 << 20

_SIMPLE: dict[str, pa.DataType] = {
    "BIGINT": pa.int64(),
    "INT": pa.int32(),
    "SMALLINT": pa.int16(),
    "TINYINT": pa.int8(),
    "DOUBLE": pa.float64(),
    "FLOAT": pa.float32(),
    "BOOLEAN": pa.bool_(),
    "STRING": pa.string(),
    "BINARY": pa.binary(),
    "DATETIME": pa.timestamp("ms"),
    "TIMESTAMP": pa.timestamp("ns"),
    "DATE": pa.date32(),
}
_PARAMETERISED = re.compile(r"^(VARCHAR|CHAR)\(\d+\)$|^DECIMAL(\(\d+,\s*\d+\))?$")


@dataclass(frozen=True)
class Column:
    """One column of a table (or of a partition key): ``type`` is the MaxCompute type string, upper case."""

    name: str
    type: str
    comment: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.lower())
        object.__setattr__(self, "type", normalise_type(self.type))

    @property
    def arrow_type(self) -> pa.DataType:
        return arrow_type(self.type)


def normalise_type(odps_type: str) -> str:
    text = re.sub(r"\s+", "", odps_type.upper())
    if text in _SIMPLE or _PARAMETERISED.match(text):
        return text
    raise SqlError(NOT_SUPPORTED, f"type {odps_type} is not supported by the local MaxCompute server "
                   f"(supported: {', '.join(sorted(_SIMPLE))}, VARCHAR(n), CHAR(n), DECIMAL(p,s))")


def arrow_type(odps_type: str) -> pa.DataType:
    text = normalise_type(odps_type)
    if text in _SIMPLE:
        return _SIMPLE[text]
    if text.startswith(("VARCHAR", "CHAR")):
        return pa.string()
    match = re.match(r"DECIMAL\((\d+),(\d+)\)", text)
    precision, scale = (int(match.group(1)), int(match.group(2))) if match else (38, 18)
    return pa.decimal128(precision, scale)


def arrow_schema(columns: list[Column]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.arrow_type) for c in columns])


def oversized_cell(batch: pa.RecordBatch | pa.Table, limit: int | None = None) -> tuple[str, int, int] | None:
    """(column, row, bytes) of the first STRING/BINARY value in ``batch`` over ``limit`` bytes (default
    :data:`MAX_CELL_BYTES`), or None."""
    limit = MAX_CELL_BYTES if limit is None else limit
    for name, column in zip(batch.schema.names, batch.columns):
        kind = column.type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
                or pa.types.is_large_binary(kind)):
            continue
        lengths = pc.binary_length(column)
        biggest = pc.max(lengths).as_py()
        if biggest is not None and biggest > limit:
            row = pc.index(pc.greater(lengths, limit), True).as_py()
            return name, row, biggest
    return None
