"""Generated buckets of the local OSS server: millions of computed keys without one file per key.

Why: benchmarks and large-listing tests need buckets far bigger than a test machine's disk should
hold. A :class:`GeneratedBucket` serves computed keys (``p037/000123456.jpg``) read-only: ListObjects
v1/v2 (prefix, delimiter, marker / start-after / continuation-token, max-keys, encoding-type),
HeadObject and GetObject (a deterministic body of the listed size); a page costs O(page size +
folders), not O(bucket). ``archive_every`` puts every n-th key in an archive class (its GetObject
answers 403 InvalidObjectState, see :mod:`localcloud.oss.archive`). PutObject, DeleteObject and
RestoreObject on it answer ``AccessDenied`` (see :mod:`localcloud.oss.server`, which serves it next
to the folder buckets).
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass
from typing import Iterator

from localcloud.oss.protocol import BUCKET_RE, ListedObject, ListPage, common_prefix_of

__all__ = ["GeneratedBucket"]

_GOLDEN = 0x9E3779B97F4A7C15  # multiplier of a cheap, deterministic integer hash (Fibonacci hashing)
_BODY_BLOCK = hashlib.sha256(b"local-oss-generated-body").digest() * 128  # 4 KiB repeated in bodies


@dataclass(frozen=True)
class _KeyGroup:
    """Keys ``prefix + f"{first + i:0{digits}d}" + suffix`` for ``i`` in ``range(count)``, in key order."""

    prefix: str
    first: int
    count: int
    digits: int
    suffix: str

    def key(self, i: int) -> str:
        return f"{self.prefix}{self.first + i:0{self.digits}d}{self.suffix}"

    def span_with_prefix(self, prefix: str) -> tuple[int, int]:
        """The index range ``[lo, hi)`` of this group's keys that start with ``prefix`` (arithmetic)."""
        if self.prefix.startswith(prefix):
            return 0, self.count
        if not prefix.startswith(self.prefix):
            return 0, 0
        rest = prefix[len(self.prefix) :]
        head, tail = rest[: self.digits], rest[self.digits :]
        if not (head.isascii() and head.isdigit()) or not self.suffix.startswith(tail):
            return 0, 0
        scale = 10 ** (self.digits - len(head))
        lo, hi = int(head) * scale - self.first, (int(head) + 1) * scale - self.first
        return max(lo, 0), min(hi, self.count)

    def index_of(self, key: str) -> int | None:
        """The index of ``key`` in this group, or None when the group does not hold it."""
        if not key.startswith(self.prefix) or not key.endswith(self.suffix):
            return None
        number = key[len(self.prefix) : len(key) - len(self.suffix)]
        if len(number) != self.digits or not (number.isascii() and number.isdigit()):
            return None
        index = int(number) - self.first
        return index if 0 <= index < self.count else None


def _after_prefix(common: str) -> str:
    """The smallest string greater than every string starting with ``common`` (non-empty)."""
    return common[:-1] + chr(ord(common[-1]) + 1)


