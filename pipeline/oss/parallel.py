"""Parallel OSS listing: fan out by common prefixes, split large flat prefixes by key range.

One listing of a prefix is a chain of requests, each waiting a round trip for the previous one's
continuation token: 10 million keys are 10,000 round trips, about an hour at 0.3 s each. Here a
bounded pool of workers lists disjoint key ranges at once over one shared oss2 session; pages flow to
the consumer through a bounded queue, so memory stays flat however large the bucket is.

Work units
    *Discover*: one ``delimiter='/'`` page of a prefix. Its objects (keys directly under the prefix)
    are emitted as a page of their own, exactly once; each run of consecutive common prefixes becomes
    one *range*, remembering the common prefixes inside it as split points. A truncated page is
    continued by another discovery (its token), or, when it held no common prefix (a flat folder),
    by a range starting right after its last key.

    *Range*: the keys ``lo <= key < hi`` of a prefix, listed without a delimiter through
    :meth:`OssLister.iter_pages` (so every page is retried and resumed from its own token). ``lo`` is
    inclusive and ``hi`` exclusive, so splitting ``[lo, hi)`` at any string ``s`` gives ``[lo, s)`` and
    ``[s, hi)``: no gap, no overlap, whether or not ``s`` is a key. OSS takes only an exclusive
    ``start_after``; a range asks for ``start_after=_just_below(lo)`` and drops keys below ``lo``.
    A range ends at ``hi`` or where OSS says the listing ends (``IsTruncated`` false), never at a short
    page: OSS may answer fewer keys than ``max-keys``, or none, and still have more.

Adaptive splitting
    Ranges are not cut up front (we would have to list a prefix to know where its keys are). Instead,
    whenever workers are idle and no work is queued, a busy worker cuts the rest of its range into
    parts for them, keeps the first and queues the others: at known common prefixes if its range
    holds several (exact, before any request), otherwise at strings extrapolated from the keys it
    just listed (:func:`guess_split_points`). How far to reach is itself a guess: as many pages as
    this run of keys has shown so far (at least eight), in parts of about four pages, so a long flat
    prefix fans out in a few rounds while a short tail wastes a request or two; near ``hi`` the rest is
    cut evenly. A bad guess only costs balance (an empty part is one request), never correctness;
    rests estimated below ``min_split_keys`` are not split.

Shutdown
    The first error in any worker stops all of them and is raised to the consumer; a consumer that
    stops early (closes the generator, or raises) stops and joins the workers. No thread outlives
    :meth:`ParallelLister.iter_objects`.
"""

from __future__ import annotations

import bisect
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from pipeline.oss.catalog import ListedObject
from pipeline.oss.pages import MAX_PAGE_SIZE, KeyRange, OssLister

log = logging.getLogger(__name__)

#: Default workers per listing. Each worker has at most one request in flight, so a listing sends at
#: most ``concurrency / round-trip`` requests per second: 16 workers at 0.1-0.3 s per page are 50-160
#: requests/s, under a tenth of what OSS sustains for sequential key names (about 2,000/s), which
#: leaves room for retries and for other indexes listing at the same time. One process handles a
#: page in about 3.6 ms of CPU under the GIL, so it could drive more, up to ~250 pages/s; raise it
#: per index when the round trip is long (see BENCHMARKS.md).
DEFAULT_CONCURRENCY = 16
#: Upper bound accepted by the config: beyond it one process is CPU-bound and OSS limits come close.
MAX_CONCURRENCY = 128

_STOP_POLL_S = 0.1
_JOIN_TIMEOUT_S = 60.0
_BELOW_PAD = "\ufffd"  # a valid BMP character that sorts above nearly every character used in keys


class PageSource(Protocol):
    """What ``load_partition`` needs from a lister (``OssLister`` and ``ParallelLister`` both are)."""

    pages_listed: int

    def iter_objects(self, prefixes: list[str]) -> Iterator[list[ListedObject]]: ...


#: ``(page_keys, hi, ahead_keys, min_split_keys, pieces) -> ascending split points in (page_keys[-1], hi)``
SplitPoints = Callable[[Sequence[str], "str | None", int, int, int], "list[str]"]


class _Stopped(Exception):
    """Raised inside a worker when the listing is being shut down."""


@dataclass(frozen=True)
class _Task:
    """A discovery page (``token``) or a key range ``[lo, hi)`` of ``prefix``."""

    kind: str  # "discover" | "range"
    prefix: str
    lo: str = ""
    hi: str | None = None
    token: str = ""
    boundaries: tuple[str, ...] = ()  # common prefixes strictly inside (lo, hi): exact split points
    known_pages: int = 0  # full pages known to come before this range in the same run of keys


