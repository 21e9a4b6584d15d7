"""The primary-key form of the HA query clause: ``query=id:'10031' OR id:'10032'``.

Why: after pushing documents (the data plane push API) a client must be able to ask "which of these
primary keys are in the index now, and with which fields?", without an image to search with. HA
syntax has term queries for that: ``<index>:'<value>'`` on the table's primary-key index
(``PRIMARYKEY64``), several of them joined by `` OR ``. This module reads and writes that form;
:mod:`pipeline.opensearch.ha.grammar` decides which form a query clause has and builds whole queries
(:func:`~pipeline.opensearch.ha.grammar.build_pk_lookup_query`).

The form (ours, stricter than Havenask's full query language):

* one or more terms ``<index>:'<value>'`` separated by `` OR `` (upper case, whitespace around it);
  no parentheses, no ``AND``, no other operators;
* ``<index>`` is an identifier; the server requires it to be the primary-key index's name;
* ``<value>`` is the key as text: it may not hold a quote or ``&`` (``&`` is how a vector term starts
  its parameters) and may not be empty; an INT64 key is its decimal digits;
* at most :data:`MAX_PK_TERMS` terms (ours; the cloud's limit is not documented).

A term on the index named ``vector`` is never read as a key term: ``vector`` is the vector index's
name in the vendor's examples and our default, so ``vector:'helmet'`` stays a vector term that lacks
``&modal=..&n=..`` and is refused as one. Whether the cloud answers primary-key term queries of this
shape exactly like the local server does is unverified.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.opensearch.ha.errors import ERROR_QUERY_CLAUSE, HaQueryError, excerpt

__all__ = ["MAX_PK_TERMS", "PkLookup", "PkTerm", "format_pk_lookup", "parse_pk_lookup"]

MAX_PK_TERMS = 1000
VECTOR_INDEX_DEFAULT = "vector"  # a term on this index is a vector term (see the module docstring)

_TERM_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*):'([^'&]*)'")
_OR_RE = re.compile(r"\s+OR\s+")
_OTHER_SEPARATOR_RE = re.compile(r"\s*(?:(\S{1,8})\s+)?")


@dataclass(frozen=True)
class PkTerm:
    """One ``<index>:'<value>'`` term; ``value`` is the key as sent (text)."""

    index: str
    value: str


@dataclass(frozen=True)
class PkLookup:
    """A query clause of primary-key terms joined by ``OR``, in the order given (duplicates kept)."""

    terms: tuple[PkTerm, ...]

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(t.value for t in self.terms)


def parse_pk_lookup(clause: str) -> PkLookup | None:
    """The terms of ``clause`` if it is in the primary-key form, else None (then it is a vector term, or
    nothing valid: the vector parser says why). Raises :class:`HaQueryError` for a clause that is in
    this form but breaks one of its rules (an empty value, too many terms)."""
    text = clause.strip()
    terms: list[PkTerm] = []
    position = 0
    while True:
        match = _TERM_RE.match(text, position)
        if match is None:
            return None
        terms.append(PkTerm(match.group(1), match.group(2)))
        position = match.end()
        if position == len(text):
            break
        separator = _OR_RE.match(text, position)
        if separator is None:
            other = _OTHER_SEPARATOR_RE.match(text, position)
            if other is not None and _TERM_RE.match(text, other.end()):
                joined = f"not {excerpt(other.group(1))}" if other.group(1) else "they may not simply follow each other"
                raise HaQueryError(ERROR_QUERY_CLAUSE, f"primary-key terms are joined by ' OR ' (upper case), {joined}: "
                                   "AND and other operators are not supported")
            return None
        position = separator.end()
    if any(t.index == VECTOR_INDEX_DEFAULT for t in terms):
        return None
    empty = next((t for t in terms if not t.value), None)
    if empty is not None:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"primary-key term {empty.index}:'' has an empty value")
    if len(terms) > MAX_PK_TERMS:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"{len(terms)} primary-key terms in {excerpt(text)}: at most "
                           f"{MAX_PK_TERMS} per query")
    return PkLookup(tuple(terms))


def format_pk_lookup(lookup: PkLookup) -> str:
    """The query clause's value: ``id:'1' OR id:'2'``."""
    return " OR ".join(f"{t.index}:'{t.value}'" for t in lookup.terms)
