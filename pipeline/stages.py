"""The pipeline's stages as plain functions: the DAG, the tests and a shell all call these.

    list OSS prefixes ─► derive catalog rows ─► write staged partition ds (one commit)
        ─► check it against what is live ─► publish it into the table (one atomic statement)

Write, audit, publish: rows stream from the listing into the staging table's single upload (nothing
reads it); every guard runs on the staged partition; only then is it published into ``ds`` of the
catalog table, atomically. A refused, failed or killed run leaves the published partition as it was,
and the next run of the index removes what it staged. A rerun of the same ``ds`` is idempotent.
"""

from __future__ import annotations

import logging
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from pipeline import guards
from pipeline.config import GuardsConfig, IndexConfig
from pipeline.errors import ConfigError, PartitionCheckError, PipelineError
from pipeline.guards import GuardResult
from pipeline.oss.catalog import CatalogBuilder, gather_pages
from pipeline.oss.client import OssConnection, object_etag, read_object
from pipeline.oss.pages import LeanListingBucket, OssLister
from pipeline.oss.parallel import PageSource, ParallelLister
from pipeline.oss.progress import ListingProgress
from pipeline.schema import PartitionStats, validate_ds
from pipeline.warehouse import Warehouse, open_warehouse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadResult:
    """What one load did. ``rows_written`` is None for a dry run (nothing was written)."""

    index: str
    ds: str
    prefixes: list[str]
    dry_run: bool
    counts: dict
    rows_written: int | None
    pages: int
    seconds: float
    warehouse: str | None = None  # where the rows went (Warehouse.location); None for a dry run
    route: str = "list"  # list: the worker listed the bucket; inventory: MaxCompute read its inventory
    inventory: dict | None = None  # the inventory run read (manifest, created, files, age) on that route
    route_reason: str | None = None  # why this route ran, when it is not the configured one
    # Epoch seconds when the rows were captured (the listing's start; the inventory run's creation):
    # a full rebuild from this partition replays documents pushed since then (rebuild.py, replay_from).
    snapshot_at: float | None = None

    def as_dict(self) -> dict:
        return {
            "route": self.route,
            "snapshot_at": self.snapshot_at,
            "inventory": self.inventory,
            "route_reason": self.route_reason,
            "index": self.index,
            "ds": self.ds,
            "prefixes": self.prefixes,
            "dry_run": self.dry_run,
            **self.counts,
            "rows_written": self.rows_written,
            "pages": self.pages,
            "seconds": round(self.seconds, 3),
            "warehouse": self.warehouse,
        }


def open_lister(config: IndexConfig, **options) -> PageSource:
    """The lister for an index, with credentials from its Airflow ``oss`` connection.

    With ``source.list_concurrency`` above 1 it lists in parallel: that many workers over one oss2
    session whose connection pool holds as many connections. ``options`` go to :class:`OssLister`.
    """
    conn = OssConnection.from_airflow(config.source.oss_conn_id)
    concurrency = config.source.list_concurrency
    if concurrency <= 1:
        return OssLister.connect(conn, config.source.bucket, **options)
    lister = OssLister(conn, conn.bucket(config.source.bucket, pool_size=concurrency, kind=LeanListingBucket), **options)
    return ParallelLister(lister, concurrency=concurrency)


def open_index_warehouse(config: IndexConfig) -> Warehouse:
    """The catalog table for an index; the connection's type picks MaxCompute or the local warehouse."""
    wh = config.warehouse
    return open_warehouse(wh.conn_id, wh.table, wh.lifecycle_days)


