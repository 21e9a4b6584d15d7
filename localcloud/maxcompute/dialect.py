"""MaxCompute SQL as sqlglot sees it: a Hive-based dialect, the script splitter, and the rewrite of
MaxCompute built-ins into DuckDB expressions with MaxCompute's semantics.

The dialect only adds what MaxCompute has and Hive lacks (``LIFECYCLE``, ``ALTER TABLE t PARTITION (..)
RENAME TO PARTITION (..)``, ``ADD COLUMNS IF NOT EXISTS``) and turns sqlglot's silent fallback to an opaque ``Command`` into a parse
error, so a typo is reported where it is, as the service does, instead of running as something else.
Functions whose MaxCompute semantics differ from Hive's/DuckDB's are parsed as ``Anonymous`` calls and
rebuilt here, so sqlglot's Hive-to-DuckDB mapping cannot pick the wrong semantics for them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.hive import Hive
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.parsers.hive import HiveParser
from sqlglot.tokens import Token, TokenType

from localcloud.maxcompute.errors import NOT_SUPPORTED, PARSE_ERROR, SEMANTIC_ERROR, SqlError
from localcloud.maxcompute.functions import MORE_FUNCTIONS, translate_more
from localcloud.maxcompute.types import Column, normalise_type

# Built-ins rebuilt by translate_functions (MaxCompute semantics); everything else is left to sqlglot.
_OWN_FUNCTIONS = (
    "REGEXP_EXTRACT", "REGEXP_REPLACE", "REGEXP_INSTR", "SPLIT_PART", "URL_DECODE", "URL_ENCODE",
    "CONCAT", "CONCAT_WS", "INSTR", "TO_CHAR", "TO_DATE", "DATEADD", "DATEDIFF", "GETDATE", "CONV",
    "HASH", *MORE_FUNCTIONS,
)


# MaxCompute's reserved words and keywords ("Reserved words and keywords"): a table, column or partition
# named by one must be quoted with backquotes, or the statement fails to parse.
RESERVED_WORDS = frozenset("""
    ADD AFTER ALL ALTER ANALYZE AND ARCHIVE ARRAY AS ASC BEFORE BETWEEN BIGINT BINARY BLOB BOOLEAN BOTH
    DECIMAL BUCKET BUCKETS BY CASCADE CASE CAST CFILE CHANGE CLUSTER CLUSTERED CLUSTERSTATUS COLLECTION
    COLUMN COLUMNS COMMENT COMPUTE CONCATENATE CONTINUE CREATE CROSS CURRENT CURSOR DATA DATABASE
    DATABASES DATE DATETIME DBPROPERTIES DEFERRED DELETE DELIMITED DESC DESCRIBE DIRECTORY DISABLE
    DISTINCT DISTRIBUTE DOUBLE DROP ELSE ENABLE END EXCEPT ESCAPED EXCLUSIVE EXISTS EXPLAIN EXPORT
    EXTENDED EXTERNAL FALSE FETCH FIELDS FILEFORMAT FIRST FLOAT FOLLOWING FORMAT FORMATTED FROM FULL
    FUNCTION FUNCTIONS GRANT GROUP HAVING HOLD_DDLTIME IDXPROPERTIES IF IMPORT IN INDEX INDEXES INPATH
    INPUTDRIVER INPUTFORMAT INSERT INT INTERSECT INTO IS ITEMS JOIN KEYS LATERAL LEFT LIFECYCLE LIKE
    LIMIT LINES LOAD LOCAL LOCATION LOCK LOCKS LONG MAP MAPJOIN MATERIALIZED MINUS MSCK NOT NO_DROP NULL
    OF OFFLINE OFFSET ON OPTION OR ORDER OUT OUTER OUTPUTDRIVER OUTPUTFORMAT OVER OVERWRITE PARTITION
    PARTITIONED PARTITIONPROPERTIES PARTITIONS PERCENT PLUS PRECEDING PRESERVE PROCEDURE PURGE RANGE
    RCFILE READ READONLY READS REBUILD RECORDREADER RECORDWRITER REDUCE REGEXP RENAME REPAIR REPLACE
    RESTRICT REVOKE RIGHT RLIKE ROW ROWS SCHEMA SCHEMAS SELECT SEMI SEQUENCEFILE SERDE SERDEPROPERTIES
    SET SHARED SHOW SHOW_DATABASE SMALLINT SORT SORTED SSL STATISTICS STATUS STORED STREAMTABLE STRING
    STRUCT TABLE TABLES TABLESAMPLE TBLPROPERTIES TEMPORARY TERMINATED TEXTFILE THEN TINYINT TO TOUCH
    TRANSFORM TRIGGER TRUE TYPE UNARCHIVE UNBOUNDED UNDO UNION UNIONTYPE UNIQUEJOIN UNLOCK UNSIGNED
    UPDATE USE USING UTC UTC_TMESTAMP VIEW WHEN WHERE WHILE DIV
