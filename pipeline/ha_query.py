"""Parse and build HA (Havenask/HA3) query strings, as far as OpenSearch image retrieval uses them.

One grammar for both sides: the local OpenSearch server parses with :func:`parse_ha_query`, our
client builds with :func:`build_ha_query`, and ``parse_ha_query(build_ha_query(...))`` round-trips.

Input is the HA string itself: the ``query`` parameter of ``GET /query?query=...`` *after*
URL-decoding, or the ``assemblyQuery`` of a ``POST /query`` body. Example (vendor guide)::

    config=start:0,hit:10,format:json&&query=vector:'motorcycle helmet&modal=text&n=10&search_params={}'
        &&kvpairs=formula:proxima_score(vector)&&sort=+RANK&&cluster=general

Grammar (what we accept; stricter than Havenask where that catches client bugs):

* Clauses are split on ``&&`` only (the vector clause contains single ``&``). Every piece must be
  ``name=value`` with name in ``config, query, filter, kvpairs, sort, cluster``; each at most once.
  An empty piece (``&&&&``, a trailing ``&&``) is an error.
* Bare query clause: the console's query test page takes ``vector:'...'&&kvpairs=...`` without
  ``query=``. A piece of the form ``<index>:'...'`` is therefore accepted as the query clause.
* ``config``: comma-separated ``key:value``; empty items ignored, items trimmed, each must split
  into exactly two non-empty parts on ``:`` (Havenask's own rule). ``start`` (uint, default 0),
  ``hit`` (uint, default 10), ``format`` (``json`` only; case-insensitive), ``fetch_summary_type``
  (``pk|docid|rawpk``), ``timeout`` (uint ms). Other keys are kept in ``HaConfig.extra`` and
  ignored. A repeated key: the last wins (as in Havenask).
* ``query`` (required): exactly one vector term ``<index>:'<content>&modal=<text|image>&n=<int>
  [&search_params=<json object>][&other=value...]'``. The content is everything before the first
  ``&`` inside the quotes; ``modal`` and ``n`` are required; unknown parameters (e.g. ``sf``) are
  kept in ``VectorQuery.extra_params``.
  - ``modal=image``: content is strict standard Base64 (alphabet ``A-Za-z0-9+/``, ``=`` padding,
    length a multiple of 4, no whitespace at all, not even a trailing newline) of the image bytes.
  - ``modal=text``: plain text, or Base64 of UTF-8 text when it holds special characters; see
    :func:`text_content_is_base64` for the (conservative) rule.
* ``filter``: comparisons ``field <op> literal`` with ``= != < <= > >=``, literals int, float or
  ``"string"`` (backslash escapes ``\\"`` and ``\\\\``); ``in(field, "1|2|3")`` and
  ``notin(field, "1|2|3")``; ``AND`` binds tighter than ``OR`` (keywords upper case, as in HA);
  parentheses, nested at most :data:`MAX_FILTER_DEPTH` deep.
* ``kvpairs``: comma-separated ``key:value`` (split at the first ``:``); a repeated key: last wins.
* ``sort``: ``;``-separated keys, each ``+field`` (ascending), ``-field`` (descending) or ``field``
  (descending, HA's default); ``field`` is ``RANK`` or an attribute name. A key that starts with
  whitespace is rejected: after URL-decoding that is almost always an unencoded ``+``, and
  accepting it would silently flip ``+RANK`` to the descending default.
* ``cluster``: one cluster name, e.g. ``general``.

Limits (ours, documented): ``n`` in 1..:data:`MAX_N`; ``hit`` in 0..:data:`MAX_HIT`;
``start + hit`` at most :data:`MAX_START_PLUS_HIT` (borrowed from OpenSearch Industry Algorithm
Edition's documented start+hit limit; Havenask's own limit is a configuration value).

Error codes are Havenask's own (``aios/ha3/ha3/common/ErrorDefine.ed`` in github.com/alibaba/havenask);
which situation maps to which code is our choice, documented next to the constants below.
:func:`parse_ha_query` raises :class:`HaQueryError` and nothing else, whatever the input.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "HaQueryError",
    "VectorQuery",
    "HaConfig",
    "SortKey",
    "HaQuery",
    "Comparison",
    "InList",
    "And",
    "Or",
    "FilterExpr",
    "parse_ha_query",
    "parse_filter",
    "format_filter",
    "compile_filter",
    "evaluate_filter",
    "format_ha_query",
    "build_ha_query",
    "text_content_is_base64",
    "decode_image_base64",
]

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

# --- Limits (ours) --------------------------------------------------------------------------------
MAX_N = 10_000
MAX_HIT = 1_000
MAX_START_PLUS_HIT = 5_000
MAX_FILTER_DEPTH = 32
_UINT32_MAX = 2**32 - 1

SUPPORTED_CLAUSES = ("config", "query", "filter", "kvpairs", "sort", "cluster")
# Real HA clauses that this local parser refuses with a clearer message than "unknown".
_HA_CLAUSES_NOT_SUPPORTED = frozenset(
    {
        "aggregate", "distinct", "rank", "attribute", "virtual_attribute", "fetch_summary",
        "layer", "searcher_cache", "optimizer", "rank_sort", "final_sort", "level", "analyzer",
        "aux_query", "aux_filter", "pkfilter", "healthcheck", "kvpair",
    }
)

_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_CLUSTER_RE = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_UINT_RE = re.compile(r"[0-9]{1,10}\Z")  # ASCII only: str.isdigit()/int() accept other scripts
_BARE_QUERY_RE = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*:'")
_B64_STD_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")


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


def _excerpt(text: str, limit: int = 60) -> str:
    """Quote a piece of input for an error message without echoing a megabyte of Base64."""
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} chars)"


# --- Data model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VectorQuery:
    """The single vector term of the query clause."""

    index: str
    content: str  # raw text between the opening quote and the first '&'
    modal: Literal["text", "image"]
    n: int
    search_params: dict[str, object]
    image_bytes: bytes | None  # decoded Base64, modal=image only
    text: str | None  # modal=text only: decoded Base64 text, or the raw content
    extra_params: dict[str, str] = field(default_factory=dict)  # e.g. sf; kept, not interpreted


@dataclass(frozen=True)
class HaConfig:
    start: int = 0
    hit: int = 10
    format: str = "json"
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SortKey:
    field: str  # "RANK" or an attribute name
    descending: bool


@dataclass(frozen=True)
class Comparison:
    field: str
    op: Literal["=", "!=", "<", "<=", ">", ">="]
    value: int | float | str


@dataclass(frozen=True)
class InList:
    """``in(field, "a|b")`` or, with ``negated``, ``notin(field, "a|b")``."""

    field: str
    values: tuple[str, ...]
    negated: bool = False


@dataclass(frozen=True)
class And:
    operands: tuple[FilterExpr, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[FilterExpr, ...]


FilterExpr: TypeAlias = Comparison | InList | And | Or


@dataclass(frozen=True)
class HaQuery:
    config: HaConfig
    vector: VectorQuery
    filter: FilterExpr | None
    kvpairs: dict[str, str]
    sort: list[SortKey]
    cluster: str | None


# --- Content helpers ------------------------------------------------------------------------------


def _b64_problem(content: str) -> str | None:
    """Why ``content`` is not strict standard Base64, or None if it is."""
    if not content:
        return "it is empty"
    for i, ch in enumerate(content):
        if ch.isspace():
            hint = (
                "a '+' was probably URL-decoded as a space: URL-encode the HA string (%2B)"
                if ch == " "
                else "use base64.b64encode (no line breaks), not encodebytes"
            )
            return f"whitespace {ch!r} at offset {i}: {hint}"
    if "-" in content or "_" in content:
        return "it uses the URL-safe alphabet ('-', '_'); use standard Base64 ('+', '/')"
    if len(content) % 4:
        return f"its length {len(content)} is not a multiple of 4 (missing '=' padding?)"
    if not _B64_STD_RE.match(content):
        bad = next((c for c in content if not (c.isascii() and (c.isalnum() or c in "+/="))), None)
        if bad is not None:
            return f"character {bad!r} is not in the Base64 alphabet"
        return "'=' padding is misplaced"
    return None


def decode_image_base64(content: str) -> bytes:
    """Decode strict standard Base64 image content; raise :class:`HaQueryError` with the reason."""
    problem = _b64_problem(content)
    if problem is None:
        try:
            return binascii.a2b_base64(content.encode("ascii"), strict_mode=True)
        except (binascii.Error, ValueError) as exc:  # belt and braces: the regex already checked
            problem = str(exc)
    raise HaQueryError(ERROR_QUERY_CLAUSE, f"modal=image content is not valid Base64: {problem}")


# Scripts that real query text uses. Random bytes that happen to be valid UTF-8 mostly land
# elsewhere (Thaana, NKo, Syriac, ...), so this cheaply rejects "words that decode to noise".
_COMMON_SCRIPT_RANGES = (
    (0x00C0, 0x024F),  # Latin-1 letters, Latin Extended-A/B
    (0x0370, 0x03FF),  # Greek
    (0x0400, 0x04FF),  # Cyrillic
    (0x3000, 0x303F),  # CJK punctuation
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xFF00, 0xFFEF),  # full-width forms
)
# Characters that cannot travel raw inside vector:'...' -- the reason to Base64-encode text.
_TEXT_SPECIAL_CHARS = "&'"


def _common_script(ch: str) -> bool:
    return ch.isascii() or any(lo <= ord(ch) <= hi for lo, hi in _COMMON_SCRIPT_RANGES)


def _wordy(ch: str) -> bool:
    return ch.isalnum() or ch.isspace()


def text_content_is_base64(content: str) -> bool:
    """Decide whether modal=text content is Base64-encoded text (conservative rule).

    The vendor guide says text with special characters (for example ``&``) is sent Base64-encoded.
    Its example ``5pGp5omY6L2mJuWktOeblA==`` decodes to UTF-8 ``摩托车&头盔`` -- Chinese for
    "motorcycle&helmet", not the English words. Plain words are often valid Base64 too (``Zm9v``
    is "foo", ``Question`` is "B笶*'"), so content counts as Base64 only when *all* of these hold:

    1. it is strict standard Base64 (alphabet, ``=`` padding, length a multiple of 4) and is
       either at least 8 characters long or ends in ``=`` padding;
    2. it decodes to valid UTF-8 whose characters are all printable;
    3. the decoded text holds ``&`` or ``'`` (characters that cannot be sent raw) *inside* it,
       with a letter, digit or space on both sides (``a&b``, ``rock'n'roll``, ``摩托车&头盔``);
    4. at least half of the decoded characters are letters, digits or spaces, and every
       non-ASCII character is Latin, Greek, Cyrillic, CJK, kana, Hangul or full-width.

    Anything else is taken literally. Text with a space is never Base64, so multi-word queries
    are always literal. Measured: 0 of 68,775 identifier-like tokens (length a multiple of 4,
    from the Python stdlib) and 9 of 300,000 random alphanumeric strings are misread.
    :func:`build_ha_query` encodes text exactly when needed and refuses text it cannot send
    unambiguously (e.g. ``a&b``: its Base64 ``YSZi`` is too short to be recognised; ``kids'``).
    """
    if len(content) < 4 or (len(content) < 8 and not content.endswith("=")):
        return False
    if _b64_problem(content) is not None:
        return False
    try:
        decoded = base64.b64decode(content, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return False
    if not decoded.strip() or not decoded.isprintable():
        return False
    inner_special = any(
        decoded[i] in _TEXT_SPECIAL_CHARS and _wordy(decoded[i - 1]) and _wordy(decoded[i + 1])
        for i in range(1, len(decoded) - 1)
    )
    if not inner_special:
        return False
    wordy = sum(1 for c in decoded if _wordy(c))
    return wordy * 2 >= len(decoded) and all(_common_script(c) for c in decoded)


# --- Filter language ------------------------------------------------------------------------------

_FILTER_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)(?![A-Za-z0-9_.])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<op>!=|<=|>=|==|=|<|>)
  | (?P<punct>[(),])
    """,
    re.VERBOSE | re.DOTALL,
)
_COMPARISON_OPS = ("=", "!=", "<", "<=", ">", ">=")


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    pos: int


