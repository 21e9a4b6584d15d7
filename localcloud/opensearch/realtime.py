"""The realtime layer: pushed documents over the live generation, as queries see them.

Why: documents pushed through the data plane (``POST /update/{instance}_{table}/actions/bulk``) become
searchable without a rebuild, as OpenSearch's realtime index makes them. A query must then see the
live generation *merged* with what was pushed: a pushed ``add`` replaces any document with its primary
key (new fields, new vector), a ``delete`` hides it (a tombstone over the generation), and neither
touches the generation's files.

How: a :class:`LayeredGeneration` is an immutable view, replaced as a whole (copy-on-write) each time
the push applier applies a batch, so a query reads one consistent state without holding a lock:

* the base generation (:class:`~localcloud.opensearch.search.LiveGeneration`, or None before any
  build) with the set of its rows that are hidden (deleted or replaced);
* pushed documents in an append-only store of rows (vectors in a growing float32 matrix, fields in a
  list) shared by successive views: a view sees the store's first ``n`` rows, and a newer view only
  appends, so older views stay valid. A replaced pushed row is hidden like a base row;
* ``primary key -> pushed row`` (None for a tombstone).

A vector query scores the base matrix and the pushed rows separately (asking each for ``k`` plus its
hidden rows, so hidden ones can be dropped and ``k`` remain), then merges: the cost stays one
matrix-vector product over the generation, whatever the layer holds. Row numbers (docids) are the
base's rows, then ``base size + i`` for pushed row ``i``; a docid means something in one view only,
as in :mod:`localcloud.opensearch.search`'s two-phase summaries.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from localcloud.opensearch.search import Generation, LiveGeneration
from localcloud.opensearch.vectorizer import DIMENSION, cosine_top_k

__all__ = ["Change", "LayeredGeneration", "apply_changes"]

_ABSENT = object()


@dataclass(frozen=True)
class Change:
    """One applied push: ``fields`` and ``vector`` for an add (the whole document), None for a delete."""

    seq: int
    pk: Any
    fields: Mapping[str, Any] | None = None
    vector: np.ndarray | None = None

    @property
    def is_delete(self) -> bool:
        return self.fields is None


class _Rows:
    """Append-only pushed rows. Views hold ``(store, n)``; only the newest view of a store appends."""

    def __init__(self, capacity: int = 64) -> None:
        self.vectors = np.empty((capacity, DIMENSION), np.float32)
        self.fields: list[Mapping[str, Any]] = []
        self.used = 0
        self.lock = threading.Lock()

    def extend_from(self, n: int) -> _Rows:
        """This store, if the view of its first ``n`` rows is its newest; else a copy of those rows."""
        with self.lock:
            if self.used == n:
                return self
        copy = _Rows(max(64, 2 * n))
        copy.vectors[:n] = self.vectors[:n]
        copy.fields = list(self.fields[:n])
        copy.used = n
        return copy

    def append(self, vector: np.ndarray, fields: Mapping[str, Any]) -> int:
        with self.lock:
            if self.used == self.vectors.shape[0]:  # grow: readers keep the old matrix, valid for their rows
                bigger = np.empty((2 * self.used, DIMENSION), np.float32)
                bigger[: self.used] = self.vectors[: self.used]
                self.vectors = bigger
            self.vectors[self.used] = vector
            self.fields.append(dict(fields))
            self.used += 1
            return self.used - 1


class LayeredGeneration:
    """The live generation (or none) with pushed changes over it; see the module docstring."""

    def __init__(self, base: LiveGeneration | None, rows: _Rows, n: int, base_hidden: frozenset[int],
                 pushed_hidden: frozenset[int], pushed: Mapping[Any, int | None]) -> None:
        self.base = base
        self._rows, self._n = rows, n
        self._base_size = base.size if base is not None else 0
        self._base_hidden, self._pushed_hidden = base_hidden, pushed_hidden
        self._pushed = pushed  # primary key -> pushed row, or None: deleted

    @property
    def generation_id(self) -> int | None:
        return self.base.generation_id if self.base is not None else None

    @property
    def size(self) -> int:
        return self._base_size - len(self._base_hidden) + self._n - len(self._pushed_hidden)

    @property
    def pushed_documents(self) -> int:
        """Documents the layer holds (pushed and not deleted since)."""
        return sum(1 for row in self._pushed.values() if row is not None)

    @property
    def tombstones(self) -> int:
        return sum(1 for row in self._pushed.values() if row is None)

    def top_k(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        if self.base is not None and self._base_size:
            parts.append(_visible(*self.base.top_k(query, k + len(self._base_hidden)), self._base_hidden))
        if self._n:
            rows, scores = _visible(*cosine_top_k(self._rows.vectors[: self._n], query, k + len(self._pushed_hidden)),
                                    self._pushed_hidden)
            parts.append((rows + self._base_size, scores))
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows = np.concatenate([p[0] for p in parts]).astype(np.int64, copy=False)
        scores = np.concatenate([p[1] for p in parts])
        order = np.lexsort((rows, -scores))[:k]  # best first; ties: the lower row, as cosine_top_k breaks them
        return rows[order], scores[order]

    def fields(self, row: int) -> dict[str, Any]:
        if row < self._base_size:
            assert self.base is not None
            return self.base.fields(row)
        return dict(self._rows.fields[row - self._base_size])

    def row_of(self, primary_key: str, value: Any) -> int | None:
        row = self._pushed.get(value, _ABSENT)
        if row is _ABSENT:
            return self.base.row_of(primary_key, value) if self.base is not None else None
        return None if row is None else self._base_size + int(row)  # type: ignore[call-overload]

    @property
    def columns(self) -> dict[str, list[Any]]:
        """Stored fields by row, hidden rows included (row numbers are docids), as LiveGeneration has them."""
        pushed = self._rows.fields[: self._n]
        names = list(self.base.columns) if self.base is not None else list(pushed[0]) if pushed else []
        base = self.base.columns if self.base is not None else {}
        return {name: list(base.get(name, [None] * self._base_size)) + [f.get(name) for f in pushed]
                for name in names}


def _visible(rows: np.ndarray, scores: np.ndarray, hidden: frozenset[int]) -> tuple[np.ndarray, np.ndarray]:
    if not hidden:
        return rows, scores
    keep = np.fromiter((int(r) not in hidden for r in rows), bool, len(rows))
    return rows[keep], scores[keep]


def apply_changes(live: Generation | None, changes: Sequence[Change], primary_key: str) -> Generation | None:
    """A new view: ``live`` with ``changes`` applied in order (``live`` itself is not changed). Applying the
    same changes again gives the same documents: adds and deletes are idempotent."""
    if not changes:
        return live
    if isinstance(live, LayeredGeneration):
        base, rows = live.base, live._rows.extend_from(live._n)  # noqa: SLF001 - this module's own class
        n, base_hidden = live._n, set(live._base_hidden)  # noqa: SLF001
        pushed_hidden, pushed = set(live._pushed_hidden), dict(live._pushed)  # noqa: SLF001
    else:
        assert live is None or isinstance(live, LiveGeneration), type(live)
        base, rows, n, base_hidden, pushed_hidden, pushed = live, _Rows(), 0, set(), set(), {}
    for change in changes:
        before = pushed.get(change.pk, _ABSENT)
        if before is _ABSENT:
            row = base.row_of(primary_key, change.pk) if base is not None else None
            if row is not None:
                base_hidden.add(row)
        elif before is not None:
            pushed_hidden.add(int(before))  # type: ignore[call-overload]
        if change.is_delete:
            pushed[change.pk] = None
        else:
            assert change.vector is not None and change.fields is not None
            index = rows.append(change.vector, change.fields)
            assert index == n, "two writers appended to one store of pushed rows"
            pushed[change.pk], n = index, index + 1
    return LayeredGeneration(base, rows, n, frozenset(base_hidden), frozenset(pushed_hidden), pushed)
