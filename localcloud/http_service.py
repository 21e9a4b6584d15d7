"""The HTTP plumbing every local service shares: a bounded, framing-strict server and its handler base,
and a loopback service that runs one in a background thread.

Why: the stand-ins must be at least as strict as the cloud, and must not fall over under hostile input
(slow or half-open sockets, huge request lines, bodies sent before authentication, smuggled requests).
``http.server`` alone reads whatever it is sent and spends one thread per connection, uncapped.

How a connection is served (:class:`BoundedHttpServer`)
    * Accepted sockets go to one *dispatcher* thread that reads the request line and headers without
      blocking (and does the TLS handshake, for HTTPS). A socket that sends nothing, or sends its
      headers slowly, costs a file descriptor and its buffered bytes, never a thread. Only a complete
      header block (or a refusal to answer: request line or headers too long) is handed to a worker.
    * At most ``Limits.max_workers`` worker threads answer requests at once; further complete requests
      wait for a free worker. Workers exit after a short idle spell.
    * Request line, header count and header bytes are capped (``Limits``); the header block must arrive
      within ``header_timeout_s`` of the connection's first byte (or of its arrival); an idle kept-alive
      connection is closed after ``idle_timeout_s``; at most ``max_connections`` are open (beyond that a
      new connection gets a bare 503 and is closed); buffered header bytes of all connections together
      are capped by ``max_pending_bytes`` (503 to the connection that would exceed it).
    * Between requests a kept-alive connection goes back to the dispatcher: idle clients pin no worker.
    * A refused request's unread body is not read before the answer; afterwards the connection is
      closed and what the client still sends is read and dropped for at most ``linger_s`` /
      ``linger_bytes`` by the dispatcher (so the client, still sending, sees the answer, not a reset).

What a request must look like (:class:`StrictRequestHandler`, before any ``do_*`` runs)
    At most one ``Content-Length``, all digits; ``Transfer-Encoding`` only ``chunked`` (any case, spaces
    around it ignored), never with ``Content-Length``, never on HTTP/1.0; no obsolete line folding; header
    names are tokens with no space before the colon. Anything else is answered 400 and the connection
    closed (RFC 9112 section 6.3: ambiguous framing is how requests are smuggled). A declared
    ``Content-Length`` above ``max_body`` is refused by the service's own answer (:meth:`refuse_body`).
    The body is read only when the handler asks (:attr:`StrictRequestHandler.body`), i.e. after it has
    authenticated the request; ``Expect: 100-continue`` is answered at that moment, not before.
"""

from __future__ import annotations

import collections
import selectors
import socket
import ssl
import threading
import time
from http.server import ThreadingHTTPServer
from typing import Self

from localcloud.http_wire import BadFraming, BodyTooLarge, Limits, RequestBody, StrictRequestHandler

__all__ = ["BackgroundHttpService", "BadFraming", "BodyTooLarge", "BoundedHttpServer", "Limits", "RequestBody",
           "StrictRequestHandler"]

_OVERLOADED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Conn:
    """One connection while the dispatcher holds it."""

    __slots__ = ("sock", "addr", "buf", "scanned", "searched", "line_end", "lines", "deadline", "state",
                 "linger_left")

    def __init__(self, sock: socket.socket, addr: object, buf: bytes, deadline: float, state: str) -> None:
        self.sock, self.addr, self.buf = sock, addr, bytearray(buf)
        self.scanned, self.searched, self.line_end, self.lines = 0, 0, -1, 0
        self.deadline, self.state, self.linger_left = deadline, state, 0