def _filter_error(text: str, pos: int, why: str) -> HaQueryError:
    return HaQueryError(ERROR_FILTER_CLAUSE, f"filter {_excerpt(text)}: {why} at offset {pos}")


def _tokenize_filter(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _FILTER_TOKEN_RE.match(text, pos)
        if m is None:
            if text[pos] == '"':
                raise _filter_error(text, pos, "unterminated string literal")
            raise _filter_error(text, pos, f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, m.group(), pos))
        pos = m.end()
    return tokens


def _unescape_string(literal: str) -> str:
    body = literal[1:-1]
    return re.sub(r"\\(.)", lambda m: m.group(1), body, flags=re.DOTALL)


def _escape_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _FilterParser:
    """Recursive descent: or_expr := and_expr (OR and_expr)*; and_expr := primary (AND primary)*."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize_filter(text)
        self.i = 0
        self.depth = 0

    def _peek(self) -> _Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def _next(self, what: str) -> _Token:
        tok = self._peek()
        if tok is None:
            raise _filter_error(self.text, len(self.text), f"expected {what} but the filter ended")
        self.i += 1
        return tok

    def _expect(self, kind: str, text: str | None, what: str) -> _Token:
        tok = self._next(what)
        if tok.kind != kind or (text is not None and tok.text != text):
            raise _filter_error(self.text, tok.pos, f"expected {what}, found {tok.text!r}")
        return tok

    def parse(self) -> FilterExpr:
        if not self.tokens:
            raise HaQueryError(ERROR_FILTER_CLAUSE, "filter clause is empty")
        expr = self._or()
        tok = self._peek()
        if tok is not None:
            why = "unbalanced ')'" if tok.text == ")" else f"unexpected {tok.text!r} (missing AND/OR?)"
            raise _filter_error(self.text, tok.pos, why)
        return expr

    def _keyword(self, word: str) -> bool:
        tok = self._peek()
        if tok is not None and tok.kind == "ident" and tok.text == word:
            self.i += 1
            return True
        if tok is not None and tok.kind == "ident" and tok.text.upper() == word and tok.text != word:
            raise _filter_error(self.text, tok.pos, f"write the keyword {word} in upper case")
        return False

    def _or(self) -> FilterExpr:
        operands = [self._and()]
        while self._keyword("OR"):
            operands.append(self._and())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self) -> FilterExpr:
        operands = [self._primary()]
        while self._keyword("AND"):
            operands.append(self._primary())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _primary(self) -> FilterExpr:
        tok = self._next("a comparison, in(...), notin(...) or '('")
        if tok.text == "(":
            self.depth += 1
            if self.depth > MAX_FILTER_DEPTH:
                raise _filter_error(self.text, tok.pos, f"parentheses nested deeper than {MAX_FILTER_DEPTH}")
            expr = self._or()
            closing = self._peek()
            if closing is None or closing.text != ")":
                where = closing.pos if closing is not None else len(self.text)
                raise _filter_error(self.text, where, "unbalanced '(' (missing ')')")
            self.i += 1
            self.depth -= 1
            return expr
        if tok.kind != "ident":
            raise _filter_error(self.text, tok.pos, f"expected a field name, found {tok.text!r}")
        if tok.text in ("AND", "OR"):
            raise _filter_error(self.text, tok.pos, f"{tok.text} needs an operand before it")
        nxt = self._peek()
        if tok.text in ("in", "notin") and nxt is not None and nxt.text == "(":
            return self._in_list(negated=tok.text == "notin")
        return self._comparison(tok)

    def _in_list(self, negated: bool) -> InList:
        name = "notin" if negated else "in"
        self._expect("punct", "(", "'('")
        field_tok = self._expect("ident", None, f"a field name as the first argument of {name}()")
        self._expect("punct", ",", f"',' after the field name in {name}()")
        values_tok = self._expect("string", None, f'a quoted "v1|v2" list as the second argument of {name}()')
        self._expect("punct", ")", f"')' closing {name}()")
        values = tuple(_unescape_string(values_tok.text).split("|"))
        if any(v == "" for v in values):
            raise _filter_error(self.text, values_tok.pos, f"empty value in the {name}() list")
        return InList(field_tok.text, values, negated)

    def _comparison(self, field_tok: _Token) -> Comparison:
        op_tok = self._next(f"a comparison operator after {field_tok.text!r}")
        if op_tok.kind != "op":
            ops = " ".join(_COMPARISON_OPS)
            raise _filter_error(self.text, op_tok.pos, f"expected one of {ops}, found {op_tok.text!r}")
        if op_tok.text == "==":
            raise _filter_error(self.text, op_tok.pos, "HA uses '=' for equality, not '=='")
        lit = self._next("a number or a quoted string")
        value: int | float | str
        if lit.kind == "number":
            if re.fullmatch(r"-?[0-9]+", lit.text):
                value = int(lit.text)
            else:
                value = float(lit.text)
                if not math.isfinite(value):
                    raise _filter_error(self.text, lit.pos, f"number {lit.text} is out of range")
        elif lit.kind == "string":
            value = _unescape_string(lit.text)
        else:
            raise _filter_error(self.text, lit.pos, f"expected a number or a quoted string, found {lit.text!r}")
        return Comparison(field_tok.text, op_tok.text, value)  # type: ignore[arg-type]


def parse_filter(text: str) -> FilterExpr:
    """Parse a filter clause value into an AST; raise :class:`HaQueryError` (code 1052)."""
    return _FilterParser(text).parse()


def _format_literal(value: int | float | str) -> str:
    if isinstance(value, str):
        return _escape_string(value)
    if isinstance(value, float):
        return repr(value) if ("." in repr(value) or "e" in repr(value)) else repr(value) + ".0"
    return str(value)


def format_filter(expr: FilterExpr) -> str:
    """Render an AST as filter text that :func:`parse_filter` reads back to the same AST."""
    if isinstance(expr, Comparison):
        return f"{expr.field}{expr.op}{_format_literal(expr.value)}"
    if isinstance(expr, InList):
        return f"{'notin' if expr.negated else 'in'}({expr.field},{_escape_string('|'.join(expr.values))})"
    if isinstance(expr, (And, Or)):
        # Parenthesise every nested AND/OR so the text parses back to exactly this tree.
        joiner = " AND " if isinstance(expr, And) else " OR "
        return joiner.join(
            f"({format_filter(o)})" if isinstance(o, (And, Or)) else format_filter(o) for o in expr.operands
        )
    raise TypeError(f"not a filter expression: {expr!r}")


def _as_number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _compare_one(doc_value: object, op: str, literal: int | float | str) -> bool:
    """Numbers compare numerically (a numeric string on either side counts), else strings compare."""
    left: float | str | None
    right: float | str | None
    if isinstance(literal, str) and isinstance(doc_value, str):
        left, right = doc_value, literal
    else:
        left, right = _as_number(doc_value), _as_number(literal)
        if left is None or right is None:
            return False
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right  # type: ignore[operator]
    if op == "<=":
        return left <= right  # type: ignore[operator]
    if op == ">":
        return left > right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


def evaluate_filter(expr: FilterExpr, doc: Mapping[str, object]) -> bool:
    """Evaluate a filter against one document's attributes.

    A missing (or None) attribute makes every comparison false, ``!=`` and ``notin`` included
    (SQL NULL semantics). A list/tuple attribute is multi-value: a comparison holds if it holds
    for any element; ``notin`` holds if no element is in the list.
    """
    if isinstance(expr, And):
        return all(evaluate_filter(o, doc) for o in expr.operands)
    if isinstance(expr, Or):
        return any(evaluate_filter(o, doc) for o in expr.operands)
    value = doc.get(expr.field)
    if value is None:
        return False
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(expr, Comparison):
        return any(_compare_one(v, expr.op, expr.value) for v in values)
    hit = any(_compare_one(v, "=", item) for v in values for item in expr.values)
    return not hit if expr.negated else hit


def compile_filter(expr: FilterExpr | None) -> Callable[[Mapping[str, object]], bool]:
    """A predicate over a document's attributes; ``None`` (no filter) accepts everything."""
    if expr is None:
        return lambda doc: True
    return lambda doc: evaluate_filter(expr, doc)


