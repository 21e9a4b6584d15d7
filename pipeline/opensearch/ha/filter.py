"""The HA ``filter`` clause: parse, format and evaluate filter expressions.

Comparisons ``field <op> literal`` with ``= != < <= > >=``, literals int, float or ``"string"``
(backslash escapes ``\\"`` and ``\\\\``); ``in(field, "1|2|3")`` and ``notin(field, "1|2|3")``; ``AND``
binds tighter than ``OR`` (keywords upper case, as in HA); parentheses, nested at most
:data:`MAX_FILTER_DEPTH` deep. :func:`parse_filter` raises :class:`HaQueryError` (code 1052).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from pipeline.opensearch.ha.errors import ERROR_FILTER_CLAUSE, HaQueryError, excerpt

MAX_FILTER_DEPTH = 32


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
    return HaQueryError(ERROR_FILTER_CLAUSE, f"filter {excerpt(text)}: {why} at offset {pos}")


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
