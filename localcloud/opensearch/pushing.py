"""Pushed documents, from an accepted request to the realtime layer and into later rebuilds.

Why: OpenSearch's data plane push API makes single documents searchable without a full rebuild, and a
``Reindex`` with ``dataTimeSec`` replays what was pushed since then into the new generation, so a
rebuild does not lose the increments. The pipeline's push path is tested against this; it must be
exact about what "OK" means (received, not applied), about order, and about what a rebuild keeps.

:class:`EnginePushes` is the push side of :class:`~localcloud.opensearch.engine.LocalEngine` (a base
class of it, using the engine's lock, live generations and records). Per table:

1. Admission (:meth:`EnginePushes.admit_push`, before the body is read): the ``throttle_next_pushes``
   knob, then the rate: at most ``push_max_bytes_per_s`` (default 10 MiB) of request bodies (their
   Content-Length) per data source in any sliding 1-second window, else 429 / 3013 and nothing kept.
2. :meth:`EnginePushes.push_documents`: unless the ``drop_next_pushes`` knob eats the request, the
   documents are appended to the table's :class:`~localcloud.opensearch.pushlog.PushLog` (fsync'd,
   receive time in ms, sequence numbers). Entries older than ``push_retention_s`` (default 3 days) are
   pruned, except those the live generation's layer or a running build's replay still needs.
3. One applier thread per table applies the log in order, each entry no sooner than
   ``push_apply_delay_s`` after it was received: an ``add`` fetches the image with oss2 exactly as a
   build does (:func:`~localcloud.opensearch.build.fetch_image_vector`, the table's OSS key pair, V4)
   and embeds it; the document (all stored fields and the vector) replaces any with its primary key;
   a ``delete`` hides it. The live view is swapped whole (:mod:`localcloud.opensearch.realtime`). An
   image that cannot be fetched or decoded leaves that push out (a document already there stays as
   it was); it is counted, logged, and the last :data:`MAX_FAILURES_KEPT` are kept with pk and reason
   (:meth:`push_status`, :meth:`push_failures`).
4. Replay into a rebuild (:class:`SwitchReplay`): a generation built for a ``Reindex`` with
   ``dataTimeSec`` gets, *before* it switches in, the log from ``dataTimeSec * 1000`` (inclusive) up to
   what the applier had applied when the replay started; at the switch, under the engine lock, what
   the applier applied to the old generation since is applied too, so nothing pushed during the build
   is lost across the switch; entries not yet applied are applied to the new generation by the
   applier afterwards. Without ``dataTimeSec`` the new layer starts empty: pushes applied before the
   switch are not in the new generation (the service's behaviour). ``dataTimeSec`` older than now -
   ``push_retention_s`` or in the future is refused at once (``InvalidParameter``).
5. Restart: the live generation's record says where its layer starts in the log (``layerFromSeq``,
   and ``switchSeq``, ``replayFromMs``); the layer is rebuilt from there before the engine serves.
   With no generation built yet, every logged push is in the layer (over an empty index).

Counters (since the engine started; :meth:`vectorized_images`, :meth:`push_status`): images embedded by
builds, by the applier and by replays, separately; documents received, applied, failed, dropped.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import oss2

from localcloud.opensearch.build import BuildInterrupted, TableSource, fetch_image_vector, image_bucket
from localcloud.opensearch.errors import EngineError
from localcloud.opensearch.faults import EngineFaults
from localcloud.opensearch.pushdocs import CODE_RATE_LIMITED, PushRefused
from localcloud.opensearch.pushlog import PushLog
from localcloud.opensearch.realtime import Change, LayeredGeneration, apply_changes
from localcloud.opensearch.search import Generation, LiveGeneration
from localcloud.opensearch.vectorizer import Vectorizer

__all__ = ["DEFAULT_PUSH_MAX_BYTES_PER_S", "DEFAULT_PUSH_RETENTION_S", "EnginePushes", "SwitchReplay"]

log = logging.getLogger(__name__)

DEFAULT_PUSH_MAX_BYTES_PER_S: Final = 10 * 1024 * 1024  # vendor: "at most 10 MB/s recommended"
DEFAULT_PUSH_RETENTION_S: Final = 3 * 24 * 3600  # vendor: a reindex replays increments at most 3 days back
MAX_FAILURES_KEPT: Final = 20
APPLY_BATCH: Final = 256  # entries per applier step (one swap of the live view)
_IDLE_WAIT_S: Final = 1.0
_BUILT: Final = frozenset({"starting", "building", "ready"})


def _now_ms() -> int:
    return int(time.time() * 1000)


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(seconds: float) -> str:
    return f"{seconds / 86400:g} days" if seconds % 86400 == 0 else f"{seconds:g} s"


class TablePushes:
    """One table's pushes: its log, applier thread, rate window, counters and recent failures."""

    def __init__(self, table: str, push_log: PushLog) -> None:
        self.table = table
        self.log = push_log
        self.cursor = push_log.last_seq  # the last entry applied to the live view (written under the engine lock)
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.recorders: weakref.WeakSet[SwitchReplay] = weakref.WeakSet()
        self.lock = threading.Lock()  # counters, rate window, failures
        self.window: deque[tuple[float, int]] = deque()
        self.counts: Counter[str] = Counter()
        self.failures: deque[dict[str, Any]] = deque(maxlen=MAX_FAILURES_KEPT)
        self.bucket: oss2.Bucket | None = None
        self.last_prune = 0.0

    def count(self, **amounts: int) -> None:
        with self.lock:
            self.counts.update(amounts)


