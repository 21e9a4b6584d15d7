"""The local MaxCompute server: one HTTP port serving the REST API under ``/api`` (the endpoint pyodps
is given, ``http://127.0.0.1:PORT/api``) and the Tunnel at the root (the address ``/projects/<p>/tunnel
?service`` hands out), every request signed and verified (:mod:`localcloud.maxcompute.auth`).

Routes (``<p>`` a project, ``<t>`` a table):

* ``GET  /api/projects/<p>``                               the project (``?extended`` too)
* ``GET  /api/projects/<p>/tunnel?service``                the tunnel's address
* ``GET  /api/projects/<p>/tables[?expectmarker&marker&maxitems]``   tables, paged
* ``GET  /api/projects/<p>/tables/<t>``                    table and schema (``?extended``; ``?partitions``
  lists partitions, paged; ``?partition=ds=x`` one partition, 404 ``NoSuchObject`` when absent)
* ``POST /api/projects/<p>/instances``                     submit a SQL job (201, ``Location``)
* ``GET  /api/projects/<p>/instances/<id>``                status (``?instancestatus`` waits up to 5 s),
  ``?taskstatus``, ``?result``, ``?source``; ``PUT`` stops it
* tunnel requests (``?uploads``, ``?uploadid=``, ``?downloads``, ``?downloadid=`` on a table or an
  instance): :mod:`localcloud.maxcompute.tunnel`

DDL and partition changes go through SQL, as pyodps sends them. Errors are the service's ``<Error>``
XML (REST) or JSON (tunnel), codes pyodps maps to its exception classes.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from localcloud.http_service import BackgroundHttpService, BadFraming, Limits, RequestBody, StrictRequestHandler
from localcloud.maxcompute import rest
from localcloud.maxcompute.auth import Caller, RequestVerifier
from localcloud.maxcompute.errors import MaxComputeError, invalid_parameter, no_such_object
from localcloud.maxcompute.external_read import AssumeRole, ExternalReader
from localcloud.maxcompute.instances import InstanceRunner, parse_job
from localcloud.maxcompute.sql import SqlEngine
from localcloud.maxcompute.store import MaxComputeStore, parse_spec
from localcloud.maxcompute.tunnel import ConnectionResetFault, TunnelRequest, TunnelService
from localcloud.ram import TokenAuthority

log = logging.getLogger(__name__)

API_PREFIX = "/api"
#: Partitions and tables per listing page unless the client asks for fewer (the service pages too).
PAGE_SIZE = 1000
BLOCKING_STATUS_WAIT_S = 5.0
#: The tunnel closes a connection on which no data has flowed for this long (TableTunnel's documented
#: 120 s): a fixed-block writer fed slower than that is cut off in the cloud, so it is here too.
TUNNEL_IDLE_TIMEOUT_S = 120.0
_PATH = re.compile(r"^/projects/(?P<project>[^/]+)(?:/(?P<kind>tables|instances|tunnel|logs)(?:/(?P<name>[^/]+))?)?/?$")


@dataclass
class MaxComputeFaults:
    """Knobs the tests turn (all off by default); the tunnel's own are on ``server.tunnel.faults``."""

    error_burst: int = 0          # the next N requests answer 500 InternalServerError (nothing done)
    error_status: int = 500       # ... or 503 ServiceUnavailable / 502, which pyodps retries for GET/PUT
    throttle_burst: int = 0       # the next N requests answer 429 QPSExceeded (nothing done)
    sql_delay_s: float = 0.0      # every SQL task takes at least this long

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Every knob back off (tests share one server)."""
        with self._lock:
            self.error_burst, self.error_status, self.throttle_burst, self.sql_delay_s = 0, 500, 0, 0.0

    def take(self) -> MaxComputeError | None:
        with self._lock:
            if self.error_burst > 0:
                self.error_burst -= 1
                code = {503: "ServiceUnavailable", 502: "BadGateway"}.get(self.error_status, "InternalServerError")
                return MaxComputeError(self.error_status, code, "ODPS-0010000:System internal error - injected fault")
            if self.throttle_burst > 0:
                self.throttle_burst -= 1
                return MaxComputeError(429, "QPSExceeded", "ODPS-0420095:Access Denied - request rate exceeded, "
                                       "please retry later (injected)")
        return None


class LocalMaxComputeServer(BackgroundHttpService):
    """The projects under ``root``, served to the holders of ``credentials`` (AccessKey ID -> secret)
    and of temporary credentials from ``authority``. ``projects`` are created if missing."""

    name = "local-maxcompute"
    # The service's own limits on request lines and headers are not documented; these are generous for
    # pyodps (its longest lines are tunnel URLs with a partition spec). Bodies (tunnel blocks) are
    # streamed, so not capped here; the tunnel's idle timeout still applies.
    limits = Limits(max_workers=64, max_request_line=16 * 1024, max_header_bytes=64 * 1024)

    def __init__(self, root: Path, credentials: Mapping[str, str], *, projects: Iterable[str] = ("local",),
                 region: str = "cn-hangzhou", authority: TokenAuthority | None = None,
                 allow_full_scan: bool = False, port: int = 0, faults: MaxComputeFaults | None = None,
                 assume_role: AssumeRole | None = None, oss_endpoints: Mapping[str, str] | None = None) -> None:
        """``assume_role(role_arn, session_name)``: temporary credentials for the role an external table
        names (the stack passes :class:`localcloud.ram.ServiceRoles`); ``oss_endpoints``: the OSS endpoints
        a LOCATION may name, mapped to the local OSS's URL (see :mod:`localcloud.maxcompute.external_read`)."""
        super().__init__(port)
        self.root = Path(root)
        self.store = MaxComputeStore(self.root / "projects")
        for project in projects:
            self.store.create_project(project)
        self.region = region
        self.verifier = RequestVerifier(credentials, region, authority=authority)
        self.engine = SqlEngine(self.store, allow_full_scan=allow_full_scan,
                                external=ExternalReader(assume_role, oss_endpoints, region),
                                scratch=self.root / "scratch")
        self.instances = InstanceRunner(self.engine, sql_delay_s=lambda: self.faults.sql_delay_s)
        self.tunnel = TunnelService(self.store, self.root / "tunnel", instance_results=self._instance_result)
        self.faults = faults or MaxComputeFaults()
        self.page_size = PAGE_SIZE  # tests shrink it to prove clients follow the markers
        self.tunnel_idle_timeout_s = TUNNEL_IDLE_TIMEOUT_S  # tests shrink it to prove a stalled block is cut
        self.created = time.time()
        self._expiry_stop = threading.Event()

    @property
    def authority(self) -> TokenAuthority | None:
        return self.verifier.authority

    @authority.setter
    def authority(self, value: TokenAuthority | None) -> None:
        self.verifier.authority = value

    @property
    def endpoint(self) -> str:
        """What pyodps is given (``ODPS(endpoint=...)``)."""
        return f"http://{self.address}{API_PREFIX}"

    @property
    def tunnel_endpoint(self) -> str:
        return f"http://{self.address}"

    def start(self) -> LocalMaxComputeServer:
        gone = self.store.expire()
        if gone:
            log.info("lifecycle reclaimed %s", ", ".join(gone))
        super().start()
        threading.Thread(target=self._expire_daily, name="maxcompute-lifecycle", daemon=True).start()
        return self

    def stop(self) -> None:
        self._expiry_stop.set()
        super().stop()
        self.instances.close()

    def _expire_daily(self) -> None:
        while not self._expiry_stop.wait(3600):
            self.store.expire()

    def _instance_result(self, project: str, instance_id: str) -> tuple[list, Any]:
        instance = self.instances.get(project, instance_id)
        if not instance.done.is_set():
            raise MaxComputeError(400, "InstanceNotTerminate", f"instance {instance_id} is still running")
        if instance.error is not None or instance.result is None or instance.result.table is None:
            raise MaxComputeError(400, "InvalidArgument", f"instance {instance_id} has no result to download "
                                  "(it failed, or its statement is not a SELECT)")
        return instance.result.columns, instance.result.table

    def handler_class(self) -> type[StrictRequestHandler]:
        server = self

        class Handler(_Handler):
            pass

        Handler.server_ref = server
        return Handler


