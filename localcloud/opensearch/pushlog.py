"""The push log of one table: every accepted document, in order, durable before the push answers OK.

Why: a push answers "OK" once the documents are *received*, not applied (the vendor's wording); what was
received must then survive a crash, be applied in order, and be replayable into a later full rebuild
(``Reindex`` with ``dataTimeSec`` replays the increments pushed since that time, for a limited time).

File: ``<state>/<instance>/<table>/push/log.jsonl``, one JSON object per line:
``{"seq": 17, "ts": 1764000000123, "cmd": "add", "fields": {...}}``: ``seq`` numbers every document
(1, 2, ... never reused, also across pruning), ``ts`` is the receive time in epoch milliseconds (never
decreasing in ``seq`` order, so a time maps to a position). One request's documents are appended with
one write and an ``fsync`` before the request is answered. A line that was being written when the
process died (no newline, or not JSON) was never acknowledged: it is cut off when the log is opened.
Pruning rewrites the file (temp file, fsync, rename) with a first line ``{"lastSeq": N}`` so numbering
continues after the pruned entries.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["PushLog"]

log = logging.getLogger(__name__)

Entry = dict[str, Any]


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _line(entry: Mapping[str, Any]) -> bytes:
    return (json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class PushLog:
    """The entries in memory (for replay by time or sequence) and on disk (for restarts). Thread-safe."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "log.jsonl"
        self._lock = threading.Lock()
        self._entries: list[Entry] = []
        self._stamps: list[int] = []  # ts of each entry, for bisect
        self._last_seq = 0
        self._last_ts = 0
        self._size = 0
        self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return
        good = 0
        for raw in data.splitlines(keepends=True):
            try:
                if not raw.endswith(b"\n"):
                    raise ValueError("no newline")
                item = json.loads(raw)
                if "lastSeq" in item:
                    self._last_seq = max(self._last_seq, int(item["lastSeq"]))
                else:
                    self._remember([item])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("push log %s: cutting off an unfinished entry at byte %d (%s): it was never "
                            "acknowledged", self.path, good, exc)
                break
            good += len(raw)
        if good < len(data):
            with open(self.path, "r+b") as fh:
                fh.truncate(good)
                os.fsync(fh.fileno())
        self._size = good

    def _remember(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            self._entries.append(entry)
            self._stamps.append(int(entry["ts"]))
            self._last_seq = max(self._last_seq, int(entry["seq"]))
            self._last_ts = max(self._last_ts, int(entry["ts"]))

    # -- writing ------------------------------------------------------------------------------------

    def append(self, documents: Sequence[Mapping[str, Any]], now_ms: int) -> list[Entry]:
        """Number ``documents`` ({cmd, fields}), stamp them ``now_ms``, write and fsync; return the entries."""
        with self._lock:
            ts = max(now_ms, self._last_ts)
            entries = [{"seq": self._last_seq + i, "ts": ts, "cmd": doc["cmd"], "fields": doc["fields"]}
                       for i, doc in enumerate(documents, start=1)]
            payload = b"".join(_line(e) for e in entries)
            new_file = not self.path.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as fh:
                try:
                    fh.write(payload)
                    fh.flush()
                    os.fsync(fh.fileno())
                except BaseException:
                    fh.truncate(self._size)  # nothing of a failed write stays (it was not acknowledged)
                    raise
            if new_file:
                _fsync_dir(self.folder)
            self._size += len(payload)
            self._remember(entries)
            return entries

    def prune(self, before_ms: int, keep_from_seq: int) -> int:
        """Drop the entries received before ``before_ms`` that come before ``keep_from_seq``; how many."""
        with self._lock:
            cut = min(bisect.bisect_left(self._stamps, before_ms), self._index(keep_from_seq))
            if cut <= 0:
                return 0
            kept = self._entries[cut:]
            tmp = self.folder / f".log.jsonl.{uuid.uuid4().hex}.tmp"
            try:
                with open(tmp, "wb") as fh:
                    fh.write(_line({"lastSeq": self._last_seq}))
                    for entry in kept:
                        fh.write(_line(entry))
                    fh.flush()
                    os.fsync(fh.fileno())
                    size = fh.tell()
                os.replace(tmp, self.path)
                _fsync_dir(self.folder)
            finally:
                tmp.unlink(missing_ok=True)
            self._entries, self._stamps, self._size = kept, self._stamps[cut:], size
            return cut

    # -- reading ------------------------------------------------------------------------------------

    def _index(self, seq: int) -> int:
        """The position of ``seq`` in memory (sequence numbers are contiguous from the first kept one)."""
        if not self._entries:
            return 0
        return max(0, min(len(self._entries), seq - int(self._entries[0]["seq"])))

    @property
    def last_seq(self) -> int:
        return self._last_seq

    @property
    def first_seq(self) -> int:
        """The oldest entry kept (``last_seq + 1`` when the log is empty)."""
        with self._lock:
            return int(self._entries[0]["seq"]) if self._entries else self._last_seq + 1

    def __len__(self) -> int:
        return len(self._entries)

    def first_seq_at_or_after(self, ts_ms: int) -> int:
        """The first entry received at or after ``ts_ms`` (``last_seq + 1``: none yet)."""
        with self._lock:
            i = bisect.bisect_left(self._stamps, ts_ms)
            return int(self._entries[i]["seq"]) if i < len(self._entries) else self._last_seq + 1

    def between(self, first_seq: int, last_seq: int, limit: int | None = None) -> list[Entry]:
        """Entries with ``first_seq <= seq <= last_seq``, oldest first, at most ``limit``."""
        with self._lock:
            start, stop = self._index(first_seq), self._index(last_seq + 1)
            if limit is not None:
                stop = min(stop, start + limit)
            return self._entries[start:stop]