class BoundedHttpServer(ThreadingHTTPServer):
    """An HTTP server with a bounded worker pool, header limits and timeouts (see the module doc).

    ``RequestHandlerClass`` must derive from :class:`StrictRequestHandler`. ``tls``: serve HTTPS (the
    handshake happens in the dispatcher, so a client that never finishes it pins nothing).
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[StrictRequestHandler], limits: Limits | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.limits = limits or Limits()
        self._tls = tls
        self._lock = threading.Condition()
        self._ready: collections.deque[tuple[_Conn, tuple[int, str] | None]] = collections.deque()
        self._incoming: collections.deque[_Conn] = collections.deque()
        self._open: set[socket.socket] = set()
        self._pending_bytes = 0
        self._workers = self._idle = self.peak_workers = 0
        self._stopping = False
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._dispatcher: threading.Thread | None = None  # TCPServer's __init__ calls server_close() if bind fails
        super().__init__(address, handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="http-dispatcher", daemon=True)
        self._dispatcher.start()

    # -- accept ------------------------------------------------------------------------------------

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._lock:
            full = len(self._open) >= self.limits.max_connections or self._stopping
            if not full:
                self._open.add(request)
        if full:
            try:
                request.setblocking(False)
                if not isinstance(request, ssl.SSLSocket):
                    request.send(_OVERLOADED)
            except OSError:
                pass
            self._close(request, tracked=False)
            return
        request.setblocking(False)
        state = "handshake" if isinstance(request, ssl.SSLSocket) else "headers"
        self._hand_to_dispatcher(_Conn(request, client_address, b"", time.monotonic() + self.limits.header_timeout_s,
                                       state))

    def _hand_to_dispatcher(self, conn: _Conn) -> None:
        with self._lock:
            self._incoming.append(conn)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # -- the dispatcher thread -------------------------------------------------------------------

    def _dispatch_loop(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.1):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except OSError:
                        pass
                else:
                    self._on_readable(key.data)
            with self._lock:
                arrived = list(self._incoming)
                self._incoming.clear()
            for conn in arrived:
                self._register(conn)
                if conn.state == "headers" and conn.buf:  # a pipelined request is already here
                    self._scan(conn)
            now = time.monotonic()
            for key in list(self._selector.get_map().values()):
                conn = key.data
                if conn is not None and now > conn.deadline:
                    self._unregister(conn)
                    self._close(conn.sock)

    def _register(self, conn: _Conn) -> None:
        try:
            self._selector.register(conn.sock, selectors.EVENT_READ, conn)
        except (ValueError, KeyError, OSError):
            self._close(conn.sock)

    def _unregister(self, conn: _Conn) -> None:
        try:
            self._selector.unregister(conn.sock)
        except (ValueError, KeyError, OSError):
            pass
        self._release_pending(conn)

    def _release_pending(self, conn: _Conn) -> None:
        with self._lock:
            self._pending_bytes -= len(conn.buf) if conn.state == "headers" else 0

    def _on_readable(self, conn: _Conn) -> None:
        if conn.state == "handshake":
            try:
                conn.sock.do_handshake()  # type: ignore[attr-defined]
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            except (OSError, ValueError):
                self._unregister(conn)
                self._close(conn.sock)
                return
            conn.state = "headers"
        while True:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._unregister(conn)
                self._close(conn.sock)
                return
            if conn.state == "linger":
                conn.linger_left -= len(data)
                if conn.linger_left <= 0:
                    self._unregister(conn)
                    self._close(conn.sock)
                    return
                continue
            with self._lock:
                over = self._pending_bytes + len(data) > self.limits.max_pending_bytes
                if not over:
                    self._pending_bytes += len(data)
            if over:
                self._unregister(conn)
                self._to_worker(conn, (503, "Too many request bytes are waiting; try again later"))
                return
            if not conn.buf:  # the first byte of a request: its header block must follow in time
                conn.deadline = time.monotonic() + self.limits.header_timeout_s
            conn.buf += data
            if self._scan(conn):
                return

    def _scan(self, conn: _Conn) -> bool:
        """Look for the end of the header block; hand the connection on when found or refused."""
        limits, buf = self.limits, conn.buf
        verdict: tuple[int, str] | None = None
        while True:
            nl = buf.find(b"\n", max(conn.scanned, conn.searched))
            if nl < 0:
                conn.searched = len(buf)  # a long line arriving in pieces is searched once
                if conn.line_end < 0 and len(buf) > limits.max_request_line:
                    verdict = (414, f"The request line is longer than {limits.max_request_line} bytes")
                elif conn.line_end >= 0 and len(buf) - conn.line_end > limits.max_header_bytes:
                    verdict = (431, f"The request headers are larger than {limits.max_header_bytes} bytes")
                if verdict is None:
                    return False
                break
            blank = nl == conn.scanned or (nl == conn.scanned + 1 and buf[conn.scanned] == 13)
            at_start = conn.scanned == 0
            conn.scanned = nl + 1
            if conn.line_end < 0:
                if blank and at_start:
                    del buf[:nl + 1]  # a stray CRLF before the request line is ignored (RFC 9112 2.2)
                    conn.scanned = conn.searched = 0
                    with self._lock:
                        self._pending_bytes -= nl + 1
                    continue
                if nl + 1 > limits.max_request_line:
                    verdict = (414, f"The request line is longer than {limits.max_request_line} bytes")
                    break
                conn.line_end = nl + 1
                continue
            if blank:
                break  # the header block is complete
            conn.lines += 1
            if conn.lines > limits.max_headers:
                verdict = (431, f"More than {limits.max_headers} request headers")
                break
            if nl + 1 - conn.line_end > limits.max_header_bytes:
                verdict = (431, f"The request headers are larger than {limits.max_header_bytes} bytes")
                break
        self._unregister(conn)
        self._to_worker(conn, verdict)
        return True

    def _to_worker(self, conn: _Conn, verdict: tuple[int, str] | None) -> None:
        with self._lock:
            self._ready.append((conn, verdict))
            if self._idle == 0 and self._workers < self.limits.max_workers:
                self._workers += 1
                self.peak_workers = max(self.peak_workers, self._workers)
                threading.Thread(target=self._work, name="http-worker", daemon=True).start()
            else:
                self._lock.notify()

    # -- workers -----------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                deadline = time.monotonic() + self.limits.worker_idle_s
                while not self._ready and not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._idle += 1
                    self._lock.wait(left)
                    self._idle -= 1
                if not self._ready or self._stopping:
                    self._workers -= 1
                    return
                conn, verdict = self._ready.popleft()
            self._serve(conn, verdict)

    def _serve(self, conn: _Conn, verdict: tuple[int, str] | None) -> None:
        sock = conn.sock
        handler: StrictRequestHandler | None = None
        try:
            sock.settimeout(self.limits.idle_timeout_s)
            handler = self.RequestHandlerClass(sock, conn.addr, self, prefix=bytes(conn.buf),  # type: ignore[call-arg]
                                               verdict=verdict)
        except Exception:  # noqa: BLE001 - a handler bug must not kill the worker
            self.handle_error(sock, conn.addr)
        if handler is None or handler.close_connection or self._stopping:
            self._finish(sock, linger=handler is not None and not self._stopping)
            return
        try:
            sock.setblocking(False)
        except OSError:
            self._close(sock)
            return
        leftover = handler.rfile.leftover()
        with self._lock:
            self._pending_bytes += len(leftover)
        self._hand_to_dispatcher(_Conn(sock, conn.addr, leftover, time.monotonic() + self.limits.idle_timeout_s,
                                       "headers"))

    def _finish(self, sock: socket.socket, linger: bool) -> None:
        """Close after an answer. The client may still be sending (a body we did not read, headers we
        refused): drop what comes for a while first, so it reads our answer rather than a reset."""
        if not linger:
            self._close(sock)
            return
        try:
            if not isinstance(sock, ssl.SSLSocket):
                sock.shutdown(socket.SHUT_WR)  # the answer is complete: the client sees EOF after it
            sock.setblocking(False)
        except OSError:
            self._close(sock)
            return
        conn = _Conn(sock, None, b"", time.monotonic() + self.limits.linger_s, "linger")
        conn.linger_left = self.limits.linger_bytes
        self._hand_to_dispatcher(conn)

    def _close(self, sock: socket.socket, tracked: bool = True) -> None:
        try:
            sock.close()
        except OSError:
            pass
        if tracked:
            with self._lock:
                self._open.discard(sock)

    # -- stop --------------------------------------------------------------------------------------

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    def close_connections(self) -> None:
        """Cut every open connection (kept-alive, waiting or busy): stop() must not wait for clients."""
        with self._lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def server_close(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._dispatcher is not None:
            self._dispatcher.join(timeout=5)
        self.close_connections()
        for key in list(self._selector.get_map().values()):
            if key.data is not None:
                self._close(key.data.sock)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
        super().server_close()


class BackgroundHttpService:
    """Subclasses set ``name`` and implement :meth:`handler_class`; ``tls`` makes it HTTPS."""

    name = "local-service"
    limits = Limits()

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self._port = port
        self._tls = tls
        self._httpd: BoundedHttpServer | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[StrictRequestHandler]:
        raise NotImplementedError

    @property
    def httpd(self) -> BoundedHttpServer:
        if self._httpd is None:
            raise RuntimeError(f"{self.name} not started")
        return self._httpd

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, chosen when the service starts."""
        if self._httpd is None:
            raise RuntimeError(f"{self.name} not started: the port is chosen at start()")
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> Self:
        httpd = BoundedHttpServer(("127.0.0.1", self._port), self.handler_class(), self.limits, tls=self._tls)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut open connections and release the port; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
