"""OSS Bucket Inventory for ``source.mode: inventory``: find and verify a run (:mod:`.runs`), stage its
files for MaxCompute (:mod:`.staging`), set the rule up and show its runs (:mod:`.cli`,
``python -m pipeline.oss.inventory``)."""

from pipeline.oss.inventory.runs import (
    InventoryFile,
    InventoryRun,
    RunFolder,
    find_inventory,
    inventory_base,
    list_runs,
    run_created,
    verify_run,
)
from pipeline.oss.inventory.rule import check_inventory_rule
from pipeline.oss.inventory.staging import COPY_PART_BYTES, MAX_COPY_BYTES, remove_staged_files, stage_inventory_files

__all__ = [
    "COPY_PART_BYTES",
    "MAX_COPY_BYTES",
    "InventoryFile",
    "InventoryRun",
    "RunFolder",
    "check_inventory_rule",
    "find_inventory",
    "inventory_base",
    "list_runs",
    "remove_staged_files",
    "run_created",
    "stage_inventory_files",
    "verify_run",
]
