"""A local stand-in for Alibaba Cloud OSS that speaks the real wire protocol over a folder.

Why: no machine in development or CI reaches the cloud, yet the pipeline must be exercised through the
real ``oss2`` client (its signing, URL quoting, XML parsing and error mapping are part of what we test).
This module serves a local folder over HTTP exactly the way OSS answers ``oss2``, using the standard
library only.

Layout on disk
    ``<root>/<bucket>/<key>``. A bucket is a direct sub-folder of ``root`` whose name obeys the OSS
    bucket naming rules (``[a-z0-9-]``, 3-63 characters, no leading/trailing ``-``). A key is the
    ``/``-separated relative path of a file under the bucket folder.

Folder markers
    A key ending in ``/`` (the zero-byte "directory object" consoles create) is stored as a hidden file
    named :data:`DIR_MARKER_NAME` (``.oss-dir-marker``) inside that directory; its content is the
    object's content. It is listed as ``dir/``, sorts before the directory's children, and is never
    listed under its own file name.

Reserved names
    Files named :data:`DIR_MARKER_NAME` or starting with :data:`TEMP_PREFIX` (``.oss-tmp-``, the
    temporary files PutObject writes before an atomic ``os.replace``) are never listed, and keys
    containing such a path segment are refused with ``InvalidArgument``. Files whose names cannot be
    part of a key (backslashes, bytes that are not UTF-8, more than 255 bytes) are not listed either.

Limits of a folder
    A key cannot be both an object and a folder on disk (``a`` and ``a/b``): such a PutObject answers
    409 ``KeyConflict`` (real OSS allows both). Keys with empty segments (``a//b``) are refused. Only
    the bytes are stored: Content-Type is guessed from the key on read, and ``x-oss-meta-*`` headers,
    ACLs and tags are dropped.

Operations (path-style URLs ``http://127.0.0.1:PORT/bucket/key``, which oss2 uses for IP endpoints)
    ListObjects v1 and v2 (prefix, delimiter, marker / continuation-token / start-after, max-keys 1-1000,
    encoding-type=url, fetch-owner), GetObject (with a single Range, OSS semantics, see below),
    HeadObject, GetObjectMeta (``HEAD ?objectMeta``), PutObject (atomic), DeleteObject (idempotent),
    PutBucket (creates the folder). Everything else answers ``NotImplemented`` or ``MethodNotAllowed``.

Listing
    Keys are returned in UTF-8 byte order (equal to Python code-point order for valid keys). The tree
    is walked depth-first with ``os.scandir``, one directory at a time, each sorted by the key its
    entries produce (``name`` for files, ``name + "/"`` for directories, which is what makes a
    depth-first walk yield globally sorted keys). Entries at or before the marker are pruned without
    being visited, prefixes jump straight to their directory, rolled-up common prefixes are skipped
    without walking their subtree, and the walk stops after ``max-keys + 1`` results, so a page costs
    roughly one directory scan per level plus one ``stat`` per returned object, never a read of file
    contents. Directories without any object inside are invisible, as on OSS. Symbolic links to files
    inside the bucket are listed; symbolic links to directories are never followed while listing.

ETags
    ``"<MD5 of size:mtime_ns, upper-case hex>"``. Listing must not read contents, so the ETag is
    derived from size and modification time; GetObject, HeadObject and PutObject report the same value,
    so all operations agree. It is not the MD5 of the content (real OSS uses the content MD5 for
    simple uploads); PutObject still returns ``Content-MD5`` and honours a ``Content-MD5`` request
    header (``InvalidDigest`` on mismatch).

Range and Authentication
    OSS Range semantics (not RFC 7233's) are described in :mod:`pipeline.local.oss_protocol`; the
    accepted signatures (V1, V1 pre-signed URLs, V4; STS tokens accepted, not validated) in
    :mod:`pipeline.local.oss_auth`.

Realism knobs (benchmarks)
    ``latency_s`` delays every answer; ``jitter_s`` adds a uniform random ``[0, jitter_s]`` to it, drawn
    from a generator seeded with ``seed``. A :class:`~pipeline.local.oss_generated.GeneratedBucket`
    serves millions of computed keys read-only, with no file per key (see
    :mod:`pipeline.local.oss_generated`); PutObject and DeleteObject on it answer ``AccessDenied``.

Module layout
    This module holds the HTTP server, request dispatch, the folder buckets and the CLI. The wire
    format (errors, listing XML, Range) is in :mod:`pipeline.local.oss_protocol`, signature checks in
    :mod:`pipeline.local.oss_auth`, generated buckets in :mod:`pipeline.local.oss_generated` and fault
    knobs in :mod:`pipeline.local.oss_faults`. ``GeneratedBucket`` is re-exported here because
    callers configure a server with it.

Fault knobs (reliability tests)
    ``faults`` (:class:`~pipeline.local.oss_faults.OssFaults`, also ``server.faults`` at runtime and the
    ``--fault-*`` CLI flags): 503 SlowDown bursts, connections reset mid-response, slow ListObjects
    pages, a page that fails once. See :mod:`pipeline.local.oss_faults`.

Safety
    The server binds to a loopback address only. Bucket names are checked against the OSS rules; keys
    with empty, ``.`` or ``..`` segments, NUL, backslashes, a leading ``/``, reserved names, or more than
    1023 bytes are refused before touching the disk, and every path is additionally resolved with
    ``os.path.realpath`` and must stay inside the bucket folder, which must itself stay inside the root.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import heapq
import ipaddress
import logging
import mimetypes
import os
import random
import secrets
import signal
import socket
import stat
import sys
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Callable, Iterator, Mapping, Sequence
from urllib.parse import parse_qsl, unquote

from pipeline.local import oss_faults  # fault knobs (issue 5): kept in their own module
from pipeline.local.oss_auth import V1_SUBRESOURCES, authenticate
from pipeline.local.oss_faults import OssFaults
from pipeline.local.oss_generated import GeneratedBucket
from pipeline.local.oss_protocol import (
    BUCKET_RE,
    RESPONSE_OVERRIDES,
    ListedObject,
    ListPage,
    OssError,
    common_prefix_of,
    error_document,
    invalid_argument,
    list_objects_document,
    method_not_allowed,
    not_implemented,
    parse_list_request,
    parse_range,
)

__all__ = [
    "DIR_MARKER_NAME",
    "TEMP_PREFIX",
    "Credential",
    "GeneratedBucket",
    "LocalOssServer",
    "main",
]

logger = logging.getLogger(__name__)

#: Hidden file that stores a folder-marker object (a key ending in ``/``) inside its directory.
DIR_MARKER_NAME = ".oss-dir-marker"
#: Prefix of the temporary files PutObject writes before renaming them into place.
TEMP_PREFIX = ".oss-tmp-"

MAX_KEY_BYTES = 1023
_NAME_MAX_BYTES = 255
_CHUNK = 256 * 1024
_DISCARD_LIMIT = 16 * 1024 * 1024  # refused bodies up to this size are read and dropped
# Sub-resources that select an operation we do not implement (their presence must not be ignored).
_HARMLESS_PARAMS = frozenset(["continuation-token", "security-token", "objectMeta"])


@dataclass(frozen=True)
class Credential:
    """An access key pair the server accepts; frozen so a running server's key set cannot drift."""

    access_key_id: str
    access_key_secret: str = field(repr=False)