def load_partition(
    config: IndexConfig,
    ds: str,
    *,
    prefixes: list[str] | None = None,
    dry_run: bool = False,
    lister: PageSource | None = None,
    warehouse: Warehouse | None = None,
    publish: bool = False,
) -> LoadResult:
    """List the index's prefixes and stage partition ``ds`` with the rows (or only count: ``dry_run``).

    ``publish``: publish it at once, unchecked (tests and tools that want a published partition; the
    DAG checks the staged partition first and publishes with :func:`publish_partition`)."""
    validate_ds(ds)
    prefixes = list(prefixes or config.source.prefixes)
    started, snapshot_at = time.monotonic(), time.time()
    lister = lister or open_lister(config)
    builder = CatalogBuilder(config.source, config.id_rule, config.category_rule)
    progress = ListingProgress(f"{config.name} ds={ds}", builder.counts)  # a line every 30 s
    batches = builder.batches(progress.track(gather_pages(lister.iter_objects(prefixes))))
    rows_written: int | None
    if dry_run:
        rows_written = None
        for _ in batches:
            pass
        log.info("dry run: listed %d objects, %d would be rows; nothing written", builder.counts.listed, builder.counts.kept)
    else:
        warehouse = warehouse or open_index_warehouse(config)
        staging = prepare_staging(warehouse, ds)
        rows_written = staging.write_partition(ds, batches)
        log.info("staged %d rows in partition ds=%s of %s", rows_written, ds, staging.location)
        if publish:
            warehouse.publish(ds, staging)
    result = LoadResult(
        index=config.name,
        ds=ds,
        prefixes=prefixes,
        dry_run=dry_run,
        counts=builder.counts.as_dict(),
        rows_written=rows_written,
        pages=lister.pages_listed,
        seconds=time.monotonic() - started,
        warehouse=None if dry_run else (warehouse.location if publish else staging.location),
        snapshot_at=snapshot_at,
    )
    log.info("skipped by reason: %s", result.counts["skipped"])
    return result


def inventory_day_end(config: IndexConfig, ds: str) -> datetime:
    """The end of partition ``ds``'s day in the index's time zone, in UTC: the newest inventory a run of
    ``ds`` may read was started before it (a later one would list objects uploaded after the day)."""
    day = datetime.strptime(validate_ds(ds), "%Y%m%d").replace(tzinfo=zoneinfo.ZoneInfo(config.timezone))
    return (day + timedelta(days=1)).astimezone(UTC)


def load_partition_from_inventory(
    config: IndexConfig,
    ds: str,
    *,
    prefixes: list[str] | None = None,
    warehouse: Warehouse | None = None,
    publish: bool = False,
    now: datetime | None = None,
    run_name: str | None = None,
) -> LoadResult:
    """Stage partition ``ds`` from the bucket's OSS inventory inside MaxCompute (``source.mode:
    inventory``): find the newest complete, fresh inventory run at or before the end of ``ds``'s day,
    verify its files, copy them into ``<work_prefix><index>/<ds>/`` (an external table reads every object
    under its folder, and the inventory's data/ folder holds every run's files), then one INSERT
    OVERWRITE of the staged partition computes the rows with the config's rules compiled to SQL. The
    worker sends O(inventory files) requests, whatever the bucket's size. Raises InventoryError (stale,
    incomplete) for the caller to fail or fall back on. ``run_name``: the run an earlier step chose
    (``choose_route``), verified again here, so the route's choice and the load read one run."""
    from pipeline.oss.inventory import (
        RunFolder,
        check_inventory_rule,
        find_inventory,
        inventory_base,
        remove_staged_files,
        run_created,
        stage_inventory_files,
        verify_run,
    )

    validate_ds(ds)
    inventory = config.source.inventory
    if inventory is None:
        raise ConfigError(f"index {config.name!r} has no source.inventory section: the inventory route needs one")
    prefixes = list(prefixes or config.source.prefixes)
    started = time.monotonic()
    now = now or datetime.now(UTC)
    conn = OssConnection.from_airflow(config.source.oss_conn_id)
    check_inventory_rule(conn, config.source.bucket, inventory, prefixes)  # else rows could be missing unseen
    bucket = conn.bucket(inventory.bucket)
    day_end = inventory_day_end(config, ds)
    created = run_created(run_name) if run_name else None
    if created is not None:
        chosen = RunFolder(run_name, f"{inventory_base(config.source.bucket, inventory)}{run_name}/", created)
        run = verify_run(bucket, config.source.bucket, chosen, conn=conn)
    else:
        run = find_inventory(bucket, config.source.bucket, inventory, day_end, now, conn=conn)
    folder = f"{inventory.work_prefix}{config.name}/{ds}/"
    stage_inventory_files(bucket, run, folder, conn=conn)
    endpoint = inventory.oss_endpoint or urlsplit(conn.endpoint).netloc
    location = f"oss://{endpoint}/{inventory.bucket}/{folder}"
    warehouse = warehouse or open_index_warehouse(config)
    staging = prepare_staging(warehouse, ds)
    try:
        counts = warehouse.load_inventory(ds, location, ", ".join(run.file_schema), config.source, config.id_rule,
                                          config.category_rule, inventory.role_arn, prefixes)
    finally:  # read (or failed): a night's copy of the whole inventory must not stay behind
        try:
            remove_staged_files(bucket, folder, conn=conn)
        except PipelineError as exc:
            log.warning("could not remove the staged inventory files under %s (the next run of ds=%s does): %s",
                        location, ds, exc)
    log.info("staged %d rows in partition ds=%s of %s from inventory %s", counts["kept"], ds, staging.location,
             run.manifest_key)
    if publish:
        warehouse.publish(ds, staging)
    result = LoadResult(
        index=config.name, ds=ds, prefixes=prefixes, dry_run=False, counts=counts, rows_written=counts["kept"],
        pages=0, seconds=time.monotonic() - started,
        warehouse=warehouse.location if publish else staging.location, route="inventory",
        snapshot_at=run.created.timestamp(),
        inventory={"manifest": f"oss://{inventory.bucket}/{run.manifest_key}", "run": run.name,
                   "created": run.created.isoformat(), "files": len(run.files),
                   "bytes": sum(f.size for f in run.files), "age_hours": round((min(now, day_end) - run.created).total_seconds() / 3600, 1),
                   "staged_in": location},
    )
    log.info("skipped by reason: %s", result.counts["skipped"])
    return result


