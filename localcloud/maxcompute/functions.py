"""More MaxCompute built-ins as DuckDB expressions (the string functions the inventory route's SQL uses),
beside :func:`localcloud.maxcompute.dialect.translate`, which calls :func:`translate_more` for these names.

Semantics from MaxCompute's function reference: ``LENGTHB`` counts UTF-8 bytes (``LENGTH`` counts
characters, DuckDB's own); ``TOLOWER``/``TOUPPER`` are ``LOWER``/``UPPER``; ``URL_DECODE(s[, charset])``
decodes application/x-www-form-urlencoded text (``+`` is a space, ``%2B`` a plus) in UTF-8 (GBK is
refused locally); ``REGEXP_SUBSTR(s, pattern)`` is the first match or NULL.
"""

from __future__ import annotations

from sqlglot import exp

from localcloud.maxcompute.errors import NOT_SUPPORTED, SEMANTIC_ERROR, SqlError

#: name -> (fewest, most arguments)
MORE_FUNCTIONS = {"LENGTHB": (1, 1), "TOLOWER": (1, 1), "TOUPPER": (1, 1), "URL_DECODE": (1, 2),
                  "REGEXP_SUBSTR": (2, 4)}


def _fn(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _varchar(node: exp.Expr) -> exp.Expr:
    return exp.cast(node, "VARCHAR")


def translate_more(name: str, args: list[exp.Expr], where: str) -> exp.Expr:
    if name == "LENGTHB":
        return _fn("strlen", _varchar(args[0]))
    if name in ("TOLOWER", "TOUPPER"):
        return _fn("lower" if name == "TOLOWER" else "upper", _varchar(args[0]))
    if name == "URL_DECODE":
        if len(args) == 2:
            charset = args[1]
            if isinstance(charset, exp.Null):
                return exp.Null()
            if not (isinstance(charset, exp.Literal) and charset.is_string):
                raise SqlError(NOT_SUPPORTED, f"{where} Semantic analysis exception - the charset of URL_DECODE must "
                               "be a string constant in the local MaxCompute server")
            if charset.name.upper() not in ("UTF-8", "UTF8"):
                code = NOT_SUPPORTED if charset.name.upper() == "GBK" else SEMANTIC_ERROR
                raise SqlError(code, f"{where} Semantic analysis exception - URL_DECODE charset '{charset.name}' is "
                               "not supported by the local MaxCompute server (UTF-8 only; the service also takes GBK)")
        return _fn("url_decode", _fn("replace", _varchar(args[0]), exp.Literal.string("+"), exp.Literal.string(" ")))
    if name == "REGEXP_SUBSTR":
        if len(args) > 2:
            raise SqlError(NOT_SUPPORTED, f"{where} Semantic analysis exception - REGEXP_SUBSTR with start_position "
                           "or occurrence is not supported by the local MaxCompute server")
        return exp.If(this=_fn("regexp_matches", args[0], args[1]),
                      true=_fn("regexp_extract", args[0].copy(), args[1].copy(), exp.Literal.number(0)),
                      false=exp.Null())
    raise AssertionError(name)
