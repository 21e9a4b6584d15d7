"""The HA query grammar: vendor examples verbatim, filters, malformed input, round trips, fuzz."""

from __future__ import annotations

import base64
import json
import random
import struct
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from pipeline.opensearch.ha.content import text_content_is_base64
from pipeline.opensearch.ha.errors import (
    ERROR_CLUSTER_CLAUSE,
    ERROR_CONFIG_CLAUSE_FETCH_SUMMARY_TYPE,
    ERROR_CONFIG_CLAUSE_HIT_VALUE,
    ERROR_CONFIG_CLAUSE_START_VALUE,
    ERROR_CONFIG_CLAUSE_TIMEOUT,
    ERROR_EMPTY_QUERY_STRING,
    ERROR_FILTER_CLAUSE,
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
)
from pipeline.opensearch.ha.filter import And, Comparison, InList, Or, compile_filter, format_filter, parse_filter
from pipeline.opensearch.ha.grammar import (
    HaConfig,
    HaQuery,
    HaQueryError,
    SortKey,
    build_ha_query,
    format_ha_query,
    parse_ha_query,
)

# --- verbatim from the vendor guide (vectorized-image-retrieval.txt) and REFERENCE.md -------------
CONSOLE_TEXT_QUERY = (
    "vector:'motorcycle helmet&modal=text&n=10&search_params={}'&&kvpairs=formula:proxima_score(vector)&&sort=+RANK"
)
SDK_EXAMPLE_QUERY = (
    "config=hit:4,format:json,fetch_summary_type:pk,qrs_chain:search"
    "&&query=image_index:'motorcycle helmet&modal=text&n=10&search_params={}'"
    "&&cluster=general"
)
REFERENCE_QUERY = (
    "config=start:0,hit:10,format:json&&query=vector:'motorcycle helmet&modal=text&n=10&search_params={}'"
    "&&kvpairs=formula:proxima_score(vector)&&sort=+RANK&&cluster=general"
)
SYNTAX_TEMPLATE = (
    "query=image_index:'<search-content>&modal=<text|image>&n=<top-n>&search_params={}'"
    "&&kvpairs=formula:proxima_score(vector)&&sort=+RANK"
)
IMAGE_TEMPLATE = (
    "vector:'<base64-encoded-image>&modal=image&n=10&search_params={}'&&kvpairs=formula:proxima_score(vector)&&sort=+RANK"
)
DOC_BASE64_TEXT = "5pGp5omY6L2mJuWktOeblA=="  # the guide calls this "motorcycle&helmet"


def _png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    # three trailing bytes after IEND put '+' into the Base64 (b'\xfb\xef\xbe' -> '++++')
    idat = zlib.compress(b"\x00\xff\x00\x00")
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"") + b"\xfb\xef\xbe"


PNG = _png()
PNG_B64 = base64.b64encode(PNG).decode()


def test_console_bare_form_is_the_query_clause() -> None:
    q = parse_ha_query(CONSOLE_TEXT_QUERY)
    assert q.vector.index == "vector"
    assert (q.vector.content, q.vector.text) == ("motorcycle helmet", "motorcycle helmet")
    assert (q.vector.modal, q.vector.n) == ("text", 10)
    assert q.vector.search_params == {} and q.vector.image_bytes is None
    assert q.kvpairs == {"formula": "proxima_score(vector)"}
    assert q.sort == [SortKey("RANK", descending=False)]
    assert q.config == HaConfig() and q.filter is None and q.cluster is None


def test_sdk_example() -> None:
    q = parse_ha_query(SDK_EXAMPLE_QUERY)
    extra = {"fetch_summary_type": "pk", "qrs_chain": "search"}
    assert q.config == HaConfig(start=0, hit=4, format="json", extra=extra)
    assert q.vector.index == "image_index" and q.vector.text == "motorcycle helmet"
    assert q.cluster == "general" and q.sort == [] and q.kvpairs == {}


def test_reference_example() -> None:
    q = parse_ha_query(REFERENCE_QUERY)
    assert (q.config.start, q.config.hit, q.config.format) == (0, 10, "json")
    assert q.vector.n == 10 and q.cluster == "general"
    assert q.sort == [SortKey("RANK", False)] and q.kvpairs["formula"] == "proxima_score(vector)"


