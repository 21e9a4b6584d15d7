"""The report page's images: which keys it may show, signed links to them, and thumbnails read through
the index's own OSS connection.

A thumbnail is served only for a key the page itself put on it: the query images a report names, and
the images of its hits, resolved from hit ids through the report, else through the index's catalog
rows of that partition (one bounded warehouse query per run, cached). The page signs each such key
(HMAC-SHA256 with the API server's ``[api] secret_key``, the key Airflow signs its own file tokens
with), and the thumbnail endpoint serves only a signed key that is also a valid object key under the
index's prefixes with one of its image extensions, and an object no larger than its ``max_size_bytes``.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipeline.config import MAX_KEY_BYTES, IndexConfig

log = logging.getLogger(__name__)

THUMBNAIL_PX = 240  # the longer side
MAX_PIXELS = 50_000_000  # refuse to decode anything larger (a decompression bomb, or no catalog image)
MAX_RESOLVED_IDS = 500  # hit ids looked up per run: samples (<= 20) x top_k (<= 100) can reach 2,000
RESOLVE_TIMEOUT_S = 15.0  # the page renders without the hits' images rather than wait longer
CACHE_SECONDS = 3600  # browsers keep a thumbnail this long (private: it sits behind Airflow's login)


class KeyRefused(ValueError):
    """A key the page will not show: not an object key of the index's images."""


def image_key(config: IndexConfig, path: Any) -> str:
    """The OSS key of an image path a report names (``/catalog/shoes/1.jpg`` or ``catalog/shoes/1.jpg``),
    if it is one this index lists: under one of its prefixes, with one of its extensions, no empty,
    ``.`` or ``..`` segment, no backslash or control character, at most 1,023 bytes. Else KeyRefused."""
    if not isinstance(path, str) or not path:
        raise KeyRefused("no image path")
    key = path[1:] if path.startswith("/") else path
    if len(key.encode("utf-8", errors="surrogatepass")) > MAX_KEY_BYTES:
        raise KeyRefused("longer than an OSS key may be")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in key) or "\\" in key:
        raise KeyRefused("a control character or backslash")
    if any(segment in ("", ".", "..") for segment in key.split("/")):
        raise KeyRefused("an empty, '.' or '..' segment")
    if not any(key.startswith(prefix) for prefix in config.source.prefixes):
        raise KeyRefused(f"not under the index's prefixes {config.source.prefixes}")
    extension = key.rsplit(".", 1)[-1].lower() if "." in key.rsplit("/", 1)[-1] else ""
    if extension not in {e.lower().lstrip(".") for e in config.source.extensions}:
        raise KeyRefused(f"not one of the index's image extensions {config.source.extensions}")
    return key


def _secret() -> bytes:
    from airflow.api_fastapi.auth.tokens import get_signing_key

    return get_signing_key("api", "secret_key").encode()


def sign(index: str, key: str, secret: bytes | None = None) -> str:
    """The signature that lets the thumbnail endpoint serve ``key`` of ``index``."""
    message = f"image-index-thumbnail\n{index}\n{key}".encode("utf-8", errors="surrogatepass")
    return hmac.new(secret or _secret(), message, hashlib.sha256).hexdigest()[:32]


def signed(index: str, key: str, signature: Any, secret: bytes | None = None) -> bool:
    return isinstance(signature, str) and hmac.compare_digest(sign(index, key, secret), signature)


def report_images(report: dict) -> dict[Any, str]:
    """Image paths a report itself names, by id: each image query's own, and a same-bytes match's."""
    named: dict[Any, str] = {}
    for smoke in report.get("smoke_queries") or []:
        if not isinstance(smoke, dict):
            continue
        if smoke.get("id") is not None and isinstance(smoke.get("source_image"), str):
            named[smoke["id"]] = smoke["source_image"]
        if smoke.get("matched_id") is not None and isinstance(smoke.get("matched_image"), str):
            named[smoke["matched_id"]] = smoke["matched_image"]
    return named


def hit_ids(report: dict) -> list[Any]:
    """Every hit id of the report's smoke queries, in order, without repeats."""
    seen: dict[Any, None] = {}
    for smoke in report.get("smoke_queries") or []:
        for hit in (smoke.get("top") or []) if isinstance(smoke, dict) else []:
            if isinstance(hit, dict) and isinstance(hit.get("id"), int | str) and not isinstance(hit.get("id"), bool):
                seen.setdefault(hit["id"], None)
    return list(seen)


_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="report-page-rows")


@dataclass(frozen=True)
class Resolved:
    images: dict[Any, str]  # hit id -> image path
    note: str | None = None  # why some hits have no image