# --- Clause parsers -------------------------------------------------------------------------------


def _parse_uint(value: str, code: int, what: str) -> int:
    if not _UINT_RE.match(value) or int(value) > _UINT32_MAX:
        raise HaQueryError(code, f"{what} must be an unsigned 32-bit integer, got {_excerpt(value)}")
    return int(value)


def _parse_config(value: str) -> HaConfig:
    start, hit, fmt = 0, 10, "json"
    extra: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue  # Havenask ignores empty items
        parts = [p.strip() for p in item.split(":") if p.strip()]
        if len(parts) != 2:
            raise HaQueryError(ERROR_KEY_VALUE_PAIR, f"config item {_excerpt(item)} is not key:value")
        key, val = parts
        if key == "start":
            start = _parse_uint(val, ERROR_CONFIG_CLAUSE_START_VALUE, "config start")
        elif key == "hit":
            hit = _parse_uint(val, ERROR_CONFIG_CLAUSE_HIT_VALUE, "config hit")
        elif key == "format":
            if val.lower() != "json":
                raise HaQueryError(
                    ERROR_UNSUPPORT_RESULT_FORMAT,
                    f"config format:{val} is not supported by this server; use format:json",
                )
            fmt = "json"
        else:
            if key == "fetch_summary_type" and val not in ("pk", "docid", "rawpk"):
                raise HaQueryError(
                    ERROR_CONFIG_CLAUSE_FETCH_SUMMARY_TYPE,
                    f"config fetch_summary_type must be pk, docid or rawpk, got {_excerpt(val)}",
                )
            if key == "timeout":
                _parse_uint(val, ERROR_CONFIG_CLAUSE_TIMEOUT, "config timeout")
            extra[key] = val
    if hit > MAX_HIT:
        raise HaQueryError(ERROR_OVER_RETURN_HITS_LIMIT, f"config hit:{hit} exceeds the limit of {MAX_HIT}")
    if start + hit > MAX_START_PLUS_HIT:
        raise HaQueryError(
            ERROR_OVER_RETURN_HITS_LIMIT,
            f"config start+hit = {start + hit} exceeds the limit of {MAX_START_PLUS_HIT}",
        )
    return HaConfig(start=start, hit=hit, format=fmt, extra=extra)


