"""OSS Bucket Inventory runs for ``source.mode: inventory``: find the run a partition uses and verify it.

OSS writes an inventory rule's runs into the destination bucket (``inventory.bucket``)::

    <prefix><source>/<id>/data/<uuid>.csv.gz, ...                  every run's data files, together
    <prefix><source>/<id>/<YYYY-MM-DDTHH-MMZ>/manifest.json        one folder per run (the scan's start,
    <prefix><source>/<id>/<YYYY-MM-DDTHH-MMZ>/manifest.checksum    UTC); the checksum is written last

:func:`find_inventory` lists the run folders (ListObjects with delimiter ``/``, every page), takes the
newest run created at or before ``not_after`` whose manifest.json and manifest.checksum both exist,
refuses it when older than ``max_age_hours`` before ``not_after``, and verifies it: the checksum is
manifest.json's MD5, the format is CSV of the source bucket with at least Bucket, Key, Size and
StorageClass, and every listed file exists with the manifest's size and MD5 (one HEAD per file: the
cost grows with the run's files, never with the bucket's objects). A run folder without both
manifest files is a run still being written (or one that died): the previous run is used instead,
as long as it is fresh. A run's age is taken from its folder name, the moment its scan started: what
it lists is the bucket as it was then, at the latest (``creationTimestamp`` is reported, not used).

Staging (:mod:`pipeline.oss.inventory.staging`) and the CLI (:mod:`pipeline.oss.inventory.cli`,
``python -m pipeline.oss.inventory setup|show --config ...``) build on this module.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import oss2
import oss2.exceptions
import requests

from pipeline.config import InventoryConfig
from pipeline.credentials import CredentialSettings
from pipeline.errors import InventoryError, InventoryIncompleteError, InventoryNotReadyError, InventoryStaleError
from pipeline.oss.client import OssConnection, read_object, translate_error
from pipeline.oss.pages import KeyRange, OssLister
from pipeline.retry import RetryPolicy

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CHECKSUM = "manifest.checksum"
#: The columns the catalog rules need (size and storage class); ETag and LastModifiedDate are optional.
REQUIRED_FIELDS = ("Bucket", "Key", "Size", "StorageClass")
VERSION_FIELDS = ("VersionId", "IsLatest", "IsDeleteMarker")  # only in inventories of every version
_RUN_RE = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}Z)/$")
_RUN_FORMAT = "%Y-%m-%dT%H-%MZ"
_MD5_RE = re.compile(r"^[0-9A-Fa-f]{32}$")
#: Run folders per ListObjects page (OSS's most); tests lower it to see pages followed.
LIST_PAGE_SIZE = 1000
_SHOW = "python -m pipeline.oss.inventory show --config <the index's yaml>"


@dataclass(frozen=True)
class InventoryFile:
    """One data file of a run (a gzip CSV in the destination bucket), as its manifest lists it."""

    key: str
    size: int
    md5: str  # lower-case hex


@dataclass(frozen=True)
class InventoryRun:
    """A verified inventory run. ``created`` (UTC) is the run folder's name, the scan's start; rows are
    not known (counting them would read every file). ``file_schema``: the CSV's columns, in order."""

    source_bucket: str
    destination_bucket: str
    manifest_key: str
    created: datetime
    file_schema: list[str]
    files: list[InventoryFile]
    creation_timestamp: datetime | None = None  # the manifest's, for reports only

    @property
    def name(self) -> str:
        """The run folder's name, e.g. ``2026-11-29T16-00Z``."""
        return posixpath.basename(posixpath.dirname(self.manifest_key))


@dataclass(frozen=True)
class RunFolder:
    """One dated run folder of a rule (complete or not: see :func:`is_complete`)."""

    name: str
    folder: str
    created: datetime


def inventory_base(source_bucket: str, inventory: InventoryConfig) -> str:
    """``<prefix><source>/<id>/``: the rule's folder in the destination bucket."""
    return f"{inventory.prefix}{source_bucket}/{inventory.id}/"