def resolve_hits(config: IndexConfig, report: dict, timeout_s: float = RESOLVE_TIMEOUT_S) -> Resolved:
    """Image paths of the report's hits: those the report names, the rest from the index's catalog rows
    of the report's partition (at most MAX_RESOLVED_IDS ids, one query, waited for ``timeout_s``)."""
    images = report_images(report)
    wanted = [i for i in hit_ids(report) if i not in images and isinstance(i, int)]
    if not wanted:
        return Resolved(images)
    ds = report.get("ds")
    if not isinstance(ds, str):
        return Resolved(images, "the run has no partition date: its hits cannot be looked up")
    note = None
    if len(wanted) > MAX_RESOLVED_IDS:
        note = f"only the first {MAX_RESOLVED_IDS} of {len(wanted)} hit ids were looked up"
        wanted = wanted[:MAX_RESOLVED_IDS]
    future = _pool.submit(_rows_by_id, config, ds, tuple(sorted(wanted)))
    try:
        rows = future.result(timeout=timeout_s)
    except FutureTimeout:
        return Resolved(images, f"looking the hits up in the catalog took over {timeout_s:.0f} s: shown without images")
    except Exception as exc:
        log.warning("report page: looking up hits of %s ds=%s failed: %s", config.name, ds, exc)
        return Resolved(images, f"looking the hits up in the catalog failed: {type(exc).__name__}: {exc}")
    for row in rows:
        images.setdefault(row["id"], row["source_image"])
    return Resolved(images, note)


_rows_lock = threading.Lock()
_rows_cache: OrderedDict[tuple, tuple[float, list[dict]]] = OrderedDict()
ROWS_TTL_S = 600.0


def _rows_by_id(config: IndexConfig, ds: str, ids: tuple[int, ...]) -> list[dict]:
    cache_key = (config.name, config.warehouse.conn_id, config.warehouse.table, ds, ids)
    with _rows_lock:
        hit = _rows_cache.get(cache_key)
        if hit and time.monotonic() - hit[0] < ROWS_TTL_S:
            return hit[1]
    from pipeline.stages import open_index_warehouse

    rows = open_index_warehouse(config).rows_by_id(ds, list(ids))
    with _rows_lock:
        _rows_cache[cache_key] = (time.monotonic(), rows)
        while len(_rows_cache) > 64:
            _rows_cache.popitem(last=False)
    return rows


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    etag: str  # the HTTP entity tag: the object's ETag with the thumbnail size
    media_type: str = "image/jpeg"


class ImageUnavailable(Exception):
    """The object cannot be shown: missing, too large, archived, not decodable. ``status`` for HTTP."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


_thumbs_lock = threading.Lock()
_thumbs: OrderedDict[tuple, tuple[float, Thumbnail]] = OrderedDict()
THUMB_TTL_S = 300.0
MAX_CACHED_THUMBS = 512  # about 10 kB each


def thumbnail(config: IndexConfig, key: str) -> Thumbnail:
    """A JPEG of at most THUMBNAIL_PX on its longer side of ``key`` (already checked by
    :func:`image_key`), read through the index's OSS connection; cached a few minutes."""
    cache_key = (config.name, config.source.oss_conn_id, config.source.bucket, key)
    with _thumbs_lock:
        hit = _thumbs.get(cache_key)
        if hit and time.monotonic() - hit[0] < THUMB_TTL_S:
            _thumbs.move_to_end(cache_key)
            return hit[1]
    thumb = _make_thumbnail(config, key)
    with _thumbs_lock:
        _thumbs[cache_key] = (time.monotonic(), thumb)
        while len(_thumbs) > MAX_CACHED_THUMBS:
            _thumbs.popitem(last=False)
    return thumb


@lru_cache(maxsize=32)
def _bucket(conn_id: str, bucket: str, opened_at: int):
    """One connection and oss2 bucket per index connection, renewed every 10 minutes (``opened_at``)."""
    from pipeline.oss.client import OssConnection

    conn = OssConnection.from_airflow(conn_id)
    return conn, conn.bucket(bucket, pool_size=4)


def _make_thumbnail(config: IndexConfig, key: str) -> Thumbnail:
    from PIL import Image, UnidentifiedImageError

    from pipeline.errors import ArchivedObjectError, ObjectTooLargeError, PipelineError
    from pipeline.oss.client import read_object_limited
    from pipeline.retry import RetryPolicy

    try:
        conn, bucket = _bucket(config.source.oss_conn_id, config.source.bucket, int(time.time() // 600))
        data, etag = read_object_limited(conn, bucket, key, config.source.max_size_bytes, retry=RetryPolicy(attempts=2))
    except ObjectTooLargeError as exc:
        raise ImageUnavailable(f"{exc} (the index's source.max_size_bytes)", 413) from None
    except ArchivedObjectError:
        raise ImageUnavailable(f"{key} is archived (not restored)", 409) from None
    except PipelineError as exc:  # a missing object, refused credentials, no connection, OSS unreachable
        status = 404 if "404 NoSuchKey" in str(exc) else 502
        raise ImageUnavailable(f"{key}: {exc}", status) from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise ImageUnavailable(f"{key} is {image.width}x{image.height} pixels: too large to show", 413)
            image.draft("RGB", (THUMBNAIL_PX, THUMBNAIL_PX))  # JPEG: decode at a reduced scale
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            out = _flatten(image)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageUnavailable(f"{key} is not an image that can be shown: {exc}", 415) from None
    buffer = io.BytesIO()
    out.save(buffer, format="JPEG", quality=82)
    return Thumbnail(buffer.getvalue(), f'"{etag}-{THUMBNAIL_PX}"')


def _flatten(image):
    """RGB, with any transparency laid over white."""
    from PIL import Image

    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