""".split())


def _anonymous(name: str):
    return lambda args: exp.Anonymous(this=name, expressions=args)


class MaxComputeParser(HiveParser):
    FUNCTIONS = {**HiveParser.FUNCTIONS, **{name: _anonymous(name) for name in _OWN_FUNCTIONS}}
    PROPERTY_PARSERS = {
        **HiveParser.PROPERTY_PARSERS,
        "LIFECYCLE": lambda self: exp.Property(this=exp.var("LIFECYCLE"), value=self._parse_number()),
    }
    ALTER_PARSERS = {**HiveParser.ALTER_PARSERS, "RENAME": lambda self: self._parse_rename_partition()}

    def _parse_rename_partition(self) -> exp.Expr | None:
        # ALTER TABLE t PARTITION (a='1') RENAME TO PARTITION (a='2'): the old spec is on the table.
        if self._match_text_seq("TO") and self._match(TokenType.PARTITION, advance=False):
            return exp.AlterRename(this=self._parse_partition())
        if self._prev.token_type == TokenType.VAR and self._prev.text.upper() == "TO":
            self._retreat(self._index - 1)
        return self._parse_alter_table_rename()

    def _parse_alter_table_add(self) -> list[exp.Expr]:
        # ALTER TABLE t ADD COLUMNS [IF NOT EXISTS] (c T [COMMENT '..'], ...): Hive lacks IF NOT EXISTS here.
        index = self._index
        if self._match_text_seq("COLUMNS"):
            exists = self._parse_exists(not_=True)
            schema = self._parse_schema()
            if isinstance(schema, exp.Schema) and schema.this is None:
                if not schema.expressions:
                    self.raise_error("expected a column definition: name TYPE [COMMENT '...']", self._prev)
                schema.meta["if_not_exists"] = bool(exists)
                return [schema]
            self._retreat(index)
        return super()._parse_alter_table_add()

    def _parse_as_command(self, start: Token) -> exp.Command:
        # sqlglot would keep the rest of the statement as opaque text; MaxCompute reports where it stops.
        token = self._curr or self._prev
        self.raise_error(f"invalid token '{token.text}'" if self._curr else "unexpected end of statement",
                         token)
        raise AssertionError("unreachable: the parser raises immediately")


class MaxCompute(Hive):
    Parser = MaxComputeParser


DIALECT = MaxCompute()


@dataclass
class Statement:
    tokens: list[Token]
    start: int   # offset of the statement's first character in the script
    end: int

    def text(self, script: str) -> str:
        return script[self.start:self.end]


def split_script(script: str) -> list[Statement]:
    """The statements of a script, split at the tokenizer's semicolons (quotes and comments respected)."""
    try:
        toks = DIALECT.tokenize(script)
    except TokenError as error:
        raise SqlError(PARSE_ERROR, f"[1,1] Parse exception - {error}") from None
    statements: list[Statement] = []
    current: list[Token] = []
    for token in [*toks, None]:
        if token is None or token.token_type == TokenType.SEMICOLON:
            if current:
                statements.append(Statement(current, current[0].start, current[-1].end + 1))
            current = []
        else:
            current.append(token)
    return statements


def parse_setting(statement: Statement, script: str) -> tuple[str, str] | None:
    """``SET key=value`` as a (key, value) pair; None when the statement is not a SET."""
    first = statement.tokens[0]
    if first.token_type != TokenType.SET:
        return None
    text = statement.text(script)[len(first.text):]
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        line, col = first.line, first.col - len(first.text) + 1
        raise SqlError(PARSE_ERROR, f"[{line},{col}] Parse exception - SET expects key=value")
    return key.strip(), value.strip()


