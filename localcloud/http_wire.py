"""The wire side of one request on a :class:`~localcloud.http_service.BoundedHttpServer`: limits,
framing checks, the body read on demand, and the handler base every local service derives from.

See :mod:`localcloud.http_service` for what is checked and why.
"""

from __future__ import annotations

import re
import socket
import socketserver
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from localcloud.http_service import BoundedHttpServer

_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[^\r\n]*)?\r\n\Z")


@dataclass(frozen=True)
class Limits:
    """What one server accepts; each service sets its own (see its module)."""

    max_workers: int = 32  # requests answered at once (worker threads)
    max_connections: int = 1024  # open connections, idle and busy
    header_timeout_s: float = 10.0  # request line + headers must arrive within this long
    idle_timeout_s: float = 120.0  # a kept-alive connection may idle this long; also each body read/write
    max_request_line: int = 16 * 1024  # bytes, CRLF included
    max_headers: int = 100  # header lines
    max_header_bytes: int = 64 * 1024  # the header block after the request line
    max_pending_bytes: int = 64 * 1024 * 1024  # header bytes buffered for all connections together
    max_body: int | None = None  # declared Content-Length above this is refused (None: no cap)
    linger_s: float = 2.0  # after refusing a body: read and drop what still comes, this long...
    linger_bytes: int = 16 * 1024 * 1024  # ...and at most this much
    worker_idle_s: float = 2.0  # an idle worker thread exits after this long


class BadFraming(ValueError):
    """The request's framing (length, chunks) is invalid: 400, and the connection is closed."""


class BodyTooLarge(BadFraming):
    """A chunked body grew past ``Limits.max_body``."""


class _ConnReader:
    """The handler's ``rfile``: the bytes the dispatcher already read, then the socket."""

    def __init__(self, sock: socket.socket, prefix: bytes) -> None:
        self._sock = sock
        self._buf = bytearray(prefix)

    def _fill(self) -> bool:
        data = self._sock.recv(256 * 1024)
        self._buf += data
        return bool(data)

    def readline(self, limit: int = -1) -> bytes:
        start = 0
        while True:
            nl = self._buf.find(b"\n", start)
            if nl >= 0 and (limit < 0 or nl < limit):
                return self._take(nl + 1)
            if 0 <= limit <= len(self._buf):
                return self._take(limit)
            start = len(self._buf)
            if not self._fill():
                return self._take(len(self._buf))

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buf) < size:
            if not self._fill():
                break
        return self._take(len(self._buf) if size < 0 else min(size, len(self._buf)))

    def read1(self, size: int) -> bytes:
        """At most ``size`` bytes, reading the socket at most once."""
        if not self._buf:
            self._fill()
        return self._take(min(size, len(self._buf)))

    def _take(self, count: int) -> bytes:
        out = bytes(self._buf[:count])
        del self._buf[:count]
        return out

    def leftover(self) -> bytes:
        return self._take(len(self._buf))

    def close(self) -> None:
        pass


