"""Bucket inventory runs of the local OSS server: the files OSS writes for an inventory rule, on demand.

Why: the nightly load's second route reads an OSS Bucket Inventory (manifest + gzip CSV files in a
destination bucket) instead of listing every object. OSS writes them on its own schedule; the local
server writes one when a test or the CLI asks (:meth:`LocalOssServer.run_inventory
<localcloud.oss.server.LocalOssServer.run_inventory>`, ``python -m localcloud.oss inventory run``),
straight into the destination bucket's folder, in the layout and format described here.

Layout (in the destination bucket; ``<dest-prefix>/`` is left out when the rule has no prefix)
    ``<dest-prefix>/<source>/<id>/data/<uuid>.csv.gz``, ``<uuid>-1.csv.gz``, ``<uuid>-2.csv.gz``, ...:
    the data files, a new uuid per run; ``data/`` is shared by all runs of the rule, only a manifest
    says which files belong to its run. ``<dest-prefix>/<source>/<id>/<YYYY-MM-DDTHH-MMZ>/manifest.json``
    and ``manifest.checksum``: the run's manifest (folder named after the scan's start, UTC) and the
    lower-case hex MD5 of manifest.json's bytes. Data files are complete before the manifest is written,
    and the manifest before its checksum, each file atomically (a reader that sees a file sees it whole).
    A second run in the same minute replaces that minute's manifest.

manifest.json
    ``{"creationTimestamp": "<epoch ms, a string>", "destinationBucket": "<dst>", "fileFormat": "CSV",
    "fileSchema": "Bucket, Key, Size, ...", "files": [{"key": "<data file key>", "size": <bytes>,
    "MD5checksum": "<lower-case hex MD5 of the .csv.gz>"}, ...], "sourceBucket": "<src>",
    "version": "2019-09-01"}``. ``MD5checksum`` is lower-case while ETags are upper-case: compare them
    ignoring case. A run that finds no object writes one data file with no rows.

CSV rows (gzip, UTF-8, ``\\n``-terminated, no header)
    Columns: ``Bucket``, ``Key``, then the rule's optional fields in the order ``Size,
    LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, EncryptionStatus`` (the manifest's
    fileSchema names them). Every value is double-quoted. ``Key`` is form-URL-encoded as Java's
    ``URLEncoder`` does (UTF-8; ``A-Z a-z 0-9 . - * _`` kept, space as ``+``, everything else,
    ``/`` and ``~`` included, ``%XX`` upper-case): decode it with ``urllib.parse.unquote_plus``, never
    with ``unquote``. ``Size`` in bytes; ``LastModifiedDate`` ``2026-01-01T00:00:00.000Z``; ``ETag``
    upper-case hex without quotes; ``IsMultipartUploaded`` and ``EncryptionStatus`` ``false``.
    Objects are the current versions whose key starts with the rule's Filter/Prefix and that pass its
    time, size and storage-class bounds, in key order; a file holds at most ``rows_per_file`` rows.

Fault knobs (``fault=``; the CLI's ``--fault``)
    ``no_manifest``     the data files are written, the manifest and checksum not (a run still going).
    ``missing_file``    the manifest names a data file that is not there (its last file is deleted).
    ``size_mismatch``   a data file is longer than the manifest says (bytes appended after it).
    ``md5_mismatch``    a data file has the manifest's size but other bytes (its gzip header's mtime
                        differs: it still decompresses to the same rows).

Not verified against the cloud: the Key encoding (OSS says only "URL-encoded"), the manifest's
``version`` value and field order, ``creationTimestamp`` units, the date format of LastModifiedDate,
the values of IsMultipartUploaded / EncryptionStatus, and whether OSS writes a file for an empty run.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterator, Mapping
from urllib.parse import quote_plus

from localcloud.oss.generated import GeneratedBucket
from localcloud.oss.inventory_config import InventoryRule, InventoryRules, check_id
from localcloud.oss.protocol import iso8601
from localcloud.oss.store import DIR_MARKER_NAME, TEMP_PREFIX, list_bucket, record_etag, validate_key

DEFAULT_ROWS_PER_FILE = 1_000_000
FAULTS = ("no_manifest", "missing_file", "size_mismatch", "md5_mismatch")
MANIFEST_VERSION = "2019-09-01"
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9.*_/-]*$")
_BATCH = 4096


@dataclass(frozen=True)
class InventoryRun:
    """What one run wrote: keys in the destination bucket, and how many rows."""

    destination_bucket: str
    manifest_key: str
    checksum_key: str
    data_keys: tuple[str, ...]
    rows: int


def encode_key(key: str) -> str:
    """A key as the CSV holds it (Java ``URLEncoder.encode(key, "UTF-8")``): undo with ``unquote_plus``."""
    if _PLAIN_KEY.match(key):
        return key.replace("/", "%2F")
    return quote_plus(key, safe="*").replace("~", "%7E")


def _source_objects(root: str, generated: Mapping[str, GeneratedBucket], bucket: str,
                    prefix: str) -> Iterator[tuple[str, int, float, str, str]]:
    """``(key, size, mtime, quoted etag, storage class)`` of the source's objects under ``prefix``."""
    gen = generated.get(bucket)
    if gen is not None:
        yield from gen.objects(prefix)
        return
    bucket_dir = os.path.join(root, bucket)
    if not os.path.isdir(bucket_dir):
        raise FileNotFoundError(f"source bucket {bucket!r} does not exist under {root}")
    after = ""
    while True:
        page = list_bucket(bucket_dir, prefix, "", after, 1000)
        for obj in page.objects:
            yield obj.key, obj.size, obj.mtime, obj.etag, obj.storage_class
        if not page.truncated or page.last is None:
            return
        after = page.last


