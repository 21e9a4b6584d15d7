"""A local OpenSearch Retrieval Engine Edition: the management API and the HA query API over HTTP.

Why: the pipeline drives OpenSearch only through the real SDKs (alibabacloud-searchengine20211025 for
management, alibabacloud-ha3engine for queries), so the offline stand-in must speak their wire
protocols exactly; the behaviour behind them is :class:`~localcloud.opensearch.engine.LocalEngine`.

Management API (ROA, JSON; every request must carry a valid ACS3-HMAC-SHA256 signature, checked by
:func:`localcloud.acs3.verify_acs3_request`; path ids arrive ``quote(id, safe='')``-encoded)::

    GET  /openapi/ha3/instances/{iid}                                  GetInstance
    GET  /openapi/ha3/instances/{iid}/tables                           ListTables
    GET  /openapi/ha3/instances/{iid}/tables/{t}                       GetTable
    POST /openapi/ha3/instances/{iid}/tables/{t}/reindex               Reindex {partition, dataTimeSec}
    GET  /openapi/ha3/instances/{iid}/tables/{t}/index_versions        ListTableGenerations
    GET  /openapi/ha3/instances/{iid}/tables/{t}/index_versions/{gen}  GetTableGeneration (+ build figures)
    GET  /openapi/ha3/instances/{iid}/tasks?start=&end=                ListTasks (epoch seconds)
    GET  /openapi/ha3/instances/{iid}/data-source-tasks                ListDataSourceTasks
    GET  /openapi/ha3/instances/{iid}/pause-policies                   ListPausePolicys
    PUT  /openapi/ha3/instances/{iid}/pause-policies                   ModifyPausePolicy {"body": {...}}
    PUT  /openapi/ha3/instances/{iid}/force-switch/{fsmId}             ForceSwitch

GetTableGeneration's documented result is ``generationId`` and ``status``; this server adds what the build
counted (``rows``, ``docCount``, ``failures``, ``failureExamples``: :func:`describe_generation`), names of
its own that the cloud does not document, unless ``report_build_figures`` is off.

Success: 200 ``{"requestId", "result"}``. Errors: ``{"requestId", "code", "message"}`` with 4xx (the SDK
raises ``ClientException``) or 5xx (``ServerException``); codes: the signature codes of acs3.py,
``instance.NotFound`` (the vendor's documented example), ``table.NotFound``, ``generation.NotFound``,
``task.NotFound`` (404), ``InvalidParameter`` (400), ``OperationDenied.BuildInProgress`` and
``OperationDenied.TaskStatus`` (409), ``InvalidAction.NotFound`` (404, unknown path or method),
``ServiceUnavailable`` (503), ``Throttling`` (429 + ``x-acs-retry-after``), ``InternalError`` (500).

Query API (alibabacloud-ha3engine): ``GET /query?query=<HA string>`` or ``POST /query`` with
``{"assemblyQuery": ...}``, HTTP Basic auth (the instance's query user and password). The answer is
the HA JSON result. An HA error (bad syntax, unknown field, text query) answers **200** with
``errors`` filled and an empty result, as Havenask's QRS reports query errors inside the result; the
SDK returns the body and the caller must check ``errors``. Transport-level problems keep HTTP
statuses (the SDK raises ``TeaException`` with ``code`` = status and ``data["errors"]`` = the body):
401 wrong or missing Basic auth (error code 4003, OpenSearch's "signature verification failed"),
404 unknown path, 405 method, 413 body too large, 500 an internal error of this server (10017).
``/query?type=sql`` answers error 8000: the vendor supports no SQL for image retrieval. Request lines
may be up to 16 MiB, since the SDK sends a Base64 image in the URL of a GET.

Push API, the data plane (alibabacloud-ha3engine ``Client.push_documents(data_source_name, key_field,
PushDocumentsRequestModel(headers, body=[...]))``; :mod:`localcloud.opensearch.push_api`)::

    POST /update/{instance_id}_{table}/actions/bulk
    Authorization: Basic <query user:password>        X-Opensearch-Swift-PK-Field: <primary key field>
    X-Opensearch-Validate-Data: true                  Content-Type: application/json; charset=utf-8
    [{"cmd": "add", "fields": {"id": 10031, "source_image": "/catalog/a.jpg", "cate_id": 1}},
     {"cmd": "delete", "fields": {"id": 10032}}]

Success: 200 ``{"status": "OK", "errors": [], "request_id": "<uuid>"}``; OK means *received* (logged
durably), not applied: documents become searchable asynchronously, in order. Refusals: ``{"status":
"FAIL", "errors": [{"code", "message"}], "request_id"}`` with a 4xx status (the SDK raises
``TeaException``, ``code`` = the status, ``data["errors"]`` = this body), checked in this order and
each before anything of the request is kept:

    401 4003  wrong or missing Basic auth (checked before the body is read, as for queries)
    404 3012  the data source is not ``{instance_id}_{table}`` (the message names that form)
    405 3017  not POST                   400 3011  the PK header is missing or not the table's primary key
    411 3016  chunked, no Content-Length
    413 3015  the body is over 2 MB (2 * 1024 * 1024 bytes; from Content-Length, before reading it;
              over the server's 64 MiB cap, even before auth)
    429 3013  "push rate exceeds app quota": over ``push_max_bytes_per_s`` (default 10 MiB) of request
              bodies per data source in any sliding 1-second window, or the ``throttle_next_pushes``
              knob; nothing applied: back off and retry
    400 4007  not UTF-8 JSON (also NaN/Infinity, a key twice in one object)
    400 3001  empty body, not a JSON array, or an empty array (no documents; no other count limit)
    400 3006  a document that is not ``{"cmd", "fields"[, "timestamp" (number, ignored)]}``
    400 3002  cmd not ``add``/``delete``; ``update`` (partial update) is not supported here
    400 3003  primary key missing, null, or not its type (INT64: a JSON integer; STRING: a string)
    400 3004  an unknown field, the vector field (the service fills it), an add lacking a stored
              field, a null, or a value not of its field's type
    400 3005  a field value over 1 MB
    500 10017 an internal error of this server (the documents may or may not have been received)

One invalid document refuses the whole request. Accepted documents are logged (fsync) per table and
applied by one thread per table: an ``add`` reads the image with oss2 as a build does and replaces the
document with its primary key, a ``delete`` hides it; an image that cannot be read leaves that push
out, counted (:meth:`LocalEngine.push_status`). Queries answer from the live generation with this
realtime layer over it, including primary-key lookups ``query=id:'10031' OR id:'10032'`` (terms on the
``PRIMARYKEY64`` index, at most 1000; :func:`pipeline.opensearch.ha.grammar.build_pk_lookup_query`).
``Reindex`` with ``dataTimeSec`` replays the log from that second into the new generation before it
switches in (without: its layer starts empty); ``dataTimeSec`` older than ``push_retention_s``
(default 3 days) or in the future is ``InvalidParameter``. See :mod:`localcloud.opensearch.pushing`.

Verified against the SDK source: the path, method, the two headers and the JSON body; that 4xx/5xx
raise ``TeaException`` with the parsed body. Documented by the vendor, not checked: 2 MB per request,
1 MB per field, about 10 MB/s, OK meaning received, 3 days of replay. Unverified against the cloud
(our choices, for the pipeline's client to be written against): the ``{instance_id}_{table}`` data
source name (the Vector Search Edition's documented form), the answer bodies and every code (4003 is
what this server's query API answers for bad Basic auth), the exact rate window, the refusal rules beyond size, how ``X-Opensearch-Validate-Data``
changes checking (here: always checked), and the answers to primary-key term queries.

Hostile input (:mod:`localcloud.http_service`): a request is authenticated (Basic or ACS3, the latter
over the signed ``x-acs-content-sha256``) before its body is read; bodies are at most 64 MiB (413 before
reading); long request lines are buffered for at most 48 MiB of connections together (503 beyond); a
bounded worker pool answers, and slow or half-open sockets pin no worker. The vendor's own limits are
not documented: these are ours.

Fault knobs (:class:`HttpFaults`): the next N management requests answer 503 ``ServiceUnavailable``,
or N answer ``Throttling`` with ``x-acs-retry-after``; the next N ``Reindex`` calls start their build
but lose their answer (the connection closes: to the client, a failure after sending). tea-openapi 0.4.x reads that header with
``int()``, ignores values <= 0, and raises ``ThrottlingException(retry_after=<int>)``; its own retry
policy sleeps ``retry_after`` *milliseconds* (darabonba ``sleep(ms)``), so the unit is not seconds
as far as the SDK is concerned. The value is sent verbatim.

The server binds to loopback only and never logs secrets, Authorization headers or query content
beyond a short prefix (a query holds a Base64 image).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote

from localcloud.acs3 import Acs3SignatureError, AcsCredential, verify_acs3_request, verify_body_sha256
from localcloud.http_service import BadFraming, BoundedHttpServer, Limits, StrictRequestHandler
from localcloud.opensearch.answers import describe_generation, describe_instance, describe_table
from localcloud.opensearch.engine import EngineError, LocalEngine
from localcloud.opensearch.push_api import PUSH_PATH_PREFIX, PushApi
from localcloud.opensearch.search import ERROR_INTERNAL, ERROR_SQL_NOT_SUPPORTED, error_result
from localcloud.ram import TokenAuthority
from pipeline.opensearch.ha.errors import ERROR_EMPTY_QUERY_STRING, ERROR_PARSE_SYNTAX
from pipeline.opensearch.ha.grammar import HaQueryError, parse_ha_query

__all__ = ["HttpFaults", "LocalOpenSearchServer", "describe_generation", "describe_instance", "describe_table"]

log = logging.getLogger(__name__)

MAX_REQUEST_LINE = 16 * 1024 * 1024
MAX_BODY = 64 * 1024 * 1024
OPENSEARCH_LIMITS = Limits(max_workers=32, max_request_line=MAX_REQUEST_LINE, max_header_bytes=64 * 1024,
                           max_body=MAX_BODY, max_pending_bytes=48 * 1024 * 1024)
ERROR_UNAUTHORIZED = 4003  # OpenSearch's "signature verification failed" code, for a wrong Basic auth
_IID = r"/openapi/ha3/instances/(?P<iid>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(_IID + r"\Z"), "GetInstance"),
    ("GET", re.compile(_IID + r"/tables\Z"), "ListTables"),
    ("GET", re.compile(_IID + r"/tables/(?P<table>[^/]+)\Z"), "GetTable"),
    ("POST", re.compile(_IID + r"/tables/(?P<table>[^/]+)/reindex\Z"), "Reindex"),
    ("GET", re.compile(_IID + r"/tables/(?P<table>[^/]+)/index_versions\Z"), "ListTableGenerations"),
    ("GET", re.compile(_IID + r"/tables/(?P<table>[^/]+)/index_versions/(?P<gen>[^/]+)\Z"), "GetTableGeneration"),
    ("GET", re.compile(_IID + r"/tasks\Z"), "ListTasks"),
    ("GET", re.compile(_IID + r"/data-source-tasks\Z"), "ListDataSourceTasks"),
    ("GET", re.compile(_IID + r"/pause-policies\Z"), "ListPausePolicys"),
    ("PUT", re.compile(_IID + r"/pause-policies\Z"), "ModifyPausePolicy"),
    ("PUT", re.compile(_IID + r"/force-switch/(?P<fsm>[^/]+)\Z"), "ForceSwitch"),
]


@dataclass
class HttpFaults:
    """Fault injection for the management API; counters are consumed one request at a time."""

    unavailable_next: int = 0  # next N requests: 503 ServiceUnavailable
    throttle_next: int = 0  # next N requests: Throttling with x-acs-retry-after
    throttle_status: int = 429
    throttle_retry_after: int = 1000  # the header value, verbatim: milliseconds, as the SDK reads it
    lose_reindex_answer_next: int = 0  # next N Reindex calls: the build starts, the answer never comes
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take(self) -> str | None:
        with self._lock:
            if self.unavailable_next > 0:
                self.unavailable_next -= 1
                return "unavailable"
            if self.throttle_next > 0:
                self.throttle_next -= 1
                return "throttle"
            return None

    def lose_answer(self, action: str) -> bool:
        """Drop this action's answer after doing the work (a timeout after sending, to the client)?"""
        with self._lock:
            if action == "Reindex" and self.lose_reindex_answer_next > 0:
                self.lose_reindex_answer_next -= 1
                return True
            return False


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} chars)"


