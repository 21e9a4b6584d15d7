"""The inventory rule on the source bucket, checked against the index config at every run: a run may
only read an inventory whose rule lists, of the current versions, every object the run selects.

``setup`` writes the rule from the config (pipeline/oss/inventory/cli.py); if the config's prefixes
grow later, or someone edits the rule in the console (a narrower filter, size or date bounds, every
version), the inventories keep arriving, fresh and complete, yet without the objects the rule leaves
out: the new prefix would contribute no row and no skip count, and no guard could see it. Reading the
rule (GetBucketInventory, one request; the worker's role needs ``oss:GetBucketInventory`` on the
source bucket) is the only place that says so.
"""

from __future__ import annotations

import oss2

from pipeline.config import InventoryConfig
from pipeline.errors import InventoryError
from pipeline.oss.client import OssConnection, translate_error

_SETUP = "python -m pipeline.oss.inventory setup --config <the index's yaml> --replace"


def check_inventory_rule(conn: OssConnection, source_bucket: str, inventory: InventoryConfig,
                         prefixes: list[str]) -> None:
    """Raise InventoryError unless rule ``inventory.id`` on ``source_bucket`` is enabled, writes into
    ``inventory.bucket`` under ``inventory.prefix``, lists current versions only, has no filter but a
    prefix, and that prefix is the start of every one of ``prefixes``."""
    what = f"inventory rule {inventory.id!r} on bucket {source_bucket!r}"
    bucket = conn.bucket(source_bucket)
    try:
        rule = bucket.get_bucket_inventory_configuration(inventory.id)
    except oss2.exceptions.NoSuchInventory:
        raise InventoryError(f"{what} does not exist: create it with `{_SETUP.replace(' --replace', '')} "
                             "--oss-role-arn ...`") from None
    except oss2.exceptions.OssError as exc:
        raise translate_error(exc, conn, source_bucket, f"reading {what}") from None
    problems = []
    if not rule.is_enabled:
        problems.append("it is disabled")
    if rule.included_object_versions != "Current":
        problems.append(f"it lists {rule.included_object_versions} versions, not Current only")
    dest = rule.inventory_destination.bucket_destination if rule.inventory_destination else None
    if getattr(dest, "bucket", None) != inventory.bucket:
        problems.append(f"it writes into bucket {getattr(dest, 'bucket', None)!r}, not {inventory.bucket!r}")
    if ((getattr(dest, "prefix", None) or "").rstrip("/")) != inventory.prefix.rstrip("/"):
        problems.append(f"it writes under prefix {getattr(dest, 'prefix', None)!r}, not {inventory.prefix!r}")
    flt = rule.inventory_filter
    bounds = {name: getattr(flt, name, None) for name in (
        "last_modify_begin_time_stamp", "last_modify_end_time_stamp", "lower_size_bound", "upper_size_bound",
        "storage_class")} if flt else {}
    set_bounds = [name for name, value in bounds.items() if value not in (None, "", 0)]
    if set_bounds:
        problems.append(f"it filters by {', '.join(set_bounds)}, which the index config does not")
    prefix = (flt.prefix if flt else None) or ""
    outside = [p for p in prefixes if not p.startswith(prefix)]
    if outside:
        problems.append(f"its filter prefix {prefix!r} leaves out the selected prefixes {outside}")
    if problems:
        raise InventoryError(f"{what} does not list what this run selects: {'; '.join(problems)}. Its inventories "
                             f"would silently miss objects: fix the rule (`{_SETUP}`)")