def prepare_staging(warehouse: Warehouse, ds: str) -> Warehouse:
    """The staging table, created if missing, with nothing staged for ``ds``: what is staged for it now
    is an earlier run's that did not publish (refused, failed or killed). Other days are left alone,
    since a backfill may be staging them right now; MaxCompute's one-day lifecycle on the staging
    table reclaims those that nobody publishes."""
    warehouse.ensure_table()  # the published table's schema is checked before any work
    staging = warehouse.staging()
    staging.ensure_table()
    if ds in staging.partitions():
        log.info("removing ds=%s left in %s by an earlier run that did not publish it", ds, staging.table)
        staging.drop_partition(ds)
    warehouse.clean_litter(ds)
    staging.clean_litter(ds)
    staging.expire_stale()  # staged days nobody published, by age (MaxCompute: the table's lifecycle)
    return staging


def live_baseline(warehouse: Warehouse, ds: str, live: dict | None) -> tuple[PartitionStats | None, str | None]:
    """What a staged ``ds`` is judged against, and its ``ds``: the figures recorded when the live
    partition went live (even when it is this same ``ds``: a same-day rerun is compared with what it
    would replace); with nothing live yet, the published ``ds`` itself, else the newest earlier one."""
    if live and live.get("stats"):
        return PartitionStats.from_dict(live["stats"]), str(live["ds"])
    published = warehouse.partitions()
    candidates = [p for p in published if p <= ds]
    if not candidates:
        return None, None
    return warehouse.partition_stats(candidates[-1]), candidates[-1]


def publish_partition(config: IndexConfig, ds: str, warehouse: Warehouse | None = None) -> dict:
    """Publish the checked, staged partition ``ds`` into the catalog table (atomically)."""
    started = time.monotonic()
    warehouse = warehouse or open_index_warehouse(config)
    warehouse.publish(validate_ds(ds), warehouse.staging())
    log.info("published partition ds=%s of %s", ds, warehouse.location)
    return {"ds": ds, "table": warehouse.location, "seconds": round(time.monotonic() - started, 3)}


