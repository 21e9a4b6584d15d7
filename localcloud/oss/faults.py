"""Fault knobs of the local OSS server: rehearse what real OSS does to a listing on a bad day.

One :class:`OssFaults` object lives in a running :class:`~localcloud.oss.server.LocalOssServer`
(``server.faults``); tests change it at any time, the CLI sets it at start (``--fault-*`` flags). Every
request asks :meth:`OssFaults.on_request` what to do before it is answered; counters and one-shot
state are guarded by one lock, so workers of a parallel listing draw faults consistently.

Knobs (all off by default)
    ``slow_down_next``        the next N requests answer ``503 SlowDown`` (only ListObjects requests
                              count and fail when ``slow_down_list_only``).
    ``reset_next``            the next N requests send their status line, headers and half of their body,
                              then the socket is closed abruptly (``SO_LINGER 0``: a TCP RST). Only
                              ListObjects requests when ``reset_list_only`` (the default).
    ``list_delay_s``          extra delay before every ListObjects answer (slow pages).
    ``fail_tokens_once``      a ListObjects request whose ``continuation-token`` (v2) or ``marker`` (v1)
                              equals one of these fails once with 503 SlowDown; the token is then
                              removed, so the retry succeeds. :func:`token_after` gives the token of
                              the page that follows a key.
    ``fail_every_kth_list``   ListObjects requests number k, 2k, 3k, ... fail with 503 SlowDown (their
                              retry is another request, so each page fails at most once in a row).
    ``short_pages_rate``      the share (0 <= rate < 1) of ListObjects pages (v1 and v2, folder and
                              generated buckets, with or without delimiter) answered short, as OSS and S3
                              may: the first k entries of what a full page would hold (objects and common
                              prefixes in key order, 0 <= k < full), ``IsTruncated`` true, and a
                              continuation token / ``NextMarker`` that resumes right after the last entry
                              returned. About a third of short pages are empty (k = 0); their token resumes
                              where the page began. A v1 page that began at no marker is never empty (its
                              ``NextMarker`` would be empty). Only ``IsTruncated`` says whether more follow.
    ``short_pages_seed``      seeds that choice. The draw for a page depends on the seed, the request
                              (prefix, delimiter, resume point, max-keys, v1/v2) and how often that same
                              request was answered before, not on the order requests arrive in: the same
                              request gets the same answer however a parallel listing's threads run, and a
                              repeated request (after an empty page) draws anew, so every listing ends.
                              The server counts answers per distinct request while the knob is on (about
                              one per page listed) and forgets them when knobs change.

Precedence when several apply to one request: token failure, k-th failure, SlowDown burst, reset.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field

from localcloud.oss.protocol import continuation_token

__all__ = ["FaultAction", "OssFaults", "abort_connection", "token_after"]

#: Share of short pages that are empty (when an empty page is legal).
EMPTY_SHARE = 1 / 3


def token_after(key: str) -> str:
    """The continuation token the local server hands out for the page that follows ``key``."""
    return continuation_token(key)


@dataclass(frozen=True)
class FaultAction:
    """What to do to one request: answer ``error`` (status, code) instead, cut it mid-body, delay it."""

    error: tuple[int, str] | None = None
    reset: bool = False
    delay_s: float = 0.0


NO_FAULT = FaultAction()
SLOW_DOWN = (503, "SlowDown")


@dataclass
class OssFaults:
    """The knobs (see the module docstring) and what they did so far. Mutate freely between requests."""

    slow_down_next: int = 0
    slow_down_list_only: bool = False
    reset_next: int = 0
    reset_list_only: bool = True
    list_delay_s: float = 0.0
    fail_tokens_once: set[str] = field(default_factory=set)
    fail_every_kth_list: int = 0
    short_pages_rate: float = 0.0
    short_pages_seed: int = 0
    # -- counters (read them; reset() clears them) --
    requests: int = 0
    list_requests: int = 0
    slow_downs_sent: int = 0
    resets_sent: int = 0
    token_failures_sent: int = 0
    kth_failures_sent: int = 0
    delayed_lists: int = 0
    short_pages_sent: int = 0
    empty_pages_sent: int = 0
    failed_tokens: list[str] = field(default_factory=list)
    #: continuation-token / marker of the latest ListObjects requests, in arrival order ("" = first page)
    list_tokens: deque[str] = field(default_factory=lambda: deque(maxlen=10_000))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    #: how often each ListObjects request was answered while short pages are on (see short_page_length)
    _answered: dict[tuple, int] = field(default_factory=dict, repr=False, compare=False)

    def set(self, **knobs: object) -> OssFaults:
        """Change knobs atomically with respect to requests in flight, e.g. ``faults.set(slow_down_next=3)``."""
        with self._lock:
            for name in knobs:
                if name.startswith("_") or name not in _KNOBS:
                    raise ValueError(f"unknown OSS fault knob {name!r}; knobs are {sorted(_KNOBS)}")
            previous = {name: getattr(self, name) for name in knobs}
            for name, value in knobs.items():
                setattr(self, name, set(value) if name == "fail_tokens_once" else value)  # type: ignore[arg-type]
            try:
                self._check()
            except ValueError:  # a refused value leaves the knobs as they were
                for name, value in previous.items():
                    setattr(self, name, value)
                raise
            self._answered.clear()
        return self

    def reset(self) -> None:
        """All knobs off and all counters zero."""
        with self._lock:
            fresh = OssFaults()
            for name in (*_KNOBS, *_COUNTERS):
                setattr(self, name, getattr(fresh, name))
            self._answered.clear()

    def on_request(self, method: str, bucket: str, key: str, params: dict[str, str]) -> FaultAction:
        """Count the request and decide its fault (consuming one-shot state)."""
        is_list = method == "GET" and bool(bucket) and not key
        with self._lock:
            self.requests += 1
            token = params.get("continuation-token") or params.get("marker") or ""
            if is_list:
                self.list_requests += 1
                self.list_tokens.append(token)
            delay = 0.0
            if is_list and self.list_delay_s > 0:
                delay = self.list_delay_s
                self.delayed_lists += 1
            if is_list and self.fail_tokens_once:
                if token and token in self.fail_tokens_once:
                    self.fail_tokens_once.discard(token)
                    self.token_failures_sent += 1
                    self.failed_tokens.append(token)
                    return FaultAction(error=SLOW_DOWN, delay_s=delay)
            if is_list and self.fail_every_kth_list > 0 and self.list_requests % self.fail_every_kth_list == 0:
                self.kth_failures_sent += 1
                return FaultAction(error=SLOW_DOWN, delay_s=delay)
            if self.slow_down_next > 0 and (is_list or not self.slow_down_list_only):
                self.slow_down_next -= 1
                self.slow_downs_sent += 1
                return FaultAction(error=SLOW_DOWN, delay_s=delay)
            if self.reset_next > 0 and (is_list or not self.reset_list_only):
                self.reset_next -= 1
                self.resets_sent += 1
                return FaultAction(reset=True, delay_s=delay)
            return FaultAction(delay_s=delay) if delay else NO_FAULT

    def short_page_length(self, listing: tuple, full: int, may_be_empty: bool) -> int | None:
        """How many of the ``full`` entries a full page would hold to answer (None: the full page).

        ``listing`` identifies the request (prefix, delimiter, resume point, max-keys, version);
        ``may_be_empty`` is False where an empty page could not say where to resume (v1, no marker).
        """
        if self.short_pages_rate <= 0 or full < 1:
            return None
        with self._lock:
            answered = self._answered.get(listing, 0)
            self._answered[listing] = answered + 1
            rate, seed = self.short_pages_rate, self.short_pages_seed
        rng = random.Random(f"{seed}|{answered}|{listing!r}")  # str seeds hash stably (SHA-512), unsalted
        if rng.random() >= rate or (full == 1 and not may_be_empty):
            return None
        keep = 0 if may_be_empty and (full == 1 or rng.random() < EMPTY_SHARE) else rng.randrange(1, full)
        with self._lock:
            self.short_pages_sent += 1
            if keep == 0:
                self.empty_pages_sent += 1
        return keep

    def _check(self) -> None:
        for name in ("slow_down_next", "reset_next", "fail_every_kth_list"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.list_delay_s < 0:
            raise ValueError("list_delay_s must be >= 0")
        if not 0 <= float(self.short_pages_rate) < 1:
            raise ValueError(f"short_pages_rate must be in [0, 1) (at 1 a listing might never end), got {self.short_pages_rate}")

    def __post_init__(self) -> None:
        self.fail_tokens_once = set(self.fail_tokens_once)
        self._check()


_KNOBS = (
    "slow_down_next",
    "slow_down_list_only",
    "reset_next",
    "reset_list_only",
    "list_delay_s",
    "fail_tokens_once",
    "fail_every_kth_list",
    "short_pages_rate",
    "short_pages_seed",
)
_COUNTERS = (
    "requests",
    "list_requests",
    "slow_downs_sent",
    "resets_sent",
    "token_failures_sent",
    "kth_failures_sent",
    "delayed_lists",
    "short_pages_sent",
    "empty_pages_sent",
    "failed_tokens",
    "list_tokens",
)


def abort_connection(conn: socket.socket) -> None:
    """Close ``conn`` abruptly: ``SO_LINGER`` 0 makes the close send a TCP RST instead of a FIN."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