def run_created(name: str) -> datetime | None:
    """The UTC moment a run folder's name (``YYYY-MM-DDTHH-MMZ``) stands for, or None for another name."""
    try:
        return datetime.strptime(name, _RUN_FORMAT).replace(tzinfo=timezone.utc)
    except ValueError:
        return None


def message_connection(bucket: oss2.Bucket, conn: OssConnection | None) -> OssConnection:
    """The connection error messages name; without one, the bucket's endpoint and no connection id."""
    if conn is not None:
        return conn
    return OssConnection("(not given)", bucket.endpoint, CredentialSettings("(not given)", "AK"))


def list_runs(
    bucket: oss2.Bucket,
    source_bucket: str,
    inventory: InventoryConfig,
    *,
    conn: OssConnection | None = None,
    retry: RetryPolicy | None = None,
) -> list[RunFolder]:
    """Every dated run folder of the rule, oldest first. Follows every
    page of the delimited listing; other sub-folders (``data/``) and other names are ignored."""
    lister = OssLister(message_connection(bucket, conn), bucket, page_size=LIST_PAGE_SIZE, retry=retry)
    base = inventory_base(source_bucket, inventory)
    runs: list[RunFolder] = []
    token = ""
    while True:
        page = lister.list_delimited(base, token=token)
        for prefix in page.prefixes:
            match = _RUN_RE.match(prefix[len(base):])
            created = run_created(match.group(1)) if match else None
            if created is not None:
                runs.append(RunFolder(match.group(1), prefix, created))
        if not page.is_truncated:
            break
        token = page.next_token
    return sorted(runs, key=lambda run: run.created)


def is_complete(
    bucket: oss2.Bucket, run: RunFolder, *, conn: OssConnection | None = None, retry: RetryPolicy | None = None
) -> bool:
    """Whether both manifest files of ``run`` exist (one ListObjects request)."""
    lister = OssLister(message_connection(bucket, conn), bucket, retry=retry)
    names = {obj.key[len(run.folder):] for obj in lister.list_delimited(run.folder).objects}
    return MANIFEST in names and CHECKSUM in names


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if abs(hours) >= 10 else f"{hours:.1f} h"


def find_inventory(
    bucket: oss2.Bucket,
    source_bucket: str,
    inventory: InventoryConfig,
    not_after: datetime,
    now: datetime,
    *,
    conn: OssConnection | None = None,
    retry: RetryPolicy | None = None,
) -> InventoryRun:
    """The newest complete, fresh and verified run of ``source_bucket``'s rule ``inventory.id`` created at
    or before ``not_after`` (aware; the end of the partition's day). ``bucket``: the destination bucket
    (``inventory.bucket``); ``conn``: its connection, named in error messages.

    Raises :class:`InventoryStaleError` when no complete run is at most ``max_age_hours`` older than
    ``not_after``, :class:`InventoryIncompleteError` when the chosen run disagrees with its manifest,
    :class:`InventoryError` when its manifest is of another format, bucket or schema; OSS errors as
    :func:`pipeline.oss.client.translate_error` maps them (transient ones are retried per request).
    """
    if not_after.tzinfo is None or now.tzinfo is None:
        raise ValueError("find_inventory needs aware datetimes for not_after and now")
    conn = message_connection(bucket, conn)
    max_age = timedelta(hours=inventory.max_age_hours)
    oldest = not_after - max_age
    where = (f"inventory rule {inventory.id!r} of bucket {source_bucket!r} "
             f"(in oss://{bucket.bucket_name}/{inventory_base(source_bucket, inventory)})")
    runs = [run for run in list_runs(bucket, source_bucket, inventory, conn=conn, retry=retry) if run.created <= not_after]
    skipped: list[RunFolder] = []
    for run in reversed(runs):
        if run.created < oldest:
            break
        if is_complete(bucket, run, conn=conn, retry=retry):
            if skipped:
                log.warning("%s: using run %s; newer run(s) %s have no manifest yet", where, run.name,
                            ", ".join(s.name for s in skipped))
            return verify_run(bucket, source_bucket, run, conn=conn, retry=retry)
        skipped.append(run)
    message = _stale_message(where, runs, skipped, inventory, not_after, now)
    if skipped and now - skipped[0].created < timedelta(hours=24):  # OSS is likely still writing it
        raise InventoryNotReadyError(message)
    raise InventoryStaleError(message)


