"""Bucket inventory rules of the local OSS server: Put/Get/List/DeleteBucketInventory, as oss2 calls them.

Why: the nightly load's second route reads OSS Bucket Inventories; the rules that produce them are
configured through these four calls (``?inventory&inventoryId=ID``), so the local server must take and
give them back exactly as oss2 writes and parses them, and refuse what OSS refuses.

Operations
    ``PUT /bucket?inventory&inventoryId=ID`` (body ``<InventoryConfiguration>``, 200),
    ``GET /bucket?inventory&inventoryId=ID`` (the rule as stored, 200), ``GET /bucket?inventory``
    (``<ListInventoryConfigurationsResult>``, at most :data:`LIST_PAGE` rules a page, ordered by id,
    ``continuation-token`` / ``NextContinuationToken``), ``DELETE /bucket?inventory&inventoryId=ID``
    (204). Source buckets may be folder or generated buckets; destinations must be folder buckets.

Validation (status and code)
    400 ``MalformedXML``: body not XML or not ``InventoryConfiguration``; 400 ``InvalidArgument``: the
    URL's inventoryId differs from ``<Id>`` (OSS EC 0020-00000043), an id breaking :data:`ID_RE`,
    ``IsEnabled`` not true/false, missing ``Destination/OSSBucketDestination``, ``Format`` missing or
    not ``CSV`` (EC 0020-00000012 / -27), ``Bucket`` not ``acs:oss:::<name>`` (EC 0020-00000030),
    ``AccountId`` / ``RoleArn`` malformed or (with the server's ``account_id`` set) naming another
    account (EC 0020-00000028), ``Frequency`` not Daily/Weekly, ``IncludedObjectVersions`` not
    Current/All, an unknown optional field (EC 0020-00000036), a filter storage class that is not a
    class (EC 0020-00000026), a bad size or time bound; 404 ``NoSuchBucket`` for a destination bucket
    that does not exist; 400 ``InvalidArgument`` for a generated (read-only) destination; 409
    ``InventoryAlreadyExist`` for an id already configured; 400 ``TooManyConfigurations`` past
    :data:`MAX_RULES`; 404 ``NoSuchInventory`` for Get/Delete of an unknown id.

Persistence
    ``<root>/.oss-bucket-config/<bucket>.inventory.json`` (outside every bucket: bucket names cannot
    start with a dot), rewritten atomically; a restarted server keeps its rules, for generated
    buckets too. Deleting a bucket folder by hand does not delete its rules.

Not verified against the cloud
    The id rule, the duplicate-id and too-many answers (codes taken from S3 and OSS naming habits),
    whether a Put of an existing id overwrites (here: refused), Monthly schedules and newer optional
    fields (refused here), and the element order of the answers.
"""

from __future__ import annotations

import json
import os
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field

from localcloud.oss.archive import STORAGE_CLASSES
from localcloud.oss.protocol import (
    OssError, continuation_token, invalid_argument, parse_request_xml, resume_point, xml_text,
)

CONFIG_DIR = ".oss-bucket-config"
MAX_RULES = 1000
LIST_PAGE = 100
MAX_BODY = 64 * 1024
#: Letters, digits, ``-`` and ``_``; 1-64 characters; no leading or trailing ``-`` / ``_``.
ID_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]{0,62}[A-Za-z0-9])?$")
#: The optional fields, in the order their columns follow Bucket and Key in the CSV files.
OPTIONAL_FIELDS = ("Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded", "EncryptionStatus")
_ACCOUNT_RE = re.compile(r"^[0-9]{1,32}$")
_ROLE_RE = re.compile(r"^acs:ram::([0-9]{1,32}):role/[A-Za-z0-9._-]{1,64}$")
_DEST_RE = re.compile(r"^acs:oss:::([a-z0-9][a-z0-9-]{1,61}[a-z0-9])$")
_LOCK = threading.Lock()


