"""The data plane push endpoint of the local OpenSearch server: ``POST /update/{data source}/actions/bulk``.

Why a module of its own: :mod:`localcloud.opensearch.server` is the query and management API; this is
the third wire protocol the pipeline speaks (alibabacloud-ha3engine's ``Client.push_documents``), with
its own answers. The contract (paths, headers, limits, codes) is written down in the server's module
docstring; the checks of the documents are :mod:`localcloud.opensearch.pushdocs`, and what happens to
accepted ones :mod:`localcloud.opensearch.pushing`.

Order of the checks, each answered before the next runs: Basic auth (before anything is read), the
path and its data source, the method, the primary-key header, the body's framing and declared size
(before reading it), admission (fault knob, rate), then the body itself. Nothing of a refused request
is kept. The body is never logged.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from localcloud.opensearch.pushdocs import (
    CODE_BAD_PK_HEADER,
    CODE_BODY_TOO_LARGE,
    CODE_LENGTH_REQUIRED,
    CODE_METHOD,
    CODE_NO_DATA_SOURCE,
    CODE_UNAUTHORIZED,
    MAX_PUSH_BODY,
    PushRefused,
    parse_push_body,
)

if TYPE_CHECKING:
    from http.client import HTTPMessage

    from localcloud.http_wire import RequestBody

__all__ = ["PUSH_PATH_PREFIX", "PushApi"]

log = logging.getLogger(__name__)

PUSH_PATH_PREFIX = "/update/"
PK_HEADER = "X-Opensearch-Swift-PK-Field"
_PUSH_PATH = re.compile(r"/update/(?P<ds>[^/]+)/actions/bulk\Z")


class PushApi:
    """The push endpoint, a base of the server's request handler. Uses these of the handler:"""

    server: Any  # the HTTP server; ``server.app`` is the LocalOpenSearchServer
    headers: HTTPMessage
    command: str
    body: RequestBody
    close_connection: bool

    if TYPE_CHECKING:
        def _authorized(self) -> bool: ...
        def _read_body(self) -> bytes | None: ...
        def _send_json(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> None: ...

    def _push(self, path: str) -> None:
        request_id = str(uuid.uuid4())
        try:
            table = self._admit(path)
            body = self._read_body()
            if body is None:
                return
            engine = self.server.app.engine
            documents = parse_push_body(engine.tables[table].schema, body)
            kept = engine.push_documents(table, documents)
        except PushRefused as refused:
            log.info("push refused: %s %s: %s", refused.status, refused.code, refused.message[:300])
            self._send_json(refused.status, refused.body(request_id), refused.headers)
            return
        log.debug("push to %s: %d documents %s", table, len(documents), "received" if kept else "dropped (fault)")
        self._send_json(200, {"status": "OK", "errors": [], "request_id": request_id})

    def _admit(self, path: str) -> str:
        """The table of an admitted request; every check before the body is read (module docstring)."""
        if not self._authorized():
            raise PushRefused(401, CODE_UNAUTHORIZED, "Unauthorized: wrong or missing Basic credentials (the "
                              "instance's query user name and password)", {"WWW-Authenticate": 'Basic realm="opensearch"'})
        engine = self.server.app.engine
        accepted = f"{engine.instance_id}_<table>, e.g. {engine.instance_id}_{next(iter(engine.tables))}"
        match = _PUSH_PATH.match(path)
        if match is None:
            raise PushRefused(404, CODE_NO_DATA_SOURCE, f"resource not found: {path[:100]!r}; push to POST "
                              f"/update/{accepted}/actions/bulk")
        data_source = unquote(match["ds"])
        table = engine.push_table(data_source)
        if table is None:
            raise PushRefused(404, CODE_NO_DATA_SOURCE, f"resource not found: data source {data_source[:100]!r}; "
                              f"the data source name is {accepted} (tables: {sorted(engine.tables)})")
        if self.command != "POST":
            raise PushRefused(405, CODE_METHOD, f"{self.command} is not allowed here; push with POST", {"Allow": "POST"})
        primary_key = engine.tables[table].schema.primary_key
        named = self.headers.get(PK_HEADER)
        if named != primary_key:
            got = "is missing" if named is None else f"names {named[:60]!r}"
            raise PushRefused(400, CODE_BAD_PK_HEADER, f"the header {PK_HEADER} {got}; it must name the primary "
                              f"key of table {table!r}: {primary_key!r}")
        if self.body.chunked:
            raise PushRefused(411, CODE_LENGTH_REQUIRED, "chunked bodies are not supported; send Content-Length")
        declared = int(self.body.declared or 0)
        if declared > MAX_PUSH_BODY:
            raise _too_large(declared)
        engine.admit_push(table, declared)
        return table

    def _push_too_large(self, declared: int) -> None:
        """The answer to a body over the whole server's cap, refused before any handler runs."""
        self.close_connection = True
        self._send_json(413, _too_large(declared).body(str(uuid.uuid4())))


def _too_large(declared: int) -> PushRefused:
    return PushRefused(413, CODE_BODY_TOO_LARGE, f"the body is {declared} bytes; at most 2 MB ({MAX_PUSH_BODY} "
                       "bytes) per request: split the documents over several requests")