def parse_statement(statement: Statement, script: str) -> exp.Expr:
    parser = DIALECT.parser(error_level=ErrorLevel.IMMEDIATE)
    try:
        trees = parser.parse(statement.tokens, script)
    except ParseError as error:
        detail = error.errors[0] if error.errors else {}
        line, col = detail.get("line") or 1, detail.get("col") or 1
        col = max(1, col - len(detail.get("highlight") or "x") + 1)   # sqlglot points at a token's end
        description = (detail.get("description") or str(error)).split(" but got <Token")[0]
        # sqlglot names its node classes ("<class 'sqlglot...Where'>"): say the clause instead.
        description = re.sub(r"<class '[\w.]*?(\w+)'>", lambda m: m.group(1).upper(), description)
        description = description[:1].lower() + description[1:]
        if not description.startswith(("invalid token", "unexpected end")):
            near = detail.get("highlight")
            description = (f"invalid token '{near}', {description}" if near
                           else f"unexpected end of statement, {description}")
        raise SqlError(PARSE_ERROR, f"[{line},{col}] Parse exception - {description}") from None
    if len(trees) != 1 or trees[0] is None:
        raise SqlError(PARSE_ERROR, "[1,1] Parse exception - empty statement")
    for ident in trees[0].find_all(exp.Identifier):
        if not ident.quoted and ident.name.upper() in RESERVED_WORDS:
            raise SqlError(PARSE_ERROR, f"{position(ident)} Parse exception - invalid token '{ident.name}': "
                           f"{ident.name.upper()} is a reserved word; quote it as `{ident.name}` to use it as a name")
    return trees[0]


def position(node: exp.Expr | None) -> str:
    """``[line,col]`` of a node's first identifier or literal, as MaxCompute prefixes its messages."""
    if node is not None:
        for candidate in node.walk():
            meta = candidate.meta if isinstance(candidate, (exp.Identifier, exp.Literal, exp.Func)) else {}
            if "line" in meta:
                width = meta["end"] - meta["start"] + 1 if "start" in meta else 1
                return f"[{meta['line']},{max(1, meta['col'] - width + 1)}]"
    return "[1,1]"


# ---------------------------------------------------------------------------------------------------
# Types: MaxCompute <-> sqlglot DDL types <-> DuckDB types.

_DUCKDB_TYPES = {
    "BIGINT": "BIGINT", "INT": "INTEGER", "SMALLINT": "SMALLINT", "TINYINT": "TINYINT",
    "DOUBLE": "DOUBLE", "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN", "STRING": "VARCHAR", "BINARY": "BLOB",
    "DATETIME": "TIMESTAMP", "TIMESTAMP": "TIMESTAMP_NS", "DATE": "DATE",
}
_FROM_DUCKDB = {
    "BIGINT": "BIGINT", "INTEGER": "INT", "SMALLINT": "SMALLINT", "TINYINT": "TINYINT",
    "DOUBLE": "DOUBLE", "FLOAT": "FLOAT", "BOOLEAN": "BOOLEAN", "VARCHAR": "STRING", "BLOB": "BINARY",
    "TIMESTAMP": "DATETIME", "TIMESTAMP_MS": "DATETIME", "TIMESTAMP_S": "DATETIME",
    "TIMESTAMP_NS": "TIMESTAMP", "DATE": "DATE",
    # What DuckDB widens to, or has and MaxCompute lacks: cast down to the type MaxCompute reports.
    "HUGEINT": "BIGINT", "UBIGINT": "BIGINT", "UINTEGER": "BIGINT", "USMALLINT": "INT",
    "UTINYINT": "SMALLINT", "TIMESTAMP WITH TIME ZONE": "DATETIME", '"NULL"': "STRING", "NULL": "STRING",
}


def ddl_type(data_type: exp.DataType) -> str:
    """The MaxCompute type string of a DDL column type (refusing types the local server lacks)."""
    text = "DATETIME" if data_type.this == exp.DType.DATETIME else data_type.sql("hive")
    return normalise_type(text)


def duckdb_type(odps_type: str) -> str:
    text = normalise_type(odps_type)
    if text.startswith("DECIMAL"):
        return text if "(" in text else "DECIMAL(38,18)"
    return "VARCHAR" if text.startswith(("VARCHAR", "CHAR")) else _DUCKDB_TYPES[text]


