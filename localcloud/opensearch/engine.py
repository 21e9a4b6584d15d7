"""The local index engine behind the OpenSearch stand-in: builds generations, switches them, answers queries.

Why: the pipeline's rebuild step talks to OpenSearch Retrieval Engine Edition through the real SDKs,
and must be exercised offline against something that behaves like it: a ``Reindex`` that returns at
once with no generation id, a generation that goes ``starting`` -> ``building`` -> ``ready`` (or
``failed`` / ``stopped``), a change-history card (data-source task) whose nodes advance, pause
switches that hold a finished build back, and an old index that keeps answering until the new one
is switched in. This module is that behaviour; :mod:`localcloud.opensearch.server` puts the
wire protocols in front of it.

A build (one background thread per ``reindex``):

1. ``read_partition``: the partition's rows from the :class:`~pipeline.warehouse.local.LocalWarehouse`
   (the MaxCompute stand-in). A later row with the same primary key replaces an earlier one.
2. ``fetch_and_vectorize``: every image is read with oss2 from the local OSS server (the stand-in for
   the service-linked role real OpenSearch uses) and embedded by the vectorizer. Images that cannot
   be fetched or decoded are left out and counted; more than ``max_decode_failure_fraction`` of them
   fails the build.
3. ``build_index``: vectors (``vectors.npy``), stored fields (``attributes.parquet``) and
   ``meta.json`` are written to ``<state>/<instance>/<table>/generations/<gen>/`` (temp dir + rename).
4. ``switch``: the generation is ``ready`` (built) *before* its switch node finishes, as the cloud
   may report it: ``ready`` alone does not mean live; the change-history task ending ``success`` does.
   Unless ``pauseIndex``/``pauseAll`` holds it (then the node and task are ``waiting`` until the policy
   is lifted or ``force_switch(fsmId)``), ``live.json`` is replaced atomically and queries move to the
   new generation. One table builds one generation at a time: a reindex is refused
   (``OperationDenied.BuildInProgress``) while a generation is starting/building or a task of the table
   is unfinished (built but not switched in counts).

State (generations, tasks, pause policy, the live pointer) is JSON written atomically, so a restarted
server serves the same generation; builds that were running when the process stopped are marked
``failed`` with "interrupted by a server restart" (as are switches that had not happened). Fault knobs
are :class:`~localcloud.opensearch.faults.EngineFaults`. The build's data steps are in
:mod:`localcloud.opensearch.build`; query answering is in :mod:`localcloud.opensearch.search`; pushed
documents (the realtime layer over the live generation, their log, and their replay into a build with
``dataTimeSec`` before it switches in) are the base class :class:`~localcloud.opensearch.pushing.EnginePushes`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

from localcloud.opensearch.build import (
    MAX_EXAMPLES,
    BuildFailed,
    BuildInterrupted,
    TableSource,
    fetch_and_vectorize,
    open_generation,
    read_partition_rows,
    write_generation,
)
from localcloud.opensearch.errors import EngineError
from localcloud.opensearch.faults import EngineFaults
from localcloud.opensearch.pushing import DEFAULT_PUSH_MAX_BYTES_PER_S, DEFAULT_PUSH_RETENTION_S, EnginePushes
from localcloud.opensearch.records import finish_task, now_iso, public, read_json, visible, write_json
from localcloud.opensearch.search import (
    ERROR_CLUSTER_NAME_NOT_EXIST,
    Generation,
    HaSearchError,
    LiveGeneration,
    search_generation,
)
from localcloud.opensearch.vectorizer import ImageDescriptorVectorizer, Vectorizer
from pipeline.opensearch.ha.grammar import HaQuery

__all__ = ["EngineError", "EngineFaults", "LocalEngine", "TableSource", "PAUSE_FLAGS", "NODE_NAMES"]

log = logging.getLogger(__name__)

PAUSE_FLAGS: Final[tuple[str, ...]] = ("pauseAll", "pauseIndex", "pauseIndexBatch", "pauseBiz", "pauseRuntime")
NODE_NAMES: Final[tuple[str, ...]] = ("read_partition", "fetch_and_vectorize", "build_index", "switch")
DEFAULT_CLUSTER: Final[str] = "general"  # the query cluster that means "the instance's default table"
_ACTIVE: Final[frozenset[str]] = frozenset({"starting", "building"})
_UNFINISHED_TASK: Final[frozenset[str]] = frozenset({"running", "waiting"})
_PARTITION_RE = re.compile(r"ds=(\d{8})\Z")
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}\Z")
_MAX_TASKS_KEPT = 500


class LocalEngine(EnginePushes):
    """Generations, builds, pause policy, pushes and search for one instance. Thread-safe."""

    def __init__(
        self,
        state_dir: str | Path,
        instance_id: str,
        tables: Mapping[str, TableSource],
        vectorizer: Vectorizer | None = None,
        *,
        max_decode_failure_fraction: float = 0.05,
        fetch_workers: int = 8,
        keep_generations: int = 3,
        faults: EngineFaults | None = None,
        default_table: str | None = None,
        push_max_bytes_per_s: int = DEFAULT_PUSH_MAX_BYTES_PER_S,
        push_retention_s: float = DEFAULT_PUSH_RETENTION_S,
    ) -> None:
        if not tables:
            raise ValueError("at least one table is required")
        for name in tables:
            if not _TABLE_RE.match(name):
                raise ValueError(f"table name {name!r} must match {_TABLE_RE.pattern}")
        if not 0.0 <= max_decode_failure_fraction <= 1.0:
            raise ValueError("max_decode_failure_fraction must be within 0..1")
        self.instance_id = instance_id
        self.tables: dict[str, TableSource] = dict(tables)
        self.default_table = default_table or next(iter(self.tables))
        if self.default_table not in self.tables:
            raise ValueError(f"default_table {self.default_table!r} is not one of the tables")
        self.vectorizer: Vectorizer = vectorizer or ImageDescriptorVectorizer()
        self.max_decode_failure_fraction = max_decode_failure_fraction
        self.fetch_workers = max(1, fetch_workers)
        self.keep_generations = max(1, keep_generations)
        self.faults = faults or EngineFaults()
        # Tables whose data source has Automatic Index Rebuild on (GetTable's dataSource.autoBuildIndex).
        # Reported only: this engine never starts a build by itself.
        self.auto_build_index: set[str] = set()
        self.root = Path(state_dir) / instance_id
        self.root.mkdir(parents=True, exist_ok=True)
        self.created = now_iso()

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # pause policy / force switch / closing
        self._closing = threading.Event()
        self._threads: set[threading.Thread] = set()
        self._forced: set[str] = set()
        self._live: dict[str, Generation | None] = {}
        self._load_state()
        self._init_pushes(push_max_bytes_per_s, push_retention_s)  # rebuilds the live realtime layers

    # -- state --------------------------------------------------------------------------------------

    def _table_dir(self, table: str) -> Path:
        return self.root / table

    def _load_state(self) -> None:
        inst = read_json(self.root / "instance.json", {})
        self.created = inst.get("createTime", self.created)
        self._last_generation_id = int(inst.get("lastGenerationId", 0))
        self._pause = {flag: bool(inst.get("pausePolicy", {}).get(flag, False)) for flag in PAUSE_FLAGS}
        self._tasks: dict[str, dict[str, Any]] = {t["fsmId"]: t for t in read_json(self.root / "tasks.json", [])}
        self._gens: dict[str, dict[int, dict[str, Any]]] = {}
        interrupted = "interrupted by a server restart"
        for table in self.tables:
            gens = read_json(self._table_dir(table) / "generations.json", [])
            self._gens[table] = {int(g["generationId"]): g for g in gens}
            for gen in self._gens[table].values():
                if gen["status"] in _ACTIVE:
                    log.warning("table %s generation %s was %s: marking it failed (%s)",
                                table, gen["generationId"], gen["status"], interrupted)
                    gen.update(status="failed", message=interrupted, updateTime=now_iso())
                    task = self._tasks.get(gen.get("fsmId", ""))
                    if task is not None:
                        finish_task(task, "failed", interrupted)
            self._save_generations(table)
            self._live[table] = self._load_live(table)
        for task in self._tasks.values():  # e.g. a built generation whose switch had not happened
            if task["status"] in _UNFINISHED_TASK:
                finish_task(task, "failed", interrupted)
        self._save_instance()
        self._save_tasks()

    def _load_live(self, table: str) -> LiveGeneration | None:
        pointer = read_json(self._table_dir(table) / "live.json", None)
        if not pointer:
            return None
        gen_id = int(pointer["generationId"])
        try:
            return self._open_generation(table, gen_id)
        except Exception:  # a damaged generation must not keep the server from starting
            log.exception("table %s: cannot load live generation %s; serving no generation", table, gen_id)
            return None

    def _open_generation(self, table: str, gen_id: int) -> LiveGeneration:
        return open_generation(self._table_dir(table) / "generations" / str(gen_id), gen_id, self.tables[table].schema)

    def _save_instance(self) -> None:
        write_json(
            self.root / "instance.json",
            {"instanceId": self.instance_id, "createTime": self.created,
             "lastGenerationId": self._last_generation_id, "pausePolicy": self._pause},
        )

    def _save_tasks(self) -> None:
        tasks = list(self._tasks.values())[-_MAX_TASKS_KEPT:]
        write_json(self.root / "tasks.json", tasks)

    def _save_generations(self, table: str) -> None:
        write_json(self._table_dir(table) / "generations.json", list(self._gens[table].values()))

    # -- read side (management API) -----------------------------------------------------------------

    def source(self, table: str) -> TableSource:
        try:
            return self.tables[table]
        except KeyError:
            raise EngineError(
                "table.NotFound", f"table {table!r} does not exist in instance {self.instance_id!r} "
                f"(tables: {sorted(self.tables)})", 404,
            ) from None

    def live_generation_id(self, table: str) -> int | None:
        with self._lock:
            live = self._live.get(table)
            return live.generation_id if live else None

    def list_generations(self, table: str) -> list[dict[str, Any]]:
        self.source(table)
        with self._lock:
            return [public(g) for g in self._gens[table].values() if visible(g)]

    def get_generation(self, table: str, generation_id: int | str) -> dict[str, Any]:
        self.source(table)
        try:
            gen_id = int(str(generation_id))
        except ValueError:
            gen_id = -1
        with self._lock:
            gen = self._gens[table].get(gen_id)
            if gen is None or not visible(gen):
                raise EngineError(
                    "generation.NotFound", f"generation {generation_id!r} does not exist for table {table!r}", 404
                )
            return public(gen)

    def latest_ready(self, table: str) -> dict[str, Any] | None:
        """The newest generation that reached ``ready``, if any."""
        self.source(table)
        with self._lock:
            return next((dict(g) for g in reversed(self._gens[table].values()) if g["status"] == "ready"), None)

    def list_tasks(self, start: int | None = None, end: int | None = None) -> list[dict[str, Any]]:
        """Data-source tasks (change-history cards), oldest first; ``start``/``end`` filter by epoch s."""
        with self._lock:
            tasks = [json.loads(json.dumps(public(t))) for t in self._tasks.values() if visible(t)]
        return [t for t in tasks
                if (start is None or int(t["time"]) >= start) and (end is None or int(t["time"]) <= end)]

    def pause_policies(self) -> dict[str, dict[str, bool]]:
        with self._lock:
            return {DEFAULT_CLUSTER: dict(self._pause)}

    # -- write side ---------------------------------------------------------------------------------

    def modify_pause_policy(self, body: Mapping[str, Any]) -> None:
        """Apply flags. Accepts the SDK's ``{"body": {"general": {...}}}`` and flat ``{"pauseIndex": ...}``."""
        payload: Any = body.get("body", body) if isinstance(body, Mapping) else body
        if not isinstance(payload, Mapping) or not payload:
            raise EngineError("InvalidParameter", "body must map a target to pause flags, e.g. "
                              '{"body": {"general": {"pauseIndex": true}}}')
        if all(k in PAUSE_FLAGS for k in payload):
            payload = {DEFAULT_CLUSTER: payload}
        updates: dict[str, bool] = {}
        for target, flags in payload.items():
            if target != DEFAULT_CLUSTER:
                raise EngineError("InvalidParameter", f"unknown pause-policy target {target!r}; "
                                  f"ListPausePolicys lists the targets: [{DEFAULT_CLUSTER!r}]")
            if not isinstance(flags, Mapping):
                raise EngineError("InvalidParameter", f"pause flags of {target!r} must be an object")
            for flag, value in flags.items():
                if flag not in PAUSE_FLAGS:
                    raise EngineError("InvalidParameter", f"unknown pause flag {flag!r}; known: {list(PAUSE_FLAGS)}")
                if value is None:
                    continue
                if not isinstance(value, bool):
                    raise EngineError("InvalidParameter", f"pause flag {flag} must be true or false, got {value!r}")
                updates[flag] = value
        with self._changed:
            self._pause.update(updates)
            self._save_instance()
            self._changed.notify_all()
        log.info("pause policy of %s is now %s", self.instance_id, self._pause)

    def force_switch(self, fsm_id: str) -> None:
        """Switch the task's generation in even if a pause flag holds it."""
        with self._changed:
            task = self._tasks.get(fsm_id)
            if task is None:
                raise EngineError("task.NotFound", f"no data-source task with fsmId {fsm_id!r}", 404)
            if task["status"] not in ("running", "waiting"):
                raise EngineError("OperationDenied.TaskStatus",
                                  f"task {fsm_id!r} is {task['status']}: there is nothing to switch", 409)
            self._forced.add(fsm_id)
            self._changed.notify_all()
        log.info("force switch requested for %s", fsm_id)

    def release_stalled_builds(self) -> None:
        """Let a build held by ``faults.stall_next_build`` continue."""
        self.faults.stall_release.set()

    def reindex(self, table: str, partition: str | None, data_time_sec: int | None = None, user: str = "") -> None:
        """Start a full build of ``partition`` (``ds=YYYYMMDD``) in the background; return at once."""
        self.source(table)
        if not isinstance(partition, str) or not _PARTITION_RE.match(partition.strip()):
            raise EngineError("InvalidParameter", f"partition must look like ds=20261123, got {partition!r}")
        partition = partition.strip()
        replay_from_ms = self._check_replay_start(data_time_sec)  # within the increments kept, or refused
        with self._lock:
            if self._closing.is_set():
                raise EngineError("ServiceUnavailable", "the engine is shutting down", 503)
            # One build per table: a generation still building, or built but not yet switched in.
            active = [g for g in self._gens[table].values() if g["status"] in _ACTIVE
                      or self._tasks.get(g.get("fsmId", ""), {}).get("status") in _UNFINISHED_TASK]
            if active:
                gen = active[-1]
                task_status = self._tasks.get(gen["fsmId"], {}).get("status")
                raise EngineError(
                    "OperationDenied.BuildInProgress",
                    f"table {table!r} is already building generation {gen['generationId']} "
                    f"(fsmId {gen['fsmId']}, status {gen['status']}, task {task_status}); wait for it, "
                    "or force-switch it", 409,
                )
            now_ms = int(time.time() * 1000)
            gen_id = self._last_generation_id = max(now_ms, self._last_generation_id + 1)
            fsm_id = (f"local@datasource_flow_fsm@{self.instance_id}_{table}@MANUAL-{self.instance_id}_{table}"
                      f"@{gen_id}@{uuid.uuid4().int % 1_000_000:06d}")
            stamp = now_iso()
            visible_at = time.time() + self.faults.register_delay_s if self.faults.register_delay_s > 0 else 0
            self._gens[table][gen_id] = {
                "generationId": gen_id, "status": "starting", "table": table, "partition": partition,
                "fsmId": fsm_id, "message": "", "createTime": stamp, "updateTime": stamp, "visibleAt": visible_at,
                "replayFromMs": replay_from_ms,
            }
            self._tasks[fsm_id] = {
                "fsmId": fsm_id, "name": table, "type": "full", "groupType": "reindex", "status": "running",
                "time": str(gen_id // 1000), "user": user, "field3": partition,
                "extraAttribute": json.dumps({"table": table, "generationId": gen_id, "partition": partition,
                                              "dataTimeSec": data_time_sec}),
                "tags": [{"tagLevel": "info", "msg": f"reindex {table} {partition}: queued"}],
                "taskNodes": [{"index": i, "name": n, "status": "pending", "finishDate": ""}
                              for i, n in enumerate(NODE_NAMES)],
                "visibleAt": visible_at,
            }
            self._save_instance()
            self._save_generations(table)
            self._save_tasks()
            thread = threading.Thread(
                target=self._run_build, args=(table, gen_id, fsm_id, partition), name=f"build-{table}-{gen_id}",
                daemon=True,
            )
            self._threads.add(thread)
            thread.start()  # under the lock, so close() never joins a thread that has not started
        log.info("reindex %s %s: generation %s, fsmId %s", table, partition, gen_id, fsm_id)

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting builds, wake waiting/stalled builds so they exit, and join them."""
        with self._changed:
            self._closing.set()
            self._changed.notify_all()
            threads = list(self._threads)
        self._wake_pushes()
        for thread in threads:
            thread.join(timeout)

    # -- search -------------------------------------------------------------------------------------

    def resolve_cluster(self, cluster: str | None) -> str:
        """The table a query's cluster names: a table name, or ``general``/none for the default table."""
        if cluster is None or cluster == DEFAULT_CLUSTER:
            return self.default_table
        if cluster in self.tables:
            return cluster
        raise HaSearchError(
            ERROR_CLUSTER_NAME_NOT_EXIST,
            f"cluster {cluster!r} does not exist; use {DEFAULT_CLUSTER!r} or a table name {sorted(self.tables)}",
        )

    def search(self, table: str, query: HaQuery) -> dict[str, Any]:
        """Answer ``query`` from the live generation of ``table`` (HA JSON result dict)."""
        source = self.tables.get(table)
        if source is None:
            raise HaSearchError(ERROR_CLUSTER_NAME_NOT_EXIST, f"cluster {table!r} does not exist")
        with self._lock:
            live = self._live.get(table)
        summary_from = self._switch_between_phases(table, live) if self.faults.take("switch_during_next_query") else None
        return search_generation(source.schema, live, query, self.vectorizer, summary_from)

    def _switch_between_phases(self, table: str, live: LiveGeneration | None) -> LiveGeneration | None:
        """Fault: the build waiting to switch (held or paused) goes live now, between a query's phases."""
        with self._lock:
            pending = [t["fsmId"] for t in self._tasks.values() if t["status"] in _UNFINISHED_TASK
                       and json.loads(t["extraAttribute"]).get("table") == table]
        for fsm_id in pending:
            self.force_switch(fsm_id)
        self.wait_for(lambda: self._live.get(table) is not live, 10.0)
        with self._lock:
            return self._live.get(table)

    # -- the build ----------------------------------------------------------------------------------

    def _update(self, table: str, gen_id: int, fsm_id: str, *, status: str | None = None,
                node: tuple[str, str] | None = None, tag: tuple[str, str] | None = None,
                progress: str | None = None, task_status: str | None = None, message: str | None = None) -> None:
        with self._lock:
            gen = self._gens[table][gen_id]
            task = self._tasks[fsm_id]
            if status is not None:
                gen["status"] = status
            if message is not None:
                gen["message"] = message
            gen["updateTime"] = now_iso()
            if node is not None:
                for item in task["taskNodes"]:
                    if item["name"] == node[0]:
                        item["status"] = node[1]
                        if node[1] in ("success", "failed", "stopped"):
                            item["finishDate"] = gen["updateTime"]
            if progress is not None:  # one progress tag per task, updated in place
                tags = task["tags"]
                last = tags[-1].get("msg", "") if tags else ""
                if last.startswith(progress.split(":", 1)[0] + ": ") and "/" in last:
                    tags[-1]["msg"] = progress
                else:
                    tags.append({"tagLevel": "info", "msg": progress})
            if tag is not None:
                task["tags"].append({"tagLevel": tag[0], "msg": tag[1]})
            if task_status is not None:
                task["status"] = task_status
            self._save_generations(table)
            self._save_tasks()

    def _checkpoint(self) -> None:
        """Sleep ``phase_delay_s`` (interruptibly) and stop if the engine is closing."""
        delay = self.faults.phase_delay_s
        if delay > 0:
            self._closing.wait(delay)
        if self._closing.is_set():
            raise BuildInterrupted()

    def _run_build(self, table: str, gen_id: int, fsm_id: str, partition: str) -> None:
        source = self.tables[table]
        try:
            with self._lock:
                unregistered = float(self._gens[table][gen_id].get("visibleAt") or 0) - time.time()
            if unregistered > 0 and self._closing.wait(unregistered):  # the build starts once registered
                raise BuildInterrupted()
            self._checkpoint()
            self._update(table, gen_id, fsm_id, status="building")
            self._checkpoint()
            self._update(table, gen_id, fsm_id, node=("read_partition", "running"))
            rows, duplicates = read_partition_rows(source, partition)
            self._update(table, gen_id, fsm_id, node=("read_partition", "success"), tag=(
                "info", f"read_partition: {len(rows[source.schema.primary_key])} documents from "
                f"{source.warehouse_table} {partition} ({duplicates} duplicate primary keys replaced)"))
            self._checkpoint()
            self._update(table, gen_id, fsm_id, node=("fetch_and_vectorize", "running"))
            vectors, keep, failures = fetch_and_vectorize(
                source, rows, self.vectorizer, workers=self.fetch_workers, closing=self._closing,
                on_progress=lambda done, total: self._update(
                    table, gen_id, fsm_id, progress=f"fetch_and_vectorize: {done}/{total} images"),
            )
            self._count_build_vectorized(table, len(keep))
            total = len(rows[source.schema.primary_key])
            examples = failures[:MAX_EXAMPLES]
            shown = "; ".join(f"{e['pk']} {e['image']} ({e['reason']})" for e in examples)
            summary = (f"fetch_and_vectorize: {len(keep)} of {total} images vectorized, {len(failures)} could not "
                       f"be fetched or decoded" + (f", e.g. {shown}" if shown else ""))
            with self._lock:
                self._gens[table][gen_id].update(rows=total, docCount=len(keep), duplicates=duplicates,
                                                 failures=len(failures), failureExamples=examples)
            if total and len(failures) / total > self.max_decode_failure_fraction:
                self._update(table, gen_id, fsm_id, node=("fetch_and_vectorize", "failed"))
                raise BuildFailed(f"{summary}; that is more than the allowed "
                                  f"{self.max_decode_failure_fraction:.1%} (max_decode_failure_fraction)")
            self._update(table, gen_id, fsm_id, node=("fetch_and_vectorize", "success"),
                         tag=("warn" if failures else "info", summary))
            self._checkpoint()
            stall = self.faults.take("stall_next_build")
            if stall:
                # Cleared before the node shows running: a release by someone who saw it running counts.
                self.faults.stall_release.clear()
            self._update(table, gen_id, fsm_id, node=("build_index", "running"))
            if stall:
                log.warning("fault: build %s of %s stalls until released", gen_id, table)
                while not self.faults.stall_release.wait(0.05):
                    if self._closing.is_set():
                        raise BuildInterrupted()
            failure = self.faults.take("fail_next_build")
            if failure:
                raise BuildFailed(f"build_index: {failure} (injected fault)")
            meta = {"table": table, "partition": partition, "rows": total, "duplicates": duplicates,
                    "failures": len(failures), "failureExamples": examples,
                    "vectorizer": {"name": self.vectorizer.name, "description": self.vectorizer.description}}
            write_generation(self._table_dir(table) / "generations", gen_id, meta, source.schema, rows, keep, vectors)
            self._update(table, gen_id, fsm_id, node=("build_index", "success"),
                         tag=("info", f"build_index: generation {gen_id} written ({len(keep)} documents)"))
            self._checkpoint()
            if self.faults.take("stop_next_generation"):
                shutil.rmtree(self._table_dir(table) / "generations" / str(gen_id), ignore_errors=True)
                raise BuildFailed("switch: the generation was stopped by an operator (injected fault)", "stopped")
            # Built: the generation is ready now, while its switch node still has to run.
            self._update(table, gen_id, fsm_id, status="ready", node=("switch", "running"),
                         tag=("info", f"switch: generation {gen_id} is built; switching it in"))
            self._switch_when_allowed(table, gen_id, fsm_id)
        except BuildInterrupted:
            log.warning("build %s of %s interrupted: the engine is closing", gen_id, table)
        except BuildFailed as exc:
            log.warning("build %s of %s %s: %s", gen_id, table, exc.status, exc)
            with self._lock:
                self._gens[table][gen_id].update(status=exc.status, message=str(exc), updateTime=now_iso())
                finish_task(self._tasks[fsm_id], exc.status, str(exc))
                self._save_generations(table)
                self._save_tasks()
        except Exception as exc:  # a bug must end the build visibly, never leave it "building"
            log.exception("build %s of %s crashed", gen_id, table)
            with self._lock:
                message = f"internal error: {type(exc).__name__}: {exc}"
                self._gens[table][gen_id].update(status="failed", message=message, updateTime=now_iso())
                finish_task(self._tasks[fsm_id], "failed", message)
                self._save_generations(table)
                self._save_tasks()
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())
                self._forced.discard(fsm_id)

    def _switch_when_allowed(self, table: str, gen_id: int, fsm_id: str) -> None:
        live = self._open_generation(table, gen_id)  # load before taking the lock: queries keep flowing
        replay = self._replay_pushes(table, gen_id, live)  # its realtime layer: the pushes since dataTimeSec
        held = self.faults.take("hold_switch_next_build")
        with self._changed:
            if held:
                log.warning("fault: build %s of %s is ready but its switch never happens", gen_id, table)
                self._update(table, gen_id, fsm_id, tag=(
                    "warn", "switch: the engine has not received the switch target, still waiting (injected "
                    f"fault; ForceSwitch {fsm_id} switches it in)"))
                while fsm_id not in self._forced:
                    self._changed.wait(0.5)
                    if self._closing.is_set():
                        raise BuildInterrupted()
            while self._pause["pauseAll"] or self._pause["pauseIndex"]:
                if fsm_id in self._forced:
                    break
                if self._tasks[fsm_id]["status"] != "waiting":
                    flags = [f for f in ("pauseAll", "pauseIndex") if self._pause[f]]
                    self._update(table, gen_id, fsm_id, node=("switch", "waiting"), task_status="waiting", tag=(
                        "warn", f"switch: waiting, {' and '.join(flags)} is on; turn it off "
                        f"(ModifyPausePolicy) or ForceSwitch {fsm_id}"))
                    log.info("build %s of %s waits to switch (%s)", gen_id, table, flags)
                self._changed.wait(0.5)
                if self._closing.is_set():
                    raise BuildInterrupted()
            forced = fsm_id in self._forced
            view = replay.finish(self._gens[table][gen_id])  # + what the applier applied meanwhile; saved next
            self._update(table, gen_id, fsm_id, node=("switch", "running"), task_status="running")
            write_json(self._table_dir(table) / "live.json", {"generationId": gen_id, "switchTime": now_iso()})
            self._live[table] = view  # queries see the new generation from here on, never a mix
            self._update(table, gen_id, fsm_id, node=("switch", "success"), task_status="success",
                         tag=("info", f"switch: generation {gen_id} is live" + (" (forced)" if forced else "")))
        log.info("table %s: generation %s is live%s", table, gen_id, " (forced)" if forced else "")
        self._prune(table)

    def _prune(self, table: str) -> None:
        """Delete the data of old generations, keeping the live one and the newest ``keep_generations``."""
        folder = self._table_dir(table) / "generations"
        with self._lock:
            live = self.live_generation_id(table)
            ready = sorted((g for g, rec in self._gens[table].items() if rec["status"] == "ready"), reverse=True)
            keep = set(ready[: self.keep_generations]) | ({live} if live is not None else set())
        for entry in folder.iterdir() if folder.is_dir() else ():
            # .tmp-* folders are what a killed build left behind (only one build per table runs at a time)
            if (entry.name.isdigit() and int(entry.name) not in keep) or entry.name.startswith(".tmp-"):
                shutil.rmtree(entry, ignore_errors=True)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Poll ``predicate`` until true or ``timeout`` (a test helper; the pipeline polls over HTTP)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return predicate()
