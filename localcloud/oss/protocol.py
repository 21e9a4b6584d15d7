"""The OSS wire format the local OSS server speaks: error answers, listing XML, Range, URL encoding.

Why a module of its own: these rules are what ``oss2`` parses and maps to its exceptions, and they are
the same whichever kind of bucket (folder or generated) answers, so they live apart from the HTTP
plumbing in :mod:`localcloud.oss.server` and from the storage of either bucket kind.

Range (as OSS does it, not as RFC 7233 does)
    Only the first range of a multi-range header is used. Without the ``x-oss-range-behavior:
    standard`` request header an invalid or out-of-bounds range is ignored and the whole object comes
    back with 200. With that header an end past the object is clamped (206) and an unsatisfiable start
    answers 416 ``InvalidRange``.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import quote
from xml.sax.saxutils import escape

MAX_KEYS_DEFAULT = 100
MAX_KEYS_LIMIT = 1000
#: The OSS bucket naming rules: ``[a-z0-9-]``, 3-63 characters, no leading/trailing ``-``.
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_RANGE_RE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")
_OWNER_ID = "local-oss-owner"
#: GetObject query parameters that override a response header, and the header each one sets.
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-cache-control": "Cache-Control",
    "response-content-encoding": "Content-Encoding",
    "response-content-disposition": "Content-Disposition",
    "response-expires": "Expires",
}


class OssError(Exception):
    """An OSS error answer: HTTP status, OSS error code, message and extra ``<Error>`` elements."""

    def __init__(self, status: int, code: str, message: str, **extra: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}


def invalid_argument(message: str, name: str = "", value: str = "") -> OssError:
    extra = {"ArgumentName": name, "ArgumentValue": value} if name else {}
    return OssError(400, "InvalidArgument", message, **extra)


def not_implemented(what: str) -> OssError:
    return OssError(400, "NotImplemented", f"{what} is not implemented by the local OSS server.")


def method_not_allowed(method: str) -> OssError:
    return OssError(405, "MethodNotAllowed", f"The specified method {method} is not allowed against this resource.")


def parse_request_xml(body: bytes, root_tag: str) -> ET.Element:
    """The root of a request's XML body, which must be ``root_tag``; else 400 ``MalformedXML`` as OSS
    answers. (The parser expands no external entities: ElementTree never fetches them.)"""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise OssError(400, "MalformedXML", "The XML you provided was not well-formed.") from exc
    if root.tag != root_tag:
        raise OssError(400, "MalformedXML", f"The root element must be {root_tag}.")
    return root


def xml_text(value: str) -> str:
    return escape(value)


def url_encode(value: str) -> str:
    """Encode a key the way oss2 undoes it (``urllib.parse.unquote``): ``%XX`` for everything unsafe."""
    return quote(value, safe="/")


def iso8601(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(ts))


def error_document(err: OssError, request_id: str, bucket: str) -> bytes:
    """The ``<Error>`` XML body of an error answer."""
    host = f"{bucket}.oss-local" if bucket else "oss-local"
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>',
        f"<Code>{xml_text(err.code)}</Code>",
        f"<Message>{xml_text(err.message)}</Message>",
        f"<RequestId>{request_id}</RequestId>",
        f"<HostId>{xml_text(host)}</HostId>",
    ]
    parts.extend(f"<{name}>{xml_text(value)}</{name}>" for name, value in err.extra.items())
    parts.append("</Error>")
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# ListObjects (v1 and v2)
# --------------------------------------------------------------------------------------------------


@dataclass
class ListedObject:
    key: str
    size: int
    mtime: float
    etag: str
    storage_class: str = "Standard"
    restore: str = ""  # <RestoreInfo> text, "" when there is none to show


@dataclass
class ListPage:
    """One page as a bucket computes it: objects, common prefixes, and where the page ended."""

    objects: list[ListedObject]
    prefixes: list[str]
    truncated: bool
    last: str | None


@dataclass(frozen=True)
class ListRequest:
    """The checked query parameters of a ListObjects request; ``after`` is the key to resume after."""

    v2: bool
    prefix: str
    delimiter: str
    url: bool
    max_keys: int
    after: str


_TOKEN_TAG = b"after:"  # keeps tokens non-empty and opaque-looking, even for "from the start"


def continuation_token(after: str) -> str:
    """The ``NextContinuationToken`` of a page that resumes right after ``after`` ("" = from the start)."""
    return base64.urlsafe_b64encode(_TOKEN_TAG + after.encode("utf-8")).decode("ascii")


def resume_point(token: str) -> str:
    """The key (or common prefix) a continuation token resumes after; InvalidArgument if it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        if not raw.startswith(_TOKEN_TAG):
            raise ValueError("not a token of this server")
        return raw[len(_TOKEN_TAG) :].decode("utf-8")
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise invalid_argument("The continuation token is not valid.", "continuation-token", token) from exc


def cut_page(page: ListPage, keep: int, began_after: str) -> ListPage:
    """A legal short page: the first ``keep`` entries of ``page`` (objects and common prefixes in key
    order), truncated, resuming right after the last one kept, or where the page began if none is."""
    entries = sorted([(obj.key, obj) for obj in page.objects] + [(common, None) for common in page.prefixes], key=lambda e: e[0])
    kept = entries[:keep]
    return ListPage(
        [obj for _, obj in kept if obj is not None],
        [name for name, obj in kept if obj is None],
        True,
        kept[-1][0] if kept else began_after,
    )


