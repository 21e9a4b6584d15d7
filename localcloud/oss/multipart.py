"""Multipart uploads of the local OSS server: what oss2 sends to copy (or upload) an object in parts.

A mixin of :class:`~localcloud.oss.handler.OssRequestHandler`, next to
:class:`~localcloud.oss.writes.ObjectWrites` (whose ``_copy_source`` and ``_store_object`` it uses).

InitiateMultipartUpload (``POST /bucket/key?uploads``)
    Answers ``<InitiateMultipartUploadResult>`` with Bucket, Key and a new ``UploadId`` (32 upper-case
    hex digits). ``x-oss-storage-class`` is the completed object's class.
UploadPart (``PUT /bucket/key?partNumber=N&uploadId=X``, a body) and UploadPartCopy (the same with
``x-oss-copy-source: /bucket/url-encoded-key`` and optionally ``x-oss-copy-source-range: bytes=a-b``)
    Store part ``N`` (1-10,000, else 400 ``InvalidArgument``), replacing an earlier part ``N``; at most
    5 GiB (400 ``EntityTooLarge``). The answer's ``ETag`` is the part's content MD5 (UploadPartCopy
    also answers ``<CopyPartResult><LastModified/><ETag/></CopyPartResult>``). A copy's source may be
    of any size (CopyObject's 1 GB limit does not apply); its range must lie inside the source (an
    invalid or out-of-bounds range: 400 ``InvalidArgument``; OSS's own answer to that is not
    documented, so this is stricter); the ``x-oss-copy-source-if-*`` conditions are CopyObject's.
CompleteMultipartUpload (``POST /bucket/key?uploadId=X``, body ``<CompleteMultipartUpload><Part>
<PartNumber/><ETag/></Part>…``)
    Part numbers must be strictly ascending (400 ``InvalidPartOrder``), each part uploaded with that
    ETag (400 ``InvalidPart``), every part but the last at least 100 KB (102,400 bytes; 400
    ``EntityTooSmall``). The parts are concatenated into the object atomically; parts not listed are
    discarded. ``x-oss-complete-all`` is not implemented. The object's ETag is
    ``"<HEX>-<number of parts>"`` where HEX is the upper-case MD5 of the parts' binary MD5s
    concatenated: that is the form OSS answers, but how OSS computes HEX is not documented (OSS says
    only that a multipart ETag is "generated based on specific rules", not a content MD5), so the
    digits will not match the cloud's; never compare a multipart ETag with a content MD5.
AbortMultipartUpload (``DELETE /bucket/key?uploadId=X``)
    Discards the upload and its parts (204).

An upload id that does not exist, was completed or aborted, or belongs to another bucket or key
answers 404 ``NoSuchUpload``. ListParts and ListMultipartUploads are not implemented.

On disk
    ``<root>/.oss-multipart/<upload id>/`` (outside every bucket: bucket names cannot start with a
    dot) holds ``upload.json`` (bucket, key, storage class, initiation time) and one file per part,
    written to a temporary name and renamed into place. Complete and Abort first rename the folder
    away (so a concurrent Complete or Abort of the same upload answers ``NoSuchUpload``) and remove
    it when done. Uploads never completed or aborted stay on disk, as OSS keeps them (until a
    lifecycle rule removes them).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import time
import xml.etree.ElementTree as ET
from typing import Callable, Iterator, Mapping

from localcloud.oss import archive
from localcloud.oss.protocol import OssError, invalid_argument, iso8601, not_implemented, xml_text
from localcloud.oss.store import TEMP_PREFIX
from localcloud.oss.writes import HandlerSide, _copy_conditions_hold, parse_copy_source

UPLOADS_DIR = ".oss-multipart"
MAX_PART_NUMBER = 10_000
MIN_PART_BYTES = 100 * 1024
MAX_PART_BYTES = 5 * 1024**3
MAX_COMPLETE_BODY = 4 * 1024**2  # 10,000 parts of ~100 bytes of XML each, with room to spare
_UPLOAD_ID = re.compile(r"[0-9A-F]{32}")
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")
_META = "upload.json"


class MultipartWrites(HandlerSide):
    """InitiateMultipartUpload, UploadPart(Copy), CompleteMultipartUpload, AbortMultipartUpload."""

    _copy_source: Callable[..., tuple]
    _store_object: Callable[..., bytes]

    def _multipart(self, bucket: str, bucket_dir: str, key: str, params: Mapping[str, str],
                   headers: Mapping[str, str]) -> None:
        """Route a request carrying ``uploads`` or ``uploadId`` (the handler checked the method)."""
        method = self.command
        self._object_path(bucket_dir, key)  # refuse a bad key before anything else
        if "uploads" in params:
            if method != "POST" or "uploadId" in params or "partNumber" in params:
                raise invalid_argument("uploads is for InitiateMultipartUpload (POST) only.", "uploads", "")
            self._initiate(bucket, key, headers)
            return
        upload_id = params["uploadId"]
        if method == "PUT":
            self._upload_part(bucket, key, upload_id, params.get("partNumber"), headers)
        elif "partNumber" in params:
            raise invalid_argument("partNumber is for UploadPart (PUT) only.", "partNumber", params["partNumber"])
        elif method == "POST":
            self._complete(bucket, bucket_dir, key, upload_id, headers)
        elif method == "DELETE":
            self._drain_body()
            shutil.rmtree(self._claim(bucket, key, upload_id)[0], ignore_errors=True)
            self._send(204, {})
        else:
            raise not_implemented("ListParts")

    # -- the uploads folder -------------------------------------------------------------------------

    def _upload_dir(self, bucket: str, key: str, upload_id: str) -> tuple[str, dict]:
        """The upload's folder and ``upload.json``; 404 NoSuchUpload unless it is this bucket's and key's."""
        no_such = OssError(404, "NoSuchUpload", "The specified upload does not exist. The upload ID may be invalid, "
                           "or the upload may have been aborted or completed.", UploadId=upload_id)
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise no_such
        folder = os.path.join(self.server.root, UPLOADS_DIR, upload_id)
        try:
            with open(os.path.join(folder, _META), encoding="utf-8") as fh:
                meta = json.load(fh)
        except (OSError, ValueError) as exc:
            raise no_such from exc
        if meta.get("bucket") != bucket or meta.get("key") != key:
            raise no_such
        return folder, meta

    def _claim(self, bucket: str, key: str, upload_id: str) -> tuple[str, dict]:
        """Rename the upload's folder away (Complete, Abort), so no other request finds it any more."""
        folder, meta = self._upload_dir(bucket, key, upload_id)
        claimed = os.path.join(self.server.root, UPLOADS_DIR, f"{TEMP_PREFIX}{upload_id}-{secrets.token_hex(4)}")
        try:
            os.rename(folder, claimed)
        except OSError as exc:  # a concurrent Complete or Abort won
            raise OssError(404, "NoSuchUpload", "The specified upload does not exist.", UploadId=upload_id) from exc
        return claimed, meta

    def _initiate(self, bucket: str, key: str, headers: Mapping[str, str]) -> None:
        self._drain_body()
        storage_class = archive.storage_class_of_put(headers)
        upload_id = secrets.token_hex(16).upper()
        folder = os.path.join(self.server.root, UPLOADS_DIR, upload_id)
        os.makedirs(folder)
        meta = {"bucket": bucket, "key": key, "storage_class": storage_class, "initiated": time.time()}
        with open(os.path.join(folder, _META), "w", encoding="utf-8") as fh:
            json.dump(meta, fh)
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<InitiateMultipartUploadResult>'
                f"<Bucket>{xml_text(bucket)}</Bucket><Key>{xml_text(key)}</Key><UploadId>{upload_id}</UploadId>"
                "</InitiateMultipartUploadResult>")
        self._send(200, {"Content-Type": "application/xml"}, body.encode("utf-8"))

    # -- UploadPart and UploadPartCopy --------------------------------------------------------------

    def _upload_part(self, bucket: str, key: str, upload_id: str, number_raw: str | None,
                     headers: Mapping[str, str]) -> None:
        number = _part_number(number_raw)
        folder, _meta = self._upload_dir(bucket, key, upload_id)
        copy_source = headers.get("x-oss-copy-source")
        if copy_source is None:
            length = (headers.get("content-length") or "").strip()
            if length.isdigit() and int(length) > MAX_PART_BYTES:
                raise _too_large(int(length))
            expected_md5 = headers.get("content-md5", "")
            digest = _write_part(folder, number, self._body_chunks(), expected_md5)
            self._send(200, {"ETag": f'"{digest.upper()}"'})
            return
        self._drain_body()
        src_bucket, src_key = parse_copy_source(copy_source)
        size, etag, mtime, state, chunks = self._copy_source(src_bucket, src_key, float("inf"))
        start, length = _copy_range(headers.get("x-oss-copy-source-range"), size)
        if length > MAX_PART_BYTES:
            raise _too_large(length)
        if state.archived and not state.readable(time.time()):
            raise OssError(403, "InvalidObjectState", "The operation is not valid for the object's state.")
        if not _copy_conditions_hold(headers, etag, mtime):
            return self._send(304, {"ETag": etag}, b"")
        digest = _write_part(folder, number, chunks(start, length), "")
        part_etag = f'"{digest.upper()}"'
        body = ('<?xml version="1.0" encoding="UTF-8"?>\n<CopyPartResult>'
                f"<LastModified>{iso8601(time.time())}</LastModified><ETag>{part_etag}</ETag></CopyPartResult>")
        self._send(200, {"Content-Type": "application/xml", "ETag": part_etag}, body.encode("utf-8"))

    # -- CompleteMultipartUpload --------------------------------------------------------------------

    def _complete(self, bucket: str, bucket_dir: str, key: str, upload_id: str, headers: Mapping[str, str]) -> None:
        if headers.get("x-oss-complete-all"):
            raise not_implemented("x-oss-complete-all")
        length = (headers.get("content-length") or "0").strip()
        if length.isdigit() and int(length) > MAX_COMPLETE_BODY:
            raise invalid_argument("The CompleteMultipartUpload body is too large.", "Content-Length", length)
        body = b"".join(self._body_chunks()) if self._body_pending else b""
        listed = _parse_part_list(body)
        folder, _meta = self._upload_dir(bucket, key, upload_id)
        sizes, md5s = [], []
        for number, etag in listed:
            path = os.path.join(folder, str(number))
            recorded = _read_part_md5(path)
            if recorded is None or recorded != etag.strip().strip('"').upper():
                raise OssError(400, "InvalidPart", "One or more of the specified parts could not be found or the "
                               "specified entity tag might not have matched the part's entity tag.",
                               PartNumber=str(number), ETag=etag)
            sizes.append(os.path.getsize(path))
            md5s.append(bytes.fromhex(recorded))
        for (number, _etag), size in zip(listed[:-1], sizes[:-1]):
            if size < MIN_PART_BYTES:
                raise OssError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.",
                               PartNumber=str(number), MinSizeAllowed=str(MIN_PART_BYTES), ProposedSize=str(size))
        claimed, meta = self._claim(bucket, key, upload_id)
        try:
            etag = hashlib.md5(b"".join(md5s), usedforsecurity=False).hexdigest().upper() + f"-{len(listed)}"

            def chunks() -> Iterator[bytes]:
                for number, _etag in listed:
                    with open(os.path.join(claimed, str(number)), "rb") as fh:
                        while chunk := fh.read(1024 * 1024):
                            yield chunk

            self._store_object(bucket_dir, key, chunks(), meta.get("storage_class", "Standard"), etag=etag)
        finally:
            shutil.rmtree(claimed, ignore_errors=True)
        body_out = ('<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult>'
                    f"<Location>/{xml_text(bucket)}/{xml_text(key)}</Location><Bucket>{xml_text(bucket)}</Bucket>"
                    f'<Key>{xml_text(key)}</Key><ETag>"{etag}"</ETag></CompleteMultipartUploadResult>')
        self._send(200, {"Content-Type": "application/xml", "ETag": f'"{etag}"'}, body_out.encode("utf-8"))


