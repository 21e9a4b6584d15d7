"""One request to the local OSS server: parse, authenticate, route, and answer as OSS answers oss2.

The operations and their semantics are described in :mod:`localcloud.oss.server`.
"""

from __future__ import annotations

import base64
import logging
import mimetypes
import os
import secrets
import socket
import stat
import time
from email.utils import formatdate
from typing import TYPE_CHECKING, Callable, Iterator, Mapping
from urllib.parse import parse_qsl, unquote

from localcloud.http_service import BadFraming, BodyTooLarge, StrictRequestHandler
from localcloud.oss import archive
from localcloud.oss import faults as oss_faults
from localcloud.oss.auth import V1_SUBRESOURCES, authenticate
from localcloud.oss.generated import GeneratedBucket
from localcloud.oss.multipart import MultipartWrites
from localcloud.oss.protocol import (
    BUCKET_RE,
    RESPONSE_OVERRIDES,
    OssError,
    cut_page,
    error_document,
    invalid_argument,
    list_objects_document,
    method_not_allowed,
    not_implemented,
    parse_list_request,
    parse_range,
)
from localcloud.oss.store import (
    DIR_MARKER_NAME,
    etag_of,
    is_within,
    list_bucket,
    object_class,
    set_object_class,
    validate_key,
)
from localcloud.oss.writes import ObjectWrites

if TYPE_CHECKING:
    from localcloud.oss.server import OssHttpServer

logger = logging.getLogger("localcloud.oss.server")  # one logger for the whole server

_CHUNK = 256 * 1024
# Sub-resources that select an operation we do not implement (their presence must not be ignored).
_HARMLESS_PARAMS = frozenset(["continuation-token", "security-token", "objectMeta"])
# Sub-resources of the multipart operations (localcloud.oss.multipart); ``uploads`` or ``uploadId`` selects them.
_MULTIPART_PARAMS = frozenset(["uploads", "uploadId", "partNumber"])


def _object_params(method: str) -> set[str]:
    """Sub-resources an object request may carry: ``restore`` selects RestoreObject, on POST only."""
    return set(_HARMLESS_PARAMS) | set(RESPONSE_OVERRIDES) | ({"restore"} if method == "POST" else set())


