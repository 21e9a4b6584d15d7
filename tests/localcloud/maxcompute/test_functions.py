"""The string built-ins the inventory route's SQL uses, against the examples in MaxCompute's function
reference (URL_DECODE, REGEXP_EXTRACT, SPLIT_PART, MD5, SUBSTR, LENGTH/LENGTHB, TOLOWER/TOUPPER, ...)."""

from __future__ import annotations

import hashlib

import pytest

from localcloud.maxcompute.errors import SqlError
from localcloud.maxcompute.sql import SqlEngine
from localcloud.maxcompute.store import MaxComputeStore


@pytest.fixture(scope="module")
def engine(tmp_path_factory) -> SqlEngine:
    store = MaxComputeStore(tmp_path_factory.mktemp("functions"))
    store.create_project("p")
    return SqlEngine(store)


def value(engine: SqlEngine, expression: str):
    return engine.execute("p", f"SELECT {expression}").table.column(0)[0].as_py()


@pytest.mark.parametrize("expression, expected", [
    # URL_DECODE: form decoding, UTF-8 by default ('+' is a space, %2B a plus); NULL in, NULL out
    ("URL_DECODE('%E7%A4%BA%E4%BE%8Bfor+url_decode%3A%2F%2F+%28fdsf%29')", "示例for url_decode:// (fdsf)"),
    ("URL_DECODE('c%2Bd+e%20f', 'UTF-8')", "c+d e f"),
    ("URL_DECODE('%F0%9F%98%80')", "😀"),
    ("URL_DECODE(NULL)", None),
    ("URL_DECODE('a', NULL)", None),
    # REGEXP_EXTRACT: group 1 by default, 0 the whole match, NULL when nothing matches
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 1)", "the"),
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 2)", "bar"),
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)', 0)", "foothebar"),
    ("REGEXP_EXTRACT('foothebar', 'foo(.*?)(bar)')", "the"),
    ("REGEXP_EXTRACT('foothebar', 'x(y)')", None),
    ("REGEXP_SUBSTR('I love aliyun very much', 'a[[:alpha:]]{5}')", "aliyun"),
    ("REGEXP_SUBSTR('abc', 'x')", None),
    ("REGEXP_REPLACE('abcd', '[bc]', 'x')", "axxd"),
    ("REGEXP_INSTR('i love www.taobao.com', 'o[[:alpha:]]{1}')", 4),
    ("'a+b' RLIKE 'a\\\\+b'", True),
    # SPLIT_PART: 1-based; with an end, the parts joined; out of range ''
    ("SPLIT_PART('a,b,c,d', ',', 1)", "a"),
    ("SPLIT_PART('a,b,c,d', ',', 1, 2)", "a,b"),
    ("SPLIT_PART('a,b,c,d', ',', 10)", ""),
    ("SPLIT_PART('a/b/c', '', 1)", "a/b/c"),
    # MD5 (lower-case hex), SUBSTR (1-based, negative from the end), LENGTH (characters) vs LENGTHB (bytes)
    ("MD5('Tech on the net')", hashlib.md5(b"Tech on the net").hexdigest()),
    ("SUBSTR('abc', 2)", "bc"),
    ("SUBSTR('abc', 2, 1)", "b"),
    ("SUBSTR('abc', -2, 2)", "bc"),
    ("LENGTH('Tech on the net')", 15),
    ("LENGTH('日本😀')", 3),
    ("LENGTHB('日本😀')", 10),
    ("TOLOWER('aBcD')", "abcd"),
    ("TOUPPER('aBcD')", "ABCD"),
    ("LOWER('AbC')", "abc"),
    ("INSTR('Tech on the net', 'e')", 2),
    ("INSTR('Tech on the net', 'e', 3)", 11),
    ("REVERSE('I love aliyun very much')", "hcum yrev nuyila evol I"),
    ("CONCAT('ab', NULL)", None),
    ("CONCAT('ab', 'c')", "abc"),
    ("COALESCE(NULL, 'x')", "x"),
    ("IF(1 > 2, 'a', 'b')", "b"),
    ("CASE WHEN 1 = 1 THEN 'y' END", "y"),
])
def test_documented_examples(engine, expression, expected):
    assert value(engine, expression) == expected


def test_gbk_is_refused_by_name(engine):
    with pytest.raises(SqlError, match="charset 'GBK'"):
        value(engine, "URL_DECODE('a', 'GBK')")
