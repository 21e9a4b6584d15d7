"""A loopback HTTP(S) service that runs in a background thread: the lifecycle the small local
services share (start, stop, address, context manager), so each one only says how it answers."""

from __future__ import annotations

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class BackgroundHttpService:
    """Subclasses set ``name`` and implement :meth:`handler_class`; ``tls`` makes it HTTPS."""

    name = "local-service"

    def __init__(self, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self._port = port
        self._tls = tls
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, chosen when the service starts."""
        if self._httpd is None:
            raise RuntimeError(f"{self.name} not started: the port is chosen at start()")
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> Self:
        httpd = ThreadingHTTPServer(("127.0.0.1", self._port), self.handler_class())
        httpd.daemon_threads = True
        if self._tls is not None:
            httpd.socket = self._tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
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
