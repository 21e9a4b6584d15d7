"""Stage one inventory run for MaxCompute: a folder holding exactly the run's data files.

An external table reads every object under its LOCATION, sub-folders included, and the inventory's
``data/`` folder holds every past run's files; so the run's files are copied (server-side, CopyObject)
into a folder of their own, ``<work_prefix><index>/<ds>/`` (the caller's choice), and the table points
there.
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

#: The most one CopyObject copies; larger files need UploadPartCopy (not implemented).
MAX_COPY_BYTES = 1024**3


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
    each file server-side (CopyObject). Every step may be repeated, so a rerun after a kill converges;
    requests: one listing page per 1,000 objects in ``folder``, one DELETE per object, one copy per file.
    Refuses, before changing anything, a folder overlapping the inventory's own and files over 1 GiB
    (CopyObject's limit; UploadPartCopy is not implemented).
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
        if file.size > MAX_COPY_BYTES:
            raise InventoryError(
                f"staging inventory run {run.name}: {file.key} is {file.size} bytes, more than CopyObject copies "
                f"({MAX_COPY_BYTES} bytes); a multipart copy (UploadPartCopy) is not implemented yet: set "
                "source.inventory.fallback: list, or raise the issue"
            )
        names[name] = file
    lister = OssLister(conn, bucket, retry=policy)
    stale = [obj.key for page in lister.iter_pages(KeyRange(folder)) for obj in page]
    for key in stale:
        _call(conn, bucket, policy, f"deleting {key!r}", lambda key=key: bucket.delete_object(key))
    if stale:
        log.info("deleted %d object(s) of a previous attempt under oss://%s/%s", len(stale), bucket.bucket_name, folder)
    staged = []
    for name, file in names.items():
        target = folder + name
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
