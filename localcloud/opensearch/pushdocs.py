"""What a push request may carry, checked against the table's schema before anything of it is kept.

Why: the push API answers OK for documents it has merely *received*; a document it cannot index must
therefore be refused in the answer, or the client never learns of it. The stand-in refuses at least what
the cloud documents (2 MB per request, 1 MB per field) and everything that could not become a document
of this table, with a code and a message naming the document and the rule. One bad document refuses the
whole request: nothing of it is applied.

Codes (the ``errors[].code`` of a ``{"status": "FAIL", "errors": [...], "request_id"}`` answer). 4003 is
OpenSearch's "signature verification failed", used by the query API too; 4007 (JSON) and 3012/3013
(resource not found, app quota) follow the brief the pipeline's client was written against; the others
are ours. None was checked against the cloud.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from localcloud.opensearch.schema import FLOAT_TYPES, INTEGER_TYPES, FieldSpec, TableSchema

__all__ = ["MAX_FIELD_BYTES", "MAX_PUSH_BODY", "PushRefused", "parse_push_body"]

MAX_PUSH_BODY: Final = 2 * 1024 * 1024  # bytes per request (vendor: "at most 2 MB")
MAX_FIELD_BYTES: Final = 1024 * 1024  # per field value (vendor: "a field at most 1 MB")

CODE_NO_DOCUMENTS: Final = 3001  # empty body, not an array, empty array
CODE_BAD_COMMAND: Final = 3002  # cmd other than add/delete (update included: not supported here)
CODE_BAD_PRIMARY_KEY: Final = 3003  # primary key missing, null, or not of its schema type
CODE_BAD_FIELDS: Final = 3004  # unknown field, vector field pushed, stored field missing, wrong type
CODE_FIELD_TOO_LARGE: Final = 3005  # a field value over 1 MB
CODE_BAD_DOCUMENT: Final = 3006  # a document that is not {"cmd", "fields"[, "timestamp"]}
CODE_BAD_PK_HEADER: Final = 3011  # X-Opensearch-Swift-PK-Field missing or not the table's primary key
CODE_NO_DATA_SOURCE: Final = 3012  # the path's data source is not {instance_id}_{table} (404)
CODE_RATE_LIMITED: Final = 3013  # "push rate exceeds app quota" (429)
CODE_BODY_TOO_LARGE: Final = 3015  # over 2 MB (413)
CODE_LENGTH_REQUIRED: Final = 3016  # chunked body without Content-Length (411)
CODE_METHOD: Final = 3017  # not POST (405)
CODE_UNAUTHORIZED: Final = 4003  # wrong or missing Basic auth (401)
CODE_NOT_JSON: Final = 4007  # the body is not (UTF-8) JSON

_RANGES: Final[dict[str, tuple[int, int]]] = {
    "INT8": (-2**7, 2**7 - 1), "INT16": (-2**15, 2**15 - 1), "INT32": (-2**31, 2**31 - 1),
    "INT64": (-2**63, 2**63 - 1), "UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_DOCUMENT_KEYS: Final = frozenset({"cmd", "fields", "timestamp"})


class PushRefused(Exception):
    """A push request refused: the HTTP status, a code and a message for ``errors``."""

    def __init__(self, status: int, code: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> dict[str, Any]:
        return {"status": "FAIL", "errors": [{"code": self.code, "message": self.message}], "request_id": request_id}


def _bad(code: int, message: str) -> PushRefused:
    return PushRefused(400, code, message)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"the key {key[:60]!r} appears twice in one object")
        obj[key] = value
    return obj


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _size(value: Any) -> int:
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _typed(spec: FieldSpec, value: Any, where: str) -> Any:
    """``value`` as the field's type (ints stay ints, FLOAT fields become floats), or a refusal."""
    if spec.multi_value:
        if not isinstance(value, list):
            raise _bad(CODE_BAD_FIELDS, f"{where}: field {spec.name!r} is multi-value {spec.type}: give a JSON array")
        return [_typed(FieldSpec(spec.name, spec.type), item, where) for item in value]
    if value is None:
        raise _bad(CODE_BAD_FIELDS, f"{where}: field {spec.name!r} is null; give a {spec.type} value")
    if spec.type in INTEGER_TYPES:
        low, high = _RANGES.get(spec.type, _RANGES["INT64"])
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise _bad(CODE_BAD_FIELDS, f"{where}: field {spec.name!r} is {spec.type}: give an integer in "
                       f"{low}..{high}, got {str(value)[:60]!r}")
        return value
    if spec.type in FLOAT_TYPES:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise _bad(CODE_BAD_FIELDS, f"{where}: field {spec.name!r} is {spec.type}: give a number, got "
                       f"{str(value)[:60]!r}")
        return float(value)
    if not isinstance(value, str):
        raise _bad(CODE_BAD_FIELDS, f"{where}: field {spec.name!r} is {spec.type}: give a JSON string, got "
                   f"{type(value).__name__} {str(value)[:60]!r}")
    return value


