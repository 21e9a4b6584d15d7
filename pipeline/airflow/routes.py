"""Which route loads a run's partition: list the bucket through the worker, or read the bucket's OSS
inventory inside MaxCompute (``source.mode``, or a run's ``source_mode`` Param).

The inventory route needs a complete inventory run started at or before the end of the partition's day
and at most ``max_age_hours`` before it. When there is none, ``source.inventory.fallback: list`` lists
the bucket instead (the report says why); ``fail`` (the default) ends the run with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pipeline.config import IndexConfig
from pipeline.errors import InventoryError, ParamError

log = logging.getLogger(__name__)


def choose_load_route(config: IndexConfig, ds: str, params: Mapping[str, Any], now: datetime | None = None) -> dict:
    """``{"route", "task_id", "reason"}`` for partition ``ds``: the task that loads it and why."""
    mode = params.get("source_mode") or config.source.mode
    if mode == "list":  # the configured route needs no reason; a Param's choice is worth saying
        why = "the source_mode Param asked to list" if params.get("source_mode") else None
        return {"route": "list", "task_id": "load_partition", "reason": why}
    if params.get("dry_run"):
        return {"route": "list", "task_id": "load_partition",
                "reason": "dry run: the inventory route writes its rows in MaxCompute, so a dry run lists and counts"}
    inventory = config.source.inventory
    if inventory is None:
        raise ParamError(f"source_mode 'inventory': index {config.name!r} has no source.inventory section")
    from pipeline.oss.client import OssConnection
    from pipeline.oss.inventory import check_inventory_rule, find_inventory
    from pipeline.stages import inventory_day_end

    if config.id_rule.kind == "hash":  # the config refuses it with mode inventory; a Param may not either
        raise ParamError("source_mode 'inventory': id_rule.kind 'hash' (BLAKE2b) cannot be computed in MaxCompute "
                         "SQL; the index must use kind 'md5' for the inventory route")
    conn = OssConnection.from_airflow(config.source.oss_conn_id)
    prefixes = list(params.get("prefixes") or config.source.prefixes)
    try:
        check_inventory_rule(conn, config.source.bucket, inventory, prefixes)
        run = find_inventory(conn.bucket(inventory.bucket), config.source.bucket, inventory,
                             inventory_day_end(config, ds), now or datetime.now(UTC), conn=conn)
    except InventoryError as exc:
        if inventory.fallback != "list":
            raise
        log.warning("listing the bucket instead of reading its inventory (source.inventory.fallback: list): %s", exc)
        return {"route": "list", "task_id": "load_partition", "reason": f"inventory unusable, fell back to listing: {exc}"}
    return {"route": "inventory", "task_id": "load_from_inventory", "run": run.name,
            "reason": f"inventory run {run.name} ({len(run.files)} files) is complete and fresh"}