def _rows(rule: InventoryRule, source: str, objects: Iterator[tuple[str, int, float, str, str]]) -> Iterator[str]:
    fields = rule.ordered_fields
    bucket_cell = '"' + source.replace('"', '""') + '"'
    dates: dict[float, str] = {}
    for key, size, mtime, etag, storage_class in objects:
        if not rule.matches(key, size, mtime, storage_class):
            continue
        cells = [bucket_cell, '"' + encode_key(key) + '"']
        for name in fields:
            if name == "Size":
                cells.append(f'"{size}"')
            elif name == "LastModifiedDate":
                date = dates.get(mtime)
                if date is None:
                    if len(dates) >= 4096:  # bounded: folder buckets have many distinct mtimes
                        dates.clear()
                    date = dates[mtime] = iso8601(mtime)
                cells.append(f'"{date}"')
            elif name == "ETag":
                cells.append('"' + etag.strip('"') + '"')
            elif name == "StorageClass":
                cells.append(f'"{storage_class}"')
            else:  # IsMultipartUploaded, EncryptionStatus
                cells.append('"false"')
        yield ",".join(cells) + "\n"


class _Md5Writer:
    """A file wrapper that keeps the MD5 and size of what goes through it."""

    def __init__(self, handle) -> None:
        self.handle, self.md5, self.size = handle, hashlib.md5(usedforsecurity=False), 0

    def write(self, data: bytes) -> int:
        self.md5.update(data)
        self.size += len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def _key_path(bucket_dir: str, key: str) -> str:
    segments, is_marker = validate_key(key)
    path = os.path.join(bucket_dir, *segments)
    return os.path.join(path, DIR_MARKER_NAME) if is_marker else path


def _write_object(bucket_dir: str, key: str, chunks: Iterator[bytes] | None = None, *,
                  rows: Iterator[str] | None = None, limit: int = 0) -> tuple[int, str, int]:
    """Write an object atomically (temporary file, then rename) and record its ETag.

    Either ``chunks`` (raw bytes) or ``rows`` (gzip-compressed, at most ``limit`` taken). Returns
    ``(size, hex md5, rows taken)``.
    """
    path = _key_path(bucket_dir, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(os.path.dirname(path), f"{TEMP_PREFIX}{secrets.token_hex(8)}")
    taken = 0
    try:
        with open(tmp, "xb") as handle:
            out = _Md5Writer(handle)
            if rows is None:
                for chunk in chunks or ():
                    out.write(chunk)
            else:
                with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0) as gz:  # type: ignore[arg-type]
                    batch: list[str] = []
                    for row in rows:
                        batch.append(row)
                        taken += 1
                        if len(batch) >= _BATCH:
                            gz.write("".join(batch).encode("utf-8"))
                            batch.clear()
                        if taken >= limit:
                            break
                    if batch:
                        gz.write("".join(batch).encode("utf-8"))
        record_etag(tmp, out.md5.hexdigest())
        os.replace(tmp, path)
        tmp = ""
    finally:
        if tmp:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return out.size, out.md5.hexdigest(), taken


