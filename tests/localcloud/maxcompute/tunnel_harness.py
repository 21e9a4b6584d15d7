"""Test-only: a bare HTTP server that puts TunnelService (over the real MaxComputeStore) on the wire for
the real pyodps client. No signatures are checked (the server module does that).

What it fakes besides the tunnel: ``GET /projects/{p}/tunnel?service`` (answers its own host:port, as
the lead's server will) and ``GET /projects/{p}/tables/{t}[?extended]`` (the table XML with its schema JSON, which
``odps.get_table(...).open_reader()`` loads first). Anything else answers 404 and is recorded in
``unexpected`` so a test sees which REST calls pyodps made that this harness does not know.
"""

from __future__ import annotations

import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit
from xml.sax.saxutils import escape

from localcloud.maxcompute.errors import MaxComputeError
from localcloud.maxcompute.store import MaxComputeStore, TableMeta
from localcloud.maxcompute.tunnel import ConnectionResetFault, TunnelRequest, TunnelService, _columns_json


class _Dechunked(io.RawIOBase):
    """A chunked request body as a plain stream (what the lead's server hands the tunnel)."""

    def __init__(self, rfile) -> None:
        self._rfile, self._left, self.done = rfile, 0, False

    def read(self, n: int = -1) -> bytes:
        out = bytearray()
        while not self.done and (n < 0 or len(out) < n):
            if self._left == 0:
                size = int(self._rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    self.done = True
                    break
                self._left = size
            data = self._rfile.read(self._left if n < 0 else min(self._left, n - len(out)))
            if not data:
                raise ConnectionError("client closed the body early")
            out += data
            self._left -= len(data)
            if self._left == 0:
                self._rfile.readline()
        return bytes(out)


class _Limited(io.RawIOBase):
    def __init__(self, rfile, length: int) -> None:
        self._rfile, self._left = rfile, length

    @property
    def done(self) -> bool:
        return self._left == 0

    def read(self, n: int = -1) -> bytes:
        take = self._left if n < 0 else min(n, self._left)
        data = self._rfile.read(take) if take else b""
        self._left -= len(data)
        return data


def _table_xml(project: str, meta: TableMeta) -> bytes:
    schema = {"columns": _columns_json(list(meta.columns)),
              "partitionKeys": _columns_json(list(meta.partition_columns))}
    return (f"<?xml version='1.0' encoding='UTF-8'?><Table><Name>{meta.name}</Name>"
            f"<TableId>{meta.name}</TableId><Owner>local</Owner><Project>{project}</Project>"
            f"<Schema><![CDATA[{json.dumps(schema)}]]></Schema></Table>").encode()


class TunnelHarness:
    def __init__(self, service: TunnelService, store: MaxComputeStore) -> None:
        self.service, self.store = service, store
        self.unexpected: list[str] = []
        self.tamper = None  # bytes -> bytes applied to each PUT body: corruption on the wire
        self.requests: list[tuple[str, str]] = []
        harness = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                harness._serve(self)

            do_PUT = do_POST = do_GET

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "TunnelHarness":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        parts = [unquote(p) for p in url.path.split("/") if p]
        if parts[:1] == ["api"]:
            parts = parts[1:]
        self.requests.append((h.command, h.path))
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = _Dechunked(h.rfile)
        else:
            body = _Limited(h.rfile, int(h.headers.get("Content-Length") or 0))
        if self.tamper is not None and h.command == "PUT":
            tampered = _Limited(io.BytesIO(self.tamper(body.read())), 0)
            tampered._left = len(tampered._rfile.getvalue())
            body = tampered
        try:
            self._route(h, parts, params, body)
        except ConnectionResetFault:
            # what the lead's server does: drop the connection, answer nothing
            h.close_connection = True
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            h.connection.close()
            return
        except MaxComputeError as exc:
            headers = {"Content-Type": "application/json"}
            if not body.done:  # an error before the body was read: the connection cannot be reused
                headers["Connection"] = "close"
                h.close_connection = True
            payload = json.dumps({"Code": exc.code, "Message": exc.message, "RequestId": "local"}).encode()
            self._send(h, exc.status, headers, payload)

    def _route(self, h, parts, params, body) -> None:
        if len(parts) >= 2 and parts[0] == "projects":
            project, rest = parts[1], parts[2:]
            if rest[:2] == ["schemas"] and len(rest) >= 2:
                rest = rest[2:]
            if rest == ["tunnel"] and "service" in params:
                return self._send(h, 200, {"Content-Type": "text/plain"}, self.address.encode())
            kind = rest[0] if rest else None
            if kind in ("tables", "instances") and len(rest) == 2:
                instance = kind == "instances"
                if self.service.handles(params, instance=instance):
                    resp = self.service.handle(TunnelRequest(
                        h.command, project, None if instance else rest[1], rest[1] if instance else None,
                        params, h.headers, body))
                    return self._send(h, resp.status, resp.headers, resp.body)
                if kind == "tables" and h.command == "GET" and not params.keys() - {"curr_project", "extended"}:
                    meta = self.store.get_table(project, rest[1])
                    return self._send(h, 200, {"Content-Type": "application/xml"}, _table_xml(project, meta))
        self.unexpected.append(f"{h.command} {h.path}")
        raise MaxComputeError(404, "NoSuchObject", f"the tunnel harness does not answer {h.command} {h.path}")

    @staticmethod
    def _send(h, status, headers, body) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("x-odps-request-id", "local")
        if isinstance(body, (bytes, bytearray)):
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for chunk in body:
            if chunk:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        h.wfile.write(b"0\r\n\r\n")