@dataclass
class InventoryRule:
    """One inventory configuration as stored (the strings oss2 sent, checked)."""

    id: str
    enabled: bool
    destination_bucket: str
    account_id: str
    role_arn: str
    destination_prefix: str = ""
    frequency: str = "Daily"
    included_versions: str = "Current"
    fields: list[str] = field(default_factory=list)
    prefix: str = ""
    modified_after: int | None = None  # LastModifyBeginTimeStamp, epoch seconds
    modified_before: int | None = None  # LastModifyEndTimeStamp
    min_size: int | None = None  # LowerSizeBound, bytes
    max_size: int | None = None  # UpperSizeBound
    storage_classes: str | None = None  # "Standard,IA" as sent
    encryption: str = ""  # "" | "SSE-OSS" | "SSE-KMS:<key id>"

    @property
    def ordered_fields(self) -> list[str]:
        return [name for name in OPTIONAL_FIELDS if name in self.fields]

    def matches(self, key: str, size: int, mtime: float, storage_class: str) -> bool:
        """Whether an object passes the rule's filter."""
        if not key.startswith(self.prefix):
            return False
        if self.modified_after is not None and mtime < self.modified_after:
            return False
        if self.modified_before is not None and mtime > self.modified_before:
            return False
        if self.min_size is not None and size < self.min_size:
            return False
        if self.max_size is not None and size > self.max_size:
            return False
        if self.storage_classes and storage_class not in self.storage_classes.split(","):
            return False
        return True

    def to_xml(self) -> str:
        """The ``<InventoryConfiguration>`` element, as oss2's parser reads it."""
        out = [f"<InventoryConfiguration><Id>{xml_text(self.id)}</Id>",
               f"<IsEnabled>{'true' if self.enabled else 'false'}</IsEnabled>"]
        filt = [f"<Prefix>{xml_text(self.prefix)}</Prefix>"] if self.prefix else []
        for tag, value in (("LastModifyBeginTimeStamp", self.modified_after), ("LastModifyEndTimeStamp", self.modified_before),
                           ("LowerSizeBound", self.min_size), ("UpperSizeBound", self.max_size),
                           ("StorageClass", self.storage_classes)):
            if value is not None:
                filt.append(f"<{tag}>{xml_text(str(value))}</{tag}>")
        if filt:
            out.append("<Filter>" + "".join(filt) + "</Filter>")
        dest = [f"<Format>CSV</Format><AccountId>{xml_text(self.account_id)}</AccountId>",
                f"<RoleArn>{xml_text(self.role_arn)}</RoleArn>",
                f"<Bucket>acs:oss:::{self.destination_bucket}</Bucket>"]
        if self.destination_prefix:
            dest.append(f"<Prefix>{xml_text(self.destination_prefix)}</Prefix>")
        if self.encryption == "SSE-OSS":
            dest.append("<Encryption><SSE-OSS/></Encryption>")
        elif self.encryption.startswith("SSE-KMS:"):
            dest.append(f"<Encryption><SSE-KMS><KeyId>{xml_text(self.encryption[8:])}</KeyId></SSE-KMS></Encryption>")
        out.append("<Destination><OSSBucketDestination>" + "".join(dest) + "</OSSBucketDestination></Destination>")
        out.append(f"<Schedule><Frequency>{self.frequency}</Frequency></Schedule>")
        out.append(f"<IncludedObjectVersions>{self.included_versions}</IncludedObjectVersions>")
        if self.fields:
            out.append("<OptionalFields>" + "".join(f"<Field>{f}</Field>" for f in self.fields) + "</OptionalFields>")
        out.append("</InventoryConfiguration>")
        return "".join(out)


def _text(node: ET.Element, path: str) -> str | None:
    found = node.find(path)
    return None if found is None else (found.text or "").strip()


def _bound(node: ET.Element, path: str, name: str) -> int | None:
    value = _text(node, path)
    if value is None:
        return None
    if not value.isdigit():
        raise invalid_argument(f"{name} must be a non-negative integer.", name, value)
    return int(value)


