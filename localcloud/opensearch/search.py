"""Answer one parsed HA query from one index generation, the way OpenSearch's vector search does.

Why a module of its own: the engine (:mod:`localcloud.opensearch.engine`) owns generations and builds;
this is the read path, small enough to check against the vendor's documented behaviour line by line:

* ``query=<index>:'<content>&modal=image&n=N'``: embed the decoded image, take the ``N`` nearest
  documents (cosine over unit vectors), then apply ``filter``, then ``sort``, then ``start``/``hit``.
  ``totalHits`` counts the candidates that pass the filter; ``numHits`` the items returned.
* ``RANK`` (``proxima_score``) follows the vector index's ``distance_type``: ``SquaredEuclidean``
  scores ``2 - 2*cos`` (a distance, lower is better: ``sort=+RANK`` is best first, as in the vendor's
  image examples); ``InnerProduct`` scores ``cos`` (higher is better: ``sort=-RANK``). The sign is
  honoured literally; without a sort clause the best match comes first.
* ``query=<pk index>:'<value>' OR <pk index>:'<value>' ...`` (primary-key terms): the documents with
  those keys, in the order the terms name them (each once; keys not in the index are simply not
  there), then ``filter``, ``sort``, ``start``/``hit`` as above. Every term must name the
  primary-key index (its ``PRIMARYKEY64`` name), else error 1013; an INT64 key must be an integer
  (else 1051). Without a sort clause the items carry no ``sortExprValues`` (there is no score).
  Whether the cloud answers such term queries exactly like this is unverified.
* The generation may be the live one with its realtime layer over it (pushed documents,
  :mod:`localcloud.opensearch.realtime`): the read path sees only :class:`Generation`'s methods.
* ``modal=text`` asks the vectorizer for a text vector; the offline descriptor has none, so the
  answer is an HA error carrying its explanation. Never invented results.
* Items carry ``fields`` (the summary: every stored field as a string, the primary key among them)
  and ``sortExprValues`` (one value per sort key, or the score, as strings). As in Havenask, a query
  has two phases: the search finds documents by docid in one generation, then the summaries are
  fetched, by ``config`` ``fetch_summary_type``: ``docid`` (the default) or ``pk``/``rawpk`` (by
  primary key). If the generation switched between the phases (``summary_from``), a docid means
  nothing there: those hits come back without fields and the answer carries error 10010
  ``ERROR_QRS_SUMMARY_LACK``; by primary key they are found. ``no_summary:yes`` skips the summaries.
  ``qrs_chain`` must name a chain the instance has (``search``, ``DEFAULT``), else error 10005.

Error codes are Havenask's (``ErrorDefine.ed``), as :mod:`pipeline.opensearch.ha.errors` defines them; the ones
added here: 1001 unknown cluster, 1013 unknown vector index, 2000 unknown attribute in filter/sort,
2001 literal of the wrong type, 2100 unsupported ``formula``, 1051 undecodable query image, 3500
``ERROR_ANALYZER_NOT_EXIST`` for text queries (the text "analyzer" of a vector index is its text
encoder, which is missing offline), 8000 SQL queries, 10005 unknown ``qrs_chain``, 10010 summaries lacking, 10017 an internal error.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from localcloud.opensearch.schema import FLOAT_TYPES, INTEGER_TYPES, FieldSpec, TableSchema
from localcloud.opensearch.vectorizer import ImageDecodeError, TextVectorizationUnavailable, Vectorizer, cosine_top_k
from pipeline.opensearch.ha.errors import ERROR_QUERY_CLAUSE
from pipeline.opensearch.ha.filter import And, Comparison, FilterExpr, Or, compile_filter
from pipeline.opensearch.ha.grammar import HaQuery, HaQueryError
from pipeline.opensearch.ha.pk import PkLookup

__all__ = [
    "Generation",
    "HaSearchError",
    "LiveGeneration",
    "search_generation",
    "empty_result",
    "error_result",
    "ERROR_CLUSTER_NAME_NOT_EXIST",
    "ERROR_INDEX_NOT_EXIST",
    "ERROR_ATTRIBUTE_NOT_EXIST",
    "ERROR_EXPRESSION_LR_TYPE_NOT_MATCH",
    "ERROR_FUNCTION_NOT_DEFINED",
    "ERROR_TEXT_ENCODER_UNAVAILABLE",
    "ERROR_SQL_NOT_SUPPORTED",
    "ERROR_INTERNAL",
    "ERROR_QRS_NOT_FOUND_CHAIN",
    "ERROR_QRS_SUMMARY_LACK",
    "QRS_CHAINS",
]

ERROR_CLUSTER_NAME_NOT_EXIST: Final = 1001
ERROR_INDEX_NOT_EXIST: Final = 1013
ERROR_ATTRIBUTE_NOT_EXIST: Final = 2000
ERROR_EXPRESSION_LR_TYPE_NOT_MATCH: Final = 2001
ERROR_FUNCTION_NOT_DEFINED: Final = 2100
ERROR_TEXT_ENCODER_UNAVAILABLE: Final = 3500  # Havenask ERROR_ANALYZER_NOT_EXIST
ERROR_SQL_NOT_SUPPORTED: Final = 8000  # Havenask ERROR_SQL_INIT_REQUEST
ERROR_INTERNAL: Final = 10017  # Havenask ERROR_QRS_PROCESSOR_EXCEPTION
ERROR_QRS_NOT_FOUND_CHAIN: Final = 10005
ERROR_QRS_SUMMARY_LACK: Final = 10010
QRS_CHAINS: Final = ("search", "DEFAULT")  # the vendor's example uses search; DEFAULT is Havenask's default

_NAMES: Final[dict[int, str]] = {
    ERROR_CLUSTER_NAME_NOT_EXIST: "ERROR_CLUSTER_NAME_NOT_EXIST",
    ERROR_INDEX_NOT_EXIST: "ERROR_INDEX_NOT_EXIST",
    ERROR_ATTRIBUTE_NOT_EXIST: "ERROR_ATTRIBUTE_NOT_EXIST",
    ERROR_EXPRESSION_LR_TYPE_NOT_MATCH: "ERROR_EXPRESSION_LR_TYPE_NOT_MATCH",
    ERROR_FUNCTION_NOT_DEFINED: "ERROR_FUNCTION_NOT_DEFINED",
    ERROR_TEXT_ENCODER_UNAVAILABLE: "ERROR_ANALYZER_NOT_EXIST",
    ERROR_SQL_NOT_SUPPORTED: "ERROR_SQL_INIT_REQUEST",
    ERROR_INTERNAL: "ERROR_QRS_PROCESSOR_EXCEPTION",
    ERROR_QRS_NOT_FOUND_CHAIN: "ERROR_QRS_NOT_FOUND_CHAIN",
    ERROR_QRS_SUMMARY_LACK: "ERROR_QRS_SUMMARY_LACK",
}
_FORMULA_RE = re.compile(r"\s*proxima_score\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*\Z")
_BY_PRIMARY_KEY: Final = frozenset({"pk", "rawpk"})


class HaSearchError(HaQueryError):
    """An HA error raised while answering (not parsing) a query; knows the extra code names."""

    @property
    def name(self) -> str:
        return _NAMES.get(self.code) or super().name


class Generation(Protocol):
    """What the read path needs of a generation: rows (docids) with vectors and stored fields."""

    @property
    def generation_id(self) -> int | None: ...

    @property
    def size(self) -> int:
        """How many documents a query can find."""
        ...

    def top_k(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The rows of the ``k`` documents most cosine-similar to ``query``, best first, and the cosines."""
        ...

    def fields(self, row: int) -> dict[str, Any]:
        """The stored fields of the document at ``row``."""
        ...

    def row_of(self, primary_key: str, value: Any) -> int | None:
        """The row of the document whose ``primary_key`` field is ``value`` (None: there is none)."""
        ...