# --------------------------------------------------------------------------------------------------
# Folder buckets: ETags, keys and paths
# --------------------------------------------------------------------------------------------------


def _etag(st: os.stat_result) -> str:
    digest = hashlib.md5(f"{st.st_size}:{st.st_mtime_ns}".encode(), usedforsecurity=False)
    return '"' + digest.hexdigest().upper() + '"'


def _is_reserved_name(name: str) -> bool:
    return name == DIR_MARKER_NAME or name.startswith(TEMP_PREFIX)


def _segment_ok(name: str) -> bool:
    """Whether a directory entry's name can be part of a key (listing silently skips the rest)."""
    if not name or name in (".", "..") or "\\" in name or _is_reserved_name(name):
        return False
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes on disk (surrogate escapes): not a valid key
        return False
    return len(encoded) <= _NAME_MAX_BYTES


def _validate_key(key: str) -> tuple[list[str], bool]:
    """Split a key into path segments, refusing anything that could leave the bucket folder.

    Returns ``(segments, is_folder_marker)``.
    """
    if "\x00" in key:
        raise invalid_argument("The object key must not contain NUL.", "key", key.replace("\x00", "\\0"))
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise OssError(400, "InvalidObjectName", f"The object key is longer than {MAX_KEY_BYTES} bytes.")
    if "\\" in key:
        raise invalid_argument("The local OSS server does not accept backslashes in object keys.", "key", key)
    if key.startswith("/"):
        raise invalid_argument("The object key must not start with '/'.", "key", key)
    is_marker = key.endswith("/")
    segments = key.split("/")
    if is_marker:
        segments = segments[:-1]
    for seg in segments:
        if seg in ("", ".", ".."):
            raise invalid_argument(
                "The object key must not contain empty, '.' or '..' path segments.", "key", key
            )
        if _is_reserved_name(seg):
            raise invalid_argument(
                f"Path segments named {DIR_MARKER_NAME!r} or starting with {TEMP_PREFIX!r} are reserved "
                "by the local OSS server.",
                "key",
                key,
            )
        if len(seg.encode("utf-8")) > _NAME_MAX_BYTES:
            raise invalid_argument(
                f"A path segment of the key is longer than {_NAME_MAX_BYTES} bytes (file system limit).", "key", key
            )
    return segments, is_marker


