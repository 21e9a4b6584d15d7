"""Writing operations of the local OSS server: PutObject, CopyObject, and the bucket inventory rules.

A mixin of :class:`~localcloud.oss.handler.OssRequestHandler` (which owns the plumbing: ``_send``,
``_body_chunks``, ``_bucket_dir``, ``_object_path``), kept apart so each module stays readable.

CopyObject (``PUT /bucket/key`` with ``x-oss-copy-source: /src-bucket/url-encoded-key``)
    Copies a folder or generated bucket's object (at most :data:`MAX_COPY_BYTES`, 1 GiB, as OSS's
    CopyObject; larger sources answer 400 ``EntityTooLarge``: use UploadPartCopy, see
    :mod:`localcloud.oss.multipart`) into a folder bucket, atomically; the copy's ETag is
    the content MD5 (the source's, for simple uploads). ``x-oss-metadata-directive`` ``COPY`` (default)
    or ``REPLACE`` (anything else: 400 InvalidArgument; no user metadata is stored either way);
    ``x-oss-storage-class`` sets the copy's class (default Standard); ``x-oss-forbid-overwrite: true``
    refuses an existing target with 409 ``FileAlreadyExists``; ``x-oss-copy-source-if-match`` /
    ``-if-unmodified-since`` failing answer 412 ``PreconditionFailed``, ``-if-none-match`` /
    ``-if-modified-since`` failing answer 304. A missing source answers 404 ``NoSuchBucket`` /
    ``NoSuchKey``; an archived source not restored 403 ``InvalidObjectState``; a ``versionId`` 400
    ``InvalidArgument`` (no versioning here). Answer: 200 with ``ETag`` and the body
    ``<CopyObjectResult><ETag>"HEX"</ETag><LastModified>ISO 8601</LastModified></CopyObjectResult>``.
    All buckets belong to one account here, so OSS's cross-account AccessDenied cannot happen.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Callable, Iterator, Mapping
from urllib.parse import unquote

from localcloud.oss import archive, inventory_config
from localcloud.oss.protocol import OssError, invalid_argument, iso8601, method_not_allowed
from localcloud.oss.store import TEMP_PREFIX, etag_of, file_in_the_way, object_class, record_etag, set_object_class

if TYPE_CHECKING:
    from localcloud.oss.server import OssHttpServer

MAX_COPY_BYTES = 1024**3
_CHUNK = 256 * 1024


class HandlerSide:
    """What the write mixins use of the request handler (OssRequestHandler provides it)."""

    server: OssHttpServer
    command: str
    headers: Mapping[str, str]
    _body_pending: bool
    _send: Callable[..., None]
    _body_chunks: Callable[[], Iterator[bytes]]
    _drain_body: Callable[[], None]
    _bucket_dir: Callable[..., str]
    _object_path: Callable[[str, str], str]


class ObjectWrites(HandlerSide):
    """PutObject, CopyObject and Put/Get/List/DeleteBucketInventory, for the request handler."""

    # -- PutObject and CopyObject -------------------------------------------------------------------

    def _put_object(self, bucket_dir: str, key: str, headers: Mapping[str, str]) -> None:
        if "x-oss-copy-source" in headers:
            self._copy_object(bucket_dir, key, headers)
            return
        storage_class = archive.storage_class_of_put(headers)
        expected_md5 = headers.get("content-md5", "")

        def check(digest: bytes) -> None:
            md5_b64 = base64.b64encode(digest).decode()
            if expected_md5 and expected_md5 != md5_b64:
                raise OssError(400, "InvalidDigest", "The Content-MD5 you specified did not match what we received.",
                               CalculatedDigest=md5_b64, ExpectedDigest=expected_md5)

        digest = self._store_object(bucket_dir, key, self._body_chunks(), storage_class, check)
        self._send(200, {"ETag": '"' + digest.hex().upper() + '"', "Content-MD5": base64.b64encode(digest).decode()})

    def _store_object(self, bucket_dir: str, key: str, chunks: Iterator[bytes], storage_class: str,
                      check: Callable[[bytes], None] | None = None, etag: str | None = None) -> bytes:
        """Write ``chunks`` as ``key`` atomically (temporary file, ETag recorded, rename); the MD5 digest.

        ``check(digest)`` may refuse the content before the rename; ``etag`` (unquoted) is recorded
        instead of the content MD5 (a multipart upload's).
        """
        path = self._object_path(bucket_dir, key)
        parent = os.path.dirname(path)
        conflict = OssError(
            409, "KeyConflict",
            "The local OSS server stores keys as files: a key cannot be both an object and a folder (e.g. 'a' and 'a/b').",
            Key=key,
        )
        if os.path.isdir(path):
            raise conflict
        digest = hashlib.md5(usedforsecurity=False)
        tmp_path = ""
        for _attempt in range(5):  # a concurrent DeleteObject may prune the empty parent in between
            try:
                os.makedirs(parent, exist_ok=True)
                tmp_path = os.path.join(parent, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
                handle = open(tmp_path, "xb")
                break
            except (FileExistsError, NotADirectoryError) as exc:
                if file_in_the_way(bucket_dir, parent):
                    raise conflict from exc
                continue  # makedirs lost a race with a DeleteObject pruning the folder: try again
            except FileNotFoundError:
                continue
        else:
            raise OssError(500, "InternalError", "Could not create the object's folder.")
        try:
            with handle:
                for chunk in chunks:
                    digest.update(chunk)
                    handle.write(chunk)
            if check is not None:
                check(digest.digest())
            record_etag(tmp_path, etag or digest.hexdigest())  # the rename keeps size, mtime and the record
            try:
                os.replace(tmp_path, path)
            except (IsADirectoryError, NotADirectoryError) as exc:
                raise conflict from exc
            tmp_path = ""
            set_object_class(path, archive.ObjectClass(storage_class))  # a new object: no restore yet
        finally:
            if tmp_path:
                try:
                    os.unlink(tmp_path)
                except OSError:
                    pass
        return digest.digest()

    def _copy_object(self, bucket_dir: str, key: str, headers: Mapping[str, str]) -> None:
        """CopyObject (see the module docstring)."""
        self._drain_body()
        src_bucket, src_key = parse_copy_source(headers["x-oss-copy-source"])
        directive = headers.get("x-oss-metadata-directive", "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise invalid_argument("x-oss-metadata-directive must be COPY or REPLACE.", "x-oss-metadata-directive", directive)
        storage_class = archive.storage_class_of_put(headers)
        size, etag, mtime, state, chunks = self._copy_source(src_bucket, src_key, MAX_COPY_BYTES)
        if state.archived and not state.readable(time.time()):
            raise OssError(403, "InvalidObjectState", "The operation is not valid for the object's state.")
        if not _copy_conditions_hold(headers, etag, mtime):
            return self._send(304, {"ETag": etag}, b"")
        target = self._object_path(bucket_dir, key)
        if headers.get("x-oss-forbid-overwrite", "").lower() == "true" and os.path.isfile(target):
            raise OssError(409, "FileAlreadyExists", "The object already exists.", Key=key)
        digest = self._store_object(bucket_dir, key, chunks(0, size), storage_class)
        new_etag = '"' + digest.hex().upper() + '"'
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult>'
                f"<ETag>{new_etag}</ETag><LastModified>{iso8601(os.stat(target).st_mtime)}</LastModified>"
                "</CopyObjectResult>")
        self._send(200, {"Content-Type": "application/xml", "ETag": new_etag}, body.encode("utf-8"))

    def _copy_source(self, bucket: str, key: str, max_size: int):
        """``(size, etag, mtime, class, chunks(start, length))`` of a copy's source object (at most ``max_size``)."""
        no_such_key = OssError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
        generated = self.server.generated.get(bucket)
        if generated is not None:
            found = generated.lookup(key)
            if found is None:
                raise no_such_key
            number, size = found
            _check_copy_size(size, max_size)
            return (size, generated.etag_of(number), generated.mtime,
                    archive.ObjectClass(generated.storage_class_of(number)),
                    lambda start, length: generated.body(number, start, length))
        path = self._object_path(self._bucket_dir(bucket), key)
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise no_such_key from exc
        if not stat.S_ISREG(st.st_mode):
            raise no_such_key
        _check_copy_size(st.st_size, max_size)  # before the ETag, which may need a read of the whole file

        def chunks(start: int, length: int) -> Iterator[bytes]:
            with open(path, "rb") as fh:
                fh.seek(start)
                while length > 0 and (chunk := fh.read(min(_CHUNK, length))):
                    length -= len(chunk)
                    yield chunk

        return st.st_size, etag_of(path, st), st.st_mtime, object_class(path), chunks

    # -- Put/Get/List/DeleteBucketInventory ---------------------------------------------------------

    def _bucket_inventory(self, bucket: str, params: Mapping[str, str]) -> None:
        """Put/Get/List/DeleteBucketInventory (see :mod:`localcloud.oss.inventory_config`)."""
        rules, method, rule_id = self.server.inventory_rules, self.command, params.get("inventoryId")
        if method == "GET" and rule_id is None:
            self._send(200, {"Content-Type": "application/xml"}, rules.list_document(bucket, params.get("continuation-token", "")))
            return
        if rule_id is None:
            raise invalid_argument("The inventoryId parameter is required.", "inventoryId", "")
        if method == "PUT":
            length = (self.headers.get("Content-Length") or "0").strip()
            if length.isdigit() and int(length) > inventory_config.MAX_BODY:
                raise invalid_argument("The InventoryConfiguration body is too large.", "Content-Length", length)
            body = b"".join(self._body_chunks()) if self._body_pending else b""
            self._check_content_md5(body)
            rule = inventory_config.parse_rule(body, rule_id, self.server.account_id)
            if rule.destination_bucket in self.server.generated:
                raise invalid_argument("The destination bucket is read-only (a generated bucket).", "Bucket",
                                       rule.destination_bucket)
            self._bucket_dir(rule.destination_bucket)  # 404 NoSuchBucket
            rules.add(bucket, rule)
            self._send(200, {})
        elif method == "GET":
            body = '<?xml version="1.0" encoding="UTF-8"?>\n' + rules.get(bucket, rule_id).to_xml()
            self._send(200, {"Content-Type": "application/xml"}, body.encode("utf-8"))
        elif method == "DELETE":
            self._drain_body()
            rules.delete(bucket, rule_id)
            self._send(204, {})
        else:
            raise method_not_allowed(method)

    def _check_content_md5(self, body: bytes) -> None:
        expected = self.headers.get("Content-MD5", "")
        actual = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
        if expected and expected != actual:
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified did not match what we received.",
                           CalculatedDigest=actual, ExpectedDigest=expected)