def odps_type_of_duckdb(duckdb_type_text: str, odps2: bool = False) -> str:
    """MaxCompute's name for a DuckDB result type; SqlError for types MaxCompute tables cannot hold.

    Without the 2.0 type system (``odps.sql.type.system.odps2``) MaxCompute has no INT/SMALLINT/TINYINT
    and integer constants are BIGINT, so DuckDB's INTEGER results (``SELECT 1``) report BIGINT."""
    text = duckdb_type_text.upper()
    if text.startswith("DECIMAL"):
        return text.replace(" ", "")
    if text in _FROM_DUCKDB:
        odps_type = _FROM_DUCKDB[text]
        return odps_type if odps2 or odps_type not in ("INT", "SMALLINT", "TINYINT") else "BIGINT"
    raise SqlError(NOT_SUPPORTED, f"[1,1] Semantic analysis exception - result type {duckdb_type_text} "
                   "is not supported by the local MaxCompute server")


# ---------------------------------------------------------------------------------------------------
# Built-ins with MaxCompute semantics, as DuckDB expressions.

def _fn(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _str(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _varchar(node: exp.Expr) -> exp.Expr:
    return exp.cast(node, "VARCHAR")


def _literal_int(node: exp.Expr, what: str) -> int:
    value = node.this if isinstance(node, exp.Neg) else node
    if not (isinstance(value, exp.Literal) and not value.is_string):
        raise SqlError(NOT_SUPPORTED, f"{position(node)} Semantic analysis exception - {what} must be "
                       "an integer constant in the local MaxCompute server")
    return -int(value.name) if isinstance(node, exp.Neg) else int(value.name)


def _literal_str(node: exp.Expr, what: str) -> str:
    if not (isinstance(node, exp.Literal) and node.is_string):
        raise SqlError(NOT_SUPPORTED, f"{position(node)} Semantic analysis exception - {what} must be "
                       "a string constant in the local MaxCompute server")
    return node.name


# MaxCompute datetime format elements (Oracle-like, case-insensitive) -> strftime.
_FORMAT_ELEMENTS = (("yyyy", "%Y"), ("mm", "%m"), ("dd", "%d"), ("hh", "%H"), ("mi", "%M"),
                    ("ss", "%S"), ("ff3", "%g"))
_DATE_UNITS = {"yyyy": "year", "year": "year", "mm": "month", "month": "month", "mon": "month",
               "dd": "day", "day": "day", "hh": "hour", "hour": "hour", "mi": "minute",
               "minute": "minute", "ss": "second", "second": "second", "ff3": "millisecond"}


def strftime_format(odps_format: str) -> str:
    out, i = [], 0
    while i < len(odps_format):
        for element, directive in _FORMAT_ELEMENTS:
            if odps_format[i:i + len(element)].lower() == element:
                out.append(directive)
                i += len(element)
                break
        else:
            out.append("%%" if odps_format[i] == "%" else odps_format[i])
            i += 1
    return "".join(out)


def _date_unit(node: exp.Expr) -> str:
    unit = _literal_str(node, "the date part").lower()
    if unit not in _DATE_UNITS:
        raise SqlError(PARSE_ERROR, f"{position(node)} Invalid date part '{unit}'")
    return _DATE_UNITS[unit]


def _datetime(node: exp.Expr) -> exp.Expr:
    # MaxCompute converts 'yyyy-mm-dd hh:mi:ss' strings to DATETIME implicitly.
    return exp.cast(node, "TIMESTAMP")


def _translate(call: exp.Anonymous) -> exp.Expr:
    name, args = call.name.upper(), list(call.expressions)
    arity = {**MORE_FUNCTIONS, "GETDATE": (0, 0), "URL_ENCODE": (1, 2), "CONCAT": (0, 99),
             "CONCAT_WS": (2, 99), "REGEXP_EXTRACT": (2, 3), "REGEXP_REPLACE": (3, 4),
             "REGEXP_INSTR": (2, 5), "SPLIT_PART": (3, 4), "INSTR": (2, 4), "TO_CHAR": (1, 2),
             "TO_DATE": (1, 2), "DATEADD": (3, 3), "DATEDIFF": (2, 3), "CONV": (3, 3), "HASH": (0, 99)}[name]
    if not arity[0] <= len(args) <= arity[1]:
        raise SqlError(SEMANTIC_ERROR,
                       f"{position(call)} Semantic analysis exception - function {name} cannot match "
                       f"any overloaded functions with {len(args)} arguments")
    if name == "HASH":   # MaxCompute's hash values come from its Java implementation: not reproducible
        raise SqlError(NOT_SUPPORTED, f"{position(call)} Semantic analysis exception - function HASH is "
                       "not supported by the local MaxCompute server")
    if name in MORE_FUNCTIONS:
        return translate_more(name, args, position(call))
    if name == "GETDATE":
        return exp.cast(_fn("current_localtimestamp"), "TIMESTAMP")
    if name == "URL_ENCODE":   # Java URLEncoder: space -> '+', '*' kept, '~' escaped
        encoded = _fn("url_encode", _varchar(args[0]))
        for old, new in (("%20", "+"), ("%2A", "*"), ("~", "%7E")):
            encoded = _fn("replace", encoded, _str(old), _str(new))
        return encoded
    if name == "CONCAT":       # NULL when any argument is NULL (DuckDB's concat skips NULLs)
        if not args:
            return exp.Null()
        result: exp.Expr = _varchar(args[0])
        for arg in args[1:]:
            result = exp.DPipe(this=result, expression=_varchar(arg), safe=True)
        return exp.paren(result) if len(args) > 1 else result
    if name == "CONCAT_WS":    # MaxCompute: NULL when any argument is NULL (Hive would skip them)
        any_null = exp.or_(*[exp.Is(this=arg.copy(), expression=exp.Null()) for arg in args])
        return exp.If(this=any_null, true=exp.Null(), false=_fn("concat_ws", *map(_varchar, args)))
    if name == "REGEXP_EXTRACT":   # default group 1; NULL when nothing matches (DuckDB gives '')
        group = args[2] if len(args) == 3 else exp.Literal.number(1)
        _literal_int(group, "the group of REGEXP_EXTRACT")
        matches = _fn("regexp_matches", args[0], args[1])
        return exp.If(this=matches, true=_fn("regexp_extract", args[0].copy(), args[1].copy(), group),
                      false=exp.Null())
    if name == "REGEXP_REPLACE":   # occurrence 0 (the default) replaces every match
        occurrence = _literal_int(args[3], "the occurrence of REGEXP_REPLACE") if len(args) == 4 else 0
        if occurrence not in (0, 1):
            raise SqlError(NOT_SUPPORTED, f"{position(call)} REGEXP_REPLACE with occurrence > 1 is "
                           "not supported by the local MaxCompute server")
        flags = [_str("g")] if occurrence == 0 else []
        return _fn("regexp_replace", args[0], args[1], args[2], *flags)
    if name == "REGEXP_INSTR":     # 1-based position of the first match, 0 when none
        if len(args) > 2:
            raise SqlError(NOT_SUPPORTED, f"{position(call)} REGEXP_INSTR with start/occurrence/option "
                           "is not supported by the local MaxCompute server")
        found = _fn("regexp_extract", args[0], args[1])
        return exp.If(this=_fn("regexp_matches", args[0].copy(), args[1].copy()),
                      true=_fn("instr", args[0].copy(), found), false=exp.Literal.number(0))
    if name == "SPLIT_PART":       # 1-based; with end, parts start..end joined by the separator
        text, sep, start = _varchar(args[0]), args[1], args[2]
        if len(args) == 3:
            part: exp.Expr = _fn("split_part", text, sep, start)
        else:
            pieces = _fn("list_slice", _fn("string_split", text, sep.copy()), start, args[3])
            part = _fn("array_to_string", pieces, sep.copy())
        # An empty separator returns the whole string (DuckDB would split into characters).
        return exp.If(this=exp.EQ(this=sep.copy(), expression=_str("")), true=text.copy(), false=part)
    if name == "INSTR":            # INSTR(s, sub[, start]): 1-based, 0 when absent
        if len(args) == 4 and _literal_int(args[3], "the nth_appearance of INSTR") != 1:
            raise SqlError(NOT_SUPPORTED, f"{position(call)} INSTR with nth_appearance > 1 is not "
                           "supported by the local MaxCompute server")
        if len(args) == 2:
            return _fn("instr", _varchar(args[0]), _varchar(args[1]))
        start = args[2]
        found = _fn("instr", _fn("substr", _varchar(args[0]), start), _varchar(args[1]))
        return exp.If(this=exp.EQ(this=found, expression=exp.Literal.number(0)),
                      true=exp.Literal.number(0),
                      false=exp.Sub(this=exp.Add(this=found.copy(), expression=start.copy()),
                                    expression=exp.Literal.number(1)))
    if name == "TO_CHAR":
        if len(args) == 1:
            return _varchar(args[0])
        fmt = strftime_format(_literal_str(args[1], "the format of TO_CHAR"))
        return _fn("strftime", _datetime(args[0]), _str(fmt))
    if name == "TO_DATE":          # TO_DATE(s, fmt) -> DATETIME; TO_DATE(s) -> DATE
        if len(args) == 1:
            return exp.cast(args[0], "DATE")
        fmt = strftime_format(_literal_str(args[1], "the format of TO_DATE"))
        return _fn("strptime", _varchar(args[0]), _str(fmt))
    if name == "DATEADD":
        unit = _date_unit(args[2])
        interval = _fn(f"to_{unit}s", exp.cast(args[1], "BIGINT" if unit != "second" else "DOUBLE"))
        return exp.Add(this=_datetime(args[0]), expression=interval)
    if name == "DATEDIFF":         # date1 - date2 in the unit (boundaries crossed, like truncation)
        unit = _date_unit(args[2]) if len(args) == 3 else "day"
        return _fn("date_diff", _str(unit), _datetime(args[1]), _datetime(args[0]))
    if name == "CONV":             # CONV(number-as-string, from_base, to_base), bases 2..36
        source, to_base = _literal_int(args[1], "from_base"), _literal_int(args[2], "to_base")
        if source not in (2, 8, 10, 16) or to_base not in (2, 10, 16):
            raise SqlError(NOT_SUPPORTED, f"{position(call)} CONV between base {source} and {to_base} "
                           "is not supported by the local MaxCompute server")
        digits = _varchar(args[0])
        number: exp.Expr = (exp.cast(digits, "BIGINT") if source == 10 else exp.cast(
            exp.DPipe(this=_str({2: "0b", 8: "0o", 16: "0x"}[source]), expression=digits), "BIGINT"))
        if to_base == 10:
            return _varchar(number)
        return _fn("upper", _fn("bin" if to_base == 2 else "hex", number))
    raise AssertionError(name)


def translate(tree: exp.Expr) -> exp.Expr:
    """Rewrite MaxCompute built-ins and literals into DuckDB expressions with MaxCompute semantics."""
    def rewrite(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Anonymous) and node.name.upper() in _OWN_FUNCTIONS:
            return _translate(node)
        if isinstance(node, exp.Literal) and not node.is_string and not node.is_int:
            # MaxCompute's 1.5 is a DOUBLE; DuckDB would make it DECIMAL(2,1).
            if not isinstance(node.parent, exp.DataTypeParam):
                return exp.cast(node.copy(), "DOUBLE")
        if isinstance(node, (exp.Floor, exp.Ceil)) and not node.args.get("decimals") and not (
                isinstance(node.parent, exp.Cast) and node.parent.to.is_type("bigint")):
            return exp.cast(node.copy(), "BIGINT")   # MaxCompute's FLOOR/CEIL return BIGINT
        if isinstance(node, (exp.Cast, exp.TryCast)) and node.to.is_type(*exp.DataType.INTEGER_TYPES):
            # Java semantics: a fractional value cast to an integer truncates (DuckDB rounds).
            source = node.this.type  # set by annotate_types before the rewrite
            if source is not None and source.is_type(*exp.DataType.REAL_TYPES):
                node.set("this", _fn("trunc", node.this))
        return node

    return tree.transform(rewrite, copy=False)


def iter_partition_spec(partition: exp.Expr) -> Iterator[tuple[str, exp.Expr | None]]:
    """(column, value expression or None for a dynamic column) of a ``PARTITION (...)`` clause."""
    for item in partition.expressions:
        if isinstance(item, exp.EQ):
            yield item.this.name.lower(), item.expression
        elif isinstance(item, (exp.Column, exp.Identifier, exp.Var)):
            yield item.name.lower(), None
        else:
            raise SqlError(PARSE_ERROR, f"{position(item)} Parse exception - invalid partition spec "
                           f"{item.sql('hive')}")


def partition_value(node: exp.Expr) -> str:
    if isinstance(node, exp.Literal):
        return node.name
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal) and not node.this.is_string:
        return f"-{node.this.name}"
    raise SqlError(PARSE_ERROR, f"{position(node)} Parse exception - a partition value must be a constant")


_INTEGERS = ("TINYINT", "SMALLINT", "INT", "BIGINT")
_STRINGS = ("STRING", "VARCHAR", "CHAR")
_NUMBERS = (*_INTEGERS, "FLOAT", "DOUBLE", "DECIMAL")
_TIMES = ("DATETIME", "TIMESTAMP", "DATE")


def conjuncts(node: exp.Expr | None) -> list[exp.Expr]:
    if node is None:
        return []
    return list(node.flatten()) if isinstance(node, exp.And) else [node]


def _base(odps_type: str) -> str:
    return odps_type.split("(")[0]


def insertable(source: str, target: str) -> bool:
    """MaxCompute's implicit conversions on INSERT: widening and to/from STRING, never lossy."""
    source, target = _base(source), _base(target)
    if source == target:
        return True
    if target in _STRINGS:
        return source in (*_STRINGS, *_NUMBERS, *_TIMES)
    if target in _INTEGERS:
        return source in _STRINGS or (source in _INTEGERS and
                                      _INTEGERS.index(source) <= _INTEGERS.index(target))
    if target in ("FLOAT", "DOUBLE", "DECIMAL"):
        return source in (*_STRINGS, *_NUMBERS)
    if target in _TIMES:
        return source in (*_STRINGS, *_TIMES)
    return False


def partition_predicates(node: exp.Table, keys: set[str]) -> tuple[list[exp.Expr], bool]:
    """(conjuncts that may prune the partitions of table ``node`` with partition columns ``keys``,
    whether any partition predicate exists).

    A conjunct counts when every column in it is a partition column of this table. WHERE conjuncts
    prune a table unless an outer join may NULL-extend it (pruning would then change the result);
    ON conjuncts prune the joined table of an inner or left join.
    """
    holder = node.parent
    select = holder.parent if isinstance(holder, (exp.From, exp.Join)) else None
    if not isinstance(select, exp.Select):
        return [], False
    alias = node.alias_or_name

    def on_partitions(conjunct: exp.Expr) -> bool:
        columns = list(conjunct.find_all(exp.Column))
        return bool(columns) and not conjunct.find(exp.Query, exp.AggFunc, exp.Window) and all(
            c.table == alias and c.name in keys for c in columns)

    joins = select.args.get("joins") or []
    mine = holder if isinstance(holder, exp.Join) else None
    index = joins.index(mine) if mine is not None else -1
    null_extended = bool(mine is not None and mine.side in ("LEFT", "FULL")) or any(
        j.side in ("RIGHT", "FULL") for j in joins[index + 1:])
    where = [c for c in conjuncts(select.args.get("where") and select.args["where"].this)
             if on_partitions(c)]
    on = [c for c in conjuncts(mine.args.get("on")) if on_partitions(c)] if mine is not None else []
    prune = ([] if null_extended else where) + (on if mine is not None and mine.side in ("", "LEFT")
                                                 else [])
    return prune, bool(where or on)


def exact_spec(prune: list[exp.Expr], partition_columns: tuple[Column, ...]) -> dict[str, str] | None:
    """The single partition the conjuncts pin with ``col = 'literal'``, if they pin every column."""
    spec: dict[str, str] = {}
    for conjunct in prune:
        if isinstance(conjunct, exp.EQ):
            column, value = conjunct.this, conjunct.expression
            if isinstance(value, exp.Column):
                column, value = value, column
            if isinstance(column, exp.Column) and isinstance(value, exp.Literal) and value.is_string:
                if spec.get(column.name, value.name) != value.name:
                    return None
                spec[column.name] = value.name
    names = [c.name for c in partition_columns]
    types_ok = all(c.type == "STRING" for c in partition_columns)
    return {n: spec[n] for n in names} if types_ok and set(spec) == set(names) else None

