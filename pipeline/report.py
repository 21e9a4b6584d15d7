"""Run reports: one JSON file per DAG run, plus a readable summary for the log and the demo.

Reports go to ``$PIPELINE_REPORT_DIR`` (the make targets point it at ``.local/reports``), else to
``$AIRFLOW_HOME/reports``. They hold counts, ids, statuses and error messages: never credentials.
Per index::

    <index>/<ds>/<run id>.json   every run's report (a rerun of the same run replaces it)
    <index>/<ds>.json            a copy of the latest report of ds that was not a dry run
    <index>/runs.jsonl           one line per report written, oldest first: run, ds, outcome, file

Run ids are %-encoded into file names (``manual__2026-12-01T00%3A00%3A00%2B00%3A00.json``). A run whose
partition date could not be resolved files its report under ``<index>/unresolved/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

from pipeline.approval import describe as describe_approval
from pipeline.approval import mark_approved

UNRESOLVED_DS = "unresolved"
RUNS_INDEX = "runs.jsonl"
OUTCOMES = ("success", "failed", "dry_run", "rebuild_skipped", "unknown")
_MAX_NAME = 200  # file-name bytes kept of an encoded run id (file systems allow 255)


def report_dir() -> Path:
    explicit = os.environ.get("PIPELINE_REPORT_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "reports"


def run_file_name(run_id: str) -> str:
    """``<run id>.json`` with the run id %-encoded (one name per run id, no path separators); a very
    long one is cut and made unique with a hash."""
    name = quote(run_id, safe="-_.")
    if name.startswith("."):
        name = "%2E" + name[1:]
    if len(name) > _MAX_NAME:
        name = name[:_MAX_NAME] + "-" + hashlib.sha256(run_id.encode()).hexdigest()[:16]
    return name + ".json"


def decide_outcome(report: dict) -> tuple[str, str | None]:
    """``(outcome, why)``: failed (a task failed: why names the first and its message), dry_run,
    rebuild_skipped (why: the rebuild decision), success; unknown when the task states could not be
    read. ``why`` is None for a success."""
    failed = report.get("failed_tasks") or []
    if failed:
        return "failed", f"{failed[0]['task_id']} failed: {failure_text(failed[0])}"
    if report.get("tasks_error"):
        return "unknown", f"the task states of the run could not be read: {report['tasks_error']}"
    tasks = report.get("tasks") or {}
    broken = [t for t, seen in tasks.items() if seen.get("state") in ("failed", "upstream_failed")]  # DAG order
    if broken:
        return "failed", "tasks not run because an upstream task failed: " + ", ".join(broken)
    if (report.get("load") or {}).get("dry_run"):
        return "dry_run", "listed and counted only: nothing written, nothing rebuilt"
    rebuild = report.get("rebuild")
    if (report.get("mode") or {}).get("mode") == "delta":
        return "success", None
    if rebuild is not None and not rebuild.get("started"):
        return "rebuild_skipped", rebuild.get("reason")
    return "success", None


def build_report(index: str, ds: str | None, stages: dict, facts: dict | None = None) -> dict:
    """One dict from the stages' results (``None`` for a stage that did not run) and the run's facts
    (``pipeline.airflow.outcome.run_facts``: the run, its Params, task states, failures)."""
    load = stages.get("load_partition") or {}
    checked = stages.get("check_partition") or {}
    rebuild = stages.get("start_rebuild")
    waited = stages.get("wait_until_searchable")
    smoke = stages.get("smoke_query")
    handle = (rebuild or {}).get("handle") or {}
    timings = {"list_and_write": load.get("seconds"), "check": checked.get("seconds")}
    if rebuild is not None:
        timings["start_rebuild"] = rebuild.get("seconds")
    if waited and handle:
        timings["wait_until_searchable"] = round(waited["at"] - handle["started_at"], 3)
    pushed, verified = stages.get("push_changes"), stages.get("verify_pushes")
    approval = stages.get("approve_refused_guards")  # guards.on_refusal: ask, and a guard refused
    if pushed:
        timings["push_changes"] = pushed.get("seconds")
    if verified:
        timings["verify_pushes"] = verified.get("seconds")
    if smoke:
        timings["smoke_query"] = round(sum(s.get("seconds", 0) for s in smoke), 3)
    report = {
        "index": index,
        "ds": ds,
        "load": load,
        "published": stages.get("publish_partition"),  # None: not published (refused, failed or a dry run)
        "partition": checked.get("stats"),
        "guards": mark_approved(checked.get("guards"), approval),  # an approved guard reads as overridden
        # who answered a refusal, when and why (None: nothing was asked): decision approved, rejected or
        # timed_out, guards, by {id, name}, at, comment, asked_at, timeout_hours (pipeline/approval.py)
        "approval": approval,
        "baseline_ds": checked.get("baseline_ds"),
        "id_changes": checked.get("id_changes"),
        "rebuild": None
        if rebuild is None
        else {
            "started": rebuild.get("started"),
            "reason": rebuild.get("reason"),
            "replay_from": rebuild.get("data_time_sec"),  # pushes since then replayed into the new index
            "followed_earlier_attempt": bool(rebuild.get("followed_earlier_attempt")),
            "warnings": ((rebuild.get("preflight") or {}).get("warnings")) or [],
            "generation_id": handle.get("generation_id"),
            "previous_generation_ids": handle.get("previous_generation_ids"),
            "outcome": (waited or {}).get("outcome"),
            "message": (waited or {}).get("message"),
            "fsm_id": (waited or {}).get("fsm_id"),
            "figures": (waited or {}).get("figures"),  # what the generation holds against the partition
        },
        "mode": stages.get("choose_rebuild"),  # full or delta, and why
        "delta": None if not (pushed or verified) else {
            "pushed": pushed,  # requests, adds, deletes, bytes, retried requests, seconds; resumable
            "verified": {k: v for k, v in (verified or {}).items() if k != "samples"} or None,
        },
        "smoke_queries": smoke,
        "seconds": {k: v for k, v in timings.items() if v is not None},
    }
    facts = facts or {}
    report.update(
        run=facts.get("run"),
        params=facts.get("params"),
        tasks=facts.get("tasks"),
        failed_tasks=facts.get("failed_tasks") or [],
    )
    if facts.get("tasks_error"):
        report["tasks_error"] = facts["tasks_error"]
    report["outcome"], report["outcome_reason"] = decide_outcome(report)
    return report


def _write_json(target: Path, value: dict) -> None:
    """Atomically: a temp file in the same folder, then a rename over ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem[:50]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(value, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _append_line(target: Path, value: dict) -> None:
    """One JSON line, appended with a single write on an O_APPEND descriptor: a reader never sees half
    a line from the one writer an index has (``max_active_runs=1``), and concurrent appends on a local
    file system do not interleave."""
    line = (json.dumps(value, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def run_line(report: dict, path: str) -> dict:
    """The ``runs.jsonl`` entry of a report; ``path`` relative to the index folder."""
    run = report.get("run") or {}
    failed = report.get("failed_tasks") or []
    return {
        "run_id": run.get("run_id"),
        "run_type": run.get("run_type"),
        "ds": report.get("ds"),
        "outcome": report.get("outcome"),
        "failed_tasks": [f["task_id"] for f in failed],
        "message": (report.get("outcome_reason") or "").splitlines()[0][:300] if report.get("outcome") != "success" else None,
        "started_at": run.get("started_at"),
        "finished_at": run.get("finished_at"),
        "report": path,
    }


def is_dry_run(report: dict) -> bool:
    return bool((report.get("params") or {}).get("dry_run") or (report.get("load") or {}).get("dry_run"))


def write_report(index: str, ds: str | None, report: dict, folder: Path | None = None) -> Path:
    """Store a run's report (see the module doc for the layout) and return its own file's path:
    ``<index>/<ds>/<run id>.json``; then ``<index>/<ds>.json`` unless it was a dry run (a dry run wrote
    nothing, so it must not hide the report of the run that did); then a line in ``runs.jsonl``."""
    index_dir = (folder or report_dir()) / index
    run_id = (report.get("run") or {}).get("run_id") or "no-run-id"
    day = ds or UNRESOLVED_DS
    target = index_dir / day / run_file_name(run_id)
    _write_json(target, report)
    if ds and not is_dry_run(report):
        _write_json(index_dir / f"{ds}.json", report)
    _append_line(index_dir / RUNS_INDEX, run_line(report, target.relative_to(index_dir).as_posix()))
    return target


def read_runs(index_dir: Path) -> list[dict]:
    """The lines of ``<index_dir>/runs.jsonl``, oldest first (none if it does not exist yet)."""
    path = index_dir / RUNS_INDEX
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def failure_text(failure: dict) -> str:
    """``ErrorType: message`` of one failed task."""
    kind = f"{failure['error_type']}: " if failure.get("error_type") else ""
    return f"{kind}{failure.get('message') or ''}".rstrip()


def _headline(report: dict) -> list[str]:
    """What happened, first: the outcome and, for a failed run, the failing task and its message."""
    outcome = report.get("outcome")
    if outcome is None:
        return []
    failed = report.get("failed_tasks") or []
    if outcome == "failed" and failed:
        first, *rest = failure_text(failed[0]).splitlines() or [""]
        head = f"FAILED at {failed[0]['task_id']}: {first}"
        rest = rest + [f"also failed: {f['task_id']}: {failure_text(f).splitlines()[0] if failure_text(f) else ''}" for f in failed[1:]]
    elif outcome == "success":
        head, rest = "SUCCESS", []
    else:
        first, *rest = (report.get("outcome_reason") or "").splitlines() or [""]
        head = f"{outcome.upper().replace('_', ' ')}: {first}"
    lines = [head.rstrip(": "), *(f"    {line}" for line in rest[:20])]
    if len(rest) > 20:
        lines.append(f"    ... ({len(rest) - 20} more lines in the report)")
    return lines


def _run_line(report: dict) -> str:
    run = report.get("run") or {}
    text = f"index {report.get('index')} partition ds={report.get('ds') or '(unresolved)'}"
    if run.get("run_id"):
        text += f", run {run['run_id']} ({run.get('run_type')})"
    return text


def summarize(report: dict) -> str:
    """A few readable lines for the task log and the demo's last words."""
    load = report.get("load") or {}
    stats = report.get("partition") or {}
    lines = [*_headline(report), _run_line(report)]
    params = {k: v for k, v in (report.get("params") or {}).items() if v not in (None, False, [], "")}
    if params:
        lines.append("  params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if load:
        skipped = {k: v for k, v in (load.get("skipped") or {}).items() if v}
        dry = " (dry run: nothing written)" if load.get("dry_run") else ""
        inventory = load.get("inventory")
        source = (f"read {load.get('listed', 0)} objects from inventory run {inventory.get('run')} "
                  f"({inventory.get('files')} files, {inventory.get('age_hours')} h old) in MaxCompute"
                  if inventory else f"listed {load.get('listed', 0)} objects in {load.get('pages', 0)} pages")
        lines.append(
            f"  {source}, kept {load.get('kept', 0)}, "
            f"skipped {load.get('skipped_total', 0)} {skipped or ''}".rstrip() + dry
        )
        if load.get("route_reason") and load.get("route") != "inventory":
            lines.append(f"  route: {load['route_reason']}")
        if load.get("warehouse"):
            how = " by one INSERT OVERWRITE from the inventory's external table" if inventory else ""
            lines.append(f"  written to {load['warehouse']}{how}, partition ds={report.get('ds')}")
        published = report.get("published")
        if published:
            lines.append(f"  published into {published['table']}, partition ds={published['ds']}")
        if load.get("unmapped_category_examples"):
            lines.append(f"  unmapped categories: {load['unmapped_category_examples']}")
        if load.get("archived_examples"):
            lines.append(
                f"  archived, not restored {load.get('archived_by_class') or ''}: e.g. {load['archived_examples'][:3]}; "
                "restore them or convert them to Standard/IA to index them"
            )
    if stats:
        digest = f", id set digest {stats['id_digest']}" if stats.get("id_digest") else ""
        lines.append(f"  partition: {stats.get('rows')} rows, {stats.get('distinct_ids')} distinct ids{digest}")
        lines.append(f"  rows per category: {stats.get('rows_per_category')}")
    overridden = [g["name"] for g in report.get("guards") or [] if g.get("overridden") and not g.get("approved")]
    if overridden:
        lines.append(f"  guards overridden on purpose: {', '.join(overridden)}")
    if report.get("approval"):
        lines.append(f"  approval: {describe_approval(report['approval'])}")
    changes = report.get("id_changes")
    if changes:
        lines.append(f"  against ds={changes['previous_ds']}: +{changes['added']} ids, -{changes['removed']} ids")
    mode = report.get("mode")
    if mode:
        lines.append(f"  mode: {mode.get('mode')}: {mode.get('reason')}")
    delta = report.get("delta")
    if delta:
        pushed, verified = delta.get("pushed") or {}, delta.get("verified") or {}
        if pushed:
            requests = pushed.get("requests")
            lines.append(f"  pushed: {pushed.get('adds')} adds, {pushed.get('deletes')} deletes in {requests} "
                         f"request{'' if requests == 1 else 's'} ({pushed.get('bytes')} bytes, {pushed.get('retried_requests')} retried) to "
                         f"{pushed.get('data_source')} in {pushed.get('seconds')} s")
        if verified:
            lines.append(f"  verified: {verified.get('verified_adds')} pushed documents answer, {verified.get('verified_deletes')} "
                         f"deleted ones are gone ({verified.get('added')} added, {verified.get('changed')} replaced, "
                         f"{verified.get('deleted')} deleted) in {verified.get('seconds')} s")
    rebuild = report.get("rebuild")
    if rebuild and (mode or {}).get("mode") != "delta":
        if rebuild.get("started"):
            followed = " (followed: an earlier attempt of this run started it)" if rebuild.get("followed_earlier_attempt") else ""
            lines.append(f"  rebuild: generation {rebuild.get('generation_id')} {rebuild.get('outcome') or 'not finished'}{followed}")
            if (rebuild.get("figures") or {}).get("summary"):
                lines.append(f"  indexed: {rebuild['figures']['summary']}")
        else:
            lines.append(f"  rebuild: not started: {rebuild.get('reason')}")
        for warning in rebuild.get("warnings") or []:
            lines.append(f"  WARNING: {warning}")
    sampled = {s["sampled"] for s in report.get("smoke_queries") or [] if s.get("sampled")}
    for note in sorted(sampled):
        lines.append(f"  smoke samples: {note}")
    for smoke in report.get("smoke_queries") or []:
        top = ", ".join(f"{t['id']} ({t['score']:.3f})" if isinstance(t.get("score"), float) else str(t["id"]) for t in smoke["top"][:5])
        if smoke["kind"] == "image":
            via = f" via {smoke.get('matched_image')} (same bytes)" if smoke.get("match") == "same_bytes" else ""
            lines.append(f"  image query with {smoke['source_image']} (id {smoke['id']}): rank {smoke['rank']}{via}; top: {top}")
        elif smoke["kind"] == "deleted":
            lines.append(f"  deleted ids looked up: {len(smoke['ids'])}, found none")
        else:
            lines.append(f"  text query {smoke['text']!r}: top: {top}")
    if report.get("seconds"):
        lines.append("  seconds: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()))
    not_run = [t for t, seen in (report.get("tasks") or {}).items() if seen.get("state") == "upstream_failed"]
    if not_run:
        lines.append(f"  not run (an upstream task failed): {', '.join(not_run)}")
    return "\n".join(lines)