class _Handler(StrictRequestHandler):
    server_ref: LocalMaxComputeServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read logs, not access lines
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    # -- plumbing -----------------------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        self.request_id = uuid.uuid4().hex.upper()
        self._caller: Caller | None = None
        is_rest = self.path == API_PREFIX or self.path.startswith(API_PREFIX + "/")
        resource = self.path[len(API_PREFIX):] if is_rest else self.path
        try:
            fault = self.server_ref.faults.take()
            if fault is not None:
                self._drain()
                raise fault
            if not is_rest:
                self.connection.settimeout(self.server_ref.tunnel_idle_timeout_s)
            caller = self._caller = self.server_ref.verifier.verify(method, resource, dict(self.headers.items()))
            parts = urlsplit(resource)
            params = dict(parse_qsl(parts.query, keep_blank_values=True))
            match = _PATH.match(unquote(parts.path))
            if match is None:
                raise no_such_object(f"no such resource: {parts.path}")
            self._route(method, match, params, caller, is_rest)
        except ConnectionResetFault:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        except MaxComputeError as exc:
            self._error(exc, tunnel=not is_rest)
        except BadFraming as exc:
            self.close_connection = True
            self._error(MaxComputeError(400, "InvalidArgument", f"ODPS-0110061:Invalid request body - {exc}"),
                        tunnel=not is_rest)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception as exc:
            log.exception("local MaxCompute failed on %s %s", method, self.path)
            self._error(MaxComputeError(500, "InternalServerError", f"ODPS-0010000:System internal error - {exc}"),
                        tunnel=not is_rest)
        finally:
            if not self.close_connection:
                self.connection.settimeout(None)  # between requests, a keep-alive connection may idle

    def _route(self, method: str, match: re.Match, params: dict[str, str], caller: Caller, is_rest: bool) -> None:
        server = self.server_ref
        project, kind, name = unquote(match["project"]), match["kind"], match["name"] and unquote(match["name"])
        if not server.store.project_exists(project):
            self._drain()
            raise MaxComputeError(404, "NoSuchProject", f"ODPS-0420111:Project not found - '{project}'")
        if kind in ("tables", "instances") and name and server.tunnel.handles(params, instance=kind == "instances"):
            request = TunnelRequest(method, project, name if kind == "tables" else None,
                                    name if kind == "instances" else None, params, self.headers, self._body())
            response = server.tunnel.handle(request)
            self._drain()
            return self._send(response.status, response.body, {**response.headers})
        body = self._read_body()
        if kind is None and method == "GET":
            return self._send(200, rest.project_xml(project, server.created), _XML)
        if kind == "logs" and method == "PUT":  # pyodps' usage survey: accepted, dropped
            return self._send(200, b"", {})
        if kind == "tunnel" and method == "GET" and "service" in params:
            return self._send(200, server.address.encode(), {"Content-Type": "text/plain"})
        if kind == "tables" and method == "GET":
            return self._tables(project, name, params)
        if kind == "instances":
            return self._instances(method, project, name, params, body, caller)
        raise MaxComputeError(405, "MethodNotAllowed", f"{method} is not supported on {self.path}")

    def _tables(self, project: str, name: str | None, params: dict[str, str]) -> None:
        store = self.server_ref.store
        marker, max_items = params.get("marker", ""), _max_items(params, self.server_ref.page_size)
        if name is None:
            tables = [t for t in store.list_tables(project) if t.name > marker]
            if params.get("name"):
                tables = [t for t in tables if params["name"].lower() in t.name]
            page, next_marker = tables[:max_items], (tables[max_items - 1].name if len(tables) > max_items else "")
            return self._send(200, rest.tables_xml(page, next_marker, max_items), _XML)
        meta = store.get_table(project, name)
        if "partitions" in params:
            wanted = parse_spec(params["partition"]) if params.get("partition") else {}
            partitions = [p for p in store.list_partitions(project, name)
                          if p.spec_text > marker and all(p.spec_dict.get(k) == v for k, v in wanted.items())]
            if "reverse" in params:
                partitions.reverse()
            page = partitions[:max_items]
            next_marker = page[-1].spec_text if len(partitions) > max_items else ""
            return self._send(200, rest.partitions_xml(page, next_marker, max_items), _XML)
        if "partition" in params:
            return self._send(200, rest.partition_xml(store.get_partition(project, name, params["partition"])), _XML)
        snapshot = store.parquet_files(project, name)
        size = sum(f.stat().st_size for _, files in snapshot for f in files if f.exists())
        if "extended" in params:
            return self._send(200, rest.table_extended_xml(meta, size, sum(len(f) for _, f in snapshot)), _XML)
        return self._send(200, rest.table_xml(meta, size), _XML)

    def _instances(self, method: str, project: str, instance_id: str | None, params: dict[str, str],
                   body: bytes, caller: Caller) -> None:
        runner = self.server_ref.instances
        if instance_id is None:
            if method != "POST":
                raise MaxComputeError(405, "MethodNotAllowed", "listing instances is not supported locally")
            instance = runner.submit(project, parse_job(body), f"ALIYUN${caller.access_key_id}")
            location = f"{self.server_ref.endpoint}/projects/{project}/instances/{instance.id}"
            return self._send(201, b"", {"Location": location, **rest.instance_headers(instance)})
        instance = runner.get(project, instance_id)
        if method == "PUT":  # stop: a finished instance stays as it ended
            return self._send(200, b"", {})
        if method != "GET":
            raise MaxComputeError(405, "MethodNotAllowed", f"{method} on an instance")
        headers = {**_XML, **rest.instance_headers(instance)}
        if "instancestatus" in params:
            instance.done.wait(BLOCKING_STATUS_WAIT_S)
            return self._send(200, rest.instance_status_xml(instance), {**_XML, **rest.instance_headers(instance)})
        if "taskstatus" in params:
            return self._send(200, rest.task_status_xml(instance), headers)
        if "result" in params:
            return self._send(200, rest.task_result_xml(instance), headers)
        if "source" in params:
            return self._send(200, instance.job.source.encode(), headers)
        if set(params) - {"curr_project"}:
            raise invalid_parameter(f"instance action(s) {sorted(set(params) - {'curr_project'})} are not supported locally")
        return self._send(200, rest.instance_status_xml(instance), headers)

    # -- responses ----------------------------------------------------------------------------------

    def _body(self) -> RequestBody:
        """This request's body stream, read only once the request is authenticated."""
        return self.body

    def _read_body(self) -> bytes:
        return self._body().read()

    def _drain(self) -> None:
        """Consume what the request still has to send, so the next request on this connection starts
        clean (an authenticated caller's refused block is read to its end, as the service does, then
        answered). An unauthenticated request's body is never read: the answer goes out at once and the
        connection is closed (the server drops what still comes, for a while, after answering)."""
        if self._caller is None:
            self.close_connection = True
            return
        try:
            self.body.discard()
        except (OSError, ValueError):  # reset, closed, timed out, or malformed chunks
            self.close_connection = True

    def _error(self, exc: MaxComputeError, *, tunnel: bool) -> None:
        self._drain()
        if tunnel:
            body = json.dumps({"Code": exc.code, "Message": exc.message, "RequestId": self.request_id}).encode()
            headers = {"Content-Type": "application/json"}
        else:
            body, headers = rest.error_xml(exc.code, exc.message, self.request_id), dict(_XML)
        try:
            self._send(exc.status, body, headers)
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def _send(self, status: int, body: bytes | Iterable[bytes], headers: Mapping[str, str]) -> None:
        self.send_response(status)
        self.send_header("x-odps-request-id", self.request_id)
        self.send_header("Date", rest.rfc822(time.time()))
        for key, value in headers.items():
            self.send_header(key, value)
        if isinstance(body, (bytes, bytearray)):
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in body:
            if chunk:
                self.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
        self.wfile.write(b"0\r\n\r\n")


_XML = {"Content-Type": "application/xml"}


def _max_items(params: Mapping[str, str], page_size: int) -> int:
    try:
        return max(1, min(int(params.get("maxitems") or page_size), page_size))
    except ValueError:
        raise invalid_parameter(f"maxitems must be a number, not {params.get('maxitems')!r}") from None