def _too_large(size: int) -> OssError:
    return OssError(400, "EntityTooLarge", "A part is at most 5 GB.", MaxSizeAllowed=str(MAX_PART_BYTES),
                    ProposedSize=str(size))


def _part_number(raw: str | None) -> int:
    if raw is None or not raw.isdigit() or not 1 <= int(raw) <= MAX_PART_NUMBER:
        raise invalid_argument("Part number must be an integer between 1 and 10000, inclusive.", "PartNumber",
                               raw or "")
    return int(raw)


def _copy_range(header: str | None, size: int) -> tuple[int, int]:
    """``(start, length)`` of ``x-oss-copy-source-range`` (the whole source without one)."""
    if header is None:
        return 0, size
    found = _RANGE.fullmatch(header.strip())
    if not found or int(found[1]) > int(found[2]) or int(found[2]) >= size:
        raise invalid_argument("The x-oss-copy-source-range is not a range inside the source object.",
                               "x-oss-copy-source-range", header)
    return int(found[1]), int(found[2]) - int(found[1]) + 1


def _write_part(folder: str, number: int, chunks: Iterator[bytes], expected_md5_b64: str) -> str:
    """Write part ``number`` atomically (temporary file, MD5 recorded, rename); its hex MD5."""
    digest = hashlib.md5(usedforsecurity=False)
    tmp = os.path.join(folder, f"{TEMP_PREFIX}{number}-{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as fh:
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
        actual = base64.b64encode(digest.digest()).decode()
        if expected_md5_b64 and expected_md5_b64 != actual:
            raise OssError(400, "InvalidDigest", "The Content-MD5 you specified did not match what we received.",
                           CalculatedDigest=actual, ExpectedDigest=expected_md5_b64)
        with open(tmp + ".md5", "w", encoding="ascii") as fh:
            fh.write(digest.hexdigest().upper())
        os.replace(tmp + ".md5", os.path.join(folder, f"{number}.md5"))
        os.replace(tmp, os.path.join(folder, str(number)))
    except FileNotFoundError as exc:  # the upload was completed or aborted meanwhile
        raise OssError(404, "NoSuchUpload", "The specified upload does not exist.") from exc
    finally:
        for leftover in (tmp, tmp + ".md5"):
            try:
                os.unlink(leftover)
            except OSError:
                pass
    return digest.hexdigest()


def _read_part_md5(path: str) -> str | None:
    try:
        with open(path + ".md5", encoding="ascii") as fh:
            return fh.read().strip()
    except OSError:
        return None


def _parse_part_list(body: bytes) -> list[tuple[int, str]]:
    """``[(part number, ETag)]`` of a CompleteMultipartUpload body, strictly ascending."""
    malformed = OssError(400, "MalformedXML", "The XML you provided was not well-formed or did not validate.")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise malformed from exc
    if root.tag != "CompleteMultipartUpload":
        raise malformed
    parts: list[tuple[int, str]] = []
    for node in root.findall("Part"):
        number_raw, etag = (node.findtext("PartNumber") or "").strip(), node.findtext("ETag")
        if etag is None:
            raise malformed
        number = _part_number(number_raw)
        if parts and number <= parts[-1][0]:
            raise OssError(400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts list must "
                           "be specified in order by part number.")
        parts.append((number, etag))
    if not parts:
        raise malformed
    return parts
