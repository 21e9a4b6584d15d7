"""The primary-key form of the HA query clause (``query=id:'1' OR id:'2'``): parse, build, round-trip.

Why: the pipeline's push client checks which pushed documents are in the index by primary key, and the
local server answers those queries; both sides read the one grammar, so what the client builds must
parse back to exactly what it meant, and what it cannot mean must be refused before it is sent.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from pipeline.opensearch.ha.errors import ERROR_QUERY_CLAUSE, HaQueryError
from pipeline.opensearch.ha.grammar import (
    build_ha_query,
    build_pk_lookup_query,
    format_ha_query,
    parse_ha_query,
)
from pipeline.opensearch.ha.pk import MAX_PK_TERMS, PkLookup, PkTerm


def test_the_builder_writes_the_documented_shape_and_it_parses_back() -> None:
    text = build_pk_lookup_query("id", [10031, 10032], "general")
    assert text == ("config=start:0,hit:2,format:json,fetch_summary_type:pk"
                    "&&query=id:'10031' OR id:'10032'&&cluster=general")
    query = parse_ha_query(text)
    assert query.vector is None
    assert query.pk_lookup == PkLookup((PkTerm("id", "10031"), PkTerm("id", "10032")))
    assert query.pk_lookup.values == ("10031", "10032")
    assert (query.config.start, query.config.hit, query.config.extra) == (0, 2, {"fetch_summary_type": "pk"})
    assert query.cluster == "general"
    assert format_ha_query(query) == text
    assert "cluster" not in build_pk_lookup_query("id", [1])


def test_string_keys_and_extra_config_round_trip() -> None:
    values = ["sku-1", "a b OR c", "汉字", "x" * 200]
    text = build_pk_lookup_query("sku", values, config_extra={"qrs_chain": "search"})
    query = parse_ha_query(text)
    assert query.pk_lookup is not None and list(query.pk_lookup.values) == values
    assert query.config.extra == {"fetch_summary_type": "pk", "qrs_chain": "search"}
    assert parse_ha_query(format_ha_query(query)) == query


def test_random_keys_round_trip() -> None:
    rng = random.Random(7)
    for _ in range(200):
        values: list[Any] = [rng.choice([rng.randint(-2**63, 2**63 - 1), f"k{rng.randint(0, 10**6)}"])
                             for _ in range(rng.randint(1, 30))]
        query = parse_ha_query(build_pk_lookup_query("pk_index", values, "general"))
        assert query.pk_lookup is not None and list(query.pk_lookup.values) == [str(v) for v in values]


def test_the_console_bare_form_and_a_single_term_are_lookups() -> None:
    query = parse_ha_query("id:'10031'&&cluster=general")
    assert query.pk_lookup == PkLookup((PkTerm("id", "10031"),)) and query.vector is None
    assert parse_ha_query("query= id:'1'  OR   id:'2' ").pk_lookup.values == ("1", "2")  # type: ignore[union-attr]


def test_vector_queries_are_unchanged() -> None:
    query = parse_ha_query(build_ha_query(b"\x89PNG", modal="image"))
    assert query.pk_lookup is None and query.vector is not None and query.vector.index == "vector"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("query=id:'' OR id:'1'", "empty value"),
        ("query=id:'1' or id:'2'", "joined by ' OR ' (upper case), not 'or'"),
        ("query=id:'1' AND id:'2'", "not 'AND'"),
        ("query=id:'1' id:'2'", "may not simply follow each other"),
        ("query=id:'1' OR", "nor primary-key terms"),
        ("query=id:'1' OR id:'2", "nor primary-key terms"),
        ("query=id:1", "nor primary-key terms"),
        ("query=(id:'1' OR id:'2')", "nor primary-key terms"),
        ("query=vector:'helmet'", "no &modal"),  # the vector index's name keeps its vector reading
        ("query=id:'1' OR vector:'helmet'", "unexpected quote"),
        ("query=" + " OR ".join(f"id:'{i}'" for i in range(MAX_PK_TERMS + 1)), f"at most {MAX_PK_TERMS}"),
    ],
)
def test_malformed_lookups_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(HaQueryError) as info:
        parse_ha_query(text)
    assert info.value.code == ERROR_QUERY_CLAUSE, str(info.value)
    assert fragment in info.value.message, str(info.value)


def test_the_cap_is_inclusive() -> None:
    query = parse_ha_query(build_pk_lookup_query("id", list(range(MAX_PK_TERMS))))
    assert query.pk_lookup is not None and len(query.pk_lookup.terms) == MAX_PK_TERMS
    assert query.config.hit == MAX_PK_TERMS


@pytest.mark.parametrize(
    ("index", "values", "fragment"),
    [
        ("id", [], "1..1000"),
        ("id", list(range(MAX_PK_TERMS + 1)), "1..1000"),
        ("id", "123", "not one string"),
        ("id", [True], "int or a str"),
        ("id", [1.5], "int or a str"),
        ("id", [""], "non-empty"),
        ("id", ["it's"], "without quotes"),
        ("id", ["a&b"], "'&'"),
        ("id", [" 1"], "surrounding whitespace"),
        ("id", ["a\nb"], "printable"),
        ("vector", [1], "always read as the vector index"),
        ("1d", [1], "identifier"),
        ("id x", [1], "identifier"),
    ],
)
def test_the_builder_refuses_what_it_cannot_send(index: str, values: Any, fragment: str) -> None:
    with pytest.raises(HaQueryError) as info:
        build_pk_lookup_query(index, values)
    assert fragment in info.value.message, str(info.value)
