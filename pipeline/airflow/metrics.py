"""The pipeline's own metrics, sent through Airflow's metrics (StatsD, Datadog or OpenTelemetry: whatever
``[metrics]`` configures; nothing is sent while it configures none).

Every metric is a gauge: one value per run of one index, the last run's value wins (a nightly index has
one sample a day: no percentiles to compute). Names, under Airflow's ``[metrics] statsd_prefix``
(``airflow.`` by default) and tagged ``index=<name>`` for backends that take tags:

    image_index.<index>.keys_listed          objects the load listed (list route) or read from the inventory
    image_index.<index>.rows                 rows the load wrote (staged; dry runs send none)
    image_index.<index>.skipped.<reason>     objects left out, one gauge per reason, zeros included
    image_index.<index>.load_seconds         the load's duration
    image_index.<index>.build_seconds        reindex request → new generation seen ready (wait_until_searchable)
    image_index.<index>.wait_seconds         how long wait_until_searchable waited (this try)
    image_index.<index>.push_seconds         push_changes' time pushing (a delta run)
    image_index.<index>.pushed_documents     documents push_changes added or deleted (a delta run)

Seconds are gauges in seconds, not StatsD timers (milliseconds). A metric that cannot be sent is logged
and dropped: metrics never fail a run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

PREFIX = "image_index"


def metric_name(index: str, name: str) -> str:
    return f"{PREFIX}.{index}.{name}"


def send_gauges(index: str, values: Mapping[str, float | int | None]) -> None:
    """Send ``values`` (name → value; None is skipped) as gauges of ``index``; never raises."""
    try:
        from airflow.sdk.observability import stats

        for name, value in values.items():
            if value is not None:
                value = value if isinstance(value, int) else float(value)  # counts go out as integers
                stats.gauge(metric_name(index, name), value, tags={"index": index})
    except Exception as exc:  # a metric is never worth a failed run
        log.warning("could not send the metrics of index %s: %s: %s", index, type(exc).__name__, exc)


def load_metrics(load: Mapping[str, Any]) -> dict[str, float | int | None]:
    """A load's figures (``LoadResult.as_dict()``, either route)."""
    figures: dict[str, float | int | None] = {"keys_listed": load.get("listed"), "load_seconds": load.get("seconds")}
    if not load.get("dry_run"):
        figures["rows"] = load.get("rows_written")
    for reason, count in (load.get("skipped") or {}).items():
        figures[f"skipped.{reason}"] = count
    return figures


def wait_metrics(handle: Mapping[str, Any] | None, ready_at: float | None, waiting_since: float | None) -> dict:
    """A wait that ended ready: the build (from the reindex request) and the wait, in seconds."""
    started = (handle or {}).get("started_at")
    return {
        "build_seconds": round(ready_at - started, 3) if ready_at and started else None,
        "wait_seconds": round(ready_at - waiting_since, 3) if ready_at and waiting_since else None,
    }


def push_metrics(pushed: Mapping[str, Any]) -> dict[str, float | int | None]:
    return {"push_seconds": pushed.get("seconds"),
            "pushed_documents": int(pushed.get("adds") or 0) + int(pushed.get("deletes") or 0)}
