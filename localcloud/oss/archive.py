"""Storage classes and archive restores, as the local OSS server plays them.

Why: objects in Archive, ColdArchive and DeepColdArchive cannot be read until they are restored. Code
that treats them as readable images passes against a server that ignores storage classes and fails
on the first night in the cloud, so the local server keeps a class per object and refuses to read a
frozen one, as OSS does.

Storage classes
    ``Standard``, ``IA``, ``Archive``, ``ColdArchive``, ``DeepColdArchive``. PutObject takes
    ``x-oss-storage-class`` (default Standard; another value answers 400 ``InvalidArgument``).
    ListObjects lists each object's class in ``<StorageClass>``; HeadObject and GetObject answer it in
    ``x-oss-storage-class``. Folder buckets keep classes in a sidecar per folder (see
    :mod:`localcloud.oss.store`); generated buckets archive every n-th key (``archive_every``).

Reading an archived object
    GetObject of an object of an archive class that is not restored (or still restoring) answers 403
    ``InvalidObjectState`` "The operation is not valid for the object's state." (OSS's code and
    message). HeadObject answers for any object, as on OSS.

RestoreObject (``POST /bucket/key?restore``)
    Optional body ``<RestoreRequest><Days>N</Days><JobParameters><Tier>T</Tier></JobParameters>
    </RestoreRequest>``: Days 1-7 for Archive, 1-365 for the cold classes (default 1); Tier
    ``Expedited``, ``Standard`` or ``Bulk`` (DeepColdArchive: ``Standard`` or ``Bulk``). The answers are
    those oss2 documents for OSS: 202 the first time, 409 ``RestoreAlreadyInProgress`` while restoring,
    200 once restored (the restored copy then lives Days days from now, never less than before), 400
    ``OperationNotSupported`` for Standard and IA, 404 ``NoSuchKey``. A restore takes the server's
    ``restore_delay_s`` (default 1 s: OSS needs about a minute for Archive and hours for the cold classes,
    never no time at all), then the object is readable until its expiry date and frozen again after.

Restore state, as OSS shows it
    ``ongoing-request="true"`` while restoring; ``ongoing-request="false", expiry-date="<RFC 1123 date>"``
    once restored; nothing when never restored or expired. HeadObject and GetObject send it in
    ``x-oss-restore``, listings in ``<RestoreInfo>`` right after ``<StorageClass>`` (where OSS puts the
    element is not documented).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate
from typing import Mapping

from localcloud.oss.protocol import OssError, invalid_argument, parse_request_xml

STORAGE_CLASSES = ("Standard", "IA", "Archive", "ColdArchive", "DeepColdArchive")
ARCHIVE_CLASSES = frozenset({"Archive", "ColdArchive", "DeepColdArchive"})
DEFAULT_RESTORE_DELAY_S = 1.0
MAX_RESTORE_BODY = 64 * 1024
_DAY_S = 86400.0
_MAX_DAYS = {"Archive": 7, "ColdArchive": 365, "DeepColdArchive": 365}
_TIERS = {"Archive": {"Expedited", "Standard", "Bulk"}, "ColdArchive": {"Expedited", "Standard", "Bulk"},
          "DeepColdArchive": {"Standard", "Bulk"}}


@dataclass(frozen=True)
class ObjectClass:
    """An object's storage class and, for an archived one, its restore (epoch seconds)."""

    storage_class: str = "Standard"
    restore_ready_at: float | None = None  # when the restore requested completes
    restore_expires_at: float | None = None  # when the restored copy goes away

    @property
    def archived(self) -> bool:
        return self.storage_class in ARCHIVE_CLASSES

    def restoring(self, now: float) -> bool:
        return self.restore_ready_at is not None and now < self.restore_ready_at

    def restored(self, now: float) -> bool:
        return (
            self.restore_ready_at is not None
            and self.restore_expires_at is not None
            and self.restore_ready_at <= now < self.restore_expires_at
        )

    def readable(self, now: float) -> bool:
        return not self.archived or self.restored(now)

    def restore_info(self, now: float) -> str:
        """The ``x-oss-restore`` header / ``<RestoreInfo>`` text ("" when there is none to show)."""
        if self.restoring(now):
            return 'ongoing-request="true"'
        if self.restored(now):
            return f'ongoing-request="false", expiry-date="{formatdate(self.restore_expires_at, usegmt=True)}"'
        return ""

    def as_json(self) -> dict:
        found = {"class": self.storage_class}
        if self.restore_ready_at is not None:
            found["restore"] = [self.restore_ready_at, self.restore_expires_at]
        return found

    @classmethod
    def from_json(cls, found: object) -> ObjectClass:
        """Read a sidecar entry; anything malformed reads as Standard (a hand-edited sidecar must not crash)."""
        if not isinstance(found, dict) or found.get("class") not in STORAGE_CLASSES:
            return STANDARD
        restore = found.get("restore")
        if isinstance(restore, list) and len(restore) == 2 and all(isinstance(t, (int, float)) for t in restore):
            return cls(found["class"], float(restore[0]), float(restore[1]))
        return cls(found["class"])


