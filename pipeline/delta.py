"""The delta path's stages: push what changed against the live partition, verify it, prove it by query.

    publish_partition ─► choose_rebuild ─┬─► start_rebuild ─► wait_until_searchable ─┬─► smoke_query
                                         └─► push_changes ──► verify_pushes ──────────┘

The changes are computed by the warehouse (``Warehouse.iter_delta``, in id order): rows of ``ds`` whose id
is new, or whose path, category or ETag differ from the live partition's (a replaced image: same key, new
ETag), become ``add`` documents; ids only in the live partition become ``delete`` documents. The push
client and its verification are :mod:`pipeline.opensearch.push`; the decision is
:mod:`pipeline.opensearch.modes`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.config import IndexConfig
from pipeline.errors import SmokeQueryError
from pipeline.opensearch.modes import choose_rebuild_mode
from pipeline.opensearch.push import Change, PushProgress
from pipeline.stages import open_index_warehouse
from pipeline.warehouse import Warehouse

log = logging.getLogger(__name__)

#: Deleted ids a delta smoke looks up (and must not find), besides the verification of every one.
DELETED_SAMPLES = 20


def delta_changes(warehouse: Warehouse, ds: str, live_ds: str, after_pk: int | None = None) -> Iterator[Change]:
    """The documents to push to turn the index of ``live_ds`` into one of ``ds``, in id order (a page of
    the warehouse's delta at a time: a resume point is an id)."""
    for batch in warehouse.iter_delta(ds, live_ds, after_id=after_pk):
        page = [Change("add", int(row["id"]), row, str(row.get("reason") or "added")) for row in batch.adds.to_pylist()]
        page += [Change("delete", int(pk), None, "removed") for pk in batch.deletes]
        yield from sorted(page, key=lambda change: change.pk)


def choose_rebuild(config: IndexConfig, ds: str, checked: dict, live: dict | None, params: dict) -> dict:
    assert config.opensearch is not None
    decision = choose_rebuild_mode(
        config.opensearch.rebuild, ds, checked, live, requested=params.get("rebuild_mode") or None,
        skip=bool(params.get("skip_rebuild")), force=bool(params.get("force_rebuild")),
    )
    log.info("rebuild mode for ds=%s: %s (%s)", ds, decision["mode"], decision["reason"])
    return decision


def _data_source(config: IndexConfig, instance_id: str) -> str:
    assert config.opensearch is not None
    return config.opensearch.rebuild.push.data_source or f"{instance_id}_{config.opensearch.table}"


def push_index_changes(
    config: IndexConfig,
    ds: str,
    checked: dict,
    *,
    earlier: dict | None = None,
    remember: Callable[[dict], None] = lambda _progress: None,
) -> dict:
    """Push the changes of ``ds`` against the live partition; resume after ``earlier`` (what ``remember``
    stored for this run) when it pushed the same change."""
    from pipeline.opensearch.connection import OpenSearchConnection
    from pipeline.opensearch.push import OpenSearchPush, push_changes

    assert config.opensearch is not None
    live_ds = str(checked["live_ds"])
    progress = PushProgress(ds, live_ds)
    if earlier and (earlier.get("ds"), earlier.get("live_ds")) == (ds, live_ds):
        progress = PushProgress.from_dict(earlier)
        log.info("resuming the pushes of this run after id %s (%d requests answered before)",
                 progress.after_pk, progress.requests)
    conn = OpenSearchConnection.from_airflow(config.opensearch.conn_id)
    pusher = OpenSearchPush(conn, _data_source(config, conn.instance_id), config.opensearch.primary_key)
    warehouse = open_index_warehouse(config)
    changes = delta_changes(warehouse, ds, live_ds, progress.after_pk)
    push_changes(pusher, changes, config.opensearch.rebuild.push, progress,
                 remember=lambda p: remember(p.as_dict()))
    return {"data_source": pusher.data_source, **progress.as_dict()}


def verify_index_changes(config: IndexConfig, ds: str, checked: dict,
                         sleep: Callable[[float], None] = time.sleep) -> dict:
    """Every pushed document answers by primary key as pushed, every deleted one is gone (within the
    bound); returns the figures and the samples the smoke queries use."""
    from pipeline.opensearch.connection import OpenSearchConnection
    from pipeline.opensearch.push import verify_changes
    from pipeline.opensearch.search import OpenSearchQuery

    assert config.opensearch is not None
    settings = config.opensearch
    live_ds = str(checked["live_ds"])
    changes = list(delta_changes(open_index_warehouse(config), ds, live_ds))
    query = OpenSearchQuery(OpenSearchConnection.from_airflow(settings.conn_id))
    push = settings.rebuild.push
    started = time.monotonic()
    deadline = started + push.verify_timeout_minutes * 60
    figures = verify_changes(query, settings, changes, timeout_s=push.verify_timeout_minutes * 60,
                             poll_s=push.verify_poll_s, sleep=sleep)
    rng = random.Random(f"{config.name}:{ds}:delta")
    added = [dict(c.row or {}) for c in changes if c.cmd == "add" and c.reason == "added"]
    replaced = [dict(c.row or {}) for c in changes if c.cmd == "add" and c.reason != "added"]
    deleted = [c.pk for c in changes if c.cmd == "delete"]
    checked_images = rng.sample(replaced, min(push.verify_image_samples, len(replaced)))
    verify_replaced_images(config, query, checked_images, len(replaced), deadline, push.verify_poll_s, sleep)
    count = settings.smoke.samples
    samples = {
        "added": rng.sample(added, min(count, len(added))),
        "changed": checked_images[:count],
        "deleted": rng.sample(deleted, min(DELETED_SAMPLES, len(deleted))),
    }
    return {**figures, "added": len(added), "changed": len(replaced), "deleted": len(deleted),
            "replaced_images_checked": len(checked_images), "seconds": round(time.monotonic() - started, 3),
            "samples": samples}


def verify_replaced_images(config: IndexConfig, query: Any, rows: list[dict], replaced: int, deadline: float,
                           poll_s: float, sleep: Callable[[float], None]) -> None:
    """A replaced image answers a primary-key lookup alike before and after its push is applied (same id,
    path and category): only a query with its new bytes tells. Each of ``rows`` must come back by its
    own id among the top k of such a query before ``deadline``, else DeltaNotAppliedError names them."""
    from pipeline.errors import DeltaNotAppliedError
    from pipeline.opensearch.smoke import image_smoke_query
    from pipeline.oss.client import OssConnection, read_object

    if not rows:
        return
    assert config.opensearch is not None
    oss_conn = OssConnection.from_airflow(config.source.oss_conn_id)
    bucket = oss_conn.bucket(config.source.bucket)
    images = {row["id"]: read_object(oss_conn, bucket, row["source_image"].lstrip("/")) for row in rows}
    pending = {row["id"]: row for row in rows}
    while True:
        for pk, row in list(pending.items()):
            try:
                image_smoke_query(query, config.opensearch, row, fetch_image=lambda _key, pk=pk: images[pk])
            except SmokeQueryError:
                continue
            del pending[pk]
        if not pending:
            return
        if time.monotonic() >= deadline:
            named = ", ".join(f"{pk} ({row['source_image']})" for pk, row in sorted(pending.items())[:10])
            raise DeltaNotAppliedError(
                f"{len(pending)} of {len(rows)} replaced images checked (of {replaced} replaced) are not found by "
                f"their new bytes: {named}. Their ids answer a primary-key lookup, with the old image's vector: the "
                "replacing pushes were lost or are applied late. Rerun the run (it pushes them again), or run with "
                "rebuild_mode=full")
        log.info("verifying pushes: %d replaced images not found by their new bytes yet", len(pending))
        sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


def run_delta_smoke_queries(config: IndexConfig, ds: str, verified: dict) -> list[dict]:
    """Image queries with added and replaced images (each must come back by its own id: only the pushed
    document can answer it), and primary-key lookups of deleted ids, which must find nothing; no deleted
    id may appear among any query's hits either."""
    from pipeline.oss.client import OssConnection, read_object
    from pipeline.opensearch.connection import OpenSearchConnection
    from pipeline.opensearch.push import lookup
    from pipeline.opensearch.search import OpenSearchQuery
    from pipeline.opensearch.smoke import image_smoke_query

    assert config.opensearch is not None
    settings = config.opensearch
    samples = verified.get("samples") or {}
    query = OpenSearchQuery(OpenSearchConnection.from_airflow(settings.conn_id))
    oss_conn = OssConnection.from_airflow(config.source.oss_conn_id)
    bucket = oss_conn.bucket(config.source.bucket)
    deleted = [int(pk) for pk in samples.get("deleted") or []]
    results: list[dict[str, Any]] = []
    for kind in ("added", "changed"):
        for row in samples.get(kind) or []:
            outcome = image_smoke_query(query, settings, row, fetch_image=lambda key: read_object(oss_conn, bucket, key))
            results.append({**outcome, "sampled": f"an image pushed as {kind} by this delta run"})
    returned = sorted({hit["id"] for r in results for hit in r["top"]} & set(deleted))
    if returned:
        raise SmokeQueryError(f"image queries returned ids this run deleted: {returned[:10]}; the deletes were "
                              "verified by primary key, so the index answers stale documents to vector queries")
    if deleted:
        found = lookup(query, settings, deleted)
        if found:
            raise SmokeQueryError(f"deleted ids still answer a primary-key lookup: {sorted(found)[:10]}")
        results.append({"kind": "deleted", "ids": deleted, "found": [], "top": [],
                        "sampled": f"{len(deleted)} ids this delta run deleted: none answers"})
    if not results:
        log.info("smoke: the delta pushed nothing; nothing new to query")
    for result in results:
        log.info("smoke query %s: %s", result["kind"], {k: result.get(k) for k in ("id", "rank", "ids")})
    return results
