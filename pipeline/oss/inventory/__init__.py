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
    verify_run,
)
from pipeline.oss.inventory.staging import COPY_PART_BYTES, MAX_COPY_BYTES, stage_inventory_files

__all__ = [
    "COPY_PART_BYTES",
    "MAX_COPY_BYTES",
    "InventoryFile",
    "InventoryRun",
    "RunFolder",
    "find_inventory",
    "inventory_base",
    "list_runs",
    "stage_inventory_files",
    "verify_run",
]