def parse_rule(body: bytes, url_id: str, account_id: str | None) -> InventoryRule:
    """Check a PutBucketInventory body (see the module docstring for what is refused and how)."""
    root = parse_request_xml(body, "InventoryConfiguration")
    rule_id = _text(root, "Id") or ""
    if rule_id != url_id:
        raise invalid_argument("The inventoryId in the URL differs from the Id in the body.", "Id", rule_id)
    check_id(rule_id)
    enabled = (_text(root, "IsEnabled") or "").lower()
    if enabled not in ("true", "false"):
        raise invalid_argument("IsEnabled must be true or false.", "IsEnabled", enabled)
    dest = root.find("Destination/OSSBucketDestination")
    if dest is None:
        raise invalid_argument("Destination/OSSBucketDestination is required.", "Destination", "")
    fmt = _text(dest, "Format")
    if fmt != "CSV":
        raise invalid_argument("Destination/OSSBucketDestination/Format must be CSV.", "Format", fmt or "")
    bucket_arn = _text(dest, "Bucket") or ""
    match = _DEST_RE.match(bucket_arn)
    if not match:
        raise invalid_argument("Destination Bucket must be acs:oss:::<bucket name>.", "Bucket", bucket_arn)
    account = _text(dest, "AccountId") or ""
    role = _text(dest, "RoleArn") or ""
    role_match = _ROLE_RE.match(role)
    if not _ACCOUNT_RE.match(account) or (account_id is not None and account != account_id):
        raise invalid_argument("AccountId must be the bucket owner's account id.", "AccountId", account)
    if not role_match or (account_id is not None and role_match.group(1) != account_id):
        raise invalid_argument("RoleArn must be acs:ram::<account id>:role/<role name> of the bucket owner.", "RoleArn", role)
    encryption = ""
    if dest.find("Encryption/SSE-KMS") is not None:
        encryption = "SSE-KMS:" + (_text(dest, "Encryption/SSE-KMS/KeyId") or "")
    elif dest.find("Encryption/SSE-OSS") is not None:
        encryption = "SSE-OSS"
    frequency = _text(root, "Schedule/Frequency") or ""
    if frequency not in ("Daily", "Weekly"):
        raise invalid_argument("Schedule/Frequency must be Daily or Weekly.", "Frequency", frequency)
    versions = _text(root, "IncludedObjectVersions") or ""
    if versions not in ("Current", "All"):
        raise invalid_argument("IncludedObjectVersions must be Current or All.", "IncludedObjectVersions", versions)
    fields = [(f.text or "").strip() for f in root.findall("OptionalFields/Field")]
    for name in fields:
        if name not in OPTIONAL_FIELDS:
            raise invalid_argument(f"OptionalFields/Field {name!r} is not supported.", "Field", name)
    if len(set(fields)) != len(fields):
        raise invalid_argument("OptionalFields repeats a field.", "Field", ",".join(fields))
    classes = _text(root, "Filter/StorageClass")
    if classes is not None:
        for name in classes.split(","):
            if name not in STORAGE_CLASSES and name != "All":
                raise invalid_argument(f"Filter/StorageClass {name!r} is not a storage class.", "StorageClass", classes)
        if "All" in classes.split(","):
            classes = None
    rule = InventoryRule(
        id=rule_id, enabled=enabled == "true", destination_bucket=match.group(1), account_id=account, role_arn=role,
        destination_prefix=_text(dest, "Prefix") or "", frequency=frequency, included_versions=versions,
        fields=fields, prefix=_text(root, "Filter/Prefix") or "",
        modified_after=_bound(root, "Filter/LastModifyBeginTimeStamp", "LastModifyBeginTimeStamp"),
        modified_before=_bound(root, "Filter/LastModifyEndTimeStamp", "LastModifyEndTimeStamp"),
        min_size=_bound(root, "Filter/LowerSizeBound", "LowerSizeBound"),
        max_size=_bound(root, "Filter/UpperSizeBound", "UpperSizeBound"),
        storage_classes=classes, encryption=encryption,
    )
    if rule.min_size is not None and rule.max_size is not None and rule.min_size > rule.max_size:
        raise invalid_argument("LowerSizeBound must not exceed UpperSizeBound.", "UpperSizeBound", str(rule.max_size))
    if rule.modified_after is not None and rule.modified_before is not None and rule.modified_after > rule.modified_before:
        raise invalid_argument("LastModifyBeginTimeStamp must not be after LastModifyEndTimeStamp.",
                               "LastModifyEndTimeStamp", str(rule.modified_before))
    for text, name in ((rule.prefix, "Filter/Prefix"), (rule.destination_prefix, "Prefix")):
        if len(text.encode("utf-8")) > 1023 or "\x00" in text or "\\" in text:
            raise invalid_argument(f"{name} is not a valid key prefix.", name, text[:64])
    if rule.destination_prefix.startswith("/") or "//" in rule.destination_prefix:
        raise invalid_argument("The destination Prefix must not start with '/' nor hold empty segments.", "Prefix",
                               rule.destination_prefix)
    return rule


