"""Progress of long listings, logged at a steady interval: keys listed, rows kept, skipped, keys/s.

A nightly listing of millions of keys runs for minutes; its log should show it moving (and how fast)
without a line per page. :class:`ListingProgress` wraps the stream of pages and logs at most once
per ``interval_s`` (checked as pages arrive), plus one summary line at the end. The clock is
injectable, so tests drive it without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TypeVar

from pipeline.oss.catalog import CatalogCounts

log = logging.getLogger(__name__)

P = TypeVar("P", bound=Sized)

DEFAULT_INTERVAL_S = 30.0


class ListingProgress:
    """Counts pages of a listing and logs progress every ``interval_s`` seconds of ``clock``.

    ``counts`` (the catalog builder's) supplies rows kept and skipped; without it only keys are shown.
    """

    def __init__(
        self,
        what: str,
        counts: CatalogCounts | None = None,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.what = what
        self.counts = counts
        self.interval_s = interval_s
        self._clock = clock
        self._log = logger or log
        self.keys = 0
        self.pages = 0
        self.lines = 0
        self._started: float | None = None
        self._last_time = 0.0
        self._last_keys = 0

    def start(self) -> None:
        self._started = self._last_time = self._clock()
        self._last_keys = 0

    def add(self, keys: int) -> None:
        """Record a page of ``keys`` objects; log if an interval has passed since the last line."""
        if self._started is None:
            self.start()
        self.keys += keys
        self.pages += 1
        now = self._clock()
        if now - self._last_time >= self.interval_s:
            self._line(now)

    def track(self, pages: Iterable[P]) -> Iterator[P]:
        """Yield ``pages`` unchanged, counting each once the consumer has taken it; log the summary
        when the stream ends (not when it fails: the error says enough)."""
        self.start()
        for page in pages:
            yield page  # the consumer (the catalog builder) processes the page before we count it
            self.add(len(page))
        self.finish()

    def finish(self) -> None:
        now = self._clock()
        elapsed = now - (self._started if self._started is not None else now)
        kept, skipped = self._rows()
        self._log.info(
            "listing %s done: %d keys listed, %s rows kept, %s skipped in %.1f s (%.0f keys/s)",
            self.what, self.keys, kept, skipped, elapsed, self.keys / elapsed if elapsed > 0 else 0.0,
        )

    def _rows(self) -> tuple[int | str, int | str]:
        if self.counts is None:
            return "-", "-"
        return self.counts.kept, sum(self.counts.skipped.values())

    def _line(self, now: float) -> None:
        assert self._started is not None
        elapsed = now - self._started
        window = now - self._last_time
        kept, skipped = self._rows()
        self._log.info(
            "listing %s: %d keys listed, %s rows kept, %s skipped, %.0f keys/s (%.0f keys/s in the last %.0f s)",
            self.what, self.keys, kept, skipped,
            self.keys / elapsed if elapsed > 0 else 0.0,
            (self.keys - self._last_keys) / window if window > 0 else 0.0,
            window,
        )
        self.lines += 1
        self._last_time = now
        self._last_keys = self.keys
