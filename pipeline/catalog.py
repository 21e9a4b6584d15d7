"""Object listing → catalog rows (``id``, ``source_image``, ``cate_id``) on Arrow record batches.

The rules come from the index config. Objects that do not become rows are counted by reason, so a
run report can say exactly what was left out and why; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import pyarrow as pa

from pipeline.config import CategoryRule, IdRule, SourceConfig
from pipeline.errors import CatalogError
from pipeline.schema import CATALOG_SCHEMA

INT64_MAX = 2**63 - 1
_UNMAPPED_EXAMPLES = 10


class ListedObject(NamedTuple):
    """The part of an OSS listing entry the catalog needs."""

    key: str
    size: int


class SkipReason(StrEnum):
    FOLDER_MARKER = "folder_marker"
    NOT_IMAGE = "not_image"
    ZERO_BYTES = "zero_bytes"
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    BAD_ID = "bad_id"
    UNMAPPED_CATEGORY = "unmapped_category"


def stable_key_id(key: str) -> int:
    """A 63-bit id from the key: BLAKE2b, identical on every machine and run (``hash()`` is salted)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass
class CatalogCounts:
    """What a listing produced: objects seen, rows kept, and objects skipped by reason."""

    listed: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    unmapped_categories: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "listed": self.listed,
            "kept": self.kept,
            "skipped": {reason.value: self.skipped.get(reason.value, 0) for reason in SkipReason},
            "skipped_total": sum(self.skipped.values()),
            "unmapped_category_examples": dict(self.unmapped_categories.most_common(_UNMAPPED_EXAMPLES)),
        }


class CatalogBuilder:
    """Applies an index's filters and id / category rules to pages of listed objects."""

    def __init__(self, source: SourceConfig, id_rule: IdRule, category_rule: CategoryRule) -> None:
        self._extensions = frozenset(source.extensions)
        self._min_size = source.min_size_bytes
        self._max_size = source.max_size_bytes
        self._id_rule = id_rule
        self._id_regex = re.compile(id_rule.regex)
        self._category = category_rule
        self._category_regex = re.compile(category_rule.regex) if category_rule.regex else None
        self.counts = CatalogCounts()

    def rows(self, objects: Sequence[ListedObject]) -> pa.RecordBatch:
        """One record batch of catalog rows for one page of listed objects (possibly empty)."""
        ids: list[int] = []
        paths: list[str] = []
        categories: list[int] = []
        skipped = self.counts.skipped
        for obj in objects:
            reason = self._filter(obj)
            if reason is None:
                row_id = self._row_id(obj.key)
                if row_id is None:
                    reason = SkipReason.BAD_ID
                else:
                    cate_id = self._category_id(obj.key)
                    if cate_id is None:
                        reason = SkipReason.UNMAPPED_CATEGORY
                    else:
                        ids.append(row_id)
                        paths.append("/" + obj.key)
                        categories.append(cate_id)
                        continue
            skipped[reason.value] += 1
        self.counts.listed += len(objects)
        self.counts.kept += len(ids)
        return pa.RecordBatch.from_arrays(
            [pa.array(ids, pa.int64()), pa.array(paths, pa.string()), pa.array(categories, pa.int64())],
            schema=CATALOG_SCHEMA,
        )

    def batches(self, pages: Iterable[Sequence[ListedObject]]) -> Iterator[pa.RecordBatch]:
        """Stream catalog batches from pages of objects; empty batches are not yielded."""
        for page in pages:
            batch = self.rows(page)
            if batch.num_rows:
                yield batch

    def _filter(self, obj: ListedObject) -> SkipReason | None:
        key = obj.key
        if key.endswith("/"):
            return SkipReason.FOLDER_MARKER
        name = key.rpartition("/")[2]
        ext = name.rpartition(".")[2].lower() if "." in name else ""
        if ext not in self._extensions:
            return SkipReason.NOT_IMAGE
        if obj.size == 0:
            return SkipReason.ZERO_BYTES
        if obj.size < self._min_size:
            return SkipReason.TOO_SMALL
        if obj.size > self._max_size:
            return SkipReason.TOO_LARGE
        return None

    def _row_id(self, key: str) -> int | None:
        if self._id_rule.kind == "hash":
            return stable_key_id(key)
        match = self._id_regex.search(key.rpartition("/")[2])
        if match is None:
            return None
        digits = match.group(1)
        if not digits or not digits.isascii() or not digits.isdigit():
            return None
        value = int(digits)
        return value if value <= INT64_MAX else None

    def _category_id(self, key: str) -> int | None:
        rule = self._category
        token: str | None
        if self._category_regex is not None:
            match = self._category_regex.search(key)
            token = match.group(1) if match else None
        else:
            parts = key.split("/")
            index = rule.segment if rule.segment is not None else 0
            token = parts[index] if -len(parts) <= index < len(parts) else None
        cate_id: int | None = None
        if token:
            if rule.mapping is not None:
                cate_id = rule.mapping.get(token)
            elif token.isascii() and token.isdigit() and int(token) <= INT64_MAX:
                cate_id = int(token)
        if cate_id is not None:
            return cate_id
        self.counts.unmapped_categories[token or "<none>"] += 1
        if rule.unmapped == "default":
            return rule.default_id
        if rule.unmapped == "fail":
            raise CatalogError(
                f"object {key!r} has category {token!r}, which the category rule does not map to an id; "
                "add it to category_rule.mapping, or set category_rule.unmapped to 'skip' or 'default'"
            )
        return None