_QUERY_TERM_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):'(.*)'\Z", re.DOTALL)


def _parse_query(value: str) -> VectorQuery:
    value = value.strip()
    if not value:
        raise HaQueryError(ERROR_QUERY_CLAUSE, "query clause is empty")
    m = _QUERY_TERM_RE.match(value)
    if m is None:
        if re.match(r"[A-Za-z_][A-Za-z0-9_]*:'", value) and value.count("'") < 2:
            raise HaQueryError(
                ERROR_QUERY_CLAUSE,
                f"query {_excerpt(value)} has no closing quote (note: '&&' separates clauses, "
                "so it cannot appear inside the quotes)",
            )
        raise HaQueryError(
            ERROR_QUERY_CLAUSE,
            f"query {_excerpt(value)} is not a single vector term <index>:'<content>&modal=..&n=..'",
        )
    index, inner = m.group(1), m.group(2)
    if "'" in inner:
        raise HaQueryError(
            ERROR_QUERY_CLAUSE,
            "unexpected quote inside the vector term: only one term <index>:'...' is supported, "
            "and text containing quotes must be sent Base64-encoded",
        )
    content, sep, param_text = inner.partition("&")
    if not content.strip():
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"vector term {index}:'...' has empty content")
    if not sep:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"vector term {index}:'...' has no &modal=...&n=... parameters")
    params: dict[str, str] = {}
    for item in param_text.split("&"):
        key, eq, val = item.partition("=")
        if not item or not eq or not key:
            raise HaQueryError(ERROR_QUERY_CLAUSE, f"vector parameter {_excerpt(item)} is not name=value")
        if key in params:
            raise HaQueryError(ERROR_QUERY_CLAUSE, f"vector parameter {key} is given twice")
        params[key] = val
    modal = params.pop("modal", None)
    if modal is None:
        raise HaQueryError(ERROR_QUERY_CLAUSE, "vector term lacks modal=text or modal=image")
    if modal not in ("text", "image"):
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"modal must be text or image, got {_excerpt(modal)}")
    n_text = params.pop("n", None)
    if n_text is None:
        raise HaQueryError(ERROR_QUERY_CLAUSE, "vector term lacks n=<top-n>")
    if not re.fullmatch(r"[0-9]{1,9}", n_text) or not 1 <= int(n_text) <= MAX_N:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"n must be an integer in 1..{MAX_N}, got {_excerpt(n_text)}")
    sp_text = params.pop("search_params", "{}")
    try:
        search_params = json.loads(sp_text)
    except (ValueError, RecursionError) as exc:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"search_params is not JSON ({exc}): {_excerpt(sp_text)}") from None
    if not isinstance(search_params, dict):
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"search_params must be a JSON object, got {_excerpt(sp_text)}")
    if modal == "image":
        image_bytes: bytes | None = decode_image_base64(content)
        text: str | None = None
    else:
        image_bytes = None
        text = base64.b64decode(content).decode("utf-8") if text_content_is_base64(content) else content
    return VectorQuery(
        index=index,
        content=content,
        modal=modal,  # type: ignore[arg-type]
        n=int(n_text),
        search_params=search_params,
        image_bytes=image_bytes,
        text=text,
        extra_params=params,
    )