def test_doc_base64_text_is_chinese_not_english() -> None:
    assert base64.b64decode(DOC_BASE64_TEXT).decode("utf-8") == "摩托车&头盔"
    q = parse_ha_query(f"query=vector:'{DOC_BASE64_TEXT}&modal=text&n=10&search_params={{}}'")
    assert q.vector.content == DOC_BASE64_TEXT and q.vector.text == "摩托车&头盔"
    assert q.vector.image_bytes is None


def test_image_query_in_the_guides_form() -> None:
    s = IMAGE_TEMPLATE.replace("<base64-encoded-image>", PNG_B64)
    q = parse_ha_query(s)
    assert q.vector.modal == "image" and q.vector.image_bytes == PNG and q.vector.text is None
    assert q.vector.content == PNG_B64 and "+" in PNG_B64


def test_templates_with_placeholders_are_refused() -> None:
    with pytest.raises(HaQueryError) as info:
        parse_ha_query(SYNTAX_TEMPLATE)
    assert info.value.code == ERROR_QUERY_CLAUSE and "modal" in info.value.message
    with pytest.raises(HaQueryError, match="Base64"):
        parse_ha_query(IMAGE_TEMPLATE)


def test_search_params_and_extra_vector_params() -> None:
    q = parse_ha_query(
        "query=vector:'helmet&modal=text&n=50&sf=0.8&search_params={\"proxima.hc.searcher.scan_ratio\":0.01}'"
    )
    assert q.vector.search_params == {"proxima.hc.searcher.scan_ratio": 0.01}
    assert q.vector.extra_params == {"sf": "0.8"} and q.vector.n == 50


# --- URL transport ---------------------------------------------------------------------------------


def test_url_encoded_get_round_trip_and_the_plus_trap() -> None:
    s = IMAGE_TEMPLATE.replace("<base64-encoded-image>", PNG_B64)
    target = "/query?" + urlencode({"query": s})
    assert parse_qs(urlsplit(target).query)["query"][0] == s  # what a server hands to the parser
    # A client that forgets to encode '+' sends it raw; the server's URL-decoding makes it a space.
    naive = parse_qs("query=" + s.replace("&", "%26"))["query"][0]
    assert naive == s.replace("+", " ")
    with pytest.raises(HaQueryError) as info:
        parse_ha_query(naive)
    assert "'+' was probably URL-decoded as a space" in info.value.message
    with pytest.raises(HaQueryError) as info:
        parse_ha_query(REFERENCE_QUERY.replace("sort=+RANK", "sort= RANK"))
    assert info.value.code == ERROR_SORT_CLAUSE and "%2B" in info.value.message


class _SearchHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self, ha: str) -> None:
        try:
            q = parse_ha_query(ha)
            payload: dict[str, Any] = {"result": {"query": format_ha_query(q), "text": q.vector.text}, "errors": []}
        except HaQueryError as exc:
            payload = {"result": {}, "errors": [exc.to_error_dict()]}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._answer(parse_qs(urlsplit(self.path).query)["query"][0])

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self._answer(json.loads(body)["assemblyQuery"])


@pytest.fixture(scope="module")
def search_server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _SearchHandler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_real_ha3engine_sdk_transport(search_server: ThreadingHTTPServer, method: str) -> None:
    from alibabacloud_ha3engine import client as ha_client
    from alibabacloud_ha3engine import models as ha_models

    config = ha_models.Config(
        endpoint=f"127.0.0.1:{search_server.server_address[1]}", instance_id="", protocol="http",
        access_user_name="user", access_pass_word="pass",
    )
    sdk = ha_client.Client(config)
    for s in (build_ha_query(PNG, modal="image", sort=["+RANK"], formula="proxima_score(vector)", filter='cate_id>=2'),
              build_ha_query("摩托车&头盔", modal="text", hit=4), REFERENCE_QUERY):
        request = ha_models.SearchRequestModel({}, ha_models.SearchQuery(query=s), method=method)
        answer = json.loads(sdk.search(request).body)
        assert answer["errors"] == [] and parse_ha_query(answer["result"]["query"]) == parse_ha_query(s)


