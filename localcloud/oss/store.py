"""Folder buckets of the local OSS server: keys on disk, ETags, and listing without reading contents.

Layout on disk
    ``<root>/<bucket>/<key>``. A bucket is a direct sub-folder of ``root`` whose name obeys the OSS
    bucket naming rules (``[a-z0-9-]``, 3-63 characters, no leading/trailing ``-``). A key is the
    ``/``-separated relative path of a file under the bucket folder.

Folder markers
    A key ending in ``/`` (the zero-byte "directory object" consoles create) is stored as a hidden file
    named :data:`DIR_MARKER_NAME` (``.oss-dir-marker``) inside that directory; its content is the
    object's content. It is listed as ``dir/``, sorts before the directory's children, and is never
    listed under its own file name.

Storage classes
    A folder whose files are not all Standard holds a sidecar, :data:`OBJECT_META_NAME`
    (``.oss-object-meta``): JSON mapping a file name (``.oss-dir-marker`` for the folder marker) to its
    class and restore (see :mod:`localcloud.oss.archive`). Files it does not name are Standard, so a
    folder written by hand needs none. PutObject sets or clears the file's entry, DeleteObject clears it,
    RestoreObject updates it; the sidecar is rewritten atomically under one lock per process (two
    server processes writing classes into one folder at once could lose an update), and removed when
    its last entry goes, so folders still vanish with their last object.

Reserved names
    Files named :data:`DIR_MARKER_NAME` or :data:`OBJECT_META_NAME`, or starting with
    :data:`TEMP_PREFIX` (``.oss-tmp-``, the temporary files PutObject writes before an atomic
    ``os.replace``) are never listed, and keys containing such a path segment are refused with
    ``InvalidArgument``. Files whose names cannot be part of a key (backslashes, bytes that are not
    UTF-8, more than 255 bytes) are not listed either.

Limits of a folder
    A key cannot be both an object and a folder on disk (``a`` and ``a/b``): such a PutObject answers
    409 ``KeyConflict`` (real OSS allows both). Keys with empty segments (``a//b``) are refused. Only
    the bytes are stored: Content-Type is guessed from the key on read, and ``x-oss-meta-*`` headers,
    ACLs and tags are dropped.

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
    ``"<MD5 of the content, upper-case hex>"``, as OSS answers for a simple upload. PutObject,
    CopyObject and inventory runs know the MD5 as they write, and record it with the file in the
    extended attribute :data:`ETAG_XATTR` (``user.oss.etag``) as ``HEX:size:mtime_ns``, so listings
    read it with one ``getxattr`` and never read contents. A file without a valid record (placed by
    hand, or changed on disk since: size or mtime differ) is read once, its MD5 recorded, and then
    answered like the others; where the file system refuses user extended attributes the MD5 is
    computed on every read or listing (slow, but still right). An object made by
    CompleteMultipartUpload records OSS's multipart form ``HEX-<parts>`` instead (not a content MD5;
    :mod:`localcloud.oss.multipart`); without user extended attributes it answers its content MD5.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from localcloud.oss.archive import STANDARD, ObjectClass
from localcloud.oss.protocol import ListedObject, ListPage, OssError, common_prefix_of, invalid_argument

#: Hidden file that stores a folder-marker object (a key ending in ``/``) inside its directory.
DIR_MARKER_NAME = ".oss-dir-marker"
#: Prefix of the temporary files PutObject writes before renaming them into place.
TEMP_PREFIX = ".oss-tmp-"
#: Sidecar of a folder: storage classes and restores of its files that are not plain Standard.
OBJECT_META_NAME = ".oss-object-meta"
_META_LOCK = threading.Lock()

MAX_KEY_BYTES = 1023
_NAME_MAX_BYTES = 255




@dataclass(frozen=True)
class Credential:
    """An access key pair the server accepts; frozen so a running server's key set cannot drift."""

    access_key_id: str
    access_key_secret: str = field(repr=False)


# --------------------------------------------------------------------------------------------------
# Folder buckets: ETags, keys and paths
# --------------------------------------------------------------------------------------------------


#: The extended attribute that records a file's content MD5 (see "ETags" above).
ETAG_XATTR = "user.oss.etag"
_HASH_CHUNK = 1024 * 1024
_RECORDED_ETAG = re.compile(r"[0-9A-F]{32}(-[1-9][0-9]{0,4})?")


def _quoted(hex_md5: str) -> str:
    return '"' + hex_md5.upper() + '"'


def record_etag(path: str, hex_md5: str) -> None:
    """Record ``hex_md5`` as the ETag of the file at ``path`` as it is now (size and mtime).

    ``hex_md5`` may also be a multipart upload's ``HEX-<parts>`` (see :mod:`localcloud.oss.multipart`).
    """
    try:
        st = os.stat(path)
        os.setxattr(path, ETAG_XATTR, f"{hex_md5.upper()}:{st.st_size}:{st.st_mtime_ns}".encode("ascii"))
    except OSError:  # no user xattrs here: etag_of computes the MD5 each time
        pass