@dataclass
class _Run:
    """The shared state of one ``iter_objects`` call."""

    concurrency: int
    out: queue.Queue
    cond: threading.Condition = field(default_factory=threading.Condition)
    discover: deque = field(default_factory=deque)
    ranges: deque = field(default_factory=deque)
    active: int = 0
    stop: bool = False
    error: BaseException | None = None
    live_workers: int = 0


def _just_below(s: str) -> str:
    """A ``start_after`` for "keys >= s": nothing but keys below ``s`` that start with a rare
    character sequence can lie between it and ``s`` (they are dropped by the client)."""
    if not s:
        return ""
    if s.endswith("\x00"):
        return s[:-1]  # exact: no string lies strictly between t and t + "\x00"
    code = ord(s[-1]) - 1
    if 0xD800 <= code <= 0xDFFF:  # surrogates cannot be encoded
        code = 0xD7FF
    return s[:-1] + chr(code) + _BELOW_PAD


def _after_prefix(common: str) -> str:
    """The smallest string above every string starting with ``common``: ``[common, this)`` is its subtree."""
    return common[:-1] + chr(ord(common[-1]) + 1)


def _first_difference(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    i = 0
    while i < limit and a[i] == b[i]:
        i += 1
    return i


def guess_split_points(
    keys: Sequence[str], hi: str | None, ahead_keys: int, min_split_keys: int, pieces: int
) -> list[str]:
    """Up to ``pieces`` ascending strings strictly between ``keys[-1]`` and ``hi`` that cut the next
    ``ahead_keys`` keys of a range into ``pieces + 1`` parts (empty when the rest looks too small).

    ``keys`` are the latest keys listed (sorted; about a page of them, gathered over short pages if
    need be). Strings are read as numbers whose digits are the characters seen in those keys (and in
    ``hi``), so keys like ``000123.jpg`` are measured in decimal-like steps rather than in Unicode code
    points, and the keys give the density.
    When ``hi`` is nearer than ``ahead_keys``, ``(keys[-1], hi)`` is cut evenly instead. The caller
    gives the last part everything up to ``hi`` (or to the end of the prefix). Any answer is safe: a
    poor one costs balance (an empty part is one request), never correctness.
    """
    if len(keys) < 2 or pieces < 1:
        return []
    first, pos = keys[0], keys[-1]
    page_diff = _first_difference(first, pos)
    start = max(0, page_diff - 8)  # room for carries
    if hi is not None:
        start = min(start, _first_difference(pos, hi))  # nothing before this can change
    width = min(max(len(pos), len(hi or "")) - start, 24)
    if width <= 0 or page_diff >= start + width:
        return []
    chars: set[str] = set()
    for key in keys:
        chars.update(key[start : start + width])
    if hi is not None:
        chars.update(hi[start : start + width])
    alphabet = sorted(chars)
    base = len(alphabet)
    if base < 2:
        return []
    rank = {ch: i for i, ch in enumerate(alphabet)}

    def value(s: str) -> int:
        v = 0
        for i in range(start, start + width):
            v = v * base + (rank[s[i]] if i < len(s) else 0)
        return v

    def string(v: int) -> str:
        digits = []
        for _ in range(width):
            v, d = divmod(v, base)
            digits.append(alphabet[d])
        full = pos[:start] + "".join(reversed(digits))
        trimmed = full.rstrip(alphabet[0])  # same place in the order, unless it now falls short
        return trimmed if trimmed > pos else full

    v_pos = value(pos)
    density = (v_pos - value(first)) / (len(keys) - 1)  # value units per key
    if density <= 0:
        return []
    step = max(int(density * max(ahead_keys, min_split_keys) / (pieces + 1)), 1)
    if hi is not None:
        v_hi = value(hi)
        rest = v_hi - v_pos
        if rest / density < min_split_keys:
            return []
        if rest <= step * (pieces + 1):
            step = max(rest // (pieces + 1), 1)
    top = v_hi if hi is not None else base**width
    points: list[str] = []
    for i in range(1, pieces + 1):
        target = v_pos + step * i
        if target >= top:
            break
        point = string(target)
        if point <= (points[-1] if points else pos) or (hi is not None and point >= hi):
            break
        points.append(point)
    return points


class ParallelLister:
    """Lists prefixes with ``concurrency`` workers over one :class:`OssLister` (and its oss2 session).

    Same interface as :class:`OssLister` for ``load_partition``: ``iter_objects(prefixes)`` yields
    pages of :class:`ListedObject` (in no particular order across pages; the set of objects equals a
    sequential listing's) and ``pages_listed`` counts requests that returned a page.
    """

    def __init__(
        self,
        lister: OssLister,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        pages_in_flight: int | None = None,
        min_split_keys: int = 2 * MAX_PAGE_SIZE,
        split_points: SplitPoints = guess_split_points,
    ) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be 1..{MAX_CONCURRENCY}, got {concurrency}")
        self._lister = lister
        self.concurrency = concurrency
        self.pages_in_flight = pages_in_flight or 2 * concurrency
        if self.pages_in_flight < 1:
            raise ValueError("pages_in_flight must be >= 1")
        self._min_split_keys = min_split_keys
        self._split_points = split_points
        self.keys_listed = 0
        self.ranges_split = 0
        self.tasks_run = 0

    @property
    def pages_listed(self) -> int:
        return self._lister.pages_listed

    def iter_objects(self, prefixes: list[str]) -> Iterator[list[ListedObject]]:
        """Pages of every object under ``prefixes`` (which must not overlap), listed in parallel."""
        run = _Run(self.concurrency, queue.Queue(maxsize=self.pages_in_flight))
        for prefix in dict.fromkeys(prefixes):
            log.info("listing oss://%s/%s with %d workers", self._lister.bucket_name, prefix, self.concurrency)
            run.discover.append(_Task("discover", prefix))
        threads = [
            threading.Thread(target=self._worker, args=(run,), name=f"oss-list-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        run.live_workers = len(threads)
        for thread in threads:
            thread.start()
        try:
            while True:
                item = run.out.get()
                if run.error is not None:
                    raise run.error
                if item is None:  # the last worker's sentinel
                    return
                self.keys_listed += len(item)
                yield item
        finally:
            self._shutdown(run, threads)

    # -- workers ------------------------------------------------------------------------------------

    def _worker(self, run: _Run) -> None:
        try:
            while True:
                with run.cond:
                    while not run.stop and not run.discover and not run.ranges and run.active:
                        run.cond.wait()
                    if run.stop or (not run.discover and not run.ranges):
                        return  # stopped, or nothing queued and nobody left to queue more: done
                    task = self._take(run)
                    run.active += 1
                    self.tasks_run += 1
                try:
                    if task.kind == "discover":
                        self._discover(run, task)
                    else:
                        self._list_range(run, task)
                except _Stopped:
                    return
                except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which raises it
                    with run.cond:
                        if run.error is None:
                            run.error = exc
                        run.stop = True
                        run.cond.notify_all()
                    return
                finally:
                    with run.cond:
                        run.active -= 1
                        run.cond.notify_all()
        finally:
            with run.cond:
                run.live_workers -= 1
                last = run.live_workers == 0
                run.cond.notify_all()
            if last:
                self._put(run, None, final=True)

    @staticmethod
    def _take(run: _Run) -> _Task:
        # Discovery feeds the ranges; once enough ranges wait, list them first so the queue of
        # pending work (and its memory) stays bounded by the fan-out of one discovery page.
        if run.discover and len(run.ranges) < run.concurrency:
            return run.discover.popleft()
        return run.ranges.popleft()

    def _queue(self, run: _Run, task: _Task) -> None:
        with run.cond:
            (run.discover if task.kind == "discover" else run.ranges).append(task)
            run.cond.notify()

    def _put(self, run: _Run, item: list[ListedObject] | None, final: bool = False) -> None:
        """Hand a page to the consumer, waiting while the queue is full; give up when stopping."""
        while True:
            if run.stop and not final:
                raise _Stopped
            try:
                run.out.put(item, timeout=_STOP_POLL_S)
                return
            except queue.Full:
                if final and run.stop:
                    return  # the consumer is gone (it stopped us): nobody waits for the sentinel

    @staticmethod
    def _idle_workers(run: _Run) -> int:
        """Workers that would find nothing to do: split work for them (0 while work is queued)."""
        with run.cond:
            if run.stop or run.ranges or run.discover:
                return 0
            return run.concurrency - run.active

    def _discover(self, run: _Run, task: _Task) -> None:
        page = self._lister.list_delimited(task.prefix, token=task.token)
        if page.objects:
            self._put(run, page.objects)
        # Runs of consecutive common prefixes (no object between them) become one range each.
        object_keys = [obj.key for obj in page.objects]
        runs: list[list[str]] = []
        previous_slot = -1
        for common in page.prefixes:
            slot = bisect.bisect_left(object_keys, common)  # objects sorting before this prefix
            if runs and slot == previous_slot:
                runs[-1].append(common)
            else:
                runs.append([common])
            previous_slot = slot
        for group in runs:
            self._queue(run, _Task("range", task.prefix, group[0], _after_prefix(group[-1]), boundaries=tuple(group[1:])))
        if page.is_truncated:
            if page.prefixes or not page.objects:
                # More common prefixes may follow; an empty page (legal while truncated) says nothing yet.
                self._queue(run, replace(task, token=page.next_token))
            else:
                # Only objects so far (a flat folder, it seems): continue as a range, which can be split,
                # right after the last key. Any common prefix further on is listed inside that range.
                self._queue(run, _Task("range", task.prefix, object_keys[-1] + "\x00", known_pages=1))

    def _split(self, run: _Run, task: _Task, points: Sequence[str], known: Sequence[int] = ()) -> _Task:
        """Queue ``[p1, p2) ... [pn, hi)`` and return the task narrowed to ``[lo, p1)``.

        ``known``: for each part, the full pages estimated to precede it in the same run of keys.
        """
        edges = [*points, task.hi]
        for i, (at, until) in enumerate(zip(points, edges[1:])):
            upper = _Task(
                "range",
                task.prefix,
                at,
                until,
                boundaries=tuple(b for b in task.boundaries if b > at and (until is None or b < until)),
                known_pages=known[i] if known else 0,
            )
            self._queue(run, upper)
        with run.cond:
            self.ranges_split += 1
        log.debug("split %r [%r, %r) at %r", task.prefix, task.lo, task.hi, list(points))
        return replace(task, hi=points[0], boundaries=tuple(b for b in task.boundaries if b < points[0]))

    def _maybe_split(self, run: _Run, task: _Task, pos: str, page_keys: Sequence[str], pages_done: int = 0) -> _Task:
        """Split the rest of ``task`` (keys above ``pos``) for idle workers, if there are any.

        ``page_keys``: the latest keys listed (about a page); ``pages_done``: keys listed in this task so
        far, in pages of ``page_size`` (pages may be short: their count says nothing).
        """
        idle = self._idle_workers(run)
        if not idle:
            return task
        candidates = [b for b in task.boundaries if b > pos]
        if candidates:  # known common prefixes: exact, and no guessing
            # The rest is len(candidates) + 1 sub-trees (the one being listed, then one per
            # candidate): cut it into (at most) idle + 1 parts of about as many sub-trees each.
            parts = min(idle, len(candidates)) + 1
            points = [candidates[(i * (len(candidates) + 1)) // parts - 1] for i in range(1, parts)]
            return self._split(run, task, sorted(set(points)))
        if len(page_keys) < 2:
            return task
        # How far the rest reaches is a guess: as far as the keys seen so far in this run of keys
        # (at least 8 pages), in parts of about 4 pages. Parts past the end are empty: one request
        # each, made by a worker that was idle anyway.
        seen = task.known_pages + pages_done
        ahead = max(8, seen)
        pieces = min(idle, max(1, ahead // 4))
        points = self._split_points(page_keys, task.hi, ahead * self._lister.page_size, self._min_split_keys, pieces)
        previous = pos
        for point in points:
            if not (point > previous and (task.hi is None or point < task.hi)):
                raise ValueError(f"split points {points!r} are not ascending inside ({pos!r}, {task.hi!r})")
            previous = point
        known = [seen + ahead * (i + 1) // (len(points) + 1) for i in range(len(points))]
        return self._split(run, task, points, known) if points else task

    def _list_range(self, run: _Run, task: _Task) -> None:
        if task.boundaries:  # known common prefixes split a range before any request is made
            task = self._maybe_split(run, task, task.lo, ())
        # iter_pages follows IsTruncated and continuation tokens, whatever a page's length: OSS may
        # answer fewer keys than max-keys, even none, and still have more. The page length says nothing.
        pages = self._lister.iter_pages(KeyRange(task.prefix, _just_below(task.lo)))
        page_size = self._lister.page_size
        recent: list[str] = []  # about a page of the latest keys: split guesses read the key density there
        keys_done = 0
        below_lo = True  # keys between _just_below(lo) and lo come first, possibly over several short pages
        try:
            for raw in pages:
                page = raw
                if below_lo:
                    if page[0].key < task.lo:
                        page = [obj for obj in page if obj.key >= task.lo]
                    below_lo = not page
                done = task.hi is not None and bool(page) and page[-1].key >= task.hi
                if done:
                    page = [obj for obj in page if obj.key < task.hi]  # type: ignore[operator]
                if page:
                    self._put(run, page)
                if done:
                    return
                keys = [obj.key for obj in raw]
                recent = keys if len(keys) >= page_size else (recent + keys)[-page_size:]
                keys_done += len(keys)
                task = self._maybe_split(run, task, keys[-1], recent, keys_done // page_size)
        finally:
            pages.close()

    # -- shutdown -----------------------------------------------------------------------------------

    def _shutdown(self, run: _Run, threads: list[threading.Thread]) -> None:
        with run.cond:
            run.stop = True
            run.cond.notify_all()
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for thread in threads:
            while thread.is_alive() and time.monotonic() < deadline:
                try:  # unblock workers waiting to hand over a page
                    while True:
                        run.out.get_nowait()
                except queue.Empty:
                    pass
                thread.join(timeout=_STOP_POLL_S)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            log.warning("listing workers %s did not stop within %.0f s; they are daemon threads", alive, _JOIN_TIMEOUT_S)
