"""OSS external tables as the local MaxCompute server defines them: ``CREATE EXTERNAL TABLE ... STORED BY
'com.aliyun.odps.CsvStorageHandler' WITH SERDEPROPERTIES (...) LOCATION 'oss://...'``, checked the way
MaxCompute documents it ("CSV and TSV external tables", "Create an OSS external table"), and kept in the
table's metadata (``TableMeta.external``). Reading the files is :mod:`localcloud.maxcompute.external_read`.

What the built-in text handlers take (the documented SERDEPROPERTIES; defaults as documented):

==========================================  ===========  ============================================
``odps.properties.rolearn``                 (required)   the RAM role MaxCompute assumes to read OSS
``odps.text.option.gzip.input.enabled``     ``false``    the files are gzip
``odps.text.option.gzip.output.enabled``    ``false``    accepted; writes are not supported locally
``odps.text.option.header.lines.count``     ``0``        lines skipped at the start of every file
``odps.text.option.null.indicator``         ``''``       the field text that reads as NULL
``odps.text.option.ignore.empty.lines``     ``true``     blank lines are skipped
``odps.text.option.encoding``               ``UTF-8``    only UTF-8 locally (GBK, UTF-16... refused)
``odps.text.option.delimiter``              ``,``        one character (TSV: a tab)
``odps.text.option.use.quote``              ``false``    fields in ``"..."`` with ``""`` inside; off,
                                                         a quote is an ordinary character
``odps.sql.text.schema.mismatch.mode``      ``error``    only ``error`` locally
==========================================  ===========  ============================================

Anything else (another handler, ``STORED AS``, ``ROW FORMAT SERDE``, an unknown property, a BINARY
column, which the text handlers cannot read) is refused with a MaxCompute-shaped error naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from localcloud.maxcompute.errors import NOT_SUPPORTED, SEMANTIC_ERROR, SqlError
from localcloud.maxcompute.types import Column

CSV_HANDLER = "com.aliyun.odps.CsvStorageHandler"
TSV_HANDLER = "com.aliyun.odps.TsvStorageHandler"
ROLE_ARN = "odps.properties.rolearn"
GZIP_INPUT = "odps.text.option.gzip.input.enabled"
GZIP_OUTPUT = "odps.text.option.gzip.output.enabled"
HEADER_LINES = "odps.text.option.header.lines.count"
NULL_INDICATOR = "odps.text.option.null.indicator"
IGNORE_EMPTY_LINES = "odps.text.option.ignore.empty.lines"
ENCODING = "odps.text.option.encoding"
DELIMITER = "odps.text.option.delimiter"
USE_QUOTE = "odps.text.option.use.quote"
MISMATCH_MODE = "odps.sql.text.schema.mismatch.mode"
_BOOLEANS = (GZIP_INPUT, GZIP_OUTPUT, IGNORE_EMPTY_LINES, USE_QUOTE)
KNOWN_PROPERTIES = (ROLE_ARN, *_BOOLEANS, HEADER_LINES, NULL_INDICATOR, ENCODING, DELIMITER, MISMATCH_MODE)
_ROLE = re.compile(r"^acs:ram::\d+:role/[A-Za-z0-9.@_-]{1,64}$")
# oss://<endpoint>/<bucket>/<directory>/ ; the endpoint may be left out (oss://<bucket>/<directory>/), then
# the project region's internal endpoint is used. Bucket names have no dots, endpoints always have one.
_LOCATION = re.compile(r"^oss://(?:(?P<endpoint>[^/]*[.:][^/]*)/)?(?P<bucket>[a-z0-9][a-z0-9-]{1,61}[a-z0-9])"
                       r"(?:/(?P<path>.*))?$")


@dataclass(frozen=True)
class OssLocation:
    endpoint: str   # as written in LOCATION ('' when left out)
    bucket: str
    prefix: str     # '' or a directory ending in '/'

    def folder(self, spec: dict[str, str]) -> str:
        """The directory of one partition: ``<prefix><k1>=<v1>/<k2>=<v2>/`` (standard partition paths)."""
        return self.prefix + "".join(f"{k}={v}/" for k, v in spec.items())


@dataclass(frozen=True)
class ExternalTable:
    handler: str
    location: str
    properties: dict[str, str]

    @property
    def role_arn(self) -> str:
        return self.properties[ROLE_ARN]

    @property
    def oss(self) -> OssLocation:
        return parse_location(self.location)

    def flag(self, name: str) -> bool:
        return self.properties.get(name, "false" if name != IGNORE_EMPTY_LINES else "true").lower() == "true"

    @property
    def delimiter(self) -> str:
        return self.properties.get(DELIMITER, "\t" if self.handler == TSV_HANDLER else ",")

    @property
    def header_lines(self) -> int:
        return int(self.properties.get(HEADER_LINES, "0"))

    @property
    def null_indicator(self) -> str:
        return self.properties.get(NULL_INDICATOR, "")

    def to_json(self) -> dict[str, Any]:
        return {"handler": self.handler, "location": self.location, "properties": dict(self.properties)}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ExternalTable | None:
        return None if data is None else cls(data["handler"], data["location"], dict(data["properties"]))


def _refuse(node: exp.Expr | None, what: str) -> SqlError:
    return SqlError(NOT_SUPPORTED, f"[1,1] Semantic analysis exception - {what} is not supported by the local "
                    f"MaxCompute server (external tables: STORED BY '{CSV_HANDLER}' or '{TSV_HANDLER}')")


def parse_location(location: str) -> OssLocation:
    match = _LOCATION.match(location)
    if match is None or "//" in (match["path"] or "") or location.startswith("oss://oss://"):
        raise SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - invalid location '{location}': "
                       "an OSS external table's location is oss://<endpoint>/<bucket>/<directory>/ (http:// "
                       "and https:// are not accepted, nor a file name)")
    path = match["path"] or ""
    return OssLocation(match["endpoint"] or "", match["bucket"], path if not path or path.endswith("/") else path + "/")


def external_from_properties(properties: list[exp.Expr], columns: list[Column]) -> tuple[ExternalTable, list[exp.Expr]]:
    """The external table a CREATE's properties describe, and the properties left for the ordinary checks
    (COMMENT, PARTITIONED BY, LIFECYCLE)."""
    handler, location, serde, rest = None, None, {}, []
    for prop in properties:
        if isinstance(prop, exp.ExternalProperty):
            continue
        if isinstance(prop, exp.StorageHandlerProperty):
            handler = prop.name
        elif isinstance(prop, exp.SerdeProperties):
            for item in prop.expressions:
                serde[item.name] = item.args["value"].name
        elif isinstance(prop, exp.LocationProperty):
            location = prop.name
        elif isinstance(prop, exp.RowFormatSerdeProperty):
            raise _refuse(prop, f"ROW FORMAT SERDE '{prop.name}'")
        elif isinstance(prop, exp.FileFormatProperty):
            raise _refuse(prop, f"STORED AS {prop.name or prop.this.sql('hive')}")
        elif type(prop) is exp.Property and not isinstance(prop.this, exp.Var):   # TBLPROPERTIES items
            raise _refuse(prop, f"TBLPROPERTIES ('{prop.name}')")
        else:
            rest.append(prop)
    if handler is None:
        raise SqlError(SEMANTIC_ERROR, "[1,1] Semantic analysis exception - an external table needs STORED BY "
                       "'<storage handler>' (or STORED AS <format>)")
    if handler not in (CSV_HANDLER, TSV_HANDLER):
        raise _refuse(None, f"storage handler '{handler}'")
    if location is None:
        raise SqlError(SEMANTIC_ERROR, "[1,1] Semantic analysis exception - an external table needs LOCATION "
                       "'oss://<endpoint>/<bucket>/<directory>/'")
    parse_location(location)
    check_properties(serde)
    binary = [c.name for c in columns if c.type == "BINARY"]
    if binary:
        raise SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - column {binary[0]}: BINARY is not "
                       f"supported by {handler}")
    return ExternalTable(handler, location, serde), rest


def check_properties(serde: dict[str, str]) -> None:
    unknown = sorted(set(serde) - set(KNOWN_PROPERTIES))
    if unknown:
        raise _refuse(None, "SERDEPROPERTIES " + ", ".join(f"'{name}'" for name in unknown))
    if ROLE_ARN not in serde:
        raise SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - '{ROLE_ARN}' is required: the "
                       "RAM role (acs:ram::<account>:role/<name>) MaxCompute assumes to read OSS")
    if not _ROLE.match(serde[ROLE_ARN]):
        raise SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - invalid {ROLE_ARN} "
                       f"'{serde[ROLE_ARN]}': expected acs:ram::<account id>:role/<role name>")
    for name in _BOOLEANS:
        if name in serde and serde[name].lower() not in ("true", "false"):
            raise _invalid(name, serde[name], "true or false")
    if HEADER_LINES in serde and not serde[HEADER_LINES].isdigit():
        raise _invalid(HEADER_LINES, serde[HEADER_LINES], "a non-negative integer")
    if DELIMITER in serde and len(serde[DELIMITER]) != 1:
        raise _invalid(DELIMITER, serde[DELIMITER], "a single character")
    if ENCODING in serde and serde[ENCODING].upper() not in ("UTF-8", "UTF8"):
        if serde[ENCODING].upper() in ("UTF-16", "US-ASCII", "GBK"):
            raise _refuse(None, f"{ENCODING}={serde[ENCODING]}")
        raise _invalid(ENCODING, serde[ENCODING], "UTF-8, UTF-16, US-ASCII or GBK")
    if MISMATCH_MODE in serde and serde[MISMATCH_MODE].lower() != "error":
        raise _refuse(None, f"{MISMATCH_MODE}={serde[MISMATCH_MODE]}")


def _invalid(name: str, value: str, expected: str) -> SqlError:
    return SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - invalid value '{value}' of "
                    f"SERDEPROPERTIES '{name}': expected {expected}")


def schema_json(table: ExternalTable) -> dict[str, Any]:
    """What the table's extended metadata shows for an external table (pyodps' ``Table.location``,
    ``storage_handler``, ``serde_properties``). The properties travel as a JSON text inside the JSON, as
    pyodps parses them (``serializers.JSONNodeField(type="json")``)."""
    return {"location": table.location, "storageHandler": table.handler,
            "serDeProperties": json.dumps(table.properties), "resources": ""}