@dataclass(frozen=True)
class GeneratedBucket:
    """A read-only bucket whose keys are computed, not stored: large listings on a small machine.

    Layout: ``prefixes`` folders named ``prefix_format.format(i)`` (``p000/`` ...) holding
    ``keys_per_prefix`` keys each, plus ``flat_keys`` keys directly under ``flat_prefix`` (``flat/``).
    Keys look like ``p037/000123456.jpg``; the numbers are unique across the bucket, so a
    ``filename_digits`` id rule gives distinct ids. Sizes, ETags and bodies derive from the key's number
    and ``seed``; every object has the same modification time. A listing page is computed by
    arithmetic and bisection over the sorted key space: O(page size + folders), never O(bucket).
    """

    name: str
    prefixes: int = 64
    keys_per_prefix: int = 1000
    flat_keys: int = 0
    prefix_format: str = "p{:03d}/"
    flat_prefix: str = "flat/"
    digits: int = 9
    extension: str = "jpg"
    min_size: int = 1024
    max_size: int = 256 * 1024
    seed: int = 0
    mtime: float = 1767225600.0  # 2026-01-01T00:00:00Z
    archive_every: int = 0  # > 0: keys numbered n with n % archive_every == archive_every - 1 are archived

    def __post_init__(self) -> None:
        if not BUCKET_RE.match(self.name):
            raise ValueError(f"generated bucket name {self.name!r} breaks the OSS bucket naming rules")
        if min(self.prefixes, self.keys_per_prefix, self.flat_keys, self.archive_every) < 0 or not 1 <= self.digits <= 18:
            raise ValueError("generated bucket: counts must be >= 0 and digits 1..18")
        if not 0 <= self.min_size <= self.max_size:
            raise ValueError("generated bucket: need 0 <= min_size <= max_size")
        if self.prefixes * self.keys_per_prefix + self.flat_keys > 10**self.digits:
            raise ValueError(f"generated bucket: {self.digits} digits cannot number that many keys")
        names = [group.prefix for group in self.groups]
        for a in names:
            for b in names:
                if a != b and b.startswith(a):
                    raise ValueError(f"generated bucket: folder {b!r} lies inside folder {a!r}")
        if len(set(names)) != len(names):
            raise ValueError("generated bucket: folder names repeat")

    @classmethod
    def parse(cls, spec: str) -> GeneratedBucket:
        """``name=bench,prefixes=64,keys_per_prefix=15625,flat_keys=200000`` (the CLI's --generated)."""
        fields: dict[str, object] = {}
        ints = {"prefixes", "keys_per_prefix", "flat_keys", "digits", "min_size", "max_size", "seed", "archive_every"}
        for part in spec.split(","):
            name, sep, value = part.partition("=")
            name = name.strip()
            if not sep or name not in cls.__dataclass_fields__:
                raise ValueError(f"generated bucket spec {spec!r}: {part!r} is not one of name=value "
                                 f"with name in {sorted(cls.__dataclass_fields__)}")
            fields[name] = int(value) if name in ints else float(value) if name == "mtime" else value.strip()
        if "name" not in fields:
            raise ValueError(f"generated bucket spec {spec!r} needs name=<bucket>")
        return cls(**fields)  # type: ignore[arg-type]

    @property
    def total_keys(self) -> int:
        return self.prefixes * self.keys_per_prefix + self.flat_keys

    @property
    def groups(self) -> list[_KeyGroup]:
        """The key groups in key order (cached: the dataclass is frozen)."""
        cached = self.__dict__.get("_groups")
        if cached is None:
            suffix = "." + self.extension if self.extension else ""
            groups = [
                _KeyGroup(self.prefix_format.format(i), i * self.keys_per_prefix, self.keys_per_prefix, self.digits, suffix)
                for i in range(self.prefixes)
                if self.keys_per_prefix
            ]
            if self.flat_keys:
                groups.append(_KeyGroup(self.flat_prefix, self.prefixes * self.keys_per_prefix, self.flat_keys, self.digits, suffix))
            cached = sorted(groups, key=lambda g: g.prefix)
            object.__setattr__(self, "_groups", cached)
        return cached

    def keys(self) -> Iterator[str]:
        """Every key in listing order (for tests and small buckets)."""
        for group in self.groups:
            for i in range(group.count):
                yield group.key(i)

    def objects(self, prefix: str = "") -> Iterator[tuple[str, int, float, str, str]]:
        """``(key, size, mtime, etag, storage class)`` of every key starting with ``prefix``, in key
        order, computed one at a time (constant memory; an inventory of 10M keys streams from here)."""
        for group in self.groups:
            lo, hi = group.span_with_prefix(prefix)
            for i in range(lo, hi):
                number = group.first + i
                yield group.key(i), self.size_of(number), self.mtime, self.etag_of(number), self.storage_class_of(number)

    def size_of(self, number: int) -> int:
        span = self.max_size - self.min_size + 1
        return self.min_size + ((number * _GOLDEN + self.seed) >> 16) % span

    def storage_class_of(self, number: int) -> str:
        """Every ``archive_every``-th key is archived, in turn Archive, ColdArchive, DeepColdArchive; the
        bucket is read-only, so they can never be restored (RestoreObject answers AccessDenied)."""
        if self.archive_every and number % self.archive_every == self.archive_every - 1:
            return ("Archive", "ColdArchive", "DeepColdArchive")[number // self.archive_every % 3]
        return "Standard"

    def etag_of(self, number: int) -> str:
        return '"%032X"' % (((number + self.seed) * _GOLDEN * _GOLDEN) & ((1 << 128) - 1))

    def lookup(self, key: str) -> tuple[int, int] | None:
        """``(number, size)`` of ``key``, or None when the bucket has no such key."""
        for group in self.groups:
            index = group.index_of(key)
            if index is not None:
                number = group.first + index
                return number, self.size_of(number)
        return None

    def body(self, number: int, start: int, length: int) -> Iterator[bytes]:
        """``length`` bytes of the object's content from ``start``: a seeded block, rotated per key."""
        block = _BODY_BLOCK
        offset = (start + number * 7) % len(block)
        while length > 0:
            chunk = block[offset : offset + length]
            length -= len(chunk)
            offset = 0
            yield chunk

    def list_page(self, prefix: str, delimiter: str, after: str, max_keys: int) -> ListPage:
        """One ListObjects page, with the same semantics as a folder bucket's."""
        objects: list[ListedObject] = []
        prefixes: list[str] = []
        count = 0
        truncated = False
        last: str | None = None
        rolled: str | None = None  # the common prefix just returned: its other keys are skipped
        for group in self.groups:
            lo, hi = group.span_with_prefix(prefix)
            if after and lo < hi:
                lo = bisect.bisect_right(range(group.count), after, lo, hi, key=group.key)
            i = lo
            while i < hi:
                key = group.key(i)
                common = common_prefix_of(key, prefix, delimiter)
                if common is not None:
                    if common == rolled or common <= after:
                        # Jump over the rest of this common prefix inside the group.
                        i = bisect.bisect_left(range(group.count), _after_prefix(common), i + 1, hi, key=group.key)
                        continue
                    if count >= max_keys:
                        truncated = True
                        break
                    prefixes.append(common)
                    rolled = last = common
                    count += 1
                    i = bisect.bisect_left(range(group.count), _after_prefix(common), i + 1, hi, key=group.key)
                    continue
                if count >= max_keys:
                    truncated = True
                    break
                number = group.first + i
                objects.append(
                    ListedObject(key, self.size_of(number), self.mtime, self.etag_of(number), self.storage_class_of(number))
                )
                last = key
                count += 1
                i += 1
            if truncated:
                break
        return ListPage(objects, prefixes, truncated, last)
