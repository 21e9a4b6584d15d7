"""Run reports: one JSON file per index and partition date, plus a readable summary for the log.

Reports go to ``$PIPELINE_REPORT_DIR`` (the make targets point it at ``.local/reports``), else to
``$AIRFLOW_HOME/reports``. They hold counts, ids and statuses: never credentials.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def report_dir() -> Path:
    explicit = os.environ.get("PIPELINE_REPORT_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "reports"


def build_report(index: str, ds: str, stages: dict) -> dict:
    """One dict from the stages' results (``None`` for a stage that did not run)."""
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
    if smoke:
        timings["smoke_query"] = round(sum(s.get("seconds", 0) for s in smoke), 3)
    report = {
        "index": index,
        "ds": ds,
        "load": load,
        "partition": checked.get("stats"),
        "guards": checked.get("guards"),
        "baseline_ds": checked.get("baseline_ds"),
        "id_changes": checked.get("id_changes"),
        "rebuild": None
        if rebuild is None
        else {
            "started": rebuild.get("started"),
            "reason": rebuild.get("reason"),
            "followed_earlier_attempt": bool(rebuild.get("followed_earlier_attempt")),
            "warnings": ((rebuild.get("preflight") or {}).get("warnings")) or [],
            "generation_id": handle.get("generation_id"),
            "previous_generation_ids": handle.get("previous_generation_ids"),
            "outcome": (waited or {}).get("outcome"),
            "message": (waited or {}).get("message"),
            "fsm_id": (waited or {}).get("fsm_id"),
            "figures": (waited or {}).get("figures"),  # what the generation holds against the partition
        },
        "smoke_queries": smoke,
        "seconds": {k: v for k, v in timings.items() if v is not None},
    }
    return report


def write_report(index: str, ds: str, report: dict, folder: Path | None = None) -> Path:
    """Write ``<folder>/<index>/<ds>.json`` atomically (temp file + rename) and return its path."""
    target_dir = (folder or report_dir()) / index
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"{ds}.json"
    fd, tmp = tempfile.mkstemp(dir=target_dir, prefix=f".{ds}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2, sort_keys=True, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def summarize(report: dict) -> str:
    """A few readable lines for the task log and the demo's last words."""
    load = report.get("load") or {}
    stats = report.get("partition") or {}
    lines = [f"index {report.get('index')} partition ds={report.get('ds')}"]
    if load:
        skipped = {k: v for k, v in (load.get("skipped") or {}).items() if v}
        dry = " (dry run: nothing written)" if load.get("dry_run") else ""
        lines.append(
            f"  listed {load.get('listed', 0)} objects in {load.get('pages', 0)} pages, kept {load.get('kept', 0)}, "
            f"skipped {load.get('skipped_total', 0)} {skipped or ''}".rstrip() + dry
        )
        if load.get("warehouse"):
            lines.append(f"  written to {load['warehouse']}, partition ds={report.get('ds')}")
        if load.get("unmapped_category_examples"):
            lines.append(f"  unmapped categories: {load['unmapped_category_examples']}")
        if load.get("archived_examples"):
            lines.append(
                f"  archived, not restored {load.get('archived_by_class') or ''}: e.g. {load['archived_examples'][:3]}; "
                "restore them or convert them to Standard/IA to index them"
            )
    if stats:
        lines.append(f"  partition: {stats.get('rows')} rows, {stats.get('distinct_ids')} distinct ids")
        lines.append(f"  rows per category: {stats.get('rows_per_category')}")
    overridden = [g["name"] for g in report.get("guards") or [] if g.get("overridden")]
    if overridden:
        lines.append(f"  guards overridden on purpose: {', '.join(overridden)}")
    changes = report.get("id_changes")
    if changes:
        lines.append(f"  against ds={changes['previous_ds']}: +{changes['added']} ids, -{changes['removed']} ids")
    rebuild = report.get("rebuild")
    if rebuild:
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
        else:
            lines.append(f"  text query {smoke['text']!r}: top: {top}")
    if report.get("seconds"):
        lines.append("  seconds: " + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()))
    return "\n".join(lines)
