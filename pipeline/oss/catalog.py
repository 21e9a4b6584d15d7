"""Object listing → catalog rows (``id``, ``source_image``, ``cate_id``, ``etag``) on Arrow record batches.

The rules come from the index config. Objects that do not become rows are counted by reason, so a
run report can say exactly what was left out and why; nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import operator
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.config import CategoryRule, IdRule, SourceConfig
from pipeline.errors import CatalogError, ConfigError
from pipeline.patterns import arrow_pattern
from pipeline.schema import CATALOG_SCHEMA

INT64_MAX = 2**63 - 1
_UNMAPPED_EXAMPLES = 10
_ARCHIVED_EXAMPLES = 10
BATCH_OBJECTS = 8192  # objects per call of the rules when streaming (see gather_pages)


#: Storage classes whose objects cannot be read until restored: GetObject answers 403 InvalidObjectState,
#: and OpenSearch could not fetch them either. (Standard and IA are read directly.)
ARCHIVE_CLASSES = frozenset({"Archive", "ColdArchive", "DeepColdArchive"})
_RESTORED_RE = re.compile(r"ongoing-request\s*=\s*[\"']?false", re.IGNORECASE)


class ListedObject(NamedTuple):
    """The part of an OSS listing entry the catalog needs.

    ``storage_class`` as listed (OSS lists one per object; Standard when a listing lacks it).
    ``restore`` is the listing's ``RestoreInfo`` as OSS sends it: empty when the object was never
    restored or its restored copy expired, ``ongoing-request="true"`` while a restore runs, and
    ``ongoing-request="false", expiry-date="…"`` once it is readable (until that date).
    ``etag`` is the listed ETag without the quotes around it, case kept (None when a listing has none).
    """

    key: str
    size: int
    storage_class: str = "Standard"
    restore: str = ""
    etag: str | None = None


def is_unreadable_archive(obj: ListedObject) -> bool:
    """An Archive, ColdArchive or DeepColdArchive object that is not restored (or still restoring)."""
    return obj.storage_class in ARCHIVE_CLASSES and not _RESTORED_RE.search(obj.restore)


class SkipReason(StrEnum):
    FOLDER_MARKER = "folder_marker"
    NOT_IMAGE = "not_image"
    ZERO_BYTES = "zero_bytes"
    TOO_SMALL = "too_small"
    TOO_LARGE = "too_large"
    BAD_ID = "bad_id"
    UNMAPPED_CATEGORY = "unmapped_category"
    ARCHIVED = "archived"  # an image in an archive storage class, not restored: nobody could read it


# The filters by code, in the order they apply (code 0: the object passed them all).
_FILTER_CODES = (
    None,
    SkipReason.FOLDER_MARKER,
    SkipReason.NOT_IMAGE,
    SkipReason.ZERO_BYTES,
    SkipReason.TOO_SMALL,
    SkipReason.TOO_LARGE,
    SkipReason.ARCHIVED,
)
_ARCHIVED_CODE = _FILTER_CODES.index(SkipReason.ARCHIVED)
_STORAGE_CLASS = operator.itemgetter(2)
_ETAG = operator.itemgetter(4)


def _any_ascii_case(text: str) -> str:
    """``jpg`` → ``[jJ][pP][gG]``: ASCII letters in either case, digits as they are."""
    return "".join(f"[{ch}{ch.upper()}]" if ch.isalpha() else ch for ch in text)


def _compiled(pattern: str, field_name: str) -> str:
    """``pattern`` as Arrow's ``extract_regex`` runs it, after RE2 compiled it: a config that passed
    validation can still hold a pattern too large for RE2's memory (``\\pL{1000}``), refused here."""
    rewritten = arrow_pattern(pattern)
    try:
        extracted = pc.extract_regex(pa.array([""], pa.string()), rewritten).type
    except pa.ArrowInvalid as exc:
        raise ConfigError(f"{field_name} {pattern!r} cannot run on RE2: {exc}") from None
    if [extracted.field(i).name for i in range(extracted.num_fields)] != ["g"]:  # the rewrite missed a group
        raise ConfigError(f"{field_name} {pattern!r}: its capture groups could not be told apart ({rewritten!r})")
    return rewritten