class SwitchReplay:
    """A new generation's realtime layer, prepared before it switches in (step 4 of the module docstring).

    Created before the switch (the replay fetches and embeds, without the engine lock); :meth:`finish`
    runs under the engine lock at the switch and returns the view to make live."""

    def __init__(self, engine: EnginePushes, table: str, base: LiveGeneration, replay_from_ms: int | None) -> None:
        self._pushes = engine._push_state(table)  # noqa: SLF001 - the engine's own push side
        self._pk = engine.tables[table].schema.primary_key
        self._since: list[Change] = []
        with engine._lock:  # noqa: SLF001
            start = self._pushes.cursor
            self._pushes.recorders.add(self)
        self.from_seq = None if replay_from_ms is None else self._pushes.log.first_seq_at_or_after(replay_from_ms)
        self.view: Generation | None = base
        if self.from_seq is not None and self.from_seq <= start:
            entries = self._pushes.log.between(self.from_seq, start)
            self.view = apply_changes(base, engine._changes(table, entries, "replay"), self._pk)  # noqa: SLF001
            log.info("table %s: generation %s replays %d pushed documents (seq %d..%d) before its switch", table,
                     base.generation_id, len(entries), self.from_seq, start)

    def record(self, changes: Sequence[Change]) -> None:
        """The applier applied ``changes`` to the old generation (called under the engine lock)."""
        self._since.extend(changes)

    def finish(self, record: dict[str, Any]) -> Generation | None:
        """The view to switch in; ``record`` (the generation's) learns where its layer starts in the log."""
        self._pushes.recorders.discard(self)
        cursor = self._pushes.cursor
        if self.from_seq is None:
            view, layer_from = self.view, cursor + 1
        else:
            view = apply_changes(self.view, [c for c in self._since if c.seq >= self.from_seq], self._pk)
            layer_from = min(self.from_seq, cursor + 1)
        record.update(layerFromSeq=layer_from, switchSeq=cursor)
        return view