def run_inventory(
    root: str,
    generated: Mapping[str, GeneratedBucket],
    rules: InventoryRules,
    source_bucket: str,
    inventory_id: str,
    at: datetime | None = None,
    *,
    rows_per_file: int = DEFAULT_ROWS_PER_FILE,
    fault: str | None = None,
) -> InventoryRun:
    """Scan ``source_bucket`` by the rule ``inventory_id`` and write its inventory, as OSS would.

    ``at`` (default: now) names the run's folder and sets ``creationTimestamp``; naive datetimes are
    UTC. Raises :class:`~localcloud.oss.protocol.OssError` ``NoSuchInventory`` for an unknown rule,
    ``ValueError`` for a disabled rule or a bad knob, ``FileNotFoundError`` for a missing bucket.
    Memory is constant in the number of objects: rows stream from the listing into gzip.
    """
    if rows_per_file < 1:
        raise ValueError("rows_per_file must be >= 1")
    if fault is not None and fault not in FAULTS:
        raise ValueError(f"unknown inventory fault {fault!r}; faults are {FAULTS}")
    check_id(inventory_id)
    rule = rules.get(source_bucket, inventory_id)
    if not rule.enabled:
        raise ValueError(f"inventory {inventory_id!r} of {source_bucket!r} is disabled (IsEnabled false): OSS does not run it")
    dest_dir = os.path.join(root, rule.destination_bucket)
    if rule.destination_bucket in generated or not os.path.isdir(dest_dir):
        raise FileNotFoundError(f"destination bucket {rule.destination_bucket!r} is not a folder bucket under {root}")
    at = at or datetime.now(timezone.utc)
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    at = at.astimezone(timezone.utc)
    base = (rule.destination_prefix.rstrip("/") + "/" if rule.destination_prefix else "") + f"{source_bucket}/{inventory_id}/"
    run_name = uuid.uuid4()
    rows = _rows(rule, source_bucket, _source_objects(root, generated, source_bucket, rule.prefix))
    files: list[dict] = []
    total = 0
    while True:
        key = f"{base}data/{run_name}{'' if not files else f'-{len(files)}'}.csv.gz"
        size, md5, taken = _write_object(dest_dir, key, rows=rows, limit=rows_per_file)
        total += taken
        if taken == 0 and files:  # the previous file ended exactly at the last row
            os.unlink(_key_path(dest_dir, key))
            break
        files.append({"key": key, "size": size, "MD5checksum": md5})
        if taken < rows_per_file:
            break
    folder = f"{base}{at.strftime('%Y-%m-%dT%H-%MZ')}/"
    run = InventoryRun(rule.destination_bucket, folder + "manifest.json", folder + "manifest.checksum",
                       tuple(f["key"] for f in files), total)
    if fault == "no_manifest":
        return run
    manifest = json.dumps({
        "creationTimestamp": str(int(at.timestamp() * 1000)),
        "destinationBucket": rule.destination_bucket,
        "fileFormat": "CSV",
        "fileSchema": ", ".join(["Bucket", "Key", *rule.ordered_fields]),
        "files": files,
        "sourceBucket": source_bucket,
        "version": MANIFEST_VERSION,
    }, indent=2).encode("utf-8")
    _write_object(dest_dir, run.manifest_key, iter([manifest]))
    checksum = hashlib.md5(manifest, usedforsecurity=False).hexdigest().encode("ascii")
    _write_object(dest_dir, run.checksum_key, iter([checksum]))
    if fault is not None:
        _damage(_key_path(dest_dir, run.data_keys[-1]), fault)
    return run


def _damage(path: str, fault: str) -> None:
    """Make the data file at ``path`` disagree with the manifest as ``fault`` says."""
    if fault == "missing_file":
        os.unlink(path)
        return
    with open(path, "rb") as fh:
        data = fh.read()
    if fault == "size_mismatch":
        data += b"\x00"
    else:  # md5_mismatch: another gzip mtime, same length, same rows
        data = data[:4] + (int.from_bytes(data[4:8], "little") + 1).to_bytes(4, "little") + data[8:]
    with open(path, "wb") as fh:
        fh.write(data)
    record_etag(path, hashlib.md5(data, usedforsecurity=False).hexdigest())  # HEAD answers the new bytes' MD5