def _last_part(strings: pa.StringArray, separator: str) -> pa.StringArray:
    """``s.rpartition(separator)[2]`` of every string."""
    parts = pc.split_pattern(strings, separator, max_splits=1, reverse=True)
    return parts.values.take(pa.array(parts.offsets.to_numpy()[1:] - 1))


def _parse_digits(tokens: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
    """``int(t)`` of tokens that are ASCII digits and fit a BIGINT, and where that holds (else 0)."""
    if len(tokens) and not tokens.null_count:
        shortest, longest = (v.as_py() for v in pc.min_max(pc.binary_length(tokens)).values())
        if 0 < shortest and longest < 19 and pc.all(pc.ascii_is_decimal(tokens)).as_py():  # the usual page
            return pc.cast(tokens, pa.int64()).to_numpy(zero_copy_only=False), np.ones(len(tokens), dtype=bool)
    text = pc.fill_null(tokens, "")
    digits = pc.and_(pc.greater(pc.utf8_length(text), 0), pc.ascii_is_decimal(text))
    trimmed = pc.utf8_ltrim(text, characters="0")
    width = pc.utf8_length(trimmed)
    fits = pc.or_(pc.less(width, 19), pc.and_(pc.equal(width, 19), pc.less_equal(trimmed, str(INT64_MAX))))
    ok = pc.and_(digits, fits)
    values = pc.cast(pc.if_else(pc.and_(ok, pc.greater(width, 0)), trimmed, "0"), pa.int64())
    return values.to_numpy(zero_copy_only=False), ok.to_numpy(zero_copy_only=False)


def stable_key_id(key: str) -> int:
    """A 63-bit id from the key: BLAKE2b, identical on every machine and run (``hash()`` is salted)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def md5_key_id(key: str) -> int:
    """``id_rule.kind: md5``: the first 64 bits of MD5(key) with the top bit cleared, a BIGINT that
    MaxCompute computes from the same key as ``(CONV(h[1], 16, 10) % 8) * 2^60 + CONV(h[2..16], 16, 10)``
    (see pipeline/warehouse/inventory_sql.py): one definition for both routes."""
    return int.from_bytes(hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()[:8], "big") & INT64_MAX


@dataclass
class CatalogCounts:
    """What a listing produced: objects seen, rows kept, and objects skipped by reason."""

    listed: int = 0
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    unmapped_categories: Counter[str] = field(default_factory=Counter)
    archived_classes: Counter[str] = field(default_factory=Counter)
    archived_examples: list[str] = field(default_factory=list)  # the first keys in key order, whatever the page order

    def note_archived(self, objects: Iterable[ListedObject]) -> None:
        found = list(objects)
        self.archived_classes.update(obj.storage_class for obj in found)
        self.archived_examples = sorted({*self.archived_examples, *(obj.key for obj in found)})[:_ARCHIVED_EXAMPLES]

    def as_dict(self) -> dict:
        return {
            "listed": self.listed,
            "kept": self.kept,
            "skipped": {reason.value: self.skipped.get(reason.value, 0) for reason in SkipReason},
            "skipped_total": sum(self.skipped.values()),
            "unmapped_category_examples": dict(self.unmapped_categories.most_common(_UNMAPPED_EXAMPLES)),
            "archived_by_class": dict(sorted(self.archived_classes.items())),
            "archived_examples": list(self.archived_examples),
        }


class CatalogBuilder:
    """Applies an index's filters and id / category rules to pages of listed objects."""

    def __init__(self, source: SourceConfig, id_rule: IdRule, category_rule: CategoryRule) -> None:
        self._extensions = frozenset(source.extensions)
        self._min_size = source.min_size_bytes
        self._max_size = source.max_size_bytes
        self._id_rule = id_rule
        self._category = category_rule
        # Extensions are [a-z0-9]+: spelled out in both cases, so that only ASCII letters fold (RE2's
        # ignore_case would also take the Kelvin sign for 'k').
        self._image_re = r"\.(?:" + "|".join(_any_ascii_case(ext) for ext in sorted(self._extensions)) + ")$"
        # The rules' regexes, for RE2 (Arrow): compiled here once, so that a pattern RE2 cannot run
        # stops the load before anything is listed.
        self._id_re2 = _compiled(id_rule.regex, "id_rule.regex") if id_rule.kind == "filename_digits" else None
        self._category_re2 = _compiled(category_rule.regex, "category_rule.regex") if category_rule.regex else None
        self.counts = CatalogCounts()

    def rows(self, objects: Sequence[ListedObject]) -> pa.RecordBatch:
        """One record batch of catalog rows for one page of listed objects (possibly empty).

        Every page, of one object or of thousands, takes the same path: filters, path segments,
        mappings and numbers with Arrow kernels, the rules' regexes with RE2 (linear in the key's
        length, whatever the pattern), hashes in one loop. tests/pipeline/oss/test_catalog_rules.py
        holds it to a slow object-by-object reference on random keys, rules and page sizes.
        """
        if not objects:
            return pa.RecordBatch.from_pylist([], schema=CATALOG_SCHEMA)
        return self._rows(objects)

    def _rows(self, objects: Sequence[ListedObject]) -> pa.RecordBatch:
        keys = [obj.key for obj in objects]
        key_array = pa.array(keys, pa.string())
        sizes = np.fromiter((obj.size for obj in objects), dtype=np.int64, count=len(keys))
        folder = pc.ends_with(key_array, "/").to_numpy(zero_copy_only=False)
        # "The file name's extension is listed (ASCII letters in any case)" is "the key ends with '.' +
        # a listed extension": extensions hold no '.' or '/'.
        image = pc.match_substring_regex(key_array, self._image_re).to_numpy(zero_copy_only=False)
        conditions = [folder, ~image, sizes == 0, sizes < self._min_size, sizes > self._max_size]
        # The usual page holds no archive class at all: one pass over the classes in C says so.
        archive_page = not ARCHIVE_CLASSES.isdisjoint(map(_STORAGE_CLASS, objects))
        if archive_page:
            conditions.append(np.fromiter(map(is_unreadable_archive, objects), dtype=bool, count=len(keys)))
        codes = np.select(conditions, list(range(1, len(conditions) + 1)), default=0)
        passed_mask = pa.array(codes == 0)
        passed = key_array.filter(passed_mask)
        row_ids, id_ok = self._id_arrays(passed)
        tokens = self._token_array(passed)
        cate_ids, cate_ok = self._category_arrays(tokens)
        unresolved = np.flatnonzero(id_ok & ~cate_ok).tolist()
        if unresolved and self._category.unmapped == "fail":  # the first one in page order stops the run
            self._resolve_category(passed[unresolved[0]].as_py(), tokens[unresolved[0]].as_py())

        skipped = self.counts.skipped
        if archive_page:
            self.counts.note_archived(objects[j] for j in np.flatnonzero(codes == _ARCHIVED_CODE).tolist())
        for code, count in enumerate(np.bincount(codes, minlength=len(_FILTER_CODES)).tolist()):
            if code and count:
                skipped[_FILTER_CODES[code].value] += count  # type: ignore[union-attr]
        bad_ids = int(np.count_nonzero(~id_ok))
        if bad_ids:
            skipped[SkipReason.BAD_ID.value] += bad_ids
        if unresolved:  # unmapped tokens: counted by name, then skipped or given the default id
            cate_ids, cate_ok = cate_ids.copy(), cate_ok.copy()  # may be read-only views of Arrow memory
            token_list = tokens.to_pylist()
            passed_keys = passed.to_pylist()
            for j in unresolved:
                cate_id = self._resolve_category(passed_keys[j], token_list[j])
                if cate_id is None:
                    skipped[SkipReason.UNMAPPED_CATEGORY.value] += 1
                else:
                    cate_ids[j], cate_ok[j] = cate_id, True
        kept = pa.array(id_ok & cate_ok)
        paths = pc.binary_join_element_wise("", passed.filter(kept), "/")
        etags = pa.array(list(map(_ETAG, objects)), pa.string()).filter(passed_mask).filter(kept)
        batch = pa.RecordBatch.from_arrays(
            [pa.array(row_ids).filter(kept), paths, pa.array(cate_ids).filter(kept), etags], schema=CATALOG_SCHEMA
        )
        self.counts.listed += len(keys)
        self.counts.kept += batch.num_rows
        return batch

    def _id_arrays(self, keys: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        """Row ids of ``keys`` and where they are valid: the stable hash of the key, or the digits of
        the first group of ``id_rule.regex`` searched in the file name, as a BIGINT."""
        if self._id_rule.kind == "hash":
            blake2b = hashlib.blake2b
            digests = b"".join([blake2b(key.encode("utf-8"), digest_size=8).digest() for key in keys.to_pylist()])
            ids = (np.frombuffer(digests, dtype=">u8") >> np.uint64(1)).astype(np.int64)
            return ids, np.ones(len(ids), dtype=bool)
        if self._id_rule.kind == "md5":
            md5 = hashlib.md5
            digests = b"".join([md5(key.encode("utf-8"), usedforsecurity=False).digest()[:8] for key in keys.to_pylist()])
            ids = (np.frombuffer(digests, dtype=">u8") & np.uint64(INT64_MAX)).astype(np.int64)
            return ids, np.ones(len(ids), dtype=bool)
        names = _last_part(keys, "/")  # key.rpartition("/")[2]
        return _parse_digits(pc.struct_field(pc.extract_regex(names, self._id_re2), [0]))

    def _token_array(self, keys: pa.StringArray) -> pa.StringArray:
        """Category tokens of ``keys`` (null: none): group 1 of ``category_rule.regex`` searched in the
        key, or ``key.split("/")[segment]`` where that part exists (a negative segment counts from the end)."""
        if self._category_re2 is not None:
            return pc.struct_field(pc.extract_regex(keys, self._category_re2), [0])
        index = self._category.segment if self._category.segment is not None else 0
        # A key of n bytes has at most n + 1 parts: a segment beyond that is no key's, whatever its size
        # (-2**31 or 10**20 must not reach Arrow's split as a count of splits).
        longest = pc.max(pc.binary_length(keys)).as_py() or 0
        if not -(longest + 1) <= index <= longest:
            return pa.nulls(len(keys), pa.string())
        # Splitting at most |index| + 1 times (from the end for a negative index) finds the same part.
        if index >= 0:
            parts = pc.split_pattern(keys, "/", max_splits=index + 1)
        else:
            parts = pc.split_pattern(keys, "/", max_splits=-index, reverse=True)
        counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        offsets = parts.offsets.to_numpy()
        present = counts > index if index >= 0 else counts >= -index
        where = (offsets[:-1] + index) if index >= 0 else (offsets[1:] + index)
        chosen = parts.values.take(pa.array(np.where(present, where, 0)))
        return pc.if_else(pa.array(present), chosen, pa.scalar(None, pa.string()))

    def _category_arrays(self, tokens: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        """Category ids of ``tokens`` by mapping or as numbers, and where one was found."""
        mapping = self._category.mapping
        if mapping is None:
            return _parse_digits(tokens)
        usable = {name: cate_id for name, cate_id in mapping.items() if name}  # an empty token is never looked up
        if not usable:  # nothing can match (e.g. a mapping of '' only): every token is unmapped
            return np.zeros(len(tokens), dtype=np.int64), np.zeros(len(tokens), dtype=bool)
        names = pa.array(list(usable), pa.string())
        values = np.array(list(usable.values()), dtype=np.int64)
        found = pc.fill_null(pc.index_in(tokens, value_set=names), -1).to_numpy(zero_copy_only=False)
        ok = found >= 0
        return values[np.where(ok, found, 0)], ok

    def batches(self, pages: Iterable[Sequence[ListedObject]]) -> Iterator[pa.RecordBatch]:
        """Stream catalog batches from pages of objects; empty batches are not yielded."""
        for page in pages:
            batch = self.rows(page)
            if batch.num_rows:
                yield batch

    def _resolve_category(self, key: str, token: str | None) -> int | None:
        rule = self._category
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


def gather_pages(pages: Iterable[Sequence[ListedObject]], at_least: int = BATCH_OBJECTS) -> Iterator[list[ListedObject]]:
    """Pages joined until each holds at least ``at_least`` objects (the last one may hold fewer).

    The vectorised rules pay a fixed cost per call (about 14 Arrow kernel calls): on 1,000-key pages
    that is most of the work, on 8,192 objects a small part of it. Memory stays bounded by ``at_least``.
    """
    pending: list[ListedObject] = []
    for page in pages:
        pending.extend(page)
        if len(pending) >= at_least:
            yield pending
            pending = []
    if pending:
        yield pending