# --- filters ---------------------------------------------------------------------------------------

DOCS = [
    {"id": 1, "cate_id": 1, "price": 9.5, "brand": "acme", "tags": [3, 4]},
    {"id": 2, "cate_id": 2, "price": 20, "brand": "Zeta"},
    {"id": 3, "cate_id": 5, "price": 0, "brand": "acme"},
    {"id": 4, "price": 100, "brand": 'say "hi"'},  # no cate_id
]


@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("cate_id=1", [1]),
        ("cate_id != 1", [2, 3]),  # missing attribute never matches, != included
        ("price<10", [1, 3]),
        ("price>=20 AND cate_id>1", [2]),
        ("cate_id=1 OR cate_id=5 AND brand=\"acme\"", [1, 3]),  # AND binds tighter
        ("(cate_id=1 OR cate_id=2) AND price<=9.5", [1]),
        ('in(cate_id, "1|2|3")', [1, 2]),
        ('notin(cate_id, "1|2")', [3]),
        ('brand="acme"', [1, 3]),
        ('brand>"Zz"', [1, 3, 4]),  # strings compare as strings (code points: "a" > "Z")
        ('brand="say \\"hi\\""', [4]),
        ("tags=4", [1]),  # multi-value: any element
        ("price=-1 OR price>=1e2", [4]),
        ('cate_id="2"', [2]),  # a numeric string literal compares as a number with a numeric attribute
        ("((((cate_id=2))))", [2]),
    ],
)
def test_filter_evaluation(text: str, ids: list[int]) -> None:
    predicate = compile_filter(parse_filter(text))
    assert [d["id"] for d in DOCS if predicate(d)] == ids
    assert parse_filter(format_filter(parse_filter(text))) == parse_filter(text)


def test_filter_ast_shape() -> None:
    q = parse_ha_query(REFERENCE_QUERY + '&&filter=cate_id=1 AND (price<2.5 OR notin(brand, "a|b"))')
    assert q.filter == And(
        (Comparison("cate_id", "=", 1), Or((Comparison("price", "<", 2.5), InList("brand", ("a", "b"), negated=True))))
    )
    assert compile_filter(None)({}) is True


# --- malformed input: each must be an HaQueryError with a useful message --------------------------

GOOD_Q = "query=vector:'helmet&modal=text&n=10&search_params={}'"