def check_id(rule_id: str) -> None:
    if not ID_RE.match(rule_id):
        raise invalid_argument("The inventory id must be 1-64 letters, digits, '-' or '_', starting and ending "
                               "with a letter or digit.", "inventoryId", rule_id)


class InventoryRules:
    """The rules of every bucket under one server root, persisted as JSON next to the buckets."""

    def __init__(self, root: str) -> None:
        self._dir = os.path.join(root, CONFIG_DIR)

    def _path(self, bucket: str) -> str:
        return os.path.join(self._dir, f"{bucket}.inventory.json")

    def load(self, bucket: str) -> dict[str, InventoryRule]:
        try:
            with open(self._path(bucket), encoding="utf-8") as fh:
                found = json.load(fh)
        except FileNotFoundError:
            return {}
        return {rule["id"]: InventoryRule(**rule) for rule in found}

    def _save(self, bucket: str, rules: dict[str, InventoryRule]) -> None:
        os.makedirs(self._dir, exist_ok=True)
        tmp = self._path(bucket) + f".tmp-{threading.get_ident()}"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump([asdict(rules[k]) for k in sorted(rules)], fh, sort_keys=True)
        os.replace(tmp, self._path(bucket))

    def get(self, bucket: str, rule_id: str) -> InventoryRule:
        rule = self.load(bucket).get(rule_id)
        if rule is None:
            raise OssError(404, "NoSuchInventory", "The specified inventory does not exist.", InventoryId=rule_id)
        return rule

    def add(self, bucket: str, rule: InventoryRule) -> None:
        with _LOCK:
            rules = self.load(bucket)
            if rule.id in rules:
                raise OssError(409, "InventoryAlreadyExist", "An inventory with this id already exists.", InventoryId=rule.id)
            if len(rules) >= MAX_RULES:
                raise OssError(400, "TooManyConfigurations", f"A bucket has at most {MAX_RULES} inventories.")
            rules[rule.id] = rule
            self._save(bucket, rules)

    def delete(self, bucket: str, rule_id: str) -> None:
        with _LOCK:
            rules = self.load(bucket)
            if rules.pop(rule_id, None) is None:
                raise OssError(404, "NoSuchInventory", "The specified inventory does not exist.", InventoryId=rule_id)
            self._save(bucket, rules)

    def list_document(self, bucket: str, token: str) -> bytes:
        """One ``ListInventoryConfigurationsResult`` page after ``token`` ("" = from the first id)."""
        after = resume_point(token) if token else ""
        ids = sorted(i for i in self.load(bucket) if i > after)
        rules = self.load(bucket)
        page, more = ids[:LIST_PAGE], len(ids) > LIST_PAGE
        out = ['<?xml version="1.0" encoding="UTF-8"?>\n<ListInventoryConfigurationsResult>']
        out.extend(rules[i].to_xml() for i in page)
        out.append(f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>")
        if more:
            out.append(f"<NextContinuationToken>{xml_text(continuation_token(page[-1]))}</NextContinuationToken>")
        out.append("</ListInventoryConfigurationsResult>")
        return "".join(out).encode("utf-8")