def _stale_message(where: str, runs: list[RunFolder], skipped: list[RunFolder], inventory: InventoryConfig,
                   not_after: datetime, now: datetime) -> str:
    end = not_after.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    remedy = (f"check the rule (`{_SHOW}` lists its runs; `... setup` creates it), or set "
              "source.inventory.fallback: list to list the bucket instead")
    if skipped:
        newest = skipped[0]
        state = (f"OSS may still be writing it (it started {_hours(now - newest.created)} ago)"
                 if now - newest.created < timedelta(hours=24) else
                 f"it started {_hours(now - newest.created)} ago, so it probably failed")
        head = (f"the newest inventory run {newest.name} of {where} is not complete (manifest.json and "
                f"manifest.checksum, written last, are not both there): {state}; ")
        older = [run for run in runs if run.created < skipped[-1].created]
        if older:
            head += (f"the run before it, {older[-1].name}, is {_hours(not_after - older[-1].created)} old at {end} "
                     f"(max_age_hours {inventory.max_age_hours:g}): ")
        else:
            head += "there is no run before it: "
        return head + f"wait for the run to finish and retry the task, or {remedy}"
    if not runs:
        return (f"{where} has no run at or before {end}, the end of the partition's day: the rule may not exist "
                f"or has not run yet (OSS writes the first run within a day of setting it up); {remedy}")
    newest = runs[-1]
    return (f"the newest inventory {newest.name} of {where} is {_hours(not_after - newest.created)} old at {end}, "
            f"the end of the partition's day (max_age_hours {inventory.max_age_hours:g}): {remedy}")


def verify_run(
    bucket: oss2.Bucket,
    source_bucket: str,
    run: RunFolder,
    *,
    conn: OssConnection | None = None,
    retry: RetryPolicy | None = None,
) -> InventoryRun:
    """Read and check ``run``'s manifest, then HEAD each of its files (see the module docstring)."""
    conn = message_connection(bucket, conn)
    manifest_key = run.folder + MANIFEST
    what = f"inventory run {run.name} (oss://{bucket.bucket_name}/{manifest_key})"
    body = read_object(conn, bucket, manifest_key, retry)
    checksum = read_object(conn, bucket, run.folder + CHECKSUM, retry).decode("ascii", "replace").strip()
    actual = hashlib.md5(body, usedforsecurity=False).hexdigest()
    if checksum.lower() != actual:
        raise InventoryIncompleteError(
            f"{what}: manifest.checksum holds {checksum[:64]!r} but manifest.json's MD5 is {actual}: the manifest "
            "is damaged, or a second run of the same minute replaced it while it was read; retry the task, and if "
            f"it fails again check the run (`{_SHOW}`) or set source.inventory.fallback: list"
        )
    manifest = _parse_manifest(body, what)
    fmt = manifest.get("fileFormat")
    if fmt != "CSV":
        raise InventoryError(f"{what}: fileFormat is {fmt!r}, not 'CSV': the rule must write CSV "
                             "(recreate it with `python -m pipeline.oss.inventory setup --replace`)")
    if manifest.get("sourceBucket") != source_bucket:
        raise InventoryError(f"{what}: sourceBucket is {manifest.get('sourceBucket')!r}, not {source_bucket!r}: "
                             "check source.bucket and source.inventory (bucket, prefix, id) of the index config")
    schema = [name.strip() for name in str(manifest.get("fileSchema", "")).split(",") if name.strip()]
    versioned = [name for name in VERSION_FIELDS if name in schema]
    if versioned:  # an all-versions inventory lists old versions and versions of deleted objects
        raise InventoryError(
            f"{what}: fileSchema has {', '.join(versioned)}: the rule lists every version, and old versions "
            "or deleted objects would become rows; the rule must list current versions only (recreate it "
            "with `python -m pipeline.oss.inventory setup --replace`)"
        )
    missing = [name for name in REQUIRED_FIELDS if name not in schema]
    if missing:
        raise InventoryError(
            f"{what}: fileSchema {', '.join(schema) or '(none)'} lacks {', '.join(missing)}, which the catalog rules "
            "need: the rule must include the optional fields Size and StorageClass (recreate it with "
            "`python -m pipeline.oss.inventory setup --replace`; the next run has them)"
        )
    files = _manifest_files(manifest, what)
    for file in files:
        _check_file(conn, bucket, file, what, retry)
    created_ms = str(manifest.get("creationTimestamp", ""))
    stamp = datetime.fromtimestamp(int(created_ms) / 1000, timezone.utc) if created_ms.isdigit() else None
    return InventoryRun(source_bucket, bucket.bucket_name, manifest_key, run.created, schema, files, stamp)