def etag_of(path: str, st: os.stat_result) -> str:
    """The quoted, upper-case content MD5 of the file at ``path`` (``st`` its current stat)."""
    try:
        hex_md5, size, mtime_ns = os.getxattr(path, ETAG_XATTR).decode("ascii").split(":")
        if int(size) == st.st_size and int(mtime_ns) == st.st_mtime_ns and _RECORDED_ETAG.fullmatch(hex_md5):
            return _quoted(hex_md5)
    except (OSError, ValueError, UnicodeDecodeError):
        pass
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(_HASH_CHUNK):
                digest.update(chunk)
        after = os.stat(path)
    except OSError:
        return _quoted(hashlib.md5(f"{st.st_size}:{st.st_mtime_ns}".encode(), usedforsecurity=False).hexdigest())
    if (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns):
        record_etag(path, digest.hexdigest())
    return _quoted(digest.hexdigest())


def _is_reserved_name(name: str) -> bool:
    return name in (DIR_MARKER_NAME, OBJECT_META_NAME) or name.startswith(TEMP_PREFIX)


def _segment_ok(name: str) -> bool:
    """Whether a directory entry's name can be part of a key (listing silently skips the rest)."""
    if not name or name in (".", "..") or "\\" in name or _is_reserved_name(name):
        return False
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes on disk (surrogate escapes): not a valid key
        return False
    return len(encoded) <= _NAME_MAX_BYTES


def validate_key(key: str) -> tuple[list[str], bool]:
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
                f"Path segments named {DIR_MARKER_NAME!r} or {OBJECT_META_NAME!r}, or starting with {TEMP_PREFIX!r}, "
                "are reserved by the local OSS server.",
                "key",
                key,
            )
        if len(seg.encode("utf-8")) > _NAME_MAX_BYTES:
            raise invalid_argument(
                f"A path segment of the key is longer than {_NAME_MAX_BYTES} bytes (file system limit).", "key", key
            )
    return segments, is_marker


def file_in_the_way(bucket_dir: str, folder: str) -> bool:
    """Whether something other than a folder sits at ``folder`` or one of its parents in the bucket."""
    path = folder
    while is_within(path, bucket_dir):
        if os.path.lexists(path) and not os.path.isdir(path):
            return True
        path = os.path.dirname(path)
    return False


def is_within(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip(os.sep) + os.sep)


# --------------------------------------------------------------------------------------------------
# Folder buckets: storage classes (one sidecar per folder)
# --------------------------------------------------------------------------------------------------


def _read_meta(folder: str) -> dict:
    try:
        with open(os.path.join(folder, OBJECT_META_NAME), encoding="utf-8") as fh:
            found = json.load(fh)
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def object_class(path: str) -> ObjectClass:
    """The storage class and restore of the object stored at ``path`` (Standard unless the sidecar says)."""
    folder, name = os.path.split(path)
    return ObjectClass.from_json(_read_meta(folder).get(name))


def set_object_class(path: str, state: ObjectClass | None) -> None:
    """Record ``state`` for the object at ``path``; None or plain Standard clears its entry."""
    folder, name = os.path.split(path)
    with _META_LOCK:
        meta = _read_meta(folder)
        if state is None or state == STANDARD:
            if meta.pop(name, None) is None:
                return
        else:
            meta[name] = state.as_json()
        target = os.path.join(folder, OBJECT_META_NAME)
        if not meta:
            try:
                os.remove(target)
            except FileNotFoundError:
                pass
            return
        tmp = os.path.join(folder, f"{TEMP_PREFIX}meta-{threading.get_ident()}")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, sort_keys=True)
        os.replace(tmp, target)


# --------------------------------------------------------------------------------------------------
# Folder buckets: listing
# --------------------------------------------------------------------------------------------------


class _WalkState:
    """Mutable state shared between the tree walk and its consumer (rolled-up prefix to skip)."""

    __slots__ = ("skip", "meta_dirs")

    def __init__(self) -> None:
        self.skip: str | None = None
        self.meta_dirs: set[str] = set()  # folders seen holding a storage-class sidecar


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
            if name == OBJECT_META_NAME:
                state.meta_dirs.add(dir_path)
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
                    if not (is_within(target, bucket_dir) and os.path.isfile(target)):
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


def list_bucket(bucket_dir: str, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
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
    metas: dict[str, dict] = {}
    now = time.time()
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
            folder, name = os.path.split(path)
            if folder in state.meta_dirs:  # not all Standard here: read the sidecar once per page
                meta = metas[folder] if folder in metas else metas.setdefault(folder, _read_meta(folder))
                found = ObjectClass.from_json(meta.get(name))
                objects.append(
                    ListedObject(key, st.st_size, st.st_mtime, etag_of(path, st), found.storage_class, found.restore_info(now))
                )
            else:
                objects.append(ListedObject(key, st.st_size, st.st_mtime, etag_of(path, st)))
            count += 1
            last = key
    finally:
        walker.close()
    return ListPage(objects, prefixes, truncated, last)