class RequestBody:
    """A request's body, read on demand: ``Content-Length`` bytes or a strictly parsed chunked stream."""

    def __init__(self, handler: StrictRequestHandler, length: int, chunked: bool) -> None:
        self._handler = handler
        self._rfile = handler.rfile
        self.chunked = chunked
        self.declared = None if chunked else length  # None: chunked, length unknown
        self._left = 0 if chunked else length
        self._total = 0
        self.done = not chunked and length == 0
        self._continued = False

    def _continue(self) -> None:
        if not self._continued:
            self._continued = True
            self._handler.send_continue_if_expected()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all when negative); b"" once the body is complete."""
        out = bytearray()
        while not self.done and (size < 0 or len(out) < size):
            out += self._read_some(256 * 1024 if size < 0 else size - len(out))
        return bytes(out)

    def chunks(self, size: int = 256 * 1024) -> Iterator[bytes]:
        while not self.done:
            data = self._read_some(size)
            if data:
                yield data

    def discard(self) -> None:
        for _ in self.chunks():
            pass

    def _read_some(self, size: int) -> bytes:
        self._continue()
        if self._left == 0 and self.chunked:
            self._next_chunk()
            if self.done:
                return b""
        data = self._rfile.read1(min(size, self._left))
        if not data:
            raise ConnectionResetError("the client closed the connection mid-body")
        self._left -= len(data)
        if self._left == 0:
            if self.chunked:
                if self._rfile.read(2) != b"\r\n":
                    raise BadFraming("a chunk's data is not followed by CRLF")
            else:
                self.done = True
        return data

    def _next_chunk(self) -> None:
        line = self._rfile.readline(4097)
        match = _CHUNK_SIZE.match(line)
        if match is None:
            if not line:
                raise ConnectionResetError("the client closed the connection mid-body")
            raise BadFraming("malformed chunk size line")
        self._left = int(match.group(1), 16)
        self._total += self._left
        limit = self._handler.server.limits.max_body
        if limit is not None and self._total > limit:
            raise BodyTooLarge(f"the chunked body is larger than {limit} bytes")
        if self._left == 0:
            for _ in range(self._handler.server.limits.max_headers + 1):  # trailers, then a blank line
                trailer = self._rfile.readline(8193)
                if trailer == b"\r\n":
                    self.done = True
                    return
                if not trailer.endswith(b"\r\n"):
                    break
            raise BadFraming("malformed or endless chunked trailer")


class StrictRequestHandler(BaseHTTPRequestHandler):
    """The handler base of :class:`BoundedHttpServer`: checks framing, then runs ``do_<METHOD>``.

    A subclass reads the body through :attr:`body` only once it has authenticated the request, and
    may override :meth:`refuse_body` to answer an oversized ``Content-Length`` in its service's words
    and :meth:`send_error` for protocol errors (400, 414, 431, 503) in its service's format.
    """

    server: BoundedHttpServer
    protocol_version = "HTTP/1.1"
    body: RequestBody

    def __init__(self, request: socket.socket, client_address: object, server: BoundedHttpServer, *,
                 prefix: bytes = b"", verdict: tuple[int, str] | None = None) -> None:
        self._prefix, self._verdict = prefix, verdict
        self._close_announced = False
        self._expect_continue = False
        super().__init__(request, client_address, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        self.connection = self.request
        self.rfile = _ConnReader(self.connection, self._prefix)  # type: ignore[assignment]
        self.wfile = socketserver._SocketWriter(self.connection)  # type: ignore[attr-defined]

    def finish(self) -> None:
        try:
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    @property
    def body_done(self) -> bool:
        body = getattr(self, "body", None)
        return body is None or body.done

    def handle(self) -> None:
        """One request per call: between requests the connection goes back to the dispatcher."""
        self.close_connection = True
        if self._verdict is not None:
            self.command, self.request_version, self.requestline = "", "HTTP/1.1", ""
            self.send_error(*self._verdict)
            return
        try:
            self.handle_one_request()
        except (ConnectionError, TimeoutError):
            self.close_connection = True

    def handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(self.server.limits.max_request_line + 1)
        if not self.raw_requestline:
            return
        if not self.parse_request():
            self.close_connection = True
            return
        problem = self._framing_problem()
        if problem is not None:
            self.close_connection = True
            self.send_error(400, problem)
            return
        chunked = "transfer-encoding" in self._raw_names
        self.body = RequestBody(self, 0 if chunked else int(self.headers.get("Content-Length") or 0), chunked)
        limit = self.server.limits.max_body
        if limit is not None and not chunked and self.body.declared is not None and self.body.declared > limit:
            self.close_connection = True
            self.refuse_body(self.body.declared, limit)
            return
        method = getattr(self, "do_" + self.command, None)
        if method is None:
            self.close_connection = True
            self.send_error(501, f"Unsupported method ({self.command[:20]!r})")
            return
        method()
        self.wfile.flush()
        if not self.body.done:
            self.close_connection = True

    def _framing_problem(self) -> str | None:
        """Why this request's framing is ambiguous or unsupported (None: it is fine)."""
        head = self._prefix.split(b"\n", 1)[1] if b"\n" in self._prefix else b""
        names: list[str] = []
        for raw in head.split(b"\n"):
            line = raw.rstrip(b"\r")
            if not line:
                break
            if line[:1] in (b" ", b"\t"):
                return "obsolete line folding in the request headers"
            name, colon, _ = line.partition(b":")
            if not colon or not _TOKEN.match(name):
                return f"malformed request header line {line[:40]!r}"
            names.append(name.decode("ascii").lower())
        self._raw_names = names
        lengths = self.headers.get_all("Content-Length") or []
        codings = self.headers.get_all("Transfer-Encoding") or []
        if len(lengths) > 1:
            return "Content-Length appears more than once"
        if lengths and not re.fullmatch(r"[0-9]{1,19}", lengths[0].strip(" \t")):
            return f"Content-Length is not a number: {lengths[0][:40]!r}"
        if codings:
            if lengths:
                return "both Content-Length and Transfer-Encoding: the body's length is ambiguous"
            if self.request_version == "HTTP/1.0":
                return "Transfer-Encoding on an HTTP/1.0 request"
            listed = [c.strip(" \t").lower() for value in codings for c in value.split(",")]
            if listed != ["chunked"]:
                return (f"unsupported Transfer-Encoding {', '.join(codings)[:60]!r}: only 'chunked' is accepted "
                        "(and it must be the only and last coding)")
        return None

    # -- answers -----------------------------------------------------------------------------------

    def refuse_body(self, declared: int, limit: int) -> None:
        """Answer a request whose declared body is larger than the service accepts."""
        self.send_error(413, f"The request body must be at most {limit} bytes")

    def handle_expect_100(self) -> bool:
        """Do not invite the body before the request is authenticated: 100 goes out on the first read."""
        self._expect_continue = True
        return True

    def send_continue_if_expected(self) -> None:
        if self._expect_continue:
            self._expect_continue = False
            self.send_response_only(100)
            self.end_headers()

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "connection" and value.lower() == "close":
            self._close_announced = True
            self.close_connection = True
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        # An answer after which the connection ends (the body unread, or closing anyway) says so.
        closing = self.close_connection or not self.body_done
        if closing and not self._close_announced and getattr(self, "_status_sent", 0) >= 200:
            self.send_header("Connection", "close")
        super().end_headers()

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status_sent = code
        super().send_response(code, message)

    def send_response_only(self, code: int, message: str | None = None) -> None:
        self._status_sent = code
        super().send_response_only(code, message)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        self.close_connection = True
        super().send_error(code, message, explain)


