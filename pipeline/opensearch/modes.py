"""Full rebuild or delta: which one a run takes, and the reason the report gives.

``rebuild.mode`` (or the run's ``rebuild_mode`` Param): ``full`` always rebuilds; ``delta`` pushes the
rows that changed against the partition that is live whenever there is one to compare with; ``auto``
pushes them only when few changed (``max_change_fraction`` of the live rows) and a full rebuild went live
recently (``full_every_days``: a full rebuild also re-reads every image, so anything a push missed is
corrected at least that often). A delta needs the live partition itself, intact and with ETags (without
them a replaced image cannot be seen): otherwise the run rebuilds, and the reason says why.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from pipeline.config import RebuildConfig

MODES = ("full", "delta", "auto")


def change_count(changes: Mapping[str, Any]) -> int:
    return int(changes.get("added") or 0) + int(changes.get("removed") or 0) + int(changes.get("changed") or 0)


def _delta_blocker(ds: str, checked: Mapping[str, Any], live: Mapping[str, Any] | None) -> str | None:
    """Why a delta cannot run from ``checked`` (check_partition's result), or None."""
    live_ds = checked.get("live_ds")
    changes = checked.get("row_changes")
    if not live_ds or not live:
        return "no partition has gone live from this pipeline yet: the first build is a full one"
    if str(live.get("ds")) != str(live_ds):
        return f"the live record names ds={live.get('ds')}, not ds={live_ds}: it is unclear what the index holds"
    if live_ds == ds:
        return (f"ds={ds} is the live partition itself (a same-day rerun replaces it): there is nothing left to "
                "compare the new rows with")
    if live_ds > ds:
        return f"ds={ds} is older than the live ds={live_ds}"
    newest = max(checked.get("partitions") or [ds])
    if newest > ds:  # the full path then declines too, unless force_rebuild: no silent rollback
        return f"ds={ds} is older than the newest partition ds={newest} (a backfill)"
    if live_ds not in (checked.get("partitions") or []):
        return f"the live partition ds={live_ds} no longer exists in the table"
    if not changes:
        return f"the changes against the live ds={live_ds} were not computed"
    if int(changes.get("previous_without_etag") or 0):
        return (f"{changes['previous_without_etag']} rows of the live ds={live_ds} have no ETag (written before "
                "ETags were kept), so a replaced image cannot be seen; this full rebuild is the last one it needs")
    return None


def choose_rebuild_mode(
    settings: RebuildConfig,
    ds: str,
    checked: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    *,
    requested: str | None = None,
    skip: bool = False,
    force: bool = False,
    now: float | None = None,
) -> dict[str, Any]:
    """``{"mode": "full"|"delta", "reason": ..., "requested": ..., "changes": ..., "fraction": ...}``."""
    asked = requested or settings.mode
    source = "the run's rebuild_mode Param" if requested else "rebuild.mode"
    changes = dict(checked.get("row_changes") or {})
    live_rows = int(((live or {}).get("stats") or {}).get("distinct_ids") or 0)
    fraction = change_count(changes) / live_rows if live_rows and changes else None
    decision: dict[str, Any] = {"requested": asked, "changes": changes or None, "live_rows": live_rows or None,
                                "fraction": round(fraction, 6) if fraction is not None else None}

    def full(reason: str) -> dict[str, Any]:
        return {**decision, "mode": "full", "task_id": "start_rebuild", "reason": reason}

    if checked.get("dry_run"):
        return full("dry run: nothing was written")
    if skip or force:
        return full("skip_rebuild is set" if skip else "force_rebuild is set: a full rebuild from this partition")
    if asked == "full":
        return full(f"{source} is full")
    blocker = _delta_blocker(ds, checked, live)
    if blocker:
        return full(f"{source} is {asked}, but {blocker}: full rebuild")
    count = change_count(changes)
    summary = (f"{count} of {live_rows} live rows changed ({changes.get('added', 0)} added, "
               f"{changes.get('changed', 0)} replaced or edited, {changes.get('removed', 0)} removed)")
    if asked == "delta":
        return {**decision, "mode": "delta", "task_id": "push_changes", "reason": f"{source} is delta: {summary}"}
    if fraction is None or fraction > settings.max_change_fraction:
        shown = f"{fraction:.2%}" if fraction is not None else "an unknown share"
        return full(f"auto: {summary}, {shown} of the live rows, more than max_change_fraction "
                    f"{settings.max_change_fraction:.2%}: full rebuild")
    last_full_at = (live or {}).get("last_full_at")
    now = time.time() if now is None else now
    if not last_full_at:
        return full(f"auto: {summary}, but no full rebuild is on record: full rebuild")
    age_days = (now - float(last_full_at)) / 86400
    if age_days > settings.full_every_days:
        return full(f"auto: {summary}, but the last full rebuild (ds={live.get('last_full_ds')}) went live "
                    f"{age_days:.1f} days ago, more than full_every_days {settings.full_every_days:g}: full rebuild")
    return {**decision, "mode": "delta", "task_id": "push_changes",
            "reason": f"auto: {summary}, {fraction:.2%} ≤ max_change_fraction {settings.max_change_fraction:.2%}, "
                      f"and the last full rebuild went live {age_days:.1f} days ago: delta"}
