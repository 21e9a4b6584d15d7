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

Precedence when several apply to one request: token failure, k-th failure, SlowDown burst, reset.
"""

from __future__ import annotations

import base64
import socket
import struct
import threading
from collections import deque
from dataclasses import dataclass, field

__all__ = ["FaultAction", "OssFaults", "abort_connection", "token_after"]


def token_after(key: str) -> str:
    """The continuation token the local server hands out for the page that follows ``key``."""
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


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
    # -- counters (read them; reset() clears them) --
    requests: int = 0
    list_requests: int = 0
    slow_downs_sent: int = 0
    resets_sent: int = 0
    token_failures_sent: int = 0
    kth_failures_sent: int = 0
    delayed_lists: int = 0
    failed_tokens: list[str] = field(default_factory=list)
    #: continuation-token / marker of the latest ListObjects requests, in arrival order ("" = first page)
    list_tokens: deque[str] = field(default_factory=lambda: deque(maxlen=10_000))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def set(self, **knobs: object) -> OssFaults:
        """Change knobs atomically with respect to requests in flight, e.g. ``faults.set(slow_down_next=3)``."""
        with self._lock:
            for name, value in knobs.items():
                if name.startswith("_") or name not in _KNOBS:
                    raise ValueError(f"unknown OSS fault knob {name!r}; knobs are {sorted(_KNOBS)}")
                setattr(self, name, set(value) if name == "fail_tokens_once" else value)  # type: ignore[arg-type]
            self._check()
        return self

    def reset(self) -> None:
        """All knobs off and all counters zero."""
        with self._lock:
            fresh = OssFaults()
            for name in (*_KNOBS, *_COUNTERS):
                setattr(self, name, getattr(fresh, name))

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

    def _check(self) -> None:
        for name in ("slow_down_next", "reset_next", "fail_every_kth_list"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.list_delay_s < 0:
            raise ValueError("list_delay_s must be >= 0")

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
)
_COUNTERS = (
    "requests",
    "list_requests",
    "slow_downs_sent",
    "resets_sent",
    "token_failures_sent",
    "kth_failures_sent",
    "delayed_lists",
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


def from_cli_arguments(args) -> OssFaults:  # argparse.Namespace
    return OssFaults(
        slow_down_next=args.fault_slow_down,
        slow_down_list_only=args.fault_slow_down_list_only,
        reset_next=args.fault_reset,
        reset_list_only=not args.fault_reset_any,
        list_delay_s=args.fault_list_delay_s,
        fail_tokens_once=set(args.fault_fail_token),
        fail_every_kth_list=args.fault_fail_every_kth_list,
    )