class EnginePushes:
    """The push side of LocalEngine (see the module docstring). Uses these of the engine:"""

    instance_id: str
    tables: dict[str, TableSource]
    vectorizer: Vectorizer
    fetch_workers: int
    faults: EngineFaults
    _lock: threading.RLock
    _closing: threading.Event
    _threads: set[threading.Thread]
    _live: dict[str, Any]  # table -> Generation | None
    _gens: dict[str, dict[int, dict[str, Any]]]
    _table_dir: Callable[[str], Path]

    # -- set-up, restart, shutdown --------------------------------------------------------------------

    def configure_pushes(self, *, max_bytes_per_s: int | None = None, retention_s: float | None = None) -> None:
        """Set the push limits (None keeps one): bytes of request bodies per data source per second, and
        how long pushed increments are kept for a reindex to replay."""
        if max_bytes_per_s is not None:
            if isinstance(max_bytes_per_s, bool) or not isinstance(max_bytes_per_s, int) or max_bytes_per_s <= 0:
                raise ValueError(f"push_max_bytes_per_s must be a positive integer, got {max_bytes_per_s!r}")
            self.push_max_bytes_per_s = max_bytes_per_s
        if retention_s is not None:
            if isinstance(retention_s, bool) or not isinstance(retention_s, (int, float)) or not retention_s > 0:
                raise ValueError(f"push_retention_s must be a positive number of seconds, got {retention_s!r}")
            self.push_retention_s = float(retention_s)

    def _init_pushes(self, max_bytes_per_s: int, retention_s: float) -> None:
        self.configure_pushes(max_bytes_per_s=max_bytes_per_s, retention_s=retention_s)
        self._pushes = {t: TablePushes(t, PushLog(self._table_dir(t) / "push")) for t in self.tables}
        for table, pushes in self._pushes.items():
            live = self._live[table]
            entries = pushes.log.between(self._layer_start(table, live), pushes.log.last_seq)
            if entries:
                pk = self.tables[table].schema.primary_key
                self._live[table] = apply_changes(live, self._changes(table, entries, "replay"), pk)
                log.info("table %s: realtime layer rebuilt from the push log: %d entries from seq %d", table,
                         len(entries), entries[0]["seq"])
            self._prune_push_log(pushes, force=True)

    def _layer_start(self, table: str, live: Generation | None) -> int:
        """The first log entry of the live view's realtime layer."""
        if live is None or live.generation_id is None:
            return 1  # nothing built yet: every push is in the layer
        record = self._gens[table].get(int(live.generation_id), {})
        return int(record.get("layerFromSeq", self._pushes[table].log.last_seq + 1))

    def _wake_pushes(self) -> None:
        """Let the appliers see that the engine is closing."""
        for pushes in self._pushes.values():
            pushes.wake.set()

    def _push_state(self, table: str) -> TablePushes:
        pushes = self._pushes.get(table)
        if pushes is None:
            raise EngineError("table.NotFound", f"table {table!r} does not exist in instance {self.instance_id!r}", 404)
        return pushes

    # -- admission and receiving ----------------------------------------------------------------------

    def push_table(self, data_source: str) -> str | None:
        """The table a push path's data source names (``{instance_id}_{table}``), or None."""
        prefix = f"{self.instance_id}_"
        table = data_source[len(prefix):] if data_source.startswith(prefix) else None
        return table if table in self._pushes else None

    def admit_push(self, table: str, nbytes: int) -> None:
        """Admit a request of ``nbytes`` body bytes, or refuse it (429 / 3013) by the knob or the rate."""
        pushes = self._push_state(table)
        if self.faults.take_one("throttle_next_pushes"):
            log.warning("fault: a push to %s is throttled (throttle_next_pushes)", table)
            pushes.count(throttled=1)
            raise PushRefused(429, CODE_RATE_LIMITED, "push rate exceeds app quota (injected fault "
                              "throttle_next_pushes); back off and retry")
        limit = self.push_max_bytes_per_s
        with pushes.lock:
            now = time.monotonic()
            while pushes.window and pushes.window[0][0] <= now - 1.0:
                pushes.window.popleft()
            used = sum(n for _t, n in pushes.window)
            if used + nbytes > limit:
                pushes.counts.update(throttled=1)
                raise PushRefused(429, CODE_RATE_LIMITED, f"push rate exceeds app quota: {used} bytes were pushed "
                                  f"to {self.instance_id}_{table} in the last second and this request has {nbytes}; "
                                  f"at most {limit} bytes of request bodies per second per data source; back off "
                                  "and retry")
            pushes.window.append((now, nbytes))

    def push_documents(self, table: str, documents: Sequence[Mapping[str, Any]]) -> bool:
        """Keep a checked request's documents (``{cmd, fields}``) durably for the applier, in order.
        False: the ``drop_next_pushes`` knob dropped them (the request still answers OK)."""
        pushes = self._push_state(table)
        if self.faults.take_one("drop_next_pushes"):
            pushes.count(dropped=len(documents))
            log.warning("fault: %d pushed documents for %s answered OK and dropped (drop_next_pushes)",
                        len(documents), table)
            return False
        entries = pushes.log.append(documents, _now_ms())
        pushes.count(received=len(entries))
        self._ensure_applier(pushes)
        pushes.wake.set()
        self._prune_push_log(pushes)
        return True

    def _prune_push_log(self, pushes: TablePushes, force: bool = False) -> None:
        now = time.time()
        if not force and now - pushes.last_prune < min(60.0, self.push_retention_s / 10):
            return
        pushes.last_prune = now
        with self._lock:  # the live layer, and builds that will replay from their dataTimeSec, need entries
            keep_from = self._layer_start(pushes.table, self._live[pushes.table])
            replays = [g["replayFromMs"] for g in self._gens[pushes.table].values()
                       if g.get("replayFromMs") is not None and g["status"] in _BUILT and "layerFromSeq" not in g]
        for ms in replays:
            keep_from = min(keep_from, pushes.log.first_seq_at_or_after(ms))
        removed = pushes.log.prune(int((now - self.push_retention_s) * 1000), keep_from)
        if removed:
            log.info("push log of %s: %d entries older than %s pruned", pushes.table, removed,
                     _duration(self.push_retention_s))

    # -- applying -------------------------------------------------------------------------------------

    def _ensure_applier(self, pushes: TablePushes) -> None:
        with self._lock:
            if self._closing.is_set() or (pushes.thread is not None and pushes.thread.is_alive()):
                return
            pushes.thread = threading.Thread(target=self._apply_loop, args=(pushes,), name=f"push-apply-{pushes.table}",
                                             daemon=True)
            self._threads.add(pushes.thread)
            pushes.thread.start()

    def _apply_loop(self, pushes: TablePushes) -> None:
        pk = self.tables[pushes.table].schema.primary_key
        try:
            while not self._closing.is_set():
                pushes.wake.clear()
                entries = pushes.log.between(pushes.cursor + 1, pushes.log.last_seq, APPLY_BATCH)
                if not entries:
                    pushes.wake.wait(_IDLE_WAIT_S)
                    continue
                delay_ms = int(float(self.faults.push_apply_delay_s or 0.0) * 1000)
                now = _now_ms()
                due = list(itertools.takewhile(lambda e: int(e["ts"]) + delay_ms <= now, entries))
                if not due:  # applied late (the knob): wait for the oldest to come due
                    self._closing.wait(min(0.2, (int(entries[0]["ts"]) + delay_ms - now) / 1000))
                    continue
                try:
                    changes = self._changes(pushes.table, due, "push")
                except BuildInterrupted:
                    return
                except Exception:  # a bug: keep the entries pending and try again, visibly
                    log.exception("push applier of %s: entries from seq %s failed; retrying", pushes.table,
                                  due[0]["seq"])
                    self._closing.wait(1.0)
                    continue
                with self._lock:
                    self._live[pushes.table] = apply_changes(self._live[pushes.table], changes, pk)
                    pushes.cursor = int(due[-1]["seq"])
                    for recorder in list(pushes.recorders):
                        recorder.record(changes)
                pushes.count(applied=len(changes))
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _changes(self, table: str, entries: Sequence[Mapping[str, Any]], kind: str) -> list[Change]:
        """The changes ``entries`` make (``kind``: ``push`` or ``replay``): images fetched and embedded in
        parallel; an image that fails leaves its entry out (counted, kept as an example, logged)."""
        pushes, schema = self._pushes[table], self.tables[table].schema
        adds = [e for e in entries if e["cmd"] == "add"]
        if adds and pushes.bucket is None:
            pushes.bucket = image_bucket(self.tables[table], self.fetch_workers)

        def one(entry: Mapping[str, Any]) -> Any:
            if self._closing.is_set():
                raise BuildInterrupted()
            return fetch_image_vector(pushes.bucket, entry["fields"].get(schema.image_field), self.vectorizer)

        if len(adds) > 1:
            with ThreadPoolExecutor(min(self.fetch_workers, len(adds)), thread_name_prefix=f"push-fetch-{table}") as pool:
                results = dict(zip((e["seq"] for e in adds), pool.map(one, adds)))
        else:
            results = {e["seq"]: one(e) for e in adds}
        changes, failures = [], []
        for entry in entries:
            pk = entry["fields"][schema.primary_key]
            result = results.get(entry["seq"])
            if entry["cmd"] == "delete":
                changes.append(Change(int(entry["seq"]), pk))
            elif isinstance(result, str):
                failures.append({"seq": entry["seq"], "pk": pk, "image": entry["fields"].get(schema.image_field),
                                 "reason": result, "phase": kind, "receivedAt": _iso(int(entry["ts"]) / 1000)})
            else:
                changes.append(Change(int(entry["seq"]), pk, dict(entry["fields"]), result))
        for failure in failures:
            log.warning("table %s: pushed document %s left out (%s, seq %s): %s", table, failure["pk"], kind,
                        failure["seq"], failure["reason"])
        with pushes.lock:
            pushes.failures.extend(failures)
            pushes.counts.update({f"vectorized_{kind}": len(adds) - len(failures),
                                  "failed" if kind == "push" else "replay_failed": len(failures)})
            if kind == "replay":
                pushes.counts.update(replayed=len(changes))
        return changes

    # -- rebuilds -------------------------------------------------------------------------------------

    def _check_replay_start(self, data_time_sec: int | None) -> int | None:
        """``dataTimeSec`` as the replay start in ms; refused when it lies outside the increments kept."""
        if data_time_sec is None:
            return None
        now = time.time()
        oldest = now - self.push_retention_s
        if data_time_sec < oldest:
            raise EngineError("InvalidParameter", f"dataTimeSec {data_time_sec} ({_iso(data_time_sec)}) is too old: "
                              f"the service keeps pushed increments for {_duration(self.push_retention_s)}, so a "
                              f"reindex can replay them from {math.ceil(oldest)} ({_iso(oldest)}) at the earliest; "
                              "give a later dataTimeSec, or none (then nothing pushed is replayed)")
        if data_time_sec > now:
            raise EngineError("InvalidParameter", f"dataTimeSec {data_time_sec} ({_iso(data_time_sec)}) is in the "
                              f"future: it is now {int(now)} ({_iso(now)})")
        return int(data_time_sec) * 1000

    def _replay_pushes(self, table: str, gen_id: int, base: LiveGeneration) -> SwitchReplay:
        """Start the new generation's layer: the log replayed from its ``dataTimeSec`` (no lock held)."""
        with self._lock:
            replay_from_ms = self._gens[table][gen_id].get("replayFromMs")
        return SwitchReplay(self, table, base, replay_from_ms)

    def _count_build_vectorized(self, table: str, images: int) -> None:
        self._push_state(table).count(vectorized_build=images)

    # -- what the benchmark and tests read ------------------------------------------------------------

    def vectorized_images(self, table: str) -> dict[str, int]:
        """Images embedded for ``table`` since the engine started: by full builds, by the push applier, and
        by replays of pushes (into a rebuild's generation, or the layer rebuilt at a restart)."""
        pushes = self._push_state(table)
        with pushes.lock:
            return {kind: pushes.counts[f"vectorized_{kind}"] for kind in ("build", "push", "replay")}

    def push_status(self, table: str) -> dict[str, Any]:
        """Pushed documents of ``table`` since the engine started: received (logged), applied, pending (logged,
        not applied yet), failed (image not fetched/decoded: left out), dropped (fault knob), throttled
        requests, replayed; the log's sequence numbers; the layer's size; the last few failures."""
        pushes = self._push_state(table)
        with pushes.lock:
            counts, failures = Counter(pushes.counts), list(pushes.failures)[-5:]
        with self._lock:
            live, cursor = self._live[table], pushes.cursor
        layered = live if isinstance(live, LayeredGeneration) else None
        return {
            "received": counts["received"], "applied": counts["applied"], "pending": max(0, pushes.log.last_seq - cursor),
            "failed": counts["failed"], "dropped": counts["dropped"], "throttled": counts["throttled"],
            "replayed": counts["replayed"], "replayFailed": counts["replay_failed"],
            "lastSeq": pushes.log.last_seq, "appliedSeq": cursor, "logEntries": len(pushes.log),
            "layerDocuments": layered.pushed_documents if layered else 0,
            "layerTombstones": layered.tombstones if layered else 0,
            "failureExamples": failures,
        }

    def push_failures(self, table: str) -> list[dict[str, Any]]:
        """The last pushed documents left out (pk, image, reason, seq, phase), oldest first."""
        pushes = self._push_state(table)
        with pushes.lock:
            return list(pushes.failures)

    def wait_for_pushes(self, table: str, timeout: float) -> bool:
        """Wait until every logged push of ``table`` is applied (a test helper; the pipeline polls queries)."""
        deadline = time.monotonic() + timeout
        while self.push_status(table)["pending"]:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True