def check_partition(
    warehouse: Warehouse,
    ds: str,
    table: str | None = None,
    *,
    load: dict | None = None,
    limits: GuardsConfig | None = None,
    baseline_ds: str | None = None,
    overrides: Iterable[str] = (),
    id_rule: str = "filename_digits",
    baseline: PartitionStats | None = None,
    refuse: bool = True,
) -> tuple[PartitionStats, list[GuardResult]]:
    """The partition's stats, judged by every guard; raise PartitionCheckError for a failed guard that
    ``overrides`` does not name (``refuse=False``: return it failed, for an approval to decide).
    ``baseline``: the live figures the shrink guard compares with (see :func:`live_baseline`); else
    ``baseline_ds``, another partition of ``warehouse``."""
    stats = warehouse.partition_stats(ds)
    if baseline is None and baseline_ds and baseline_ds != ds and baseline_ds in warehouse.partitions():
        baseline = warehouse.partition_stats(baseline_ds)
    results = guards.evaluate(
        stats, load or {}, baseline, limits or GuardsConfig(), table=table or warehouse.table, id_rule=id_rule
    )
    return stats, guards.enforce(results, set(overrides), refuse=refuse)


def start_index_rebuild(
    config: IndexConfig,
    ds: str,
    checked: dict,
    *,
    skip: bool = False,
    force: bool = False,
    earlier_attempt: dict | None = None,
    remember: Callable[[dict], None] = lambda _attempt: None,
    last_push_at: float | None = None,
) -> dict:
    """Decide whether to rebuild from ``ds``; if so, follow the build an earlier attempt of this DAG run
    started (``earlier_attempt``, what ``remember`` stored), or preflight and start one. Returns a
    JSON-able summary whose ``handle`` (None when not started) the wait consumes; the handle carries the
    partition's distinct ids and the live partition before this run, to judge the build's figures. The
    build replays documents pushed since the partition's rows were captured (``last_push_at``: when
    documents were last pushed to the index; see ``replay_from``)."""
    from dataclasses import replace

    from pipeline.opensearch.connection import OpenSearchConnection
    from pipeline.opensearch.management import OpenSearchManagement
    from pipeline.opensearch.rebuild import (
        RebuildAttempt,
        preflight,
        rebuild_decision,
        replay_from,
        resume_rebuild,
        settings_for,
        start_rebuild,
    )

    assert config.opensearch is not None
    started = time.monotonic()
    if checked.get("dry_run"):
        go, reason = False, "dry run: nothing was written, so nothing to rebuild from"
    else:
        go, reason = rebuild_decision(ds, checked.get("partitions") or [], skip=skip, force=force)
    log.info("rebuild decision for ds=%s: %s", ds, reason)
    if not go:
        return {"started": False, "reason": reason, "handle": None}
    table, settings = config.opensearch.table, settings_for(config.opensearch)
    mgmt = OpenSearchManagement(OpenSearchConnection.from_airflow(config.opensearch.conn_id))
    earlier = RebuildAttempt.from_dict(earlier_attempt) if earlier_attempt else None
    judged = {"partition_rows": (checked.get("stats") or {}).get("distinct_ids"),
              "live_ds_before": checked.get("live_ds")}
    if earlier is not None and (earlier.table, earlier.ds) == (table, ds):
        followed = resume_rebuild(mgmt, earlier, settings)
        if followed is not None:
            return {
                "started": True,
                "reason": f"{reason}; following generation {followed.generation_id}, which an earlier attempt of "
                "this run started (no second reindex)",
                "followed_earlier_attempt": True,
                "handle": replace(followed, **judged).as_dict(),
                "seconds": round(time.monotonic() - started, 3),
            }
    retention_s = config.opensearch.rebuild.push.retention_hours * 3600
    data_time_sec = replay_from(checked.get("snapshot_at"), last_push_at, retention_s)
    seen = preflight(mgmt, table)
    handle = start_rebuild(mgmt, table, ds, settings, remember=lambda attempt: remember(attempt.as_dict()),
                           data_time_sec=data_time_sec)
    return {
        "started": True,
        "reason": reason,
        "data_time_sec": data_time_sec,
        "preflight": seen,
        "handle": replace(handle, **judged).as_dict(),
        "seconds": round(time.monotonic() - started, 3),
    }


