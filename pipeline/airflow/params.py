"""The DAG's Params: refused when a run is triggered where a JSON schema can say so, else when it starts.

Trigger time. Airflow validates a run's conf against these schemas when it creates the run, before any
task exists: ``SerializedDAG.create_dagrun`` runs ``self.params.deep_merge(conf).validate()``
(``airflow/serialization/definitions/dag.py``; ``jsonschema`` with a format checker). The REST API's
``POST /api/v2/dags/{dag_id}/dagRuns`` (which the UI's Trigger form calls) answers such a conf with
400 and the message; ``airflow dags trigger``, backfills and ``dag.test(run_conf=...)`` raise
``ParamValidationError``. The schemas here refuse a ``partition_date`` that is not ``YYYY-MM-DD`` or
``YYYYMMDD`` (month 01-12, day 01-31), and ``prefixes`` that are empty, repeated, start with ``/`` or
hold a ``..`` segment.

Run start. What a schema cannot say is checked by :func:`resolve_run_partition` in the first task,
``resolve_partition``, as a :class:`~pipeline.errors.ParamError` (terminal: the DAG's retry policy fails
it without retry): a date that is not in the calendar (``2026-02-30``), a ``partition_date`` after today
in the index's time zone (unless ``allow_future_partition``), prefixes inside one another, and prefixes
outside the config's ``source.prefixes`` (unless ``source.allow_param_prefixes_outside``).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from airflow.sdk import Param

from pipeline.config import IndexConfig, SourceConfig, check_prefixes
from pipeline.dates import parse_partition_param, resolve_partition_date
from pipeline.errors import ParamError
from pipeline.guards import GUARD_NAMES

_MONTH, _DAY = r"(0[1-9]|1[0-2])", r"(0[1-9]|[12][0-9]|3[01])"
#: ``YYYY-MM-DD`` or ``YYYYMMDD``; whether the day exists in that month is checked at run start.
PARTITION_DATE_PATTERN = rf"^([0-9]{{4}}-{_MONTH}-{_DAY}|[0-9]{{4}}{_MONTH}{_DAY})$"
#: No leading '/', no '..' segment (ECMA-262 and Python alike: the UI and the API read the same schema).
PREFIX_PATTERN = r"^(?!/)(?!(.*/)?\.\.(/|$))"


def index_params(config: IndexConfig) -> dict[str, Param]:
    """The Params of the index's DAG, with the schemas Airflow checks when a run is triggered."""
    source = config.source
    configured = ", ".join(source.prefixes)
    within = (
        "any prefix of the bucket" if source.allow_param_prefixes_outside else f"prefixes within the config's: {configured}"
    )
    return {
        "partition_date": Param(
            None, type=["null", "string"], pattern=PARTITION_DATE_PATTERN,
            description=(
                f"Partition to write, YYYY-MM-DD or YYYYMMDD, up to today in {config.timezone} "
                "(later needs allow_future_partition). Empty: the run's date."
            ),
        ),
        "allow_future_partition": Param(
            False, type="boolean", description="Accept a partition_date after today (e.g. to prepare a launch)."
        ),
        "prefixes": Param(
            None, type=["null", "array"], minItems=1, uniqueItems=True,
            items={"type": "string", "pattern": PREFIX_PATTERN},
            description=(
                f"List these OSS prefixes instead of the config's ({within}); none inside another, "
                "no leading '/', no '..'."
            ),
        ),
        "dry_run": Param(False, type="boolean", description="List and count only; write nothing."),
        "source_mode": Param(
            None, type=["null", "string"], enum=[None, "list", "inventory"],
            description=(
                f"How to read the bucket this run: list it, or read its OSS inventory in MaxCompute "
                f"(needs source.inventory). Empty: the config's ({source.mode})."
            ),
        ),
        "rebuild_mode": Param(
            None, type=["null", "string"], enum=[None, "full", "delta", "auto"],
            description=(
                "full: rebuild the index from the partition; delta: push only what changed against the live "
                "partition; auto: delta when little changed. Empty: the config's ("
                + (config.opensearch.rebuild.mode if config.opensearch else "no index") + ")."
            ),
        ),
        "skip_rebuild": Param(False, type="boolean", description="Write the partition but do not rebuild the index."),
        "force_rebuild": Param(
            False, type="boolean", description="Rebuild even from a partition older than the newest one."
        ),
        "override_guards": Param(
            [], type="array", items={"type": "string", "enum": list(GUARD_NAMES)},
            description="Guards to pass deliberately: empty, shrink, duplicates, unmapped, skipped.",
        ),
    }


