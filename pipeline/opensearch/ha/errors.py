"""Errors of the HA query grammar: Havenask's own error codes, and :class:`HaQueryError`.

Codes and names are Havenask's (``aios/ha3/ha3/common/ErrorDefine.ed`` in github.com/alibaba/havenask);
which situation maps to which code is our choice, documented next to each constant.
"""

from __future__ import annotations

# --- Havenask error codes (values and names from ErrorDefine.ed; the mapping is ours) -------------
ERROR_GENERAL = 2  # "general error." -- only for an internal bug of this parser, never expected
ERROR_KEY_VALUE_PAIR = 1002  # config item is not exactly key:value
ERROR_OVER_RETURN_HITS_LIMIT = 1005  # hit > MAX_HIT or start + hit > MAX_START_PLUS_HIT
ERROR_UNSUPPORT_RESULT_FORMAT = 1007  # format other than json (xml, protobuf, ...)
ERROR_NO_QUERY_CLAUSE = 1012  # no query clause at all
ERROR_SORT_NO_DESCRIPTION = 1031  # empty sort clause
ERROR_SORT_SAME_EXPRESSION = 1032  # the same sort key twice
ERROR_EMPTY_QUERY_STRING = 1050  # the whole HA string is empty
ERROR_QUERY_CLAUSE = 1051  # anything wrong inside the query (vector) clause
ERROR_FILTER_CLAUSE = 1052  # filter syntax
ERROR_SORT_CLAUSE = 1054  # sort key syntax
ERROR_UNKNOWN_CLAUSE = 1056  # clause name we do not know (or know but do not support)
ERROR_PARSE_SYNTAX = 1068  # clause structure: empty piece, missing '=', repeated clause
ERROR_CLUSTER_CLAUSE = 2013  # cluster clause not a single name
ERROR_CONFIG_CLAUSE_START_VALUE = 2022  # start is not a uint32
ERROR_CONFIG_CLAUSE_HIT_VALUE = 2023  # hit is not a uint32
ERROR_CONFIG_CLAUSE_TIMEOUT = 2026  # timeout is not a uint32
ERROR_CONFIG_CLAUSE_FETCH_SUMMARY_TYPE = 2027  # fetch_summary_type not pk/docid/rawpk
ERROR_PARSE_KVPAIR_CLAUSE = 2090  # kvpairs item without ':' or with an empty key

_ERROR_NAMES: dict[int, str] = {
    value: name for name, value in globals().items() if name.startswith("ERROR_") and isinstance(value, int)
}

class HaQueryError(ValueError):
    """An HA query string we cannot accept. ``code`` is a Havenask error code, ``message`` says why."""

    code: int
    message: str

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def name(self) -> str:
        """The Havenask constant name of ``code``, e.g. ``ERROR_QUERY_CLAUSE``."""
        return _ERROR_NAMES.get(self.code, "ERROR_UNKNOWN")

    def to_error_dict(self) -> dict[str, object]:
        """One entry of the ``errors`` list of an HA JSON result."""
        return {"code": self.code, "message": f"{self.name}: {self.message}"}

    def __str__(self) -> str:
        return f"{self.name} ({self.code}): {self.message}"


def excerpt(text: str, limit: int = 60) -> str:
    """Quote a piece of input for an error message without echoing a megabyte of Base64."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} chars)"