@dataclass(frozen=True)
class LiveGeneration:
    """One switched-in generation, in memory: vectors (N, 512) and the stored fields, row-aligned."""

    generation_id: int
    vectors: np.ndarray
    columns: Mapping[str, list[Any]]
    _pk_rows: dict[str, dict[Any, int]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(self.vectors.shape[0])

    def top_k(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return cosine_top_k(self.vectors, query, k)

    def fields(self, row: int) -> dict[str, Any]:
        return {name: values[row] for name, values in self.columns.items()}

    def row_of(self, primary_key: str, value: Any) -> int | None:
        rows = self._pk_rows.get(primary_key)
        if rows is None:  # built once, on first use (two threads may both build it: same result)
            rows = {pk: i for i, pk in enumerate(self.columns[primary_key])}
            self._pk_rows[primary_key] = rows
        return rows.get(value)


def empty_result(searchtime: float = 0.0, covered: float = 100.0) -> dict[str, Any]:
    return {"searchtime": searchtime, "totalHits": 0, "numHits": 0, "coveredPercent": covered, "items": []}


def error_result(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """The HA JSON body of a query that failed: an empty result and the errors."""
    return {"result": empty_result(covered=0.0), "errors": errors}


def _format(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_filter(expr: FilterExpr | None, attrs: Mapping[str, FieldSpec]) -> None:
    if expr is None:
        return
    if isinstance(expr, (And, Or)):
        for operand in expr.operands:
            _check_filter(operand, attrs)
        return
    spec = attrs.get(expr.field)
    if spec is None:
        raise HaSearchError(ERROR_ATTRIBUTE_NOT_EXIST,
                            f"filter field {expr.field!r} is not an attribute of this table "
                            f"(attributes: {sorted(attrs)})")
    numeric = spec.type in INTEGER_TYPES or spec.type in FLOAT_TYPES
    if not numeric:
        return
    literals = [expr.value] if isinstance(expr, Comparison) else list(expr.values)
    for literal in literals:
        if isinstance(literal, str) and not _is_number(literal):
            raise HaSearchError(ERROR_EXPRESSION_LR_TYPE_NOT_MATCH,
                                f"filter compares {spec.type} field {expr.field!r} with the non-numeric {literal!r}")


def _query_vector(query: HaQuery, vectorizer: Vectorizer) -> np.ndarray:
    vq = query.vector
    if vq.modal == "text":
        try:
            return vectorizer.embed_text(vq.text or vq.content)
        except TextVectorizationUnavailable as exc:
            raise HaSearchError(ERROR_TEXT_ENCODER_UNAVAILABLE, f"modal=text is not available here: {exc}") from None
    try:
        return vectorizer.embed_image(vq.image_bytes or b"")
    except ImageDecodeError as exc:
        raise HaSearchError(ERROR_QUERY_CLAUSE, f"modal=image content is not a decodable image: {exc}") from None


def _pk_rows(schema: TableSchema, live: Generation | None, lookup: PkLookup) -> list[int]:
    """The rows of the documents the primary-key terms name, in term order, each once."""
    pk_index, pk_type = schema.primary_key_index, schema.field(schema.primary_key).type  # type: ignore[union-attr]
    keys: list[Any] = []
    for term in lookup.terms:
        if term.index != pk_index:
            why = (f"{term.index!r} is the vector index: a vector term needs <content>&modal=..&n=.."
                   if term.index in (schema.vector_index.index_name, schema.vector_field) else
                   f"index {term.index!r} does not exist")
            raise HaSearchError(ERROR_INDEX_NOT_EXIST, f"{why}; a term query here names the primary-key index "
                                f"{pk_index!r}, e.g. {pk_index}:'10031' OR {pk_index}:'10032'")
        if pk_type in INTEGER_TYPES:
            if not re.fullmatch(r"-?[0-9]{1,19}", term.value) or not -2**63 <= int(term.value) < 2**63:
                raise HaSearchError(ERROR_QUERY_CLAUSE, f"primary-key value {term.value[:40]!r} is not an integer: "
                                    f"{schema.primary_key!r} is {pk_type}")
            keys.append(int(term.value))
        else:
            keys.append(term.value)
    if live is None:
        return []
    rows: dict[int, None] = {}
    for key in keys:
        row = live.row_of(schema.primary_key, key)
        if row is not None:
            rows.setdefault(row)
    return list(rows)


def _vector_candidates(schema: TableSchema, live: Generation | None, query: HaQuery,
                       vectorizer: Vectorizer) -> Iterable[tuple[int, float]]:
    """The ``n`` nearest rows to the query's vector with their scores (RANK), best first."""
    index, vq = schema.vector_index, query.vector
    assert vq is not None
    if vq.index not in (index.index_name, schema.vector_field):
        raise HaSearchError(ERROR_INDEX_NOT_EXIST,
                            f"index {vq.index!r} does not exist; the vector index is {index.index_name!r}")
    formula = query.kvpairs.get("formula")
    if formula is not None:
        match = _FORMULA_RE.match(formula)
        if match is None or match.group(1) not in (index.index_name, schema.vector_field):
            raise HaSearchError(ERROR_FUNCTION_NOT_DEFINED, f"formula {formula[:80]!r} is not supported; "
                                f"use formula:proxima_score({schema.vector_field})")
    qvec = _query_vector(query, vectorizer)
    if live is None or live.size == 0:
        return []
    rows, cosines = live.top_k(qvec, vq.n)
    if index.higher_is_better:
        scores = cosines.astype(np.float64)
    else:
        scores = np.maximum(0.0, 2.0 - 2.0 * cosines.astype(np.float64))
    return zip(rows.tolist(), scores.tolist())


def search_generation(
    schema: TableSchema, live: Generation | None, query: HaQuery, vectorizer: Vectorizer,
    summary_from: Generation | None = None,
) -> dict[str, Any]:
    """The HA JSON result of ``query`` over ``live`` (None: nothing built yet, 0 hits); summaries are
    fetched from ``summary_from`` (default ``live``: the generation did not switch between the phases)."""
    started = time.perf_counter()
    chain = query.config.extra.get("qrs_chain")
    if chain is not None and chain not in QRS_CHAINS:
        raise HaSearchError(ERROR_QRS_NOT_FOUND_CHAIN, f"Not found chain: qrs_chain {chain[:40]!r}; this instance "
                            f"has {list(QRS_CHAINS)}")
    attrs = {f.name: f for f in schema.stored_fields}
    for key in query.sort:
        if key.field != "RANK" and key.field not in attrs:
            raise HaSearchError(ERROR_ATTRIBUTE_NOT_EXIST,
                                f"sort field {key.field!r} is neither RANK nor an attribute ({sorted(attrs)})")
    _check_filter(query.filter, attrs)
    if query.pk_lookup is not None:
        candidates: Iterable[tuple[int, float]] = [(row, 0.0) for row in _pk_rows(schema, live, query.pk_lookup)]
    else:
        candidates = _vector_candidates(schema, live, query, vectorizer)
    if live is None or live.size == 0:
        return {"result": empty_result(round(time.perf_counter() - started, 6)), "errors": []}
    accept = compile_filter(query.filter)
    hits: list[tuple[dict[str, Any], float, int]] = []
    for row, score in candidates:
        stored = live.fields(row)
        doc = {name: stored.get(name) for name in attrs}
        if accept(doc):
            hits.append((doc, score, row))
    # cosine_top_k gives best first; stable sorts by the keys, last key first, keep that for ties.
    for key in reversed(query.sort):
        if key.field == "RANK":
            hits.sort(key=lambda hit: hit[1], reverse=key.descending)
        else:
            name = key.field
            hits.sort(key=lambda hit: (hit[0][name] is None, hit[0][name]), reverse=key.descending)
    page = hits[query.config.start : query.config.start + query.config.hit]
    summaries = _summaries(schema, live, summary_from or live, page, query)
    items = []
    for (doc, score, _row), fields in zip(page, summaries):
        if query.sort:
            sort_values = [_format(score if k.field == "RANK" else doc[k.field]) for k in query.sort]
        else:
            sort_values = [_format(score)] if query.pk_lookup is None else []
        items.append({"fields": fields or {}, "sortExprValues": sort_values})
    lacking = sum(1 for fields in summaries if fields is None)
    errors = [{"code": ERROR_QRS_SUMMARY_LACK, "message": f"ERROR_QRS_SUMMARY_LACK: Lack of summary: {lacking} of "
               f"{len(page)} hits, fetched by docid from generation {summary_from.generation_id}, which replaced "
               f"generation {live.generation_id} between the query's phases; fetch_summary_type:pk fetches by "
               "primary key"}] if lacking and summary_from is not None else []
    result = {
        "searchtime": round(time.perf_counter() - started, 6),
        "totalHits": len(hits),
        "numHits": len(items),
        "coveredPercent": 100.0,
        "items": items,
    }
    return {"result": result, "errors": errors}


def _summaries(
    schema: TableSchema, live: Generation, summary_from: Generation,
    page: list[tuple[dict[str, Any], float, int]], query: HaQuery,
) -> list[dict[str, str] | None]:
    """Phase two: each hit's summary fields (None: lacking), from the generation live at that moment."""
    if query.config.extra.get("no_summary") == "yes":
        return [{} for _ in page]
    names = [f.name for f in schema.stored_fields]
    if summary_from is live:
        rows: list[int | None] = [row for _doc, _score, row in page]
    elif query.config.extra.get("fetch_summary_type") in _BY_PRIMARY_KEY:
        rows = [summary_from.row_of(schema.primary_key, doc[schema.primary_key]) for doc, _score, _row in page]
    else:  # a docid of one generation names nothing in another
        rows = [None for _ in page]
    summaries: list[dict[str, str] | None] = []
    for row in rows:
        stored = None if row is None else summary_from.fields(row)
        summaries.append(None if stored is None else {n: _format(stored.get(n)) for n in names})
    return summaries