def parse_list_request(params: Mapping[str, str]) -> ListRequest:
    """Check a ListObjects (v1 or v2) query, raising InvalidArgument as OSS does."""
    v2 = params.get("list-type") == "2"
    prefix = params.get("prefix", "")
    delimiter = params.get("delimiter", "")
    encoding = params.get("encoding-type", "")
    if encoding not in ("", "url"):
        raise invalid_argument("The encoding-type must be 'url'.", "encoding-type", encoding)
    raw_max = params.get("max-keys", "") or str(MAX_KEYS_DEFAULT)
    if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_KEYS_LIMIT:
        raise invalid_argument(
            f"max-keys must be an integer between 1 and {MAX_KEYS_LIMIT}.", "max-keys", raw_max
        )
    max_keys = int(raw_max)
    url = encoding == "url"

    if v2:
        token = params.get("continuation-token", "")
        after = params.get("start-after", "")
        if token:
            after = max(after, resume_point(token))
    else:
        after = params.get("marker", "")
    return ListRequest(v2, prefix, delimiter, url, max_keys, after)


def list_objects_document(bucket: str, params: Mapping[str, str], request: ListRequest, page: ListPage) -> bytes:
    """The ``<ListBucketResult>`` XML body of a ListObjects answer."""
    v2 = request.v2

    def enc(value: str) -> str:
        return xml_text(url_encode(value) if request.url else value)

    root_tag = "ListBucketResult"
    parts = [f'<?xml version="1.0" encoding="UTF-8"?>\n<{root_tag}>']
    parts.append(f"<Name>{xml_text(bucket)}</Name>")
    parts.append(f"<Prefix>{enc(request.prefix)}</Prefix>")
    if v2:
        if params.get("start-after"):
            parts.append(f"<StartAfter>{enc(params['start-after'])}</StartAfter>")
        if params.get("continuation-token"):
            parts.append(f"<ContinuationToken>{enc(params['continuation-token'])}</ContinuationToken>")
    else:
        parts.append(f"<Marker>{enc(request.after)}</Marker>")
    parts.append(f"<MaxKeys>{request.max_keys}</MaxKeys>")
    parts.append(f"<Delimiter>{enc(request.delimiter)}</Delimiter>")
    if request.url:
        parts.append("<EncodingType>url</EncodingType>")
    parts.append(f"<IsTruncated>{'true' if page.truncated else 'false'}</IsTruncated>")
    if page.truncated and page.last is not None:
        if v2:
            token = continuation_token(page.last)
            parts.append(f"<NextContinuationToken>{enc(token)}</NextContinuationToken>")
        else:
            parts.append(f"<NextMarker>{enc(page.last)}</NextMarker>")
    if v2:
        parts.append(f"<KeyCount>{len(page.objects) + len(page.prefixes)}</KeyCount>")
    with_owner = not v2 or params.get("fetch-owner", "").lower() == "true"
    owner = f"<Owner><ID>{_OWNER_ID}</ID><DisplayName>{_OWNER_ID}</DisplayName></Owner>" if with_owner else ""
    stamps: dict[float, str] = {}  # one strftime per distinct mtime, not per object
    for obj in page.objects:
        stamp = stamps.get(obj.mtime)
        if stamp is None:
            stamp = stamps[obj.mtime] = iso8601(obj.mtime)
        parts.append(
            f"<Contents><Key>{enc(obj.key)}</Key><LastModified>{stamp}</LastModified>"
            f"<ETag>{obj.etag}</ETag><Type>Normal</Type><Size>{obj.size}</Size>"
            f"<StorageClass>{obj.storage_class}</StorageClass>"
            + (f"<RestoreInfo>{xml_text(obj.restore)}</RestoreInfo>" if obj.restore else "")
            + f"{owner}</Contents>"
        )
    for common in page.prefixes:
        parts.append(f"<CommonPrefixes><Prefix>{enc(common)}</Prefix></CommonPrefixes>")
    parts.append(f"</{root_tag}>")
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------------------------------
# GetObject Range
# --------------------------------------------------------------------------------------------------


def parse_range(header: str, size: int, standard: bool) -> tuple[int, int] | None:
    """Return the inclusive byte range to send, ``None`` for the whole object, or raise 416.

    OSS semantics: only the first range counts; without ``x-oss-range-behavior: standard`` any
    invalid or out-of-bounds range is ignored (200, whole object).
    """
    unit, sep, ranges = header.partition("=")
    match = _RANGE_RE.match(ranges.split(",", 1)[0]) if sep and unit.strip().lower() == "bytes" else None
    if match is None or (not match.group(1) and not match.group(2)):
        return None  # malformed: OSS ignores it
    unsatisfiable = OssError(416, "InvalidRange", "The requested range cannot be satisfied.")
    unsatisfiable.headers["Content-Range"] = f"bytes */{size}"
    if match.group(1):
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else size - 1
        if match.group(2) and end < start:
            return None  # syntactically invalid: ignored
        if start >= size:
            if standard:
                raise unsatisfiable
            return None
        if end >= size:
            if not standard:
                return None
            end = size - 1
        return start, end
    suffix = int(match.group(2))
    if suffix == 0 or size == 0:
        if standard:
            raise unsatisfiable
        return None
    if suffix > size:
        if not standard:
            return None
        suffix = size
    return size - suffix, size - 1


def common_prefix_of(key: str, prefix: str, delimiter: str) -> str | None:
    """The CommonPrefix that ``key`` rolls up into under ``delimiter`` (None: listed as itself)."""
    if not delimiter:
        return None
    idx = key.find(delimiter, len(prefix))
    return key[: idx + len(delimiter)] if idx >= 0 else None