def _file_in_the_way(bucket_dir: str, folder: str) -> bool:
    """Whether something other than a folder sits at ``folder`` or one of its parents in the bucket."""
    path = folder
    while _is_within(path, bucket_dir):
        if os.path.lexists(path) and not os.path.isdir(path):
            return True
        path = os.path.dirname(path)
    return False


def _is_within(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------------------------------
# Folder buckets: listing
# --------------------------------------------------------------------------------------------------


class _WalkState:
    """Mutable state shared between the tree walk and its consumer (rolled-up prefix to skip)."""

    __slots__ = ("skip",)

    def __init__(self) -> None:
        self.skip: str | None = None


def _walk(
    dir_path: str, key_prefix: str, prefix: str, after: str, bucket_dir: str, state: _WalkState
) -> Iterator[tuple[str, str]]:
    """Yield ``(key, file_path)`` for objects under ``dir_path`` in UTF-8 key order.

    Only keys starting with ``prefix`` and sorting after ``after`` are produced; whole subtrees that
    cannot contain such keys (or that start with ``state.skip``) are never scanned.
    """
    items: list[tuple[str, bool, str]] = []
    has_marker = False
    try:
        scanner = os.scandir(dir_path)
    except OSError:
        return
    with scanner:
        for entry in scanner:
            name = entry.name
            if name == DIR_MARKER_NAME:
                has_marker = True
                continue
            base = key_prefix + name
            # Cheap string tests first. They hold whatever the entry's type: if ``base`` is out of the
            # prefix, or sorts before ``after`` without being a prefix of it, so does ``base + "/..."``.
            if not (base.startswith(prefix) or prefix.startswith(base)):
                continue
            if base < after and not after.startswith(base):
                continue
            if not _segment_ok(name):
                continue
            try:
                if entry.is_symlink():
                    # Files linked from inside the bucket are objects; directory links are never followed.
                    target = os.path.realpath(entry.path)
                    if not (_is_within(target, bucket_dir) and os.path.isfile(target)):
                        continue
                    is_dir = False
                else:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if not is_dir and not entry.is_file(follow_symlinks=False):
                        continue
            except OSError:
                continue
            if is_dir:
                sort_key = base + "/"
                if not (sort_key.startswith(prefix) or prefix.startswith(sort_key)):
                    continue
                if sort_key <= after and not after.startswith(sort_key):
                    continue
            else:
                sort_key = base
                if not sort_key.startswith(prefix) or sort_key <= after:
                    continue
            items.append((sort_key, is_dir, entry.path))
    if has_marker and key_prefix and key_prefix > after and key_prefix.startswith(prefix):
        yield key_prefix, os.path.join(dir_path, DIR_MARKER_NAME)
    # A heap, not a sort: a page usually stops after max-keys + 1 entries of a huge folder.
    heapq.heapify(items)
    while items:
        sort_key, is_dir, path = heapq.heappop(items)
        if state.skip is not None and sort_key.startswith(state.skip):
            continue
        if is_dir:
            yield from _walk(path, sort_key, prefix, after, bucket_dir, state)
        else:
            yield sort_key, path


def _list_bucket(bucket_dir: str, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
    """Collect one page: at most ``max_keys`` objects plus common prefixes, and whether more follow."""
    start_dir, key_prefix = bucket_dir, ""
    if "/" in prefix:
        segments = prefix.split("/")[:-1]
        if not all(_segment_ok(seg) for seg in segments):
            return ListPage([], [], False, None)  # no stored key can contain such a segment
        start_dir = os.path.join(bucket_dir, *segments)
        # The walk never follows directory symlinks; jumping to the prefix's folder must not either.
        if os.path.realpath(start_dir) != start_dir or not os.path.isdir(start_dir):
            return ListPage([], [], False, None)
        key_prefix = "/".join(segments) + "/"

    state = _WalkState()
    objects: list[ListedObject] = []
    prefixes: list[str] = []
    count = 0
    truncated = False
    last: str | None = None
    walker = _walk(start_dir, key_prefix, prefix, after, bucket_dir, state)
    try:
        for key, path in walker:
            if len(key.encode("utf-8")) > MAX_KEY_BYTES:
                continue
            common = common_prefix_of(key, prefix, delimiter)
            if common is not None:
                state.skip = common
                if common <= after:
                    continue  # this prefix was returned by an earlier page
                if count >= max_keys:
                    truncated = True
                    break
                prefixes.append(common)
                count += 1
                last = common
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue  # deleted while we listed
            if count >= max_keys:
                truncated = True
                break
            objects.append(ListedObject(key, st.st_size, st.st_mtime, _etag(st)))
            count += 1
            last = key
    finally:
        walker.close()
    return ListPage(objects, prefixes, truncated, last)


# --------------------------------------------------------------------------------------------------
# HTTP server and handler
# --------------------------------------------------------------------------------------------------


class _OssHttpServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the OSS configuration and the open connections (to cut on stop)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        root: str,
        secrets_by_id: Mapping[str, str],
        latency_s: float,
        jitter_s: float = 0.0,
        seed: int | None = None,
        generated: Mapping[str, GeneratedBucket] | None = None,
        faults: OssFaults | None = None,
    ) -> None:
        self.root = root
        self.faults = faults if faults is not None else OssFaults()
        self.secrets_by_id = dict(secrets_by_id)
        self.latency_s = latency_s
        self.jitter_s = jitter_s
        self.generated = dict(generated or {})
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(address, _OssRequestHandler)

    def delay_s(self) -> float:
        """This request's latency: ``latency_s`` plus uniform jitter in ``[0, jitter_s]`` (seeded)."""
        if self.jitter_s <= 0:
            return self.latency_s
        with self._rng_lock:
            return self.latency_s + self._rng.uniform(0.0, self.jitter_s)

    def track(self, conn: socket.socket, alive: bool) -> None:
        with self._conn_lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _OssRequestHandler(BaseHTTPRequestHandler):
    """Answers one connection's requests (keep-alive, HTTP/1.1) the way OSS answers oss2."""

    server: _OssHttpServer
    protocol_version = "HTTP/1.1"
    server_version = "AliyunOSS"
    sys_version = ""
    timeout = 120  # idle keep-alive connections are dropped after this many seconds

    # -- plumbing -----------------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes: without this, Nagle + delayed ACK add ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

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
        self._body_pending = True  # the request's framing is unknown: close the connection
        self._send_error(OssError(status, oss_code, message or "Invalid request."), bucket="", drain=False)

    # -- request entry point ------------------------------------------------------------------------

    def _dispatch(self) -> None:
        self._request_id = secrets.token_hex(12).upper()
        self._headers_sent = False
        self._status = 0
        self._body_pending = self._request_has_body()
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
        authenticate(self.command, bucket, key, params, headers, self.server.secrets_by_id)
        method = self.command
        if not bucket:
            raise not_implemented("Service-level operations (ListBuckets)")
        generated = self.server.generated.get(bucket)
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
        self._check_subresources(params, allowed=set(_HARMLESS_PARAMS) | set(RESPONSE_OVERRIDES))
        if method in ("GET", "HEAD"):
            self._get_object(bucket_dir, key, params, headers, head=method == "HEAD")
        elif method == "PUT":
            self._put_object(bucket_dir, key, headers)
        elif method == "DELETE":
            self._delete_object(bucket_dir, key)
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
        self._check_subresources(params, allowed=set(_HARMLESS_PARAMS) | set(RESPONSE_OVERRIDES))
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
        if not _is_within(path, self.server.root):
            raise OssError(403, "AccessDenied", "The bucket folder resolves outside the server root.")
        if must_exist and not os.path.isdir(path):
            raise OssError(404, "NoSuchBucket", "The specified bucket does not exist.", BucketName=bucket)
        return path

    @staticmethod
    def _object_path(bucket_dir: str, key: str) -> str:
        segments, is_marker = _validate_key(key)
        path = os.path.join(bucket_dir, *segments)
        if is_marker:
            path = os.path.join(path, DIR_MARKER_NAME)
        if not _is_within(os.path.realpath(path), bucket_dir):
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
            page = _list_bucket(bucket_dir, request.prefix, request.delimiter, request.after, request.max_keys)
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

            self._answer_object(key, st.st_size, _etag(st), st.st_mtime, params, headers, head, send_file)

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

        self._answer_object(
            key, size, generated.etag_of(number), generated.mtime, params, headers, head, send_generated
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
    ) -> None:
        """Answer GetObject / HeadObject / GetObjectMeta for an object of either bucket kind.

        Headers, response overrides and Range are the same whatever stores the object; only the body
        differs, so the caller passes ``send_body(start, length)``, called once the headers are out.
        """
        out = {
            "Content-Type": mimetypes.guess_type(key)[0] or "application/octet-stream",
            "ETag": etag,
            "Last-Modified": formatdate(mtime, usegmt=True),
            "Accept-Ranges": "bytes",
            "x-oss-object-type": "Normal",
            "x-oss-storage-class": "Standard",
        }
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

    def _put_object(self, bucket_dir: str, key: str, headers: Mapping[str, str]) -> None:
        if "x-oss-copy-source" in headers:
            raise not_implemented("CopyObject")
        path = self._object_path(bucket_dir, key)
        parent = os.path.dirname(path)
        conflict = OssError(
            409,
            "KeyConflict",
            "The local OSS server stores keys as files: a key cannot be both an object and a folder "
            "(e.g. 'a' and 'a/b').",
            Key=key,
        )
        if os.path.isdir(path):
            raise conflict
        expected_md5 = headers.get("content-md5", "")
        digest = hashlib.md5(usedforsecurity=False)
        tmp_path = ""
        for _attempt in range(5):  # a concurrent DeleteObject may prune the empty parent in between
            try:
                os.makedirs(parent, exist_ok=True)
                tmp_path = os.path.join(parent, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
                handle = open(tmp_path, "xb")
                break
            except (FileExistsError, NotADirectoryError) as exc:
                if _file_in_the_way(bucket_dir, parent):
                    raise conflict from exc
                continue  # makedirs lost a race with a DeleteObject pruning the folder: try again
            except FileNotFoundError:
                continue
        else:
            raise OssError(500, "InternalError", "Could not create the object's folder.")
        try:
            with handle:
                for chunk in self._body_chunks():
                    digest.update(chunk)
                    handle.write(chunk)
            md5_b64 = base64.b64encode(digest.digest()).decode()
            if expected_md5 and expected_md5 != md5_b64:
                raise OssError(
                    400,
                    "InvalidDigest",
                    "The Content-MD5 you specified did not match what we received.",
                    CalculatedDigest=md5_b64,
                    ExpectedDigest=expected_md5,
                )
            try:
                os.replace(tmp_path, path)
            except (IsADirectoryError, NotADirectoryError) as exc:
                raise conflict from exc
            tmp_path = ""
        finally:
            if tmp_path:
                try:
                    os.unlink(tmp_path)
                except OSError:
                    pass
        st = os.stat(path)
        self._send(200, {"ETag": _etag(st), "Content-MD5": md5_b64})

    def _delete_object(self, bucket_dir: str, key: str) -> None:
        path = self._object_path(bucket_dir, key)
        self._drain_body()
        try:
            if not os.path.isdir(path):
                os.remove(path)
        except (FileNotFoundError, NotADirectoryError):
            pass
        # Folders exist on OSS only through their objects: prune the ones this delete emptied.
        directory = os.path.dirname(path)
        while _is_within(directory, bucket_dir):
            try:
                os.rmdir(directory)
            except OSError:
                break
            directory = os.path.dirname(directory)
        self._send(204, {})

    # -- bodies and responses -----------------------------------------------------------------------

    def _request_has_body(self) -> bool:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return True
        length = self.headers.get("Content-Length", "0").strip()
        return not length.isdigit() or int(length) > 0

    def _body_chunks(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise OssError(400, "InvalidRequest", "Malformed chunked request body.") from exc
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                yield from self._read_exact(size)
                self.rfile.readline(3)
        else:
            length = self.headers.get("Content-Length")
            if length is None:
                raise OssError(411, "MissingContentLength", "You must provide the Content-Length HTTP header.")
            if not length.strip().isdigit():
                raise invalid_argument("Content-Length is not a number.", "Content-Length", length)
            yield from self._read_exact(int(length))
        self._body_pending = False

    def _read_exact(self, count: int) -> Iterator[bytes]:
        while count > 0:
            data = self.rfile.read(min(count, _CHUNK))
            if not data:
                raise ConnectionResetError("client closed the connection mid-body")
            count -= len(data)
            yield data

    def _discard_small_body(self) -> None:
        """Read and drop a refused request's body if it is small, so the client sees our answer.

        A client still sending a large body to a closed socket gets a reset instead of the error
        document; bigger bodies are not worth reading, and the connection is closed instead.
        """
        if not getattr(self, "_body_pending", False) or self.command is None:
            return
        length = (self.headers.get("Content-Length") or "").strip()
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        if chunked or (length.isdigit() and int(length) <= _DISCARD_LIMIT):
            try:
                self._drain_body()
            except (OssError, OSError):
                self._body_pending = True

    def _drain_body(self) -> None:
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
        if self._body_pending:  # we answer without having read the request body: do not reuse
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

    def _send_error(self, err: OssError, bucket: str, drain: bool = True) -> None:
        if getattr(self, "_headers_sent", False):
            self.close_connection = True
            return
        if drain:
            self._discard_small_body()
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


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


class LocalOssServer:
    """An OSS-protocol HTTP server over ``root`` (bucket = sub-folder), for tests and local runs.

    Use as a context manager, or call :meth:`start` / :meth:`stop`. The port is chosen when the server
    starts (``port=0`` picks a free one); read it from :attr:`endpoint`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        credentials: Sequence[Credential],
        host: str = "127.0.0.1",
        port: int = 0,
        latency_s: float = 0.0,
        *,
        jitter_s: float = 0.0,
        seed: int | None = None,
        generated: Sequence[GeneratedBucket] = (),
        faults: OssFaults | None = None,
    ) -> None:
        """Check the configuration now, so a bad root or key set fails before anything listens.

        ``latency_s`` is slept before each request is answered (to rehearse slow networks), plus a
        uniform random ``[0, jitter_s]`` drawn from a generator seeded with ``seed`` (None: unseeded).
        ``generated`` buckets are served read-only next to the folder buckets under ``root``, and take
        precedence over a folder of the same name.
        """
        real_root = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real_root):
            raise FileNotFoundError(f"OSS root folder does not exist: {root}")
        if not credentials:
            raise ValueError("at least one Credential is required: the server refuses unsigned requests")
        secrets_by_id: dict[str, str] = {}
        for cred in credentials:
            if not cred.access_key_id or not cred.access_key_secret:
                raise ValueError("credentials need a non-empty access key id and secret")
            known = secrets_by_id.setdefault(cred.access_key_id, cred.access_key_secret)
            if known != cred.access_key_secret:
                raise ValueError(f"access key id {cred.access_key_id!r} is configured twice with different secrets")
        if host == "localhost":
            host = "127.0.0.1"
        try:
            loopback = ipaddress.IPv4Address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the local OSS server binds to IPv4 loopback addresses only, not {host!r}")
        if latency_s < 0 or jitter_s < 0:
            raise ValueError("latency_s and jitter_s must be >= 0")
        by_name = {bucket.name: bucket for bucket in generated}
        if len(by_name) != len(generated):
            raise ValueError("generated buckets need distinct names")
        self._root = real_root
        self._secrets = secrets_by_id
        self._host = host
        self._port = port
        self._latency_s = float(latency_s)
        self._jitter_s = float(jitter_s)
        self._seed = seed
        self._generated = by_name
        self._faults = faults if faults is not None else OssFaults()
        self._httpd: _OssHttpServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "LocalOssServer":
        """Bind and serve in a daemon thread, so tests can talk to it from the calling thread."""
        if self._httpd is not None:
            raise RuntimeError("server already started")
        self._httpd = _OssHttpServer(
            (self._host, self._port),
            self._root,
            self._secrets,
            self._latency_s,
            jitter_s=self._jitter_s,
            seed=self._seed,
            generated=self._generated,
            faults=self._faults,
        )
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="local-oss-server", daemon=True
        )
        self._thread.start()
        logger.debug("local OSS server serving %s at %s", self._root, self.endpoint)
        return self

    def stop(self) -> None:
        """Stop serving, cut kept-alive connections and release the port; safe to call twice."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: pass it to ``oss2.Bucket`` (an IP endpoint means path-style URLs)."""
        if self._httpd is None:
            raise RuntimeError("server not started: the port is chosen at start()")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def root(self) -> str:
        """The resolved root folder (buckets are its sub-folders)."""
        return self._root

    @property
    def faults(self) -> OssFaults:
        """The fault knobs (see :mod:`pipeline.local.oss_faults`); change them while the server runs."""
        return self._faults

    def __enter__(self) -> "LocalOssServer":
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the server in the foreground until SIGTERM/SIGINT (for docker-less local runs and tests).

    The secret may come from ``LOCAL_OSS_ACCESS_KEY_SECRET`` instead of the command line, where any
    local user could read it in the process list.
    """
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.local.oss_server", description="Serve a local folder over the OSS protocol."
    )
    parser.add_argument("--root", required=True, help="folder whose sub-folders are buckets")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--access-key-id", default=os.environ.get("LOCAL_OSS_ACCESS_KEY_ID"))
    parser.add_argument("--access-key-secret", default=os.environ.get("LOCAL_OSS_ACCESS_KEY_SECRET"))
    parser.add_argument("--pidfile", help="write the process id here once listening; removed on exit")
    parser.add_argument("--latency-s", type=float, default=0.0, help="sleep this long before each answer")
    parser.add_argument(
        "--jitter-s", type=float, default=0.0, help="add a uniform random delay in [0, JITTER_S] to each answer"
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of the jitter (default: unseeded)")
    parser.add_argument(
        "--generated",
        action="append",
        default=[],
        type=GeneratedBucket.parse,
        metavar="SPEC",
        help="serve a generated read-only bucket, e.g. name=bench,prefixes=64,keys_per_prefix=15625,"
        "flat_keys=200000 (repeatable; see GeneratedBucket)",
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    oss_faults.add_cli_arguments(parser)
    args = parser.parse_args(argv)
    if not args.access_key_id or not args.access_key_secret:
        parser.error("--access-key-id and --access-key-secret (or LOCAL_OSS_ACCESS_KEY_* variables) are required")

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    logger.setLevel(args.log_level)

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("local OSS server: received signal %d, stopping", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = LocalOssServer(
        args.root,
        [Credential(args.access_key_id, args.access_key_secret)],
        port=args.port,
        latency_s=args.latency_s,
        jitter_s=args.jitter_s,
        seed=args.seed,
        generated=args.generated,
        faults=oss_faults.from_cli_arguments(args),
    )
    try:
        with server:
            if args.pidfile:
                with open(args.pidfile, "w", encoding="ascii") as fh:
                    fh.write(f"{os.getpid()}\n")
            logger.info("local OSS server listening on %s (root %s)", server.endpoint, server.root)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if args.pidfile:
            try:
                with open(args.pidfile, encoding="ascii") as fh:
                    mine = fh.read().strip() == str(os.getpid())
                if mine:
                    os.remove(args.pidfile)
            except OSError:
                pass
    logger.info("local OSS server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