def add_cli_arguments(parser) -> None:  # argparse.ArgumentParser
    """The ``--fault-*`` flags of ``python -m localcloud.oss``."""
    group = parser.add_argument_group("fault knobs (see localcloud/oss/faults.py)")
    group.add_argument("--fault-slow-down", type=int, default=0, metavar="N", help="answer the next N requests 503 SlowDown")
    group.add_argument(
        "--fault-slow-down-list-only", action="store_true", help="the SlowDown burst hits ListObjects requests only"
    )
    group.add_argument(
        "--fault-reset", type=int, default=0, metavar="N", help="cut the next N ListObjects answers mid-body (TCP RST)"
    )
    group.add_argument("--fault-reset-any", action="store_true", help="the resets hit any request, not only ListObjects")
    group.add_argument("--fault-list-delay-s", type=float, default=0.0, help="extra delay before every ListObjects answer")
    group.add_argument(
        "--fault-fail-token",
        action="append",
        default=[],
        metavar="TOKEN",
        help="fail once the ListObjects request with this continuation-token / marker (repeatable)",
    )
    group.add_argument(
        "--fault-fail-every-kth-list", type=int, default=0, metavar="K", help="fail ListObjects requests k, 2k, 3k, ... once"
    )
    group.add_argument(
        "--fault-short-pages",
        type=float,
        default=0.0,
        metavar="RATE",
        help="answer this share (0 <= RATE < 1) of ListObjects pages short or empty, yet truncated, as OSS may",
    )
    group.add_argument("--fault-short-pages-seed", type=int, default=0, metavar="N", help="seed of --fault-short-pages")


def from_cli_arguments(args) -> OssFaults:  # argparse.Namespace
    return OssFaults(
        slow_down_next=args.fault_slow_down,
        slow_down_list_only=args.fault_slow_down_list_only,
        reset_next=args.fault_reset,
        reset_list_only=not args.fault_reset_any,
        list_delay_s=args.fault_list_delay_s,
        fail_tokens_once=set(args.fault_fail_token),
        fail_every_kth_list=args.fault_fail_every_kth_list,
        short_pages_rate=args.fault_short_pages,
        short_pages_seed=args.fault_short_pages_seed,
    )
