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
  Or instead primary-key terms ``<pk index>:'<value>' OR <pk index>:'<value>' ...`` (at most
  :data:`~pipeline.opensearch.ha.pk.MAX_PK_TERMS`): ``HaQuery.pk_lookup`` is set and ``vector`` is
  None; see :mod:`pipeline.opensearch.ha.pk` (built by :func:`build_pk_lookup_query`).
* ``filter``: comparisons, ``in``/``notin`` lists, ``AND``/``OR`` and parentheses; see
  :mod:`pipeline.opensearch.ha.filter`.
* ``kvpairs``: comma-separated ``key:value`` (split at the first ``:``); a repeated key: last wins.
* ``sort``: ``;``-separated keys, each ``+field`` (ascending), ``-field`` (descending) or ``field``
  (descending, HA's default); ``field`` is ``RANK`` or an attribute name. A key that starts with
  whitespace is rejected: after URL-decoding that is almost always an unencoded ``+``, and
  accepting it would silently flip ``+RANK`` to the descending default.
* ``cluster``: one cluster name, e.g. ``general``.

Limits (ours, documented): ``n`` in 1..:data:`MAX_N`; ``hit`` in 0..:data:`MAX_HIT`;
``start + hit`` at most :data:`MAX_START_PLUS_HIT` (borrowed from OpenSearch Industry Algorithm
Edition's documented start+hit limit; Havenask's own limit is a configuration value).

Error codes are Havenask's own, in :mod:`pipeline.opensearch.ha.errors`; the filter clause is
:mod:`pipeline.opensearch.ha.filter`, and what may travel inside the quotes (Base64 images, text)
:mod:`pipeline.opensearch.ha.content`. :func:`parse_ha_query` raises :class:`HaQueryError` and
nothing else, whatever the input.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from pipeline.opensearch.ha.content import TEXT_SPECIAL_CHARS, decode_image_base64, text_content_is_base64
from pipeline.opensearch.ha.errors import (
    ERROR_CLUSTER_CLAUSE,
    ERROR_CONFIG_CLAUSE_FETCH_SUMMARY_TYPE,
    ERROR_CONFIG_CLAUSE_HIT_VALUE,
    ERROR_CONFIG_CLAUSE_START_VALUE,
    ERROR_CONFIG_CLAUSE_TIMEOUT,
    ERROR_EMPTY_QUERY_STRING,
    ERROR_GENERAL,
    ERROR_KEY_VALUE_PAIR,
    ERROR_NO_QUERY_CLAUSE,
    ERROR_OVER_RETURN_HITS_LIMIT,
    ERROR_PARSE_KVPAIR_CLAUSE,
    ERROR_PARSE_SYNTAX,
    ERROR_QUERY_CLAUSE,
    ERROR_SORT_CLAUSE,
    ERROR_SORT_NO_DESCRIPTION,
    ERROR_SORT_SAME_EXPRESSION,
    ERROR_UNKNOWN_CLAUSE,
    ERROR_UNSUPPORT_RESULT_FORMAT,
    HaQueryError,
    excerpt,
)
from pipeline.opensearch.ha.filter import FilterExpr, format_filter, parse_filter
from pipeline.opensearch.ha.pk import (
    MAX_PK_TERMS,
    VECTOR_INDEX_DEFAULT,
    PkLookup,
    PkTerm,
    format_pk_lookup,
    parse_pk_lookup,
)

# --- Limits (ours) --------------------------------------------------------------------------------
MAX_N = 10_000
MAX_HIT = 1_000
MAX_START_PLUS_HIT = 5_000
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
class HaQuery:
    config: HaConfig
    vector: VectorQuery | None  # None: a primary-key lookup (``pk_lookup``)
    filter: FilterExpr | None
    kvpairs: dict[str, str]
    sort: list[SortKey]
    cluster: str | None
    pk_lookup: PkLookup | None = None


# --- Clause parsers -------------------------------------------------------------------------------


def _parse_uint(value: str, code: int, what: str) -> int:
    if not _UINT_RE.match(value) or int(value) > _UINT32_MAX:
        raise HaQueryError(code, f"{what} must be an unsigned 32-bit integer, got {excerpt(value)}")
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
            raise HaQueryError(ERROR_KEY_VALUE_PAIR, f"config item {excerpt(item)} is not key:value")
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
                    f"config fetch_summary_type must be pk, docid or rawpk, got {excerpt(val)}",
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
                f"query {excerpt(value)} has no closing quote (note: '&&' separates clauses, "
                "so it cannot appear inside the quotes)",
            )
        raise HaQueryError(
            ERROR_QUERY_CLAUSE,
            f"query {excerpt(value)} is not a single vector term <index>:'<content>&modal=..&n=..' "
            "(nor primary-key terms <pk index>:'<value>' joined by ' OR ')",
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
            raise HaQueryError(ERROR_QUERY_CLAUSE, f"vector parameter {excerpt(item)} is not name=value")
        if key in params:
            raise HaQueryError(ERROR_QUERY_CLAUSE, f"vector parameter {key} is given twice")
        params[key] = val
    modal = params.pop("modal", None)
    if modal is None:
        raise HaQueryError(ERROR_QUERY_CLAUSE, "vector term lacks modal=text or modal=image")
    if modal not in ("text", "image"):
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"modal must be text or image, got {excerpt(modal)}")
    n_text = params.pop("n", None)
    if n_text is None:
        raise HaQueryError(ERROR_QUERY_CLAUSE, "vector term lacks n=<top-n>")
    if not re.fullmatch(r"[0-9]{1,9}", n_text) or not 1 <= int(n_text) <= MAX_N:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"n must be an integer in 1..{MAX_N}, got {excerpt(n_text)}")
    sp_text = params.pop("search_params", "{}")
    try:
        search_params = json.loads(sp_text)
    except (ValueError, RecursionError) as exc:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"search_params is not JSON ({exc}): {excerpt(sp_text)}") from None
    if not isinstance(search_params, dict):
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"search_params must be a JSON object, got {excerpt(sp_text)}")
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
            raise HaQueryError(ERROR_PARSE_KVPAIR_CLAUSE, f"kvpairs item {excerpt(item)} is not key:value")
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
                f"sort key {excerpt(item)} starts with whitespace: a '+' was probably URL-decoded "
                "as a space; URL-encode the HA string ('+' as %2B)",
            )
        item = item.rstrip()
        descending = item[0] != "+"  # no sign: HA sorts descending
        name = item[1:] if item[0] in "+-" else item
        if not _IDENT_RE.match(name):
            raise HaQueryError(
                ERROR_SORT_CLAUSE,
                f"sort key {excerpt(item)}: expected +NAME or -NAME with NAME = RANK or an attribute "
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
            ERROR_CLUSTER_CLAUSE, f"cluster must be one cluster name such as general, got {excerpt(value)}"
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
                f"clause {excerpt(previous.strip())} has no closing quote: '&&' separates clauses, "
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
                ERROR_PARSE_SYNTAX, f"clause {excerpt(piece.strip())} is not name=value (e.g. query=..., sort=...)"
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
    pk_lookup = parse_pk_lookup(clauses["query"])
    return HaQuery(
        config=_parse_config(clauses["config"]) if "config" in clauses else HaConfig(),
        vector=_parse_query(clauses["query"]) if pk_lookup is None else None,
        filter=parse_filter(clauses["filter"]) if "filter" in clauses else None,
        kvpairs=_parse_kvpairs(clauses["kvpairs"]) if "kvpairs" in clauses else {},
        sort=_parse_sort(clauses["sort"]) if "sort" in clauses else [],
        cluster=_parse_cluster(clauses["cluster"]) if "cluster" in clauses else None,
        pk_lookup=pk_lookup,
    )


# --- Building -------------------------------------------------------------------------------------


def _json_for_query(obj: Mapping[str, object]) -> str:
    # '&' and "'" would break the clause/term structure; inside JSON strings they can be escaped.
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    return text.replace("&", "\\u0026").replace("'", "\\u0027")


def _text_needs_base64(text: str) -> bool:
    return any(c in text for c in TEXT_SPECIAL_CHARS) or text_content_is_base64(text)


def format_ha_query(q: HaQuery) -> str:
    """Render a parsed query back to HA text (config, query, filter, sort, kvpairs, cluster)."""
    cfg = [f"start:{q.config.start}", f"hit:{q.config.hit}", f"format:{q.config.format}"]
    cfg += [f"{k}:{v}" for k, v in q.config.extra.items()]
    parts = [f"config={','.join(cfg)}"]
    v = q.vector
    if v is None:
        assert q.pk_lookup is not None, "a query is a vector term or a primary-key lookup"
        parts.append(f"query={format_pk_lookup(q.pk_lookup)}")
    else:
        params = [f"modal={v.modal}", f"n={v.n}", f"search_params={_json_for_query(v.search_params)}"]
        params += [f"{k}={val}" for k, val in v.extra_params.items()]
        parts.append(f"query={v.index}:'{v.content}&{'&'.join(params)}'")
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
            raise HaQueryError(ERROR_QUERY_CLAUSE, f"text {excerpt(content)} holds non-printable characters")
        needs_b64 = _text_needs_base64(content)
        encoded = base64.b64encode(content.encode("utf-8")).decode("ascii") if needs_b64 else content
        if needs_b64 and not text_content_is_base64(encoded):
            raise HaQueryError(
                ERROR_QUERY_CLAUSE,
                f"text {excerpt(content)} cannot be sent unambiguously: its Base64 form would be "
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


def build_pk_lookup_query(
    index: str,
    values: Sequence[int | str],
    cluster: str | None = None,
    *,
    config_extra: Mapping[str, str] | None = None,
) -> str:
    """The HA string that asks for the documents with these primary keys, e.g.
    ``config=start:0,hit:2,format:json,fetch_summary_type:pk&&query=id:'1' OR id:'2'&&cluster=general``.

    ``index`` is the table's primary-key index name (its ``PRIMARYKEY64`` index); ``values`` 1..
    :data:`~pipeline.opensearch.ha.pk.MAX_PK_TERMS` keys, ints (not bools) or strings without quotes,
    ``&`` or surrounding whitespace. ``hit`` is the number of values, so every match comes back on
    one page; summaries are fetched by primary key. ``config_extra`` adds config items (e.g.
    ``qrs_chain``). Raises :class:`HaQueryError` for values the syntax cannot carry.
    """
    if not _IDENT_RE.match(index) or index == VECTOR_INDEX_DEFAULT:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"index {excerpt(index)} must be the primary-key index's name (an "
                           "identifier; 'vector' is always read as the vector index)")
    if isinstance(values, (str, bytes)):
        raise HaQueryError(ERROR_QUERY_CLAUSE, "values must be a sequence of keys, not one string")
    if not 1 <= len(values) <= MAX_PK_TERMS:
        raise HaQueryError(ERROR_QUERY_CLAUSE, f"give 1..{MAX_PK_TERMS} primary-key values, got {len(values)}")
    texts = []
    for value in values:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise HaQueryError(ERROR_QUERY_CLAUSE, f"a primary-key value must be an int or a str, got {value!r}")
        text = str(value)
        if not text or text != text.strip() or "'" in text or "&" in text or not text.isprintable():
            raise HaQueryError(ERROR_QUERY_CLAUSE, f"primary-key value {excerpt(text)} cannot be sent in a term: "
                               "it must be non-empty and printable, without quotes, '&' or surrounding whitespace")
        texts.append(text)
    wanted = HaQuery(
        config=HaConfig(start=0, hit=len(texts), format="json",
                        extra={"fetch_summary_type": "pk", **dict(config_extra or {})}),
        vector=None, filter=None, kvpairs={}, sort=[], cluster=cluster,
        pk_lookup=PkLookup(tuple(PkTerm(index, t) for t in texts)),
    )
    text = format_ha_query(wanted)
    if parse_ha_query(text) != wanted:  # self-check, as build_ha_query does
        raise HaQueryError(ERROR_PARSE_SYNTAX, f"cannot express this lookup on index {excerpt(index)} in HA "
                           "syntax (avoid ',', ':' and '&&' in config_extra)")
    return text