@pytest.mark.parametrize(
    ("s", "code", "fragment"),
    [
        ("", ERROR_EMPTY_QUERY_STRING, "empty"),
        ("   ", ERROR_EMPTY_QUERY_STRING, "empty"),
        ("&&&&", ERROR_PARSE_SYNTAX, "clause 1 is empty"),
        (GOOD_Q + "&&", ERROR_PARSE_SYNTAX, "clause 2 is empty"),
        (GOOD_Q + "&&&&sort=+RANK", ERROR_PARSE_SYNTAX, "is empty"),
        ("config=start:0", ERROR_NO_QUERY_CLAUSE, "no query clause"),
        (GOOD_Q + "&&distinct=dist_key:cate_id", ERROR_UNKNOWN_CLAUSE, "not supported"),
        (GOOD_Q + "&&frobnicate=1", ERROR_UNKNOWN_CLAUSE, "unknown clause 'frobnicate'"),
        (GOOD_Q + "&&sort", ERROR_PARSE_SYNTAX, "not name=value"),
        (GOOD_Q + "&&" + GOOD_Q, ERROR_PARSE_SYNTAX, "more than once"),
        (CONSOLE_TEXT_QUERY + "&&" + GOOD_Q, ERROR_PARSE_SYNTAX, "more than once"),
        ("query=vector:'helmet&modal=text&n=10&search_params={}", ERROR_QUERY_CLAUSE, "no closing quote"),
        ("query=vector:'helmet&&modal=text&n=10'", ERROR_QUERY_CLAUSE, "no closing quote"),
        ("query=vector:helmet&modal=text&n=10", ERROR_QUERY_CLAUSE, "not a single vector term"),
        ("query='helmet&modal=text&n=10'", ERROR_QUERY_CLAUSE, "not a single vector term"),
        ("query=vector:'it's&modal=text&n=10'", ERROR_QUERY_CLAUSE, "Base64"),
        ("query=vector:'helmet&modal=text&n=1' AND cate:'2'", ERROR_QUERY_CLAUSE, "unexpected quote"),
        ("query=vector:'helmet&modal=video&n=10'", ERROR_QUERY_CLAUSE, "modal must be text or image"),
        ("query=vector:'helmet&n=10'", ERROR_QUERY_CLAUSE, "lacks modal"),
        ("query=vector:'helmet&modal=text'", ERROR_QUERY_CLAUSE, "lacks n="),
        ("query=vector:'helmet&modal=text&n=abc'", ERROR_QUERY_CLAUSE, "n must be an integer"),
        ("query=vector:'helmet&modal=text&n=0'", ERROR_QUERY_CLAUSE, "1..10000"),
        ("query=vector:'helmet&modal=text&n=10001'", ERROR_QUERY_CLAUSE, "1..10000"),
        ("query=vector:'helmet&modal=text&n=-5'", ERROR_QUERY_CLAUSE, "n must be"),
        ("query=vector:'helmet&modal=text&n=١٠'", ERROR_QUERY_CLAUSE, "n must be"),  # Arabic-Indic digits
        ("query=vector:'helmet&modal=text&n=10&n=5'", ERROR_QUERY_CLAUSE, "twice"),
        ("query=vector:'helmet&modal=text&n=10&'", ERROR_QUERY_CLAUSE, "not name=value"),
        ("query=vector:'helmet&modal=text&n=10&search_params={'", ERROR_QUERY_CLAUSE, "not JSON"),
        ("query=vector:'helmet&modal=text&n=10&search_params=[1]'", ERROR_QUERY_CLAUSE, "JSON object"),
        ("query=vector:'&modal=text&n=10'", ERROR_QUERY_CLAUSE, "empty content"),
        ("query=vector:'   &modal=text&n=10'", ERROR_QUERY_CLAUSE, "empty content"),
        ("query=vector:'helmet'", ERROR_QUERY_CLAUSE, "no &modal"),
        ("query=vector:'aGVsbG8&modal=image&n=10'", ERROR_QUERY_CLAUSE, "multiple of 4"),
        ("query=vector:'aGVs bG8=&modal=image&n=10'", ERROR_QUERY_CLAUSE, "'+' was probably"),
        ("query=vector:'aGVsbG8=\n&modal=image&n=10'", ERROR_QUERY_CLAUSE, "b64encode"),
        ("query=vector:'aGVsbG8_&modal=image&n=10'", ERROR_QUERY_CLAUSE, "URL-safe"),
        ("query=vector:'aGVsbG8*&modal=image&n=10'", ERROR_QUERY_CLAUSE, "not in the Base64 alphabet"),
        ("query=vector:'aG=sbG8=&modal=image&n=10'", ERROR_QUERY_CLAUSE, "padding"),
        ("query=vector:'=aGVsbG8&modal=image&n=10'", ERROR_QUERY_CLAUSE, "padding"),
        ("config=format:xml&&" + GOOD_Q, ERROR_UNSUPPORT_RESULT_FORMAT, "format:json"),
        ("config=format:protobuf&&" + GOOD_Q, ERROR_UNSUPPORT_RESULT_FORMAT, "format:json"),
        ("config=start:&&" + GOOD_Q, ERROR_KEY_VALUE_PAIR, "not key:value"),
        ("config=hit&&" + GOOD_Q, ERROR_KEY_VALUE_PAIR, "not key:value"),
        ("config=qrs_chain:a:b&&" + GOOD_Q, ERROR_KEY_VALUE_PAIR, "not key:value"),
        ("config=start:-1&&" + GOOD_Q, ERROR_CONFIG_CLAUSE_START_VALUE, "unsigned"),
        ("config=hit:ten&&" + GOOD_Q, ERROR_CONFIG_CLAUSE_HIT_VALUE, "unsigned"),
        ("config=hit:99999999999&&" + GOOD_Q, ERROR_CONFIG_CLAUSE_HIT_VALUE, "unsigned"),
        ("config=hit:1001&&" + GOOD_Q, ERROR_OVER_RETURN_HITS_LIMIT, "1000"),
        ("config=start:4500,hit:1000&&" + GOOD_Q, ERROR_OVER_RETURN_HITS_LIMIT, "5000"),
        ("config=timeout:soon&&" + GOOD_Q, ERROR_CONFIG_CLAUSE_TIMEOUT, "timeout"),
        ("config=fetch_summary_type:all&&" + GOOD_Q, ERROR_CONFIG_CLAUSE_FETCH_SUMMARY_TYPE, "pk, docid or rawpk"),
        (GOOD_Q + "&&kvpairs=formula", ERROR_PARSE_KVPAIR_CLAUSE, "key:value"),
        (GOOD_Q + "&&kvpairs=:x", ERROR_PARSE_KVPAIR_CLAUSE, "key:value"),
        (GOOD_Q + "&&sort=", ERROR_SORT_NO_DESCRIPTION, "empty"),
        (GOOD_Q + "&&sort=;;", ERROR_SORT_NO_DESCRIPTION, "empty"),
        (GOOD_Q + "&&sort=+", ERROR_SORT_CLAUSE, "+NAME"),
        (GOOD_Q + "&&sort=-(hits+comments)", ERROR_SORT_CLAUSE, "expressions"),
        (GOOD_Q + "&&sort=+RANK;-RANK", ERROR_SORT_SAME_EXPRESSION, "twice"),
        (GOOD_Q + "&&cluster=", ERROR_CLUSTER_CLAUSE, "one cluster name"),
        (GOOD_Q + "&&cluster=a,b", ERROR_CLUSTER_CLAUSE, "one cluster name"),
        (GOOD_Q + "&&filter=", ERROR_FILTER_CLAUSE, "empty"),
        (GOOD_Q + "&&filter=(cate_id=1", ERROR_FILTER_CLAUSE, "unbalanced '('"),
        (GOOD_Q + "&&filter=cate_id=1)", ERROR_FILTER_CLAUSE, "unbalanced ')'"),
        (GOOD_Q + "&&filter=((cate_id=1) OR (price>2)", ERROR_FILTER_CLAUSE, "unbalanced '('"),
        (GOOD_Q + "&&filter=cate_id==1", ERROR_FILTER_CLAUSE, "not '=='"),
        (GOOD_Q + "&&filter=cate_id=1 and price>2", ERROR_FILTER_CLAUSE, "upper case"),
        (GOOD_Q + "&&filter=cate_id=1 price>2", ERROR_FILTER_CLAUSE, "missing AND/OR"),
        (GOOD_Q + "&&filter=AND cate_id=1", ERROR_FILTER_CLAUSE, "operand"),
        (GOOD_Q + "&&filter=cate_id=1 AND", ERROR_FILTER_CLAUSE, "filter ended"),
        (GOOD_Q + "&&filter=cate_id", ERROR_FILTER_CLAUSE, "comparison operator"),
        (GOOD_Q + "&&filter=cate_id=", ERROR_FILTER_CLAUSE, "filter ended"),
        (GOOD_Q + "&&filter=cate_id=abc", ERROR_FILTER_CLAUSE, "quoted string"),
        (GOOD_Q + '&&filter=brand="acme', ERROR_FILTER_CLAUSE, "unterminated string"),
        (GOOD_Q + "&&filter=price>1e999", ERROR_FILTER_CLAUSE, "out of range"),
        (GOOD_Q + "&&filter=price>@", ERROR_FILTER_CLAUSE, "unexpected character '@'"),
        (GOOD_Q + '&&filter=in(cate_id, 1)', ERROR_FILTER_CLAUSE, '"v1|v2"'),
        (GOOD_Q + '&&filter=in(cate_id, "1||2")', ERROR_FILTER_CLAUSE, "empty value"),
        (GOOD_Q + '&&filter=in(cate_id "1")', ERROR_FILTER_CLAUSE, "','"),
        (GOOD_Q + "&&filter=" + "(" * 40 + "a=1" + ")" * 40, ERROR_FILTER_CLAUSE, "nested deeper"),
    ],
)
def test_malformed(s: str, code: int, fragment: str) -> None:
    with pytest.raises(HaQueryError) as info:
        parse_ha_query(s)
    assert info.value.code == code, str(info.value)
    assert fragment in info.value.message, str(info.value)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(info.value.name)


