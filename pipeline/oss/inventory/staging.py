"""Stage one inventory run for MaxCompute: a folder holding exactly the run's data files.

An external table reads every object under its LOCATION, sub-folders included, and the inventory's
``data/`` folder holds every past run's files; so the run's files are copied (server-side: CopyObject,
or a multipart copy for files over :data:`MAX_COPY_BYTES`) into a folder of their own,
``<work_prefix><index>/<ds>/`` (the caller's choice), and the table points there.
"""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Callable
from typing import TypeVar

import oss2
import oss2.exceptions
import requests

from pipeline.errors import InventoryError, InventoryIncompleteError
from pipeline.oss.client import OssConnection, translate_error
from pipeline.oss.inventory.runs import InventoryFile, InventoryRun, message_connection
from pipeline.oss.pages import KeyRange, OssLister
from pipeline.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

#: The most one CopyObject copies (OSS's limit); larger files are copied in parts (UploadPartCopy).
MAX_COPY_BYTES = 1024**3
#: Part size of a multipart copy: OSS takes 100 KB to 5 GB a part and at most 10,000 parts, so files up
#: to 5 TiB; a 3 GiB file takes 6 UploadPartCopy requests.
COPY_PART_BYTES = 512 * 1024**2
MAX_PARTS = 10_000


def stage_inventory_files(
    bucket: oss2.Bucket,
    run: InventoryRun,
    folder: str,
    *,
    conn: OssConnection | None = None,
    retry: RetryPolicy | None = None,
) -> list[str]:
    """Make ``folder`` (in the destination bucket) hold exactly ``run``'s files, under their own names;
    returns their keys there, in the manifest's order.

    Deletes whatever ``folder`` holds (a previous attempt's files, of this run or another), then copies
    each file server-side: CopyObject up to :data:`MAX_COPY_BYTES` (1 GiB, OSS's limit), a multipart
    copy above (:func:`_multipart_copy`). Every step may be repeated, so a rerun after a kill converges;
    requests: one listing page per 1,000 objects in ``folder``, one DELETE per object, one copy per file
    up to 1 GiB, and 4 + one per :data:`COPY_PART_BYTES` for a larger file. Refuses, before changing
    anything, a folder overlapping the inventory's own and files over :data:`MAX_PARTS` parts (5 TiB).
    """
    conn = message_connection(bucket, conn)
    policy = retry or RetryPolicy()
    base = posixpath.dirname(posixpath.dirname(run.manifest_key)) + "/"
    if not folder.endswith("/") or folder.startswith("/") or base.startswith(folder) or folder.startswith(base) \
            or any(file.key.startswith(folder) for file in run.files):
        raise InventoryError(
            f"staging inventory run {run.name}: folder {folder!r} of bucket {bucket.bucket_name!r} must be a folder "
            f"('…/') outside the inventory's {base!r}, since staging deletes what it holds: set "
            "source.inventory.work_prefix to a folder of its own"
        )
    names: dict[str, InventoryFile] = {}
    for file in run.files:
        name = posixpath.basename(file.key)
        if not name or name in names:
            raise InventoryError(f"staging inventory run {run.name}: files {names.get(name, file).key!r} and "
                                 f"{file.key!r} share the name {name!r}; the run cannot be staged in one folder")
        if file.size > COPY_PART_BYTES * MAX_PARTS:
            raise InventoryError(
                f"staging inventory run {run.name}: {file.key} is {file.size} bytes, more than a multipart copy "
                f"copies ({MAX_PARTS} parts of {COPY_PART_BYTES} bytes); set source.inventory.fallback: list, "
                "or raise the issue"
            )
        names[name] = file
    stale = _empty_folder(conn, bucket, policy, folder)
    if stale:
        log.info("deleted %d object(s) of a previous attempt under oss://%s/%s", stale, bucket.bucket_name, folder)
    staged = []
    for name, file in names.items():
        target = folder + name
        if file.size > MAX_COPY_BYTES:
            _multipart_copy(conn, bucket, policy, run, file, target)
            staged.append(target)
            continue
        result = _call(conn, bucket, policy, f"copying {file.key!r} to {target!r}",
                       lambda file=file, target=target: bucket.copy_object(bucket.bucket_name, file.key, target))
        etag = (getattr(result, "etag", "") or "").strip('"')
        if etag and "-" not in etag and etag.lower() != file.md5:
            raise InventoryIncompleteError(
                f"staging inventory run {run.name}: the copy {target} has ETag {etag}, the manifest's MD5checksum of "
                f"{file.key} is {file.md5}: the file changed since it was checked; retry the task"
            )
        staged.append(target)
    log.info("staged %d file(s) of inventory run %s under oss://%s/%s", len(staged), run.name, bucket.bucket_name, folder)
    return staged