STANDARD = ObjectClass()


def storage_class_of_put(headers: Mapping[str, str]) -> str:
    """The class a PutObject asks for (``x-oss-storage-class``, default Standard)."""
    wanted = headers.get("x-oss-storage-class", "").strip() or "Standard"
    if wanted not in STORAGE_CLASSES:
        raise invalid_argument(
            f"The storage class must be one of {', '.join(STORAGE_CLASSES)}.", "x-oss-storage-class", wanted
        )
    return wanted


def object_headers(state: ObjectClass, now: float) -> dict[str, str]:
    """``x-oss-storage-class`` and, when there is a restore to show, ``x-oss-restore``."""
    headers = {"x-oss-storage-class": state.storage_class}
    info = state.restore_info(now)
    if info:
        headers["x-oss-restore"] = info
    return headers


def check_readable(state: ObjectClass, now: float) -> None:
    """Raise OSS's 403 for a GetObject of a frozen (not restored, or still restoring) object."""
    if not state.readable(now):
        raise OssError(403, "InvalidObjectState", "The operation is not valid for the object's state.")


def restore(state: ObjectClass, body: bytes, now: float, delay_s: float) -> tuple[int, ObjectClass]:
    """Answer a RestoreObject of an object in ``state``: the HTTP status and the object's new state."""
    if not state.archived:
        raise OssError(400, "OperationNotSupported", f"The operation is not supported for this storage class ({state.storage_class}).")
    days = _restore_days(state.storage_class, body)
    if state.restoring(now):
        raise OssError(409, "RestoreAlreadyInProgress", "The restore operation is in progress.")
    if state.restored(now):
        expires = max(state.restore_expires_at or now, now + days * _DAY_S)
        return 200, ObjectClass(state.storage_class, state.restore_ready_at, expires)
    ready = now + delay_s
    return 202, ObjectClass(state.storage_class, ready, ready + days * _DAY_S)


def _restore_days(storage_class: str, body: bytes) -> int:
    if not body.strip():
        return 1
    root = parse_request_xml(body, "RestoreRequest")
    days_text = (root.findtext("Days") or "1").strip()
    if not days_text.isdigit() or not 1 <= int(days_text) <= _MAX_DAYS[storage_class]:
        raise invalid_argument(
            f"Days must be an integer from 1 to {_MAX_DAYS[storage_class]} for {storage_class} objects.", "Days", days_text
        )
    tier = root.findtext("JobParameters/Tier")
    if tier is not None and tier.strip() not in _TIERS[storage_class]:
        raise invalid_argument(f"The Tier {tier.strip()!r} is not valid for {storage_class} objects.", "Tier", tier.strip())
    return int(days_text)