def _parse_manifest(body: bytes, what: str) -> dict:
    try:
        manifest = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InventoryIncompleteError(f"{what}: manifest.json is not JSON ({exc}); check the run (`{_SHOW}`)") from None
    if not isinstance(manifest, dict):
        raise InventoryIncompleteError(f"{what}: manifest.json is not a JSON object; check the run (`{_SHOW}`)")
    return manifest


def _manifest_files(manifest: dict, what: str) -> list[InventoryFile]:
    entries = manifest.get("files")
    if not isinstance(entries, list):
        raise InventoryIncompleteError(f"{what}: manifest.json has no 'files' list; check the run (`{_SHOW}`)")
    files = []
    for entry in entries:
        key = entry.get("key") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        md5 = entry.get("MD5checksum") if isinstance(entry, dict) else None
        if isinstance(size, str) and size.isdigit():
            size = int(size)
        if (not isinstance(key, str) or not key or isinstance(size, bool) or not isinstance(size, int) or size < 0
                or not isinstance(md5, str) or not _MD5_RE.match(md5)):
            raise InventoryIncompleteError(f"{what}: manifest.json lists a file without a key, size or MD5checksum: "
                                           f"{json.dumps(entry)[:200]}; check the run (`{_SHOW}`)")
        files.append(InventoryFile(key, size, md5.lower()))
    return files


def _check_file(conn: OssConnection, bucket: oss2.Bucket, file: InventoryFile, what: str,
                retry: RetryPolicy | None) -> None:
    """HEAD one data file: it must exist with the manifest's size and an ETag equal to its MD5."""

    def once() -> tuple[int, str] | None:
        try:
            head = bucket.head_object(file.key)
        except oss2.exceptions.NotFound:
            return None
        except oss2.exceptions.OssError as exc:
            raise translate_error(exc, conn, bucket.bucket_name, f"checking {file.key!r}") from None
        except requests.RequestException as exc:
            raise translate_error(oss2.exceptions.RequestError(exc), conn, bucket.bucket_name,
                                  f"checking {file.key!r}") from None
        return int(head.content_length or 0), (head.etag or "").strip('"')

    found = (retry or RetryPolicy()).call(f"HEAD oss://{bucket.bucket_name}/{file.key}", once)
    advice = ("the inventory's files changed after OSS wrote them (a lifecycle rule or someone deleting or "
              "rewriting under data/?); wait for the next run and retry, or set source.inventory.fallback: list")
    if found is None:
        raise InventoryIncompleteError(f"{what} lists {file.key}, which does not exist: {advice}")
    size, etag = found
    if size != file.size:
        raise InventoryIncompleteError(f"{what}: {file.key} is {size} bytes, the manifest says {file.size}: {advice}")
    if "-" in etag:  # a multipart upload's ETag is no MD5 of the bytes: only the size can be checked
        log.warning("%s: %s has the multipart ETag %s; its MD5 cannot be checked by HEAD", what, file.key, etag)
    elif etag.lower() != file.md5:
        raise InventoryIncompleteError(
            f"{what}: {file.key} has ETag {etag}, the manifest's MD5checksum is {file.md5}: {advice}"
        )