def remove_staged_files(bucket: oss2.Bucket, folder: str, *, conn: OssConnection | None = None,
                        retry: RetryPolicy | None = None) -> int:
    """Delete what :func:`stage_inventory_files` put under ``folder`` once MaxCompute has read it (a copy of
    the whole inventory per night would otherwise stay); returns how many objects were deleted."""
    conn = message_connection(bucket, conn)
    return _empty_folder(conn, bucket, retry or RetryPolicy(), folder)


def _empty_folder(conn: OssConnection, bucket: oss2.Bucket, policy: RetryPolicy, folder: str) -> int:
    lister = OssLister(conn, bucket, retry=policy)
    keys = [obj.key for page in lister.iter_pages(KeyRange(folder)) for obj in page]
    for key in keys:
        _call(conn, bucket, policy, f"deleting {key!r}", lambda key=key: bucket.delete_object(key))
    return len(keys)


def _multipart_copy(conn: OssConnection, bucket: oss2.Bucket, policy: RetryPolicy, run: InventoryRun,
                    file: InventoryFile, target: str) -> None:
    """Copy ``file`` to ``target`` in parts of :data:`COPY_PART_BYTES` (InitiateMultipartUpload,
    UploadPartCopy per part, CompleteMultipartUpload), then check the copy's size.

    Every part is copied on condition that the source still has the ETag it had before the first
    (``x-oss-copy-source-if-match``), so all parts come from one version of the file. A failure aborts
    the upload (its parts are not kept) and is raised; a rerun starts this file over. The copy's ETag is
    OSS's multipart form (``"<hex>-<parts>"``), not an MD5, so it cannot be compared with the manifest's
    MD5checksum: the copy is checked by size, and the source by size and ETag (which a change of the
    file changes) before and during the copy.
    """
    what = f"copying {file.key!r} to {target!r} in parts"
    head = _call(conn, bucket, policy, f"reading the size of {file.key!r}", lambda: bucket.head_object(file.key))
    if head.content_length != file.size:
        raise InventoryIncompleteError(
            f"staging inventory run {run.name}: {file.key} is {head.content_length} bytes, the manifest says "
            f"{file.size}: the file changed since it was checked; retry the task"
        )
    condition = {"x-oss-copy-source-if-match": f'"{head.etag}"'} if head.etag else {}
    upload_id = _call(conn, bucket, policy, what, lambda: bucket.init_multipart_upload(target).upload_id)
    try:
        parts = []
        for number, start in enumerate(range(0, file.size, COPY_PART_BYTES), start=1):
            end = min(start + COPY_PART_BYTES, file.size) - 1
            result = _call(conn, bucket, policy, f"{what} (part {number}, bytes {start}-{end})",
                           lambda number=number, start=start, end=end: bucket.upload_part_copy(
                               bucket.bucket_name, file.key, (start, end), target, upload_id, number, headers=condition))
            parts.append(oss2.models.PartInfo(number, result.etag))
        _call(conn, bucket, policy, what, lambda: bucket.complete_multipart_upload(target, upload_id, parts))
    except Exception:
        try:
            bucket.abort_multipart_upload(target, upload_id)
        except (oss2.exceptions.OssError, requests.RequestException) as exc:
            log.warning("could not abort the multipart copy %s of oss://%s/%s: %s (OSS keeps its parts until a "
                        "lifecycle rule removes them)", upload_id, bucket.bucket_name, target, exc)
        raise
    copied = _call(conn, bucket, policy, f"reading the size of {target!r}", lambda: bucket.head_object(target))
    if copied.content_length != file.size:
        raise InventoryIncompleteError(
            f"staging inventory run {run.name}: the copy {target} is {copied.content_length} bytes, {file.key} "
            f"{file.size}: retry the task"
        )
    log.info("copied %s (%d bytes) to %s in %d part(s)", file.key, file.size, target, len(parts))


def _call(conn: OssConnection, bucket: oss2.Bucket, policy: RetryPolicy, what: str, fn: Callable[[], T]) -> T:
    """One request that is safe to repeat, with OSS errors mapped and transient ones retried."""

    def once():
        try:
            return fn()
        except oss2.exceptions.OssError as exc:
            raise translate_error(exc, conn, bucket.bucket_name, what) from None
        except requests.RequestException as exc:
            raise translate_error(oss2.exceptions.RequestError(exc), conn, bucket.bucket_name, what) from None

    return policy.call(f"{what} in bucket {bucket.bucket_name!r}", once)