def check_partition_param(value: str, timezone: str, *, allow_future: bool, now: datetime | None = None) -> str:
    """The ``ds`` (YYYYMMDD) of a ``partition_date`` Param: a calendar date, not after today in
    ``timezone`` unless ``allow_future``. Raises ParamError saying what to pass instead."""
    try:
        ds = parse_partition_param(value)
    except ValueError as exc:
        raise ParamError(f"{exc}: pass a real date as YYYY-MM-DD or YYYYMMDD, or leave it empty for the run's date") from exc
    today = (now or datetime.now(zoneinfo.ZoneInfo(timezone))).astimezone(zoneinfo.ZoneInfo(timezone)).strftime("%Y%m%d")
    if ds > today and not allow_future:
        raise ParamError(
            f"partition_date {value!r} (ds={ds}) is after today ({today} in {timezone}): a partition of a day "
            "that has not come yet is usually a typo. Pass a date up to today, or set the allow_future_partition "
            "Param to true to write it deliberately"
        )
    return ds


def check_prefixes_param(source: SourceConfig, prefixes: Any) -> list[str] | None:
    """The ``prefixes`` Param held to the config's rules (pipeline.config.check_prefixes) and, unless
    ``source.allow_param_prefixes_outside``, each within one of the configured prefixes. None: the
    config's. Raises ParamError naming the offending prefix."""
    if prefixes is None:
        return None
    if not isinstance(prefixes, list) or not prefixes or not all(isinstance(p, str) for p in prefixes):
        raise ParamError(f"prefixes must be a non-empty list of strings, got {prefixes!r}: leave it empty for the config's")
    try:
        check_prefixes(prefixes)
    except ValueError as exc:
        raise ParamError(f"prefixes Param: {exc}") from exc
    if not source.allow_param_prefixes_outside:
        for prefix in prefixes:
            if not any(prefix.startswith(allowed) for allowed in source.prefixes):
                raise ParamError(
                    f"prefixes Param: prefix {prefix!r} is not within the configured prefixes {source.prefixes} of "
                    f"bucket {source.bucket!r}: pass prefixes under them, or set "
                    "source.allow_param_prefixes_outside: true in the index config"
                )
    return prefixes


def resolve_run_partition(
    config: IndexConfig,
    params: Mapping[str, Any],
    logical_date: datetime | None,
    run_after: datetime | None,
    *,
    now: datetime | None = None,
) -> str:
    """What ``resolve_partition`` does: check the Params no schema can check and return the run's ``ds``.

    The ``partition_date`` Param, else the logical date (or, for a manual run, ``run_after``) in the
    index's time zone; only the Param is bounded by today (the scheduler never runs a future date).
    """
    check_prefixes_param(config.source, params.get("prefixes"))
    if params.get("source_mode") == "inventory" and config.source.inventory is None:
        raise ParamError(f"source_mode 'inventory': index {config.name!r} has no source.inventory section, so its "
                         "DAG has no inventory route; leave source_mode empty (the run lists the bucket)")
    value = params.get("partition_date")
    if value:
        return check_partition_param(
            value, config.timezone, allow_future=bool(params.get("allow_future_partition")), now=now
        )
    try:
        return resolve_partition_date(None, logical_date, run_after, config.timezone)
    except ValueError as exc:
        raise ParamError(str(exc)) from exc
