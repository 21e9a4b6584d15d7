"""The full rebuild and the wait until the new index is live, as plain code over the management client.

    preflight ─► snapshot generation ids ─► reindex(partition='ds=…') ─► find the new generation
              ─► poll it until it is ``ready`` AND its change-history task has finished (switched in)
                 (fail on failed / stopped / stall / not switched / deadline)

The API's reindex answer carries no generation id, so we correlate ourselves: the new generation is the
first id that was not in the snapshot. Each poll is judged by :func:`assess`, a pure function shared by
the synchronous wait (CLI, tests) and the deferrable trigger, so both fail the same way with the same
messages. ``ready`` alone is not live: the generation is built, and the task (ListDataSourceTasks:
fsmId, status, taskNodes) must also have finished, else the old index still answers. Progress is any
change of the generation's status or of its task; no change for ``stall_timeout_s`` is a stall (a
built generation that stops there was *not switched in*). ``deadline_at`` bounds the whole wait.
Task and node statuses are read defensively (case-insensitive, flat nodes or ``nodeInfo``-nested),
since the vendor documents no enumeration of them. Once live, the generation's own figures (documents
indexed, what the build left out) are checked against the partition's rows (:mod:`.figures`): more
missing than ``max_unindexed_fraction`` ends the wait ``incomplete``, although the index already serves.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Literal

from pipeline.config import GuardsConfig, OpenSearchConfig
from pipeline.errors import (
    PreflightError,
    RebuildDeadlineError,
    RebuildError,
    RebuildFailedError,
    RebuildIncompleteError,
    RebuildNotSwitchedError,
    RebuildStalledError,
    ReindexNotStartedError,
    ReplayWindowError,
    TransientOpenSearchError,
)
from pipeline.opensearch.figures import incomplete_message, over_limit, read_figures
from pipeline.opensearch.management import OpenSearchManagement

log = logging.getLogger(__name__)

GenerationStatus = Literal["starting", "building", "ready", "stopped", "failed"]
Outcome = Literal["waiting", "ready", "failed", "stopped", "stalled", "unswitched", "deadline", "incomplete"]
TaskState = Literal["finished", "failed", "unfinished"]
_PAUSE_FLAGS = ("pauseAll", "pauseIndex")
# Change-history statuses seen in the SDK's docs, field reports and the local server; anything else is
# read as unfinished, so an unknown word can only make us wait, never call an old index live.
_TASK_DONE = frozenset({"success", "succeed", "succeeded", "finish", "finished", "done", "complete", "completed"})
_TASK_FAILED = frozenset({"failed", "fail", "failure", "error", "stopped", "stop", "cancelled", "canceled", "killed"})
_TASK_BUSY = frozenset({"running", "waiting", "pending", "init", "retry", "processing", "queued", "paused"})
_NODE_SKIPPED = frozenset({"skipped", "skip"})


@dataclass(frozen=True)
class RebuildSettings:
    poll_interval_s: float = 60.0
    stall_timeout_s: float = 3600.0
    deadline_s: float = 12 * 3600.0
    new_generation_timeout_s: float = 600.0
    reindex_attempts: int = 3
    max_unindexed_fraction: float = 0.01  # guards.max_unindexed_fraction, judged when the wait ends ready


@dataclass(frozen=True)
class RebuildHandle:
    """What a started rebuild is; small and JSON-able, so it travels through XCom and the trigger."""

    conn_id: str
    instance_id: str
    table: str
    ds: str
    generation_id: int
    previous_generation_ids: list[int]
    started_at: float
    deadline_at: float
    partition_rows: int | None = None  # distinct ids of partition ds: what the generation should hold
    live_ds_before: str | None = None  # the partition live before this run: where a rollback goes

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RebuildHandle:
        return cls(**data)


@dataclass(frozen=True)
class WaitState:
    """What the last poll saw, to tell progress from a stall."""

    fingerprint: str = ""
    last_progress_at: float = 0.0


@dataclass(frozen=True)
class Observation:
    status: str
    task: dict | None
    generation: dict | None = None  # GetTableGeneration's whole answer: the build's figures, where reported

    @property
    def fsm_id(self) -> str | None:
        return (self.task or {}).get("fsmId")

    def fingerprint(self) -> str:
        nodes = [(n.get("name"), n.get("status")) for n in task_nodes(self.task)]
        return json.dumps([self.status, (self.task or {}).get("status"), nodes])


def task_nodes(task: dict | None) -> list[dict]:
    """A task's nodes: flat (the SDK model) or nested in ``nodeInfo`` (the vendor's documented example)."""
    nodes = []
    for node in (task or {}).get("taskNodes") or []:
        if isinstance(node, dict):
            info = node.get("nodeInfo")
            nodes.append(info if isinstance(info, dict) else node)
    return nodes


def task_state(task: dict | None) -> TaskState:
    """Has this change-history task finished (``finished``), ended badly (``failed``) or neither?"""
    if not task:
        return "unfinished"
    status = str(task.get("status") or "").strip().lower()
    if status in _TASK_FAILED:
        return "failed"
    if status in _TASK_DONE:
        return "finished"
    nodes = [str(n.get("status") or "").strip().lower() for n in task_nodes(task)]
    if any(n in _TASK_FAILED for n in nodes):
        return "failed"
    if status not in _TASK_BUSY and nodes and nodes[-1] in _TASK_DONE and all(n in _TASK_DONE | _NODE_SKIPPED for n in nodes):
        return "finished"  # an unknown task status (the docs' example is "2") but every node done
    return "unfinished"


def task_busy(task: dict) -> bool:
    """Is this task visibly under way (a busy status, or a busy node under an unknown status)? Stricter
    than "not finished": an unknown word alone must not block every future build."""
    status = str(task.get("status") or "").strip().lower()
    if status in _TASK_BUSY:
        return True
    nodes = {str(n.get("status") or "").strip().lower() for n in task_nodes(task)}
    return status not in _TASK_DONE | _TASK_FAILED and bool(nodes & _TASK_BUSY)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    message: str
    state: WaitState
    fsm_id: str | None = None
    figures: dict | None = None  # the build's figures against the partition (pipeline/opensearch/figures.py)


# -- whether to rebuild at all ----------------------------------------------------------------------


def rebuild_decision(ds: str, partitions: list[str], *, skip: bool = False, force: bool = False) -> tuple[bool, str]:
    """Rebuild from ``ds``? Never silently roll the live index back to an older partition."""
    if skip:
        return False, "the skip_rebuild Param is set: the partition is written, the index left as it is"
    newer = sorted(p for p in partitions if p > ds)
    if newer and not force:
        return False, (
            f"partition ds={ds} is older than the newest partition ds={newer[-1]}: rebuilding from it would roll "
            "the live index back. The partition is written; set the force_rebuild Param to rebuild from it anyway"
        )
    if newer:
        return True, f"force_rebuild is set: rebuilding from ds={ds} although ds={newer[-1]} exists"
    return True, f"ds={ds} is the newest partition"


def settings_for(config: OpenSearchConfig, guards: GuardsConfig | None = None) -> RebuildSettings:
    return RebuildSettings(
        poll_interval_s=config.poll_interval_s,
        stall_timeout_s=config.stall_timeout_minutes * 60,
        deadline_s=config.deadline_hours * 3600,
        new_generation_timeout_s=config.new_generation_timeout_minutes * 60,
        max_unindexed_fraction=(guards or GuardsConfig()).max_unindexed_fraction,
    )


# -- preflight and start ----------------------------------------------------------------------------


def active_pauses(policies: dict[str, dict]) -> list[str]:
    """Names of pause switches that keep a new index from going live (pauseAll, pauseIndex)."""
    return [f"{scope}.{flag}" for scope, flags in sorted(policies.items()) for flag in _PAUSE_FLAGS if (flags or {}).get(flag)]


def preflight(mgmt: OpenSearchManagement, table: str) -> dict:
    """Check the instance is READY, the table IN_USE, no pause switch is on and no build of the table is
    under way (one at a time: a generation starting/building, or a change-history task unfinished);
    return what was seen, with ``warnings`` (a data source that builds by itself)."""
    iid = mgmt.conn.instance_id
    instance_status = mgmt.instance().get("status")
    if instance_status != "READY":
        raise PreflightError(
            f"OpenSearch instance {iid} is {instance_status!r}, not READY: wait for its configuration change "
            "to finish (console: Change History), then rerun"
        )
    described = mgmt.table(table)
    table_status = described.get("status")
    if table_status != "IN_USE":
        raise PreflightError(
            f"table {table!r} of instance {iid} is {table_status!r}, not IN_USE: publish the table (or finish its "
            "first build) in the console, then rerun"
        )
    pauses = active_pauses(mgmt.pause_policies())
    if pauses:
        raise PreflightError(
            f"instance {iid} has pause switches on ({', '.join(pauses)}): a new index would build but never go "
            "live. Turn them off (ModifyPausePolicy, or the console's data-update pause settings) and rerun"
        )
    for generation_id in mgmt.generation_ids(table)[-3:]:  # builds are sequential: the newest tell
        status = mgmt.generation(table, generation_id).get("status")
        if status in ("starting", "building"):
            raise PreflightError(
                f"table {table!r} of instance {iid} is already building generation {generation_id} ({status}); "
                "one build at a time per table, and a second reindex would race it. Wait for it to finish "
                "(console: Change History) or stop it, then rerun"
            )
    for task in mgmt.data_source_tasks():
        if is_table_task(task, iid, table) and task_busy(task):
            raise PreflightError(
                f"table {table!r} of instance {iid} has an unfinished change: {_task_summary(task)}. One build "
                "at a time per table: wait for it, or if it is a built generation held from its switch, "
                f"ForceSwitch(instanceId={iid}, fsmId={task.get('fsmId')}) or turn the pause off; then rerun"
            )
    warnings = []
    if (described.get("dataSource") or {}).get("autoBuildIndex"):
        warnings.append(
            f"the data source of table {table!r} has Automatic Index Rebuild on (autoBuildIndex): the service may "
            "start full builds by itself (e.g. when a <table>_done partition appears), racing the ones this DAG "
            "starts. Turn it off in the console's data source settings if this DAG drives the rebuilds"
        )
    for warning in warnings:
        log.warning("preflight: %s", warning)
    return {"instance_status": instance_status, "table_status": table_status, "pauses": pauses, "warnings": warnings}


@dataclass(frozen=True)
class RebuildAttempt:
    """What a start remembers per DAG run *before* it calls reindex, so that a retried or rerun start
    follows the build an earlier attempt may have started instead of starting another.
    ``reindex_sent_at``: when a reindex last may have reached the service (None: none did)."""

    table: str
    ds: str
    previous_generation_ids: list[int]
    started_at: float
    reindex_sent_at: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> RebuildAttempt:
        return cls(**data)


def _wait_for_new_generation(
    mgmt: OpenSearchManagement, table: str, before: set[int], timeout_s: float, interval_s: float,
    clock: Callable[[], float], sleep: Callable[[float], None],
) -> int | None:
    give_up = clock() + timeout_s
    while True:
        new = sorted(set(mgmt.generation_ids(table)) - before)
        if new:
            return new[-1]
        if clock() >= give_up:
            return None
        sleep(min(interval_s, max(0.0, give_up - clock())))


def _handle(mgmt: OpenSearchManagement, attempt: RebuildAttempt, generation: int, deadline_at: float) -> RebuildHandle:
    return RebuildHandle(
        conn_id=mgmt.conn.conn_id, instance_id=mgmt.conn.instance_id, table=attempt.table, ds=attempt.ds,
        generation_id=generation, previous_generation_ids=sorted(attempt.previous_generation_ids),
        started_at=attempt.started_at, deadline_at=deadline_at,
    )


def resume_rebuild(
    mgmt: OpenSearchManagement,
    attempt: RebuildAttempt,
    settings: RebuildSettings,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> RebuildHandle | None:
    """The build an earlier attempt of this DAG run started, if there is one to follow; None if a new
    build must start (none appeared, or it ended failed/stopped).

    A generation not in the attempt's snapshot is followed unless it failed. If none is there yet but
    the earlier reindex may have reached the service, we wait until ``new_generation_timeout_s`` after
    it: a second reindex inside that window could start a second build."""
    before = set(attempt.previous_generation_ids)
    new = sorted(set(mgmt.generation_ids(attempt.table)) - before)
    if not new and attempt.reindex_sent_at is not None:
        window = attempt.reindex_sent_at + settings.new_generation_timeout_s - clock()
        if window > 0:
            log.info("an earlier reindex of %s may still register a generation: waiting up to %.0f s", attempt.table, window)
            found = _wait_for_new_generation(mgmt, attempt.table, before, window, min(5.0, settings.poll_interval_s), clock, sleep)
            new = [found] if found is not None else []
    if not new:
        return None
    status = mgmt.generation(attempt.table, new[-1]).get("status")
    if status in ("failed", "stopped"):
        log.info("the build an earlier attempt started (generation %s) is %s: starting a new one", new[-1], status)
        return None
    log.info("following generation %s, started by an earlier attempt of this run (status %s)", new[-1], status)
    return _handle(mgmt, attempt, new[-1], clock() + settings.deadline_s)


REPLAY_MARGIN_S = 600  # start a replay at least this far inside the service's window: the call takes time


def replay_from(snapshot_at: float | None, last_push_at: float | None, retention_s: float,
                now: float | None = None) -> int | None:
    """The ``data_time_sec`` of a full rebuild from a partition whose rows were captured at ``snapshot_at``.

    The partition holds every change made before its snapshot; documents pushed after it (by delta runs,
    or anyone) are in the index but not in the partition, so the rebuild must replay them: from the
    snapshot on. The service keeps pushed increments ``retention_s`` (3 days): a snapshot older than that
    cannot be replayed from; if documents were pushed since it, the rebuild would lose them and is
    refused (:class:`ReplayWindowError`); if none were, there is nothing to replay (None)."""
    now = time.time() if now is None else now
    oldest = now - retention_s + REPLAY_MARGIN_S
    if snapshot_at is None:  # not known (a run of an older version): replay as far back as allowed
        return int(oldest) if last_push_at is not None else None
    if snapshot_at >= oldest:
        return int(snapshot_at)
    if last_push_at is not None and last_push_at >= snapshot_at:
        raise ReplayWindowError(
            f"this partition's rows were captured {(now - snapshot_at) / 3600:.1f} h ago, and documents were pushed "
            f"to the index since then (last at {time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(last_push_at))}); "
            f"the service replays pushes from at most {retention_s / 3600:.0f} h back, so a full rebuild from it "
            "would drop them. Rebuild from a fresh partition instead (rerun with today's partition_date)"
        )
    return None


def start_rebuild(
    mgmt: OpenSearchManagement,
    table: str,
    ds: str,
    settings: RebuildSettings,
    *,
    remember: Callable[[RebuildAttempt], None] = lambda _attempt: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    data_time_sec: int | None = None,
) -> RebuildHandle:
    """Snapshot generations, call reindex from partition ``ds`` (replaying pushes since ``data_time_sec``,
    see :func:`replay_from`), and find the generation it created.

    ``remember`` stores the attempt (snapshot, and when a reindex may have been sent) before each call,
    for :func:`resume_rebuild`. A reindex is repeated only when it certainly started nothing
    (:class:`ReindexNotStartedError`); any other failure may have started a build, so we wait for its
    generation instead and, if none appears in time, stop without a second call.
    """
    attempt = RebuildAttempt(table, ds, sorted(mgmt.generation_ids(table)), clock())
    before = set(attempt.previous_generation_ids)
    spec = f"ds={ds}"
    probe_interval = min(5.0, settings.poll_interval_s)
    for try_number in range(1, settings.reindex_attempts + 1):
        remember(replace(attempt, reindex_sent_at=clock()))
        try:
            mgmt.reindex(table, spec, data_time_sec)
            break
        except ReindexNotStartedError as exc:
            remember(attempt)
            if try_number == settings.reindex_attempts:
                raise
            log.warning("reindex of %s from %s started nothing (attempt %d), repeating it: %s", table, spec, try_number, exc)
            sleep(exc.retry_after_s or probe_interval * try_number)
        except TransientOpenSearchError as exc:
            log.warning("reindex of %s from %s failed after it may have reached the service: %s; not repeating "
                        "it, waiting for the generation it may have started", table, spec, exc)
            generation = _wait_for_new_generation(
                mgmt, table, before, settings.new_generation_timeout_s, probe_interval, clock, sleep
            )
            if generation is None:
                raise RebuildError(
                    f"reindex of table {table!r} from {spec} failed ({exc}) after the request may have reached the "
                    f"service, and no new generation appeared within {settings.new_generation_timeout_s:.0f} s. It is "
                    f"not repeated blindly: check the change history of instance {mgmt.conn.instance_id}, then rerun "
                    "start_rebuild (it follows a generation that appears late, or starts a build if none did)"
                ) from None
            log.info("the failed reindex call did start generation %s; following it", generation)
            return _handle(mgmt, attempt, generation, attempt.started_at + settings.deadline_s)
    generation = _wait_for_new_generation(mgmt, table, before, settings.new_generation_timeout_s, probe_interval, clock, sleep)
    if generation is None:
        raise RebuildError(
            f"reindex of table {table!r} from {spec} was accepted but no new generation appeared within "
            f"{settings.new_generation_timeout_s:.0f} s; check the change history of instance {mgmt.conn.instance_id}"
        )
    log.info("rebuild of %s from %s: generation %s", table, spec, generation)
    return _handle(mgmt, attempt, generation, attempt.started_at + settings.deadline_s)


# -- observing and judging --------------------------------------------------------------------------


def is_table_task(task: dict, instance_id: str, table: str) -> bool:
    """Does this change-history task belong to ``table``? Full builds carry ``<instance>_<table>@`` in
    their fsmId (documented example: ``…@MANUAL-ha-cn-2r42ostoc01_ecom_table@1655974525756@006754``)."""
    if f"{instance_id}_{table}@" in str(task.get("fsmId") or "") or task.get("name") == table:
        return True
    try:
        extra = json.loads(task.get("extraAttribute") or "{}")
    except (TypeError, ValueError):
        return False
    return isinstance(extra, dict) and extra.get("table") == table


def pick_task(tasks: list[dict], handle: RebuildHandle) -> dict | None:
    """The change-history task of this rebuild (the API gives no direct link): one naming our generation,
    else the newest task of our table started since we called reindex, else the newest task since then."""
    generation = re.compile(rf"(?<!\d){handle.generation_id}(?!\d)")
    for task in tasks:
        text = json.dumps([task.get("tags"), task.get("name"), task.get("extraAttribute"), task.get("field3")])
        if generation.search(text):
            return task
    recent = [t for t in tasks if _task_time(t) >= handle.started_at - 60]
    ours = [t for t in recent if is_table_task(t, handle.instance_id, handle.table)]
    return max(ours or recent, key=_task_time) if recent else None


def _task_time(task: dict) -> float:
    value = task.get("time") or 0
    try:
        value = float(value)
    except (TypeError, ValueError):
        return 0.0
    return value / 1000 if value > 1e11 else value  # milliseconds or seconds


def observe(mgmt: OpenSearchManagement, handle: RebuildHandle) -> Observation:
    generation = mgmt.generation(handle.table, handle.generation_id)
    return Observation(generation.get("status", ""), pick_task(mgmt.data_source_tasks(), handle), generation)


async def observe_async(mgmt: OpenSearchManagement, handle: RebuildHandle) -> Observation:
    generation = await mgmt.generation_async(handle.table, handle.generation_id)
    return Observation(generation.get("status", ""), pick_task(await mgmt.data_source_tasks_async(), handle), generation)


def _task_summary(task: dict | None) -> str:
    if not task:
        return "no change-history task found"
    nodes = ", ".join(f"{n.get('name')}={n.get('status')}" for n in task_nodes(task))
    summary = f"change history: task {task.get('fsmId')} {task.get('name', '')} is {task.get('status')} [{nodes}]"
    tags = task.get("tags")
    notes = [t.get("msg") for t in tags if isinstance(t, dict) and t.get("tagLevel") in ("error", "warn")] if isinstance(tags, list) else []
    return summary + (f"; it says: {' | '.join(str(n) for n in notes if n)}" if any(notes) else "")


def assess(
    handle: RebuildHandle, obs: Observation, state: WaitState, now: float, settings: RebuildSettings
) -> Verdict:
    """Judge one observation. Pure: same inputs, same verdict, in the trigger and the sync wait."""
    where = f"generation {handle.generation_id} of table {handle.table!r} (instance {handle.instance_id}, ds={handle.ds})"
    fingerprint = obs.fingerprint()
    if fingerprint != state.fingerprint or not state.last_progress_at:
        state = WaitState(fingerprint, now)
    history = _task_summary(obs.task)
    fsm = obs.fsm_id or "<unknown>"
    if obs.status in ("failed", "stopped"):
        return Verdict(
            obs.status,  # type: ignore[arg-type]
            f"{where} is {obs.status}; {history}. Fix the cause and rerun this DAG run "
            "(the partition is already written)",
            state,
            obs.fsm_id,
        )
    if obs.status == "ready":
        switched = task_state(obs.task)
        if switched == "finished":  # live: now check what it holds against the partition's rows
            figures = read_figures(obs.generation or {}, handle.partition_rows)
            if over_limit(figures, settings.max_unindexed_fraction):
                return Verdict("incomplete", incomplete_message(
                    where, figures, settings.max_unindexed_fraction, instance_id=handle.instance_id,
                    fsm_id=obs.fsm_id, live_ds_before=handle.live_ds_before), state, obs.fsm_id, figures)
            return Verdict("ready", f"{where} is ready and switched in ({history}): the new index is live; "
                           f"{figures['summary']}", state, obs.fsm_id, figures)
        if switched == "failed":
            return Verdict(
                "failed",
                f"{where} was built (ready) but its change-history task ended badly; {history}. The old index "
                "keeps serving. Fix the cause and rerun this DAG run",
                state,
                obs.fsm_id,
            )
        stuck_for = now - state.last_progress_at
        if now >= handle.deadline_at or stuck_for >= settings.stall_timeout_s:
            limit = (
                f"at the deadline ({settings.deadline_s / 3600:.1f} h after reindex)"
                if now >= handle.deadline_at
                else f"after {stuck_for / 60:.0f} min without progress"
            )
            return Verdict(
                "unswitched",
                f"{where} is built (ready) but was not switched in {limit}; {history}. The old index keeps "
                "serving. If a pause switch is on, turn it off (ModifyPausePolicy); if the change was paused "
                f"as too large or its switch is stuck, force it: ForceSwitch(instanceId={handle.instance_id}, "
                f"fsmId={fsm}); then rerun this DAG run's wait",
                state,
                obs.fsm_id,
            )
        return Verdict("waiting", f"{where} is built (ready); waiting for its switch: {history}", state, obs.fsm_id)
    if now >= handle.deadline_at:
        return Verdict(
            "deadline",
            f"{where} is still {obs.status!r} at the deadline ({settings.deadline_s / 3600:.1f} h after reindex); "
            f"{history}. The old index keeps serving; rerun to wait again",
            state,
            obs.fsm_id,
        )
    if now - state.last_progress_at >= settings.stall_timeout_s:
        return Verdict(
            "stalled",
            f"{where} made no progress for {(now - state.last_progress_at) / 60:.0f} min (status {obs.status!r}); "
            f"{history}. If a pause switch is on, turn it off; if the change was paused as too "
            f"large, force the switch: ForceSwitch(instanceId={handle.instance_id}, fsmId={fsm})",
            state,
            obs.fsm_id,
        )
    return Verdict("waiting", f"{where} is {obs.status!r}", state, obs.fsm_id)


_ERRORS: dict[str, type[RebuildError]] = {
    "failed": RebuildFailedError,
    "stopped": RebuildFailedError,
    "stalled": RebuildStalledError,
    "unswitched": RebuildNotSwitchedError,
    "deadline": RebuildDeadlineError,
    "incomplete": RebuildIncompleteError,
}


def raise_for(verdict: Verdict) -> None:
    """Turn a terminal, unsuccessful verdict into its exception."""
    error = _ERRORS.get(verdict.outcome)
    if error is not None:
        raise error(verdict.message)


def wait_until_ready(
    mgmt: OpenSearchManagement,
    handle: RebuildHandle,
    settings: RebuildSettings,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Verdict:
    """Poll until the generation is ready (return) or fails, stops, stalls or runs out of time (raise)."""
    state = WaitState()
    while True:
        try:
            verdict = assess(handle, observe(mgmt, handle), state, clock(), settings)
        except TransientOpenSearchError as exc:  # already retried inside the client; keep waiting
            log.warning("polling %s: %s", handle.generation_id, exc)
            if clock() >= handle.deadline_at:
                raise RebuildDeadlineError(f"deadline passed while the management API was failing: {exc}") from None
            sleep(settings.poll_interval_s)
            continue
        if verdict.outcome != "waiting":
            raise_for(verdict)
            return verdict
        state = verdict.state
        log.info("%s", verdict.message)
        sleep(max(0.0, min(settings.poll_interval_s, handle.deadline_at - clock())))