def test_errors_do_not_echo_huge_content() -> None:
    huge = "A" * 1_000_001  # not a multiple of 4
    with pytest.raises(HaQueryError) as info:
        parse_ha_query(f"query=vector:'{huge}&modal=image&n=10'&&bogus=1")
    assert len(info.value.message) < 300
    with pytest.raises(HaQueryError) as info:
        parse_ha_query(f"query=vector:'{huge}&modal=image&n=10")
    assert len(info.value.message) < 300


def test_non_string_input() -> None:
    with pytest.raises(HaQueryError):
        parse_ha_query(None)  # type: ignore[arg-type]
    with pytest.raises(HaQueryError):
        parse_ha_query(b"query=vector:'a&modal=text&n=1'")  # type: ignore[arg-type]


def test_error_dict_for_ha_json_results() -> None:
    with pytest.raises(HaQueryError) as info:
        parse_ha_query("config=format:xml&&" + GOOD_Q)
    assert info.value.to_error_dict() == {
        "code": 1007,
        "message": "ERROR_UNSUPPORT_RESULT_FORMAT: config format:xml is not supported by this server; use format:json",
    }


# --- Base64 text rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (DOC_BASE64_TEXT, True),
        (base64.b64encode(b"motorcycle&helmet").decode(), True),
        (base64.b64encode("rock'n'roll".encode()).decode(), True),
        (base64.b64encode(b"a & b").decode(), True),
        ("motorcycle helmet", False),  # spaces are not Base64
        ("helmet", False),
        ("Zm9v", False),  # Base64 of "foo", but nothing in it needed encoding
        ("Question", False),  # valid Base64 of noise
        ("YSZi", False),  # Base64 of "a&b", too short to be told from a word
        (base64.b64encode(b"motorcycle helmet").decode(), False),  # nothing special: literal
        (base64.b64encode(b"\x00\x01&\x02abc").decode(), False),  # not printable
        (base64.b64encode(b"\xff\xfe&&&&").decode(), False),  # not UTF-8
        ("5pGp5omY6L2mJuWktOeblA", False),  # padding stripped
    ],
)
def test_text_content_is_base64(content: str, expected: bool) -> None:
    assert text_content_is_base64(content) is expected