def _parse_kvpairs(value: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        key, colon, val = item.partition(":")
        if not colon or not key.strip():
            raise HaQueryError(ERROR_PARSE_KVPAIR_CLAUSE, f"kvpairs item {_excerpt(item)} is not key:value")
        pairs[key.strip()] = val.strip()
    return pairs


def _parse_sort(value: str) -> list[SortKey]:
    keys: list[SortKey] = []
    for item in value.split(";"):
        if not item.strip():
            continue  # Havenask ignores empty items
        if item[0].isspace():
            raise HaQueryError(
                ERROR_SORT_CLAUSE,
                f"sort key {_excerpt(item)} starts with whitespace: a '+' was probably URL-decoded "
                "as a space; URL-encode the HA string ('+' as %2B)",
            )
        item = item.rstrip()
        descending = item[0] != "+"  # no sign: HA sorts descending
        name = item[1:] if item[0] in "+-" else item
        if not _IDENT_RE.match(name):
            raise HaQueryError(
                ERROR_SORT_CLAUSE,
                f"sort key {_excerpt(item)}: expected +NAME or -NAME with NAME = RANK or an attribute "
                "(expressions are not supported)",
            )
        if any(k.field == name for k in keys):
            raise HaQueryError(ERROR_SORT_SAME_EXPRESSION, f"sort key {name} appears twice")
        keys.append(SortKey(name, descending))
    if not keys:
        raise HaQueryError(ERROR_SORT_NO_DESCRIPTION, "sort clause is empty")
    return keys


def _parse_cluster(value: str) -> str:
    name = value.strip()
    if not _CLUSTER_RE.match(name):
        raise HaQueryError(
            ERROR_CLUSTER_CLAUSE, f"cluster must be one cluster name such as general, got {_excerpt(value)}"
        )
    return name


def _split_clauses(s: str) -> dict[str, str]:
    clauses: dict[str, str] = {}
    previous = ""
    for position, piece in enumerate(s.split("&&"), start=1):
        if not piece.strip():
            raise HaQueryError(
                ERROR_PARSE_SYNTAX,
                f"clause {position} is empty: clauses are name=value joined by single '&&'",
            )
        name, eq, value = piece.partition("=")
        name = name.strip()
        known = eq and name in SUPPORTED_CLAUSES
        if not known and previous.count("'") % 2:
            # '&&' inside vector:'...' cut the term in two; say that rather than "unknown clause".
            raise HaQueryError(
                ERROR_QUERY_CLAUSE,
                f"clause {_excerpt(previous.strip())} has no closing quote: '&&' separates clauses, "
                "so it cannot appear inside the quotes",
            )
        previous = piece
        if eq and _IDENT_RE.match(name):
            if name not in SUPPORTED_CLAUSES:
                if name in _HA_CLAUSES_NOT_SUPPORTED:
                    why = f"the HA clause {name!r} is not supported by this local server"
                else:
                    why = f"unknown clause {name!r}"
                raise HaQueryError(ERROR_UNKNOWN_CLAUSE, f"{why}; supported: {', '.join(SUPPORTED_CLAUSES)}")
        elif _BARE_QUERY_RE.match(piece):
            name, value = "query", piece  # the console's bare form: vector:'...'
        else:
            raise HaQueryError(
                ERROR_PARSE_SYNTAX, f"clause {_excerpt(piece.strip())} is not name=value (e.g. query=..., sort=...)"
            )
        if name in clauses:
            raise HaQueryError(ERROR_PARSE_SYNTAX, f"clause {name!r} is given more than once")
        clauses[name] = value
    return clauses


def parse_ha_query(s: str) -> HaQuery:
    """Parse an HA query string (already URL-decoded). Raises :class:`HaQueryError` only."""
    try:
        return _parse_ha_query(s)
    except HaQueryError:
        raise
    except Exception as exc:  # a bug of ours must still honour the "only HaQueryError" contract
        raise HaQueryError(ERROR_GENERAL, f"internal parser error {type(exc).__name__}: {exc}") from exc


def _parse_ha_query(s: str) -> HaQuery:
    if not isinstance(s, str):
        raise HaQueryError(ERROR_EMPTY_QUERY_STRING, f"query must be a string, got {type(s).__name__}")
    s = s.strip()
    if not s:
        raise HaQueryError(ERROR_EMPTY_QUERY_STRING, "query string is empty")
    clauses = _split_clauses(s)
    if "query" not in clauses:
        raise HaQueryError(ERROR_NO_QUERY_CLAUSE, "no query clause: expected query=<index>:'<content>&modal=..&n=..'")
    return HaQuery(
        config=_parse_config(clauses["config"]) if "config" in clauses else HaConfig(),
        vector=_parse_query(clauses["query"]),
        filter=parse_filter(clauses["filter"]) if "filter" in clauses else None,
        kvpairs=_parse_kvpairs(clauses["kvpairs"]) if "kvpairs" in clauses else {},
        sort=_parse_sort(clauses["sort"]) if "sort" in clauses else [],
        cluster=_parse_cluster(clauses["cluster"]) if "cluster" in clauses else None,
    )


# --- Building -------------------------------------------------------------------------------------


def _json_for_query(obj: Mapping[str, object]) -> str:
    # '&' and "'" would break the clause/term structure; inside JSON strings they can be escaped.
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.replace("&", "\\u0026").replace("'", "\\u0027")


def _text_needs_base64(text: str) -> bool:
    return any(c in text for c in _TEXT_SPECIAL_CHARS) or text_content_is_base64(text)


def format_ha_query(q: HaQuery) -> str:
    """Render a parsed query back to HA text (config, query, filter, sort, kvpairs, cluster)."""
    cfg = [f"start:{q.config.start}", f"hit:{q.config.hit}", f"format:{q.config.format}"]
    cfg += [f"{k}:{v}" for k, v in q.config.extra.items()]
    v = q.vector
    params = [f"modal={v.modal}", f"n={v.n}", f"search_params={_json_for_query(v.search_params)}"]
    params += [f"{k}={val}" for k, val in v.extra_params.items()]
    parts = [f"config={','.join(cfg)}", f"query={v.index}:'{v.content}&{'&'.join(params)}'"]
    if q.filter is not None:
        parts.append(f"filter={format_filter(q.filter)}")
    if q.sort:
        parts.append("sort=" + ";".join(("-" if k.descending else "+") + k.field for k in q.sort))
    if q.kvpairs:
        parts.append("kvpairs=" + ",".join(f"{k}:{val}" for k, val in q.kvpairs.items()))
    if q.cluster is not None:
        parts.append(f"cluster={q.cluster}")
    return "&&".join(parts)


def build_ha_query(
    content: str | bytes,
    *,
    modal: Literal["text", "image"],
    n: int = 10,
    index: str = "vector",
    hit: int = 10,
    start: int = 0,
    filter: str | FilterExpr | None = None,
    sort: Sequence[SortKey | str] = (),
    cluster: str | None = "general",
    formula: str | None = None,
    kvpairs: Mapping[str, str] | None = None,
    search_params: Mapping[str, object] | None = None,
    config_extra: Mapping[str, str] | None = None,
) -> str:
    """Build an HA query string that :func:`parse_ha_query` reads back to the same values.

    ``content``: image bytes (Base64-encoded here) or a Base64 string for ``modal="image"``; the
    query text for ``modal="text"``, Base64-encoded here when it holds ``&`` or ``'`` (which the
    syntax cannot carry) or would be misread as Base64. Text must be printable.
    ``sort`` items are :class:`SortKey` or text such as ``"+RANK"`` / ``"-cate_id"``.
    ``formula`` sets ``kvpairs`` ``formula`` (e.g. ``proxima_score(vector)``).
    Raises :class:`HaQueryError` if the result would not parse back to these values.
    """
    if modal == "image":
        encoded = base64.b64encode(content).decode("ascii") if isinstance(content, bytes) else content
        expected_image: bytes | None = decode_image_base64(encoded)
        expected_text: str | None = None
    elif modal == "text":
        if isinstance(content, bytes):
            raise HaQueryError(ERROR_QUERY_CLAUSE, "modal=text takes str content, not bytes")
        if not content.strip():
            raise HaQueryError(ERROR_QUERY_CLAUSE, "text content is empty")
        if not content.isprintable():
            raise HaQueryError(ERROR_QUERY_CLAUSE, f"text {_excerpt(content)} holds non-printable characters")
        needs_b64 = _text_needs_base64(content)
        encoded = base64.b64encode(content.encode("utf-8")).decode("ascii") if needs_b64 else content
        if needs_b64 and not text_content_is_base64(encoded):
            raise HaQueryError(
                ERROR_QUERY_CLAUSE,
                f"text {_excerpt(content)} cannot be sent unambiguously: its Base64 form would be "
                "taken literally (too short or too little text, see text_content_is_base64)",
            )
        expected_image, expected_text = None, content
    else:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"modal must be text or image, got {modal!r}")

    if isinstance(sort, str):
        sort = sort.split(";")
    sort_keys = [k if isinstance(k, SortKey) else _parse_sort(k)[0] for k in sort]
    filter_expr = parse_filter(filter) if isinstance(filter, str) else filter
    pairs = dict(kvpairs or {})
    if formula is not None:
        pairs["formula"] = formula
    wanted = HaQuery(
        config=HaConfig(start=start, hit=hit, format="json", extra=dict(config_extra or {})),
        vector=VectorQuery(
            index=index,
            content=encoded,
            modal=modal,
            n=n,
            search_params=dict(search_params or {}),
            image_bytes=expected_image,
            text=expected_text,
        ),
        filter=filter_expr,
        kvpairs=pairs,
        sort=sort_keys,
        cluster=cluster,
    )
    text = format_ha_query(wanted)
    parsed = parse_ha_query(text)  # self-check: client and server must agree on every field
    if parsed != wanted:
        diffs = [
            name
            for name in ("config", "vector", "filter", "kvpairs", "sort", "cluster")
            if getattr(parsed, name) != getattr(wanted, name)
        ]
        raise HaQueryError(
            ERROR_PARSE_SYNTAX,
            f"cannot express these values in HA syntax ({', '.join(diffs)} would not round-trip); "
            "avoid ',', ':', ';', '&&' and quotes in names and kvpairs values",
        )
    return text