def parse_copy_source(source: str) -> tuple[str, str]:
    """``(bucket, key)`` of an ``x-oss-copy-source`` header (``/bucket/url-encoded-key``)."""
    src_path, _, query = source.partition("?")
    if query:
        raise invalid_argument("Versioned copies (versionId) are not supported: the bucket is not versioned.",
                               "x-oss-copy-source", source)
    src_bucket, _, src_key_raw = src_path.lstrip("/").partition("/")
    try:
        src_key = unquote(src_key_raw, errors="strict")
    except UnicodeDecodeError as exc:
        raise invalid_argument("x-oss-copy-source is not valid percent-encoded UTF-8.", "x-oss-copy-source", source) from exc
    if not src_path.startswith("/") or not src_bucket or not src_key:
        raise invalid_argument("x-oss-copy-source must be /<bucket>/<key>.", "x-oss-copy-source", source)
    return src_bucket, src_key


def _check_copy_size(size: int, max_size: int) -> None:
    if size > max_size:
        raise OssError(400, "EntityTooLarge", "CopyObject copies at most 1 GB; use UploadPartCopy.",
                       MaxSizeAllowed=str(max_size), ProposedSize=str(size))


def _copy_conditions_hold(headers: Mapping[str, str], etag: str, mtime: float) -> bool:
    """False for a 304 (if-none-match / if-modified-since); raises 412 for if-match / if-unmodified-since."""
    failed = OssError(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold.")
    match = headers.get("x-oss-copy-source-if-match")
    if match is not None and match.strip('" ').upper() != etag.strip('"').upper():
        raise failed
    since = _http_date(headers.get("x-oss-copy-source-if-unmodified-since"))
    if since is not None and mtime > since:
        raise failed
    none_match = headers.get("x-oss-copy-source-if-none-match")
    if none_match is not None and none_match.strip('" ').upper() == etag.strip('"').upper():
        return False
    modified = _http_date(headers.get("x-oss-copy-source-if-modified-since"))
    if modified is not None and mtime <= modified:
        return False
    return True


def _http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None  # OSS ignores a condition whose date does not parse (as HTTP does)