class _HttpServer(BoundedHttpServer):
    def __init__(self, address: tuple[str, int], app: LocalOpenSearchServer, limits: Limits) -> None:
        self.app = app
        super().__init__(address, _Handler, limits)


class _Handler(PushApi, StrictRequestHandler):
    server: _HttpServer  # type: ignore[assignment]

    # -- plumbing -----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), _short(format % args))

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s %s -> %s", self.command, _short(getattr(self, "path", "")), code)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self._send_json(code, {"errors": [{"code": int(code), "message": message or HTTPStatus(code).phrase}]})

    def _send_json(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def refuse_body(self, declared: int, limit: int) -> None:
        if self.path.startswith(PUSH_PATH_PREFIX):  # over the server's cap: the push API's own 413 (no auth yet)
            self._push_too_large(declared)
            return
        self.send_error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body must be 0..{limit} bytes")

    def _read_body(self) -> bytes | None:
        """The request body, read once the request is authenticated; None after answering 411 (chunked:
        the SDKs always send Content-Length) or a body that ended early (the connection is then closed).
        An oversized Content-Length never gets here: 413 before the handler runs."""
        if self.body.chunked:
            self.send_error(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not supported; send Content-Length")
            return None
        try:
            return self.body.read()
        except (BadFraming, ConnectionError, TimeoutError):
            self.close_connection = True
            return None

    def _dispatch(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path.startswith("/openapi/"):
                self._management(path)
            elif path in ("/query", "/network/active"):
                self._query(path)
            elif path.startswith(PUSH_PATH_PREFIX):
                self._push(path)
            else:
                self.send_error(HTTPStatus.NOT_FOUND, f"no such path {_short(path, 80)!r}")
        except Exception:  # never crash on input: log and answer
            log.exception("internal error answering %s %s", self.command, _short(path))
            if path.startswith("/openapi/"):
                self._send_json(500, {"requestId": str(uuid.uuid4()).upper(), "code": "InternalError",
                                      "message": "The request processing has failed due to some unknown error."})
            elif path.startswith(PUSH_PATH_PREFIX):
                self._send_json(500, {"status": "FAIL", "request_id": str(uuid.uuid4()),
                                      "errors": [{"code": ERROR_INTERNAL, "message": "internal error: the documents may or may "
                                                                 "not have been received"}]})
            else:
                self._send_json(500, error_result([{"code": ERROR_INTERNAL,
                                                    "message": "ERROR_QRS_PROCESSOR_EXCEPTION: internal error"}]))

    # -- management ---------------------------------------------------------------------------------

    def _management(self, path: str) -> None:
        app = self.server.app
        request_id = str(uuid.uuid4()).upper()
        headers = {"x-acs-request-id": request_id}

        def fail(status: int, code: str, message: str, extra: Mapping[str, str] | None = None) -> None:
            body = {"requestId": request_id, "code": code, "message": message}
            self._send_json(status, body, {**headers, **(extra or {})})

        fault = app.http_faults.take()
        if fault == "unavailable":
            fail(503, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
            return
        if fault == "throttle":
            faults = app.http_faults
            fail(faults.throttle_status, "Throttling", "Request was denied due to request throttling.",
                 {"x-acs-retry-after": str(faults.throttle_retry_after)})
            return
        try:  # the signature first (over the signed body hash), then the body
            credential = verify_acs3_request(self.command, self.path, None, list(self.headers.items()), None,
                                             app.credentials, seen_nonces=app.nonces(), authority=app.authority)
            body = self._read_body()
            if body is None:
                return
            verify_body_sha256(self.headers.get("x-acs-content-sha256", ""), body)
        except Acs3SignatureError as exc:
            log.warning("management request refused: %s %s", exc.code, _short(exc.message, 200))
            if exc.canonical_request:
                log.debug("server canonical request:\n%s", exc.canonical_request)
            self._send_json(exc.http_status, exc.to_response_body(request_id), headers)
            return
        for method, pattern, action in _ROUTES:
            match = pattern.match(path)
            if match and method == self.command:
                break
        else:
            fail(404, "InvalidAction.NotFound", f"Specified api is not found, please check your url and method: "
                 f"{self.command} {_short(path, 100)}")
            return
        params = {k: unquote(v) for k, v in match.groupdict().items()}
        if params["iid"] != app.engine.instance_id:
            fail(404, "instance.NotFound", f"Instance not found: {params['iid'][:80]!r}")
            return
        try:
            result = self._run_action(action, params, body, credential)
        except EngineError as exc:
            log.info("%s refused: %s %s", action, exc.code, exc.message)
            fail(exc.http_status, exc.code, exc.message)
            return
        if app.http_faults.lose_answer(action):
            log.warning("fault: %s was done, its answer is lost (the connection closes)", action)
            self.close_connection = True
            return
        self._send_json(200, {"requestId": request_id, "result": result}, headers)


    def _json_body(self, body: bytes) -> dict[str, Any]:
        if not body:
            return {}
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise EngineError("InvalidParameter", f"the request body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise EngineError("InvalidParameter", "the request body must be a JSON object")
        return data

    def _run_action(self, action: str, params: Mapping[str, str], body: bytes, credential: AcsCredential) -> Any:
        app = self.server.app
        engine = app.engine
        query = dict(parse_qsl(self.path.partition("?")[2], keep_blank_values=True))
        if action == "GetInstance":
            return describe_instance(engine, app.endpoint, app.query_user)
        if action == "ListTables":
            return [{"name": t, "status": "IN_USE", "indexStatus": "IN_USE"} for t in engine.tables]
        if action == "GetTable":
            return describe_table(engine, params["table"])
        if action == "Reindex":
            data = self._json_body(body)
            if data.get("ossDataPath") and not data.get("partition"):
                raise EngineError("InvalidParameter", "ossDataPath is not supported: this table's data source is "
                                  "a MaxCompute-style warehouse; give partition=ds=YYYYMMDD")
            seconds = data.get("dataTimeSec")
            if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int)):
                raise EngineError("InvalidParameter", f"dataTimeSec must be an integer, got {seconds!r}")
            engine.reindex(params["table"], data.get("partition"), seconds, user=credential.access_key_id)
            return {}
        if action == "ListTableGenerations":
            return [{"generationId": g["generationId"]} for g in engine.list_generations(params["table"])]
        if action == "GetTableGeneration":
            return describe_generation(engine, params["table"], params["gen"], app.report_build_figures)
        if action == "ListTasks":
            bounds: dict[str, int | None] = {}
            for key in ("start", "end"):
                text = query.get(key)
                if text is not None and not re.fullmatch(r"-?\d{1,12}", text):
                    raise EngineError("InvalidParameter", f"{key} must be epoch seconds, got {text[:40]!r}")
                bounds[key] = int(text) if text is not None else None
            return engine.list_tasks(bounds["start"], bounds["end"])
        if action == "ListDataSourceTasks":
            return engine.list_tasks()
        if action == "ListPausePolicys":
            return engine.pause_policies()
        if action == "ModifyPausePolicy":
            engine.modify_pause_policy(self._json_body(body))
            return {}
        if action == "ForceSwitch":
            engine.force_switch(params["fsm"])
            return {}
        raise AssertionError(action)

    # -- queries ------------------------------------------------------------------------------------

    def _authorized(self) -> bool:
        app = self.server.app
        scheme, _, token = (self.headers.get("Authorization") or "").strip().partition(" ")
        if scheme.lower() != "basic" or not token:
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), app.query_user.encode())
        ok_password = hmac.compare_digest(password.encode(), app.query_password.encode())
        return bool(sep) and ok_user and ok_password

    def _query(self, path: str) -> None:
        if not self._authorized():
            log.warning("query refused: wrong or missing Basic auth from %s", self.address_string())
            self._send_json(401, error_result([{"code": ERROR_UNAUTHORIZED, "message":
                            "Unauthorized: wrong or missing Basic credentials (the instance's query user name "
                            "and password)"}]), {"WWW-Authenticate": 'Basic realm="opensearch"'})
            return
        body = self._read_body()
        if body is None:
            return
        if path == "/network/active":
            self._send_json(200, {"result": {}, "errors": []})
            return
        params = dict(parse_qsl(self.path.partition("?")[2], keep_blank_values=True))
        if params.get("type") == "sql":
            self._ha_error(ERROR_SQL_NOT_SUPPORTED, "ERROR_SQL_INIT_REQUEST: SQL is not supported for vectorized "
                           "image retrieval (vendor constraint); use HA syntax")
            return
        if self.command == "GET":
            text = params.get("query", "")
        elif self.command == "POST":
            try:
                data = json.loads(body or b"{}")
            except ValueError as exc:
                self._ha_error(ERROR_PARSE_SYNTAX, f"ERROR_PARSE_SYNTAX: the body is not JSON: {exc}")
                return
            text = data.get("assemblyQuery", "") if isinstance(data, dict) else ""
        else:
            self.send_error(HTTPStatus.METHOD_NOT_ALLOWED, "use GET /query?query=... or POST /query")
            return
        if not isinstance(text, str) or not text.strip():
            self._ha_error(ERROR_EMPTY_QUERY_STRING, "ERROR_EMPTY_QUERY_STRING: no query: send query=<HA string> or "
                           '{"assemblyQuery": "<HA string>"}')
            return
        engine = self.server.app.engine
        try:
            query = parse_ha_query(text)
            table = engine.resolve_cluster(query.cluster or query.config.extra.get("cluster"))
            answer = engine.search(table, query)
        except HaQueryError as exc:
            log.info("query error %s: %s", exc.code, _short(exc.message, 200))
            self._send_json(200, error_result([exc.to_error_dict()]))
            return
        log.debug("query on %s: %s hits", table, answer["result"]["totalHits"])
        self._send_json(200, answer)

    def _ha_error(self, code: int, message: str) -> None:
        self._send_json(200, error_result([{"code": code, "message": message}]))


class LocalOpenSearchServer:
    """The management and query APIs of one local instance, on 127.0.0.1. Owns the engine's lifetime.

    ``endpoint`` is ``127.0.0.1:PORT`` (searchengine SDK: ``Config(endpoint=..., protocol='http')``;
    ha3engine SDK: ``Config(endpoint=..., protocol='http')``); ``url`` is ``http://127.0.0.1:PORT``.
    """

    def __init__(
        self,
        engine: LocalEngine,
        credentials: Sequence[AcsCredential],
        query_user: str,
        query_password: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        http_faults: HttpFaults | None = None,
        authority: TokenAuthority | None = None,
        report_build_figures: bool = True,
        limits: Limits = OPENSEARCH_LIMITS,
        push_max_bytes_per_s: int | None = None,
        push_retention_s: float | None = None,
    ) -> None:
        if host == "localhost":
            host = "127.0.0.1"
        if not host.startswith("127."):
            raise ValueError(f"the local OpenSearch server binds to loopback only, not {host!r}")
        if not credentials:
            raise ValueError("at least one AccessKey pair is required: management requests must be signed")
        if not query_user or not query_password:
            raise ValueError("query_user and query_password are required (HTTP Basic auth of the query API)")
        self.engine = engine
        engine.configure_pushes(max_bytes_per_s=push_max_bytes_per_s, retention_s=push_retention_s)  # None: kept
        self.credentials: dict[str, AcsCredential] = {}
        for cred in credentials:
            known = self.credentials.setdefault(cred.access_key_id, cred)
            if known.access_key_secret != cred.access_key_secret:
                raise ValueError(f"AccessKey ID {cred.access_key_id!r} is configured twice with different secrets")
        self.authority = authority  # the account's STS: its temporary credentials are accepted
        self.query_user = query_user
        self.query_password = query_password
        self.http_faults = http_faults or HttpFaults()
        # False: GetTableGeneration answers only its documented fields, as the cloud documents it.
        self.report_build_figures = report_build_figures
        self._host, self._port = host, port
        self.limits = limits  # HTTP limits: workers, timeouts, request line, headers, body
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._nonces: set[str] = set()

    def nonces(self) -> set[str]:
        """Signature nonces seen (replay protection), bounded so a long run does not grow forever."""
        if len(self._nonces) > 100_000:
            self._nonces.clear()
        return self._nonces

    def start(self) -> LocalOpenSearchServer:
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._httpd = _HttpServer((self._host, self._port), self, self.limits)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="local-opensearch-server", daemon=True)
        self._thread.start()
        log.debug("local OpenSearch server for %s at %s", self.engine.instance_id, self.url)
        return self

    def stop(self) -> None:
        """Stop serving, cut kept-alive connections, close the engine (stalled builds end); idempotent."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()  # cuts kept-alive connections too
            if self._thread is not None:
                self._thread.join(timeout=5)
                self._thread = None
        self.engine.close()

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started: the port is chosen at start()")
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.endpoint}"

    def __enter__(self) -> LocalOpenSearchServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