def smoke_sample_pool(warehouse: Warehouse, ds: str, live_ds: str | None, limit: int) -> tuple[list[dict], str | None, str]:
    """Rows to sample smoke queries from, the live partition they are new against (None: any id) and why.

    Ids new against the partition that last went live are in the new index only, so finding one proves
    the new index answers; the old one cannot. Any id is taken only when there is nothing to compare
    with (a first build), or nothing new to find; the note says so in the report."""
    if not live_ds:
        why = f"first build (no partition has gone live yet): any id of ds={ds}"
    elif live_ds == ds:
        why = f"ds={ds} is already the live partition: any id"
    elif live_ds not in warehouse.partitions():
        why = f"the live partition ds={live_ds} no longer exists: any id of ds={ds}"
    else:
        new = warehouse.sample_new_rows(ds, live_ds, limit)
        if new:
            return new, live_ds, f"ids of ds={ds} new against ds={live_ds}, the partition that last went live"
        why = f"ds={ds} adds no id to the live ds={live_ds}: any id"
    return warehouse.sample_rows(ds, limit), None, why + "; such a query cannot tell the new index from the old one"


def run_smoke_queries(config: IndexConfig, ds: str, live_ds: str | None = None) -> list[dict]:
    """Image-to-image queries with images sampled from partition ``ds`` (and the text query, if set).
    ``live_ds``: the partition that last went live, before this run (see :func:`smoke_sample_pool`)."""
    from pipeline.opensearch.connection import OpenSearchConnection
    from pipeline.opensearch.search import OpenSearchQuery
    from pipeline.opensearch.smoke import (
        SAMPLE_POOL,
        image_smoke_query,
        pick_samples,
        prove_new_generation,
        text_smoke_query,
    )

    assert config.opensearch is not None
    settings = config.opensearch
    warehouse = open_index_warehouse(config)
    rows, new_against, sampled = smoke_sample_pool(warehouse, ds, live_ds, SAMPLE_POOL)
    log.info("smoke samples: %s", sampled)
    samples = pick_samples(rows, settings.smoke.samples, seed=f"{config.name}:{ds}")
    if not samples:
        raise PartitionCheckError(f"partition ds={ds} has no rows to sample a smoke query from")
    query = OpenSearchQuery(OpenSearchConnection.from_airflow(settings.conn_id))
    oss_conn = OssConnection.from_airflow(config.source.oss_conn_id)
    bucket = oss_conn.bucket(config.source.bucket)
    # pipeline.opensearch may not import pipeline.oss or the warehouse: the smoke gets what it needs as callables.
    results = [
        {**image_smoke_query(
            query, settings, row,
            fetch_image=lambda key: read_object(oss_conn, bucket, key),
            object_etag=lambda key: object_etag(oss_conn, bucket, key),
            rows_by_id=lambda ids: warehouse.rows_by_id(ds, ids),
        ), "sampled": sampled}
        for row in samples
    ]
    prove_new_generation(results, new_against)
    if settings.smoke.text_query:
        results.append(text_smoke_query(query, settings))
    for result in results:
        log.info("smoke query %s: rank %s, top %s", result["kind"], result.get("rank"), result["top"][:3])
    return results


def write_run_report(config: IndexConfig, ds: str | None, pulled: dict, facts: dict | None = None) -> dict:
    """Assemble, store and log the run report from the stages' results (missing ones are None) and the
    run's facts (run, Params, task states, failures; see ``pipeline.airflow.outcome``). ``ds`` is None
    when the run failed before resolving its partition date."""
    from pipeline.report import build_report, summarize, write_report

    report = build_report(config.name, ds, pulled, facts)
    path = write_report(config.name, ds, report)
    log.info("run report %s\n%s", path, summarize(report))
    return report