# --- building: client and server share the grammar -------------------------------------------------


def test_build_round_trips() -> None:
    s = build_ha_query(
        "motorcycle helmet", modal="text", n=20, hit=5, start=10, index="vector",
        filter='cate_id=1 OR (price<2.5 AND brand!="x,y;z")', sort=["+RANK", SortKey("cate_id", True)],
        cluster="general", formula="proxima_score(vector)", search_params={"a": "b&c'd"},
        config_extra={"fetch_summary_type": "pk", "timeout": "1000"},
    )
    q = parse_ha_query(s)
    assert q.vector.text == "motorcycle helmet" and q.vector.n == 20
    assert (q.config.start, q.config.hit, q.config.extra) == (10, 5, {"fetch_summary_type": "pk", "timeout": "1000"})
    assert q.sort == [SortKey("RANK", False), SortKey("cate_id", True)]
    assert q.vector.search_params == {"a": "b&c'd"}
    assert q.filter == parse_filter('cate_id=1 OR (price<2.5 AND brand!="x,y;z")')
    assert format_ha_query(q) == s and parse_ha_query(format_ha_query(q)) == q


@pytest.mark.parametrize(
    "text", ["摩托车&头盔", "motorcycle&helmet", "rock'n'roll", "Question", "Zm9v", " helmet ", "a & b"]
)
def test_build_text_round_trips(text: str) -> None:
    assert parse_ha_query(build_ha_query(text, modal="text")).vector.text == text