class OssRequestHandler(MultipartWrites, ObjectWrites, StrictRequestHandler):
    """Answers one request (keep-alive, HTTP/1.1) the way OSS answers oss2.

    Framing, header limits and timeouts are the server's (:mod:`localcloud.http_service`); the body is
    read only after :func:`authenticate` passed, and a refused request's body is never read before the
    answer (the connection is then closed).
    """

    server: OssHttpServer  # type: ignore[assignment]
    server_version = "AliyunOSS"
    sys_version = ""

    # -- plumbing -----------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def _body_pending(self) -> bool:
        return not self.body_done

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Silence BaseHTTPRequestHandler's stderr log; requests are logged at DEBUG by _dispatch."""

    def version_string(self) -> str:
        return self.server_version

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_PUT = do_DELETE = do_POST = do_OPTIONS = do_PATCH = do_TRACE = do_CONNECT = do_GET

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol-level errors (bad request line, unknown method, ...) as OSS XML too."""
        oss_code = {
            400: "InvalidRequest",
            408: "RequestTimeout",
            414: "RequestURITooLong",
            431: "RequestHeaderTooLarge",
            501: "MethodNotAllowed",
        }.get(code, "InvalidRequest")
        status = 405 if code == 501 else code
        self._request_id = secrets.token_hex(12).upper()
        self._headers_sent = False
        self._closing = True  # the request's framing is unknown or refused: close the connection
        self._send_error(OssError(status, oss_code, message or "Invalid request."), bucket="")

    def refuse_body(self, declared: int, limit: int) -> None:
        """PutObject takes at most 5 GiB; OSS answers a larger declared body before reading it."""
        self._request_id = secrets.token_hex(12).upper()
        self._headers_sent = False
        self._closing = True
        self._send_error(OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.",
                                  MaxSizeAllowed=str(limit), ProposedSize=str(declared)), bucket="")

    # -- request entry point ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._request_id = secrets.token_hex(12).upper()
        self._headers_sent = False
        self._status = 0
        self._closing = False
        started = time.monotonic()
        bucket = key = ""
        try:
            delay = self.server.delay_s()
            if delay > 0:
                time.sleep(delay)
            bucket, key, params = self._parse_target()
            # -- fault knobs (oss_faults.py) --
            fault = self.server.faults.on_request(self.command, bucket, key, params)
            if fault.delay_s > 0:
                time.sleep(fault.delay_s)
            if fault.error is not None:
                raise OssError(*fault.error, "Please reduce your request rate.")
            self._reset_mid_body = fault.reset
            # -- end of fault knobs --
            self._route(bucket, key, params)
        except OssError as err:
            self._send_error(err, bucket=bucket)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:  # pragma: no cover - a bug; answer like OSS would and keep serving
            logger.exception("local OSS: internal error on %s %s", self.command, bucket)
            if self._headers_sent:
                self.close_connection = True
            else:
                self._send_error(OssError(500, "InternalError", "We encountered an internal error."), bucket=bucket)
        finally:
            logger.debug(
                "%s /%s/%s -> %s in %.1f ms (request id %s)",
                self.command,
                bucket,
                key,
                self._status,
                (time.monotonic() - started) * 1000,
                self._request_id,
            )

    def _parse_target(self) -> tuple[str, str, dict[str, str]]:
        raw_path, _, query = self.path.partition("?")
        if not raw_path.startswith("/"):
            raise OssError(400, "InvalidURI", "Only origin-form request targets (/bucket/key) are accepted.")
        bucket_raw, _, key_raw = raw_path[1:].partition("/")
        try:
            bucket = unquote(bucket_raw, errors="strict")
            key = unquote(key_raw, errors="strict")
            params: dict[str, str] = {}
            for name, value in parse_qsl(query, keep_blank_values=True, errors="strict"):
                params.setdefault(name, value)
        except UnicodeDecodeError as exc:
            raise OssError(400, "InvalidURI", "The request URI is not valid percent-encoded UTF-8.") from exc
        if bucket and not BUCKET_RE.match(bucket):
            raise OssError(400, "InvalidBucketName", "The specified bucket is not valid.", BucketName=bucket)
        return bucket, key, params

    def _route(self, bucket: str, key: str, params: dict[str, str]) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        authenticate(self.command, bucket, key, params, headers, self.server.auth)
        method = self.command
        if not bucket:
            raise not_implemented("Service-level operations (ListBuckets)")
        generated = self.server.generated.get(bucket)
        if not key and "inventory" in params:
            if generated is None:
                self._bucket_dir(bucket)
            self._check_subresources(params, allowed={"inventory", "inventoryId", "continuation-token", "security-token"})
            self._bucket_inventory(bucket, params)
            return
        if generated is not None:
            self._route_generated(generated, key, params, headers)
            return
        bucket_dir = self._bucket_dir(bucket, must_exist=not (method == "PUT" and not key))
        if not key:
            self._check_subresources(params, allowed={"continuation-token", "security-token"})
            if method == "GET":
                self._list_objects(bucket, bucket_dir, params)
            elif method == "PUT":
                self._put_bucket(bucket, bucket_dir)
            else:
                raise method_not_allowed(method)
            return
        if method in ("PUT", "POST", "DELETE", "GET") and ("uploads" in params or "uploadId" in params):
            self._check_subresources(params, allowed=set(_HARMLESS_PARAMS) | _MULTIPART_PARAMS)
            self._multipart(bucket, bucket_dir, key, params, headers)
            return
        self._check_subresources(params, allowed=_object_params(method))
        if method in ("GET", "HEAD"):
            self._get_object(bucket_dir, key, params, headers, head=method == "HEAD")
        elif method == "PUT":
            self._put_object(bucket_dir, key, headers)
        elif method == "DELETE":
            self._delete_object(bucket_dir, key)
        elif method == "POST" and "restore" in params:
            self._restore_object(bucket_dir, key)
        else:
            raise method_not_allowed(method)

    def _route_generated(
        self, generated: GeneratedBucket, key: str, params: dict[str, str], headers: dict[str, str]
    ) -> None:
        """Generated buckets are read-only: listings and reads are answered, writes refused."""
        method = self.command
        if not key:
            self._check_subresources(params, allowed={"continuation-token", "security-token"})
            if method == "GET":
                self._list_objects(generated.name, "", params, generated=generated)
            elif method == "PUT":
                raise OssError(409, "BucketAlreadyExists", "The generated bucket already exists.", BucketName=generated.name)
            else:
                raise method_not_allowed(method)
            return
        writes_parts = method in ("PUT", "POST", "DELETE") and ("uploads" in params or "uploadId" in params)
        self._check_subresources(params, allowed=_object_params(method) | (_MULTIPART_PARAMS if writes_parts else set()))
        if method in ("GET", "HEAD"):
            self._get_generated(generated, key, params, headers, head=method == "HEAD")
        elif method in ("PUT", "DELETE", "POST"):
            self._drain_body()
            raise OssError(403, "AccessDenied", "Generated buckets of the local OSS server are read-only.", Key=key)
        else:
            raise method_not_allowed(method)

    @staticmethod
    def _check_subresources(params: Mapping[str, str], allowed: set[str]) -> None:
        for name in params:
            if name in V1_SUBRESOURCES and name not in allowed:
                raise not_implemented(f"The '{name}' sub-resource")

    def _bucket_dir(self, bucket: str, must_exist: bool = True) -> str:
        path = os.path.realpath(os.path.join(self.server.root, bucket))
        if not is_within(path, self.server.root):
            raise OssError(403, "AccessDenied", "The bucket folder resolves outside the server root.")
        if must_exist and not os.path.isdir(path):
            raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=bucket)
        return path

    @staticmethod
    def _object_path(bucket_dir: str, key: str) -> str:
        segments, is_marker = validate_key(key)
        path = os.path.join(bucket_dir, *segments)
        if is_marker:
            path = os.path.join(path, DIR_MARKER_NAME)
        if not is_within(os.path.realpath(path), bucket_dir):
            raise OssError(403, "AccessDenied", "The object key resolves outside the bucket.", Key=key)
        return path

    # -- operations ---------------------------------------------------------------------------------

    def _list_objects(
        self, bucket: str, bucket_dir: str, params: Mapping[str, str], generated: GeneratedBucket | None = None
    ) -> None:
        request = parse_list_request(params)
        if generated is not None:
            page = generated.list_page(request.prefix, request.delimiter, request.after, request.max_keys)
        else:
            page = list_bucket(bucket_dir, request.prefix, request.delimiter, request.after, request.max_keys)
        # Fault knob short_pages_rate: a legal short (or empty) page that is still truncated.
        keep = self.server.faults.short_page_length(
            (request.v2, request.prefix, request.delimiter, request.after, request.max_keys),
            len(page.objects) + len(page.prefixes),
            may_be_empty=request.v2 or bool(request.after),
        )
        if keep is not None:
            page = cut_page(page, keep, request.after)
        self._send(200, {"Content-Type": "application/xml"}, list_objects_document(bucket, params, request, page))

    def _put_bucket(self, bucket: str, bucket_dir: str) -> None:
        self._drain_body()
        try:
            os.makedirs(bucket_dir, exist_ok=True)
        except FileExistsError as exc:  # a plain file has the bucket's name
            raise OssError(409, "BucketAlreadyExists", "A file with the bucket's name exists.") from exc
        self._send(200, {"Location": "/" + bucket})

    def _get_object(
        self, bucket_dir: str, key: str, params: Mapping[str, str], headers: Mapping[str, str], head: bool
    ) -> None:
        path = self._object_path(bucket_dir, key)
        no_such_key = OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        try:
            # O_NONBLOCK: a FIFO dropped into the folder must not hang the handler.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError) as exc:
            raise no_such_key from exc
        with os.fdopen(fd, "rb") as handle:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise no_such_key

            def send_file(start: int, length: int) -> None:
                self.connection.sendfile(handle, offset=start, count=length)

            self._answer_object(
                key, st.st_size, etag_of(path, st), st.st_mtime, params, headers, head, send_file, object_class(path)
            )

    def _get_generated(
        self, generated: GeneratedBucket, key: str, params: Mapping[str, str], headers: Mapping[str, str], head: bool
    ) -> None:
        found = generated.lookup(key)
        if found is None:
            raise OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        number, size = found

        def send_generated(start: int, length: int) -> None:
            for chunk in generated.body(number, start, length):
                self.wfile.write(chunk)

        state = archive.ObjectClass(generated.storage_class_of(number))
        self._answer_object(
            key, size, generated.etag_of(number), generated.mtime, params, headers, head, send_generated, state
        )

    def _answer_object(
        self,
        key: str,
        size: int,
        etag: str,
        mtime: float,
        params: Mapping[str, str],
        headers: Mapping[str, str],
        head: bool,
        send_body: Callable[[int, int], None],
        state: archive.ObjectClass = archive.STANDARD,
    ) -> None:
        """Answer GetObject / HeadObject / GetObjectMeta for an object of either bucket kind.

        Headers, response overrides, Range and storage classes are the same whatever stores the object;
        only the body differs, so the caller passes ``send_body(start, length)``, called once the
        headers are out. A frozen archived object answers HEAD but not GET (403 InvalidObjectState).
        """
        now = time.time()
        out = {
            "Content-Type": mimetypes.guess_type(key)[0] or "application/octet-stream",
            "ETag": etag,
            "Last-Modified": formatdate(mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "x-oss-object-type": "Normal",
            **archive.object_headers(state, now),
        }
        if not head:
            archive.check_readable(state, now)
        if head:
            if "objectMeta" in params:  # GetObjectMeta answers only the basic metadata
                out = {k: out[k] for k in ("ETag", "Last-Modified")}
            self._send(200, {**out, "Content-Length": str(size)}, b"")
            return
        for param, header in RESPONSE_OVERRIDES.items():
            if params.get(param):
                out[header] = params[param]
        status, start, length = 200, 0, size
        range_header = headers.get("range", "")
        if range_header:
            standard = headers.get("x-oss-range-behavior", "").lower() == "standard"
            chosen = parse_range(range_header, size, standard)
            if chosen is not None:
                start, end = chosen
                status, length = 206, end - start + 1
                out["Content-Range"] = f"bytes {start}-{end}/{size}"
        out["Content-Length"] = str(length)
        self._send(status, out, None)
        if length:
            send_body(start, length)

    def _delete_object(self, bucket_dir: str, key: str) -> None:
        path = self._object_path(bucket_dir, key)
        self._drain_body()
        try:
            if not os.path.isdir(path):
                os.remove(path)
                set_object_class(path, None)
        except (FileNotFoundError, NotADirectoryError):
            pass
        # Folders exist on OSS only through their objects: prune the ones this delete emptied.
        directory = os.path.dirname(path)
        while is_within(directory, bucket_dir):
            try:
                os.rmdir(directory)
            except OSError:
                break
            directory = os.path.dirname(directory)
        self._send(204, {})

    def _restore_object(self, bucket_dir: str, key: str) -> None:
        """RestoreObject: see :mod:`localcloud.oss.archive` for what it answers and when."""
        path = self._object_path(bucket_dir, key)
        length = (self.headers.get("Content-Length") or "0").strip()
        if length.isdigit() and int(length) > archive.MAX_RESTORE_BODY:
            raise invalid_argument("The RestoreRequest body is too large.", "Content-Length", length)
        body = b"".join(self._body_chunks()) if self._body_pending else b""
        if not os.path.isfile(path):
            raise OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        status, state = archive.restore(object_class(path), body, time.time(), self.server.restore_delay_s)
        set_object_class(path, state)
        self._send(status, {})

    # -- bodies and responses -----------------------------------------------------------------------

    def _body_chunks(self) -> Iterator[bytes]:
        """The body, once authenticated: Content-Length bytes or de-chunked (framing already checked)."""
        if not self.body.chunked and self.headers.get("Content-Length") is None and self.command == "PUT":
            raise OssError(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
        try:
            yield from self.body.chunks(_CHUNK)
        except BodyTooLarge as exc:
            self._closing = True
            limit = str(self.server.limits.max_body)
            raise OssError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.",
                           MaxSizeAllowed=limit) from exc
        except BadFraming as exc:
            self._closing = True
            raise OssError(400, "InvalidRequest", f"Malformed request body: {exc}.") from exc

    def _drain_body(self) -> None:
        """Read and drop the body of an authenticated request that does not use it."""
        if self._body_pending:
            for _ in self._body_chunks():
                pass

    def _send(self, status: int, headers: Mapping[str, str], body: bytes | None = b"") -> None:
        """Send status and headers (with x-oss-request-id), then ``body`` unless it is None or HEAD."""
        self._status = status
        self.send_response(status)
        self.send_header("x-oss-request-id", self._request_id)
        for name, value in headers.items():
            self.send_header(name, value)
        if body is not None and "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        if self._body_pending or self._closing:  # the body is unread (or the framing bad): do not reuse
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self._headers_sent = True
        if getattr(self, "_reset_mid_body", False):  # fault knob: half the body, then a TCP RST
            self._reset_mid_body = False
            if body and self.command != "HEAD":
                self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            oss_faults.abort_connection(self.connection)
            raise ConnectionResetError("local OSS fault: connection reset mid-response")
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def _send_error(self, err: OssError, bucket: str) -> None:
        """The error document, at once: a body the request still carries is not read first."""
        if getattr(self, "_headers_sent", False):
            self.close_connection = True
            return
        body = error_document(err, self._request_id, bucket)
        headers = {"Content-Type": "application/xml", **err.headers}
        if self.command == "HEAD":
            # HEAD answers carry no body; OSS puts the error document, base64-encoded, in x-oss-err,
            # which is how oss2 tells NoSuchKey from NoSuchBucket on HEAD.
            headers["x-oss-err"] = base64.b64encode(body).decode("ascii")
            headers["Content-Length"] = "0"
            self._send(err.status, headers, b"")
        else:
            self._send(err.status, headers, body)
