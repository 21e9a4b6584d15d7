"""The index's Airflow assets and what their events say (README: Assets).

``publish_partition`` has the catalog asset as its outlet and ``smoke_query`` the live one: Airflow
records an event when such a task succeeds, so a task that fails or is skipped emits nothing. A dry run
skips ``publish_partition`` (nothing was published) and the smoke query (nothing went live); a refused
run stops before either. The extras are plain JSON: ``ds`` and the figures a consumer acts on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.sdk import Asset

from pipeline.assets import AssetIds, index_asset_ids
from pipeline.config import IndexConfig
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class IndexAssets:
    catalog: Asset
    live: Asset | None  # None without an opensearch section


def _asset(ids: AssetIds, field: str, config: IndexConfig) -> Asset:
    asset = Asset(name=ids.name, uri=ids.uri)
    if asset.uri != ids.uri:  # a provider that registers the scheme normalised it: say so, at parse time
        raise ConfigError(f"index {config.name}: Airflow normalises asset URI {ids.uri!r} to {asset.uri!r}; "
                          f"write that in {field} so that consumers schedule on what the config says")
    return asset


def index_assets(config: IndexConfig) -> IndexAssets:
    """The assets ``config``'s DAG produces (no network, no database: computed from the config)."""
    ids = index_asset_ids(config)
    return IndexAssets(
        catalog=_asset(ids.catalog, "assets.warehouse_uri", config),
        live=_asset(ids.live, "assets.index_uri", config) if ids.live is not None else None,
    )


def _changes(changes: dict | None, previous_key: str = "previous_ds") -> dict[str, Any]:
    changes = changes or {}
    return {"previous_ds": changes.get(previous_key), "added": changes.get("added"), "removed": changes.get("removed")}


def catalog_event_extra(config: IndexConfig, ds: str, checked: dict, published: dict, load: dict | None) -> dict:
    """The extra of the catalog asset's event: partition ``ds`` of the table was replaced."""
    stats = checked.get("stats") or {}
    load = load or {}
    return {
        "index": config.name,
        "ds": ds,
        "table": published.get("table"),  # the warehouse's location of the table
        "rows": stats.get("rows"),
        "distinct_ids": stats.get("distinct_ids"),
        # ids added and removed against the baseline the guards used (None: nothing to compare with)
        **_changes(checked.get("id_changes")),
        "route": load.get("route"),  # list or inventory
        "snapshot_at": checked.get("snapshot_at"),  # epoch seconds: when the rows were captured
    }


def live_event_extra(
    config: IndexConfig,
    ds: str,
    checked: dict,
    decision: dict,
    started: dict | None,
    waited: dict | None,
    pushed: dict | None,
    verified: dict | None,
) -> dict:
    """The extra of the live asset's event: the index answers for partition ``ds``, proven by the smoke
    query; ``mode`` says how it got there (``full``: a rebuild, whose generation went live; ``delta``:
    pushes, verified)."""
    stats = checked.get("stats") or {}
    mode = decision.get("mode") or "full"
    extra: dict[str, Any] = {
        "index": config.name,
        "ds": ds,
        "mode": mode,
        "reason": decision.get("reason"),
        "rows": stats.get("rows"),
        "distinct_ids": stats.get("distinct_ids"),
        "generation_id": None,  # full: the generation that went live
        "instance_id": None,
        "pushed": None,  # delta: requests, adds, deletes, bytes, retried requests
    }
    if mode == "delta":
        verified = verified or {}
        pushed = pushed or {}
        extra.update(previous_ds=checked.get("live_ds"), added=verified.get("added"), removed=verified.get("deleted"),
                     changed=verified.get("changed"),
                     pushed={k: pushed.get(k) for k in ("requests", "adds", "deletes", "bytes", "retried_requests")})
        return extra
    # Full: against the live partition when the check computed it (with ids whose image changed), else
    # against the guards' baseline.
    row_changes = checked.get("row_changes")
    if row_changes:
        extra.update(previous_ds=checked.get("live_ds"), added=row_changes.get("added"),
                     removed=row_changes.get("removed"), changed=row_changes.get("changed"))
    else:
        extra.update(**_changes(checked.get("id_changes")), changed=None)
    handle = (started or {}).get("handle") or {}
    if (waited or {}).get("outcome") == "ready":
        extra["generation_id"] = handle.get("generation_id")
        extra["instance_id"] = handle.get("instance_id")
    return extra