def test_build_image_round_trips() -> None:
    for content in (PNG, PNG_B64):
        q = parse_ha_query(build_ha_query(content, modal="image", n=10, sort="+RANK", formula="proxima_score(vector)"))
        assert q.vector.image_bytes == PNG and q.vector.content == PNG_B64


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"content": "a&b", "modal": "text"}, "unambiguously"),
        ({"content": "line\nbreak", "modal": "text"}, "non-printable"),
        ({"content": "  ", "modal": "text"}, "empty"),
        ({"content": "not base64!", "modal": "image"}, "Base64"),
        ({"content": b"x", "modal": "text"}, "bytes"),
        ({"content": "x y", "modal": "text", "n": 0}, "n must be"),
        ({"content": "x y", "modal": "text", "hit": 5000}, "1000"),
        ({"content": "x y", "modal": "text", "kvpairs": {"a": "1,b:2"}}, "round-trip"),
        ({"content": "x y", "modal": "text", "cluster": "a&&b"}, ""),
        ({"content": "x y", "modal": "text", "filter": "cate_id=="}, "'=='"),
        ({"content": "x y", "modal": "text", "sort": ["RANK+"]}, "+NAME"),
    ],
)
def test_build_refuses_what_cannot_round_trip(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(HaQueryError) as info:
        build_ha_query(**kwargs)
    assert fragment in info.value.message


def test_format_is_stable_on_vendor_examples() -> None:
    for s in (CONSOLE_TEXT_QUERY, SDK_EXAMPLE_QUERY, REFERENCE_QUERY):
        q = parse_ha_query(s)
        assert isinstance(q, HaQuery)
        again = format_ha_query(q)
        assert parse_ha_query(again) == q and format_ha_query(parse_ha_query(again)) == again


# --- fuzz ------------------------------------------------------------------------------------------

_SEEDS = [
    CONSOLE_TEXT_QUERY,
    SDK_EXAMPLE_QUERY,
    REFERENCE_QUERY,
    f"query=vector:'{DOC_BASE64_TEXT}&modal=text&n=10&search_params={{}}'",
    IMAGE_TEMPLATE.replace("<base64-encoded-image>", PNG_B64[:40]),
    GOOD_Q + '&&filter=(cate_id=1 OR price>=2.5) AND notin(brand, "a|b") AND name!="x\\"y"',
]
_ALPHABET = list("&='\":,;()+-|{}[]\\ \n\t0123456789azAZ_.é中") + [
    "&&", "query=", "config=", "filter=", "sort=", "kvpairs=", "cluster=", "AND", "OR", "in(", "notin(",
    "modal=", "n=", "search_params=", "vector:'", "==", "!=", "<=", ">=", "%2B", "1e999", "{" * 50, "(" * 50,
]


def _mutate(rng: random.Random, s: str) -> str:
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(s) + 1)
        op = rng.random()
        if op < 0.4:
            s = s[:i] + rng.choice(_ALPHABET) + s[i:]
        elif op < 0.7 and s:
            s = s[:i] + s[i + rng.randint(1, 5):]
        elif s:
            j = rng.randrange(len(s) + 1)
            s = s[:i] + s[j:j + rng.randint(1, 12)] + s[i:]
    return s


def test_fuzz_only_ha_query_errors_escape() -> None:
    rng = random.Random(20261123)
    parsed = refused = 0
    for k in range(4000):
        if k % 4 == 0:
            s = "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, 40)))
        else:
            s = _mutate(rng, rng.choice(_SEEDS))
        try:
            q = parse_ha_query(s)
        except HaQueryError as exc:
            assert exc.code != ERROR_GENERAL, f"internal error for {s!r}: {exc}"
            assert isinstance(exc.message, str) and exc.message
            refused += 1
        else:
            parsed += 1
            assert parse_ha_query(format_ha_query(q)) == q, s  # whatever parses, re-renders faithfully
    assert parsed > 100 and refused > 1000  # the fuzz exercises both paths