def _check_primary_key(schema: TableSchema, fields: Mapping[str, Any], where: str) -> None:
    pk = schema.primary_key
    spec = schema.field(pk)
    assert spec is not None
    value = fields.get(pk)
    if pk not in fields or value is None:
        raise _bad(CODE_BAD_PRIMARY_KEY, f"{where}: the primary key {pk!r} is missing from fields")
    if spec.type == "INT64":
        ok = not isinstance(value, bool) and isinstance(value, int) and -2**63 <= value < 2**63
        wanted = "an integer (INT64)"
    else:
        ok, wanted = isinstance(value, str) and value != "", "a non-empty string (STRING)"
    if not ok:
        raise _bad(CODE_BAD_PRIMARY_KEY, f"{where}: the primary key {pk!r} must be {wanted}, got "
                   f"{type(value).__name__} {str(value)[:60]!r}")


def _check_document(schema: TableSchema, index: int, item: Any) -> dict[str, Any]:
    where = f"document {index}"
    if not isinstance(item, dict):
        raise _bad(CODE_BAD_DOCUMENT, f'{where} must be a JSON object {{"cmd": "add", "fields": {{...}}}}, got '
                   f"{type(item).__name__}")
    unknown = sorted(set(item) - _DOCUMENT_KEYS)
    if unknown:
        raise _bad(CODE_BAD_DOCUMENT, f"{where} has unknown key(s) {unknown}; a document has cmd, fields and an "
                   "optional numeric timestamp")
    cmd = item.get("cmd")
    if cmd == "update":
        raise _bad(CODE_BAD_COMMAND, f"{where}: cmd 'update' (a partial update) is not supported by this server; "
                   "push the whole document with cmd 'add', which replaces the document with that primary key")
    if cmd not in ("add", "delete"):
        raise _bad(CODE_BAD_COMMAND, f"{where}: cmd must be 'add' or 'delete' (lower case), got {str(cmd)[:40]!r}")
    stamp = item.get("timestamp")
    if "timestamp" in item and (isinstance(stamp, bool) or not isinstance(stamp, (int, float))):
        raise _bad(CODE_BAD_DOCUMENT, f"{where}: timestamp must be a number, got {str(stamp)[:40]!r}")
    fields = item.get("fields")
    if not isinstance(fields, dict):
        raise _bad(CODE_BAD_DOCUMENT, f"{where}: fields must be a JSON object, got {type(fields).__name__}")
    _check_primary_key(schema, fields, where)
    stored = {f.name: f for f in schema.stored_fields}
    if schema.vector_field in fields:
        raise _bad(CODE_BAD_FIELDS, f"{where}: {schema.vector_field!r} is filled by the service from "
                   f"{schema.image_field!r}; do not push it")
    unknown = sorted(set(fields) - set(stored))
    if unknown:
        raise _bad(CODE_BAD_FIELDS, f"{where}: unknown field(s) {unknown[:10]}; the table's fields are "
                   f"{sorted(stored)}")
    for name, value in fields.items():
        size = _size(value)
        if size > MAX_FIELD_BYTES:
            raise PushRefused(400, CODE_FIELD_TOO_LARGE, f"{where}: field {name!r} is {size} bytes; a field "
                              f"value may be at most 1 MB ({MAX_FIELD_BYTES} bytes)")
    if cmd == "add":
        missing = sorted(set(stored) - set(fields))
        if missing:
            raise _bad(CODE_BAD_FIELDS, f"{where}: an add carries the whole document; missing field(s) {missing}")
    return {"cmd": cmd, "fields": {name: _typed(stored[name], value, where) for name, value in fields.items()}}


def parse_push_body(schema: TableSchema, body: bytes) -> list[dict[str, Any]]:
    """The documents of a push body as ``{"cmd", "fields"}`` (values typed by the schema); refuses the
    whole body (:class:`PushRefused`, 400) at the first document that breaks a rule."""
    if not body.strip():
        raise _bad(CODE_NO_DOCUMENTS, 'the body is empty: send a JSON array of documents, e.g. [{"cmd": "add", '
                   '"fields": {...}}]')
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(CODE_NOT_JSON, f"the body is not UTF-8 JSON: {str(exc)[:200]}") from None
    if not isinstance(data, list) or not data:
        got = "an empty array" if isinstance(data, list) else f"a JSON {type(data).__name__}"
        raise _bad(CODE_NO_DOCUMENTS, f'the body must be a JSON array of 1 or more documents [{{"cmd": "add", '
                   f'"fields": {{...}}}}, ...], got {got}')
    return [_check_document(schema, i, item) for i, item in enumerate(data)]
