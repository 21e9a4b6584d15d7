"""Waiting for the shared local OpenSearch to be idle, so tests that start builds do not overlap."""

from __future__ import annotations

import time

from pipeline.opensearch.management import OpenSearchManagement


def settle(mgmt: OpenSearchManagement, table: str = "demo_images") -> None:
    """Wait (bounded) until no generation of ``table`` is still starting or building."""
    for _ in range(300):
        ids = mgmt.generation_ids(table)
        if not ids or mgmt.generation(table, ids[-1]).get("status") not in ("starting", "building"):
            return
        time.sleep(0.05)
    raise AssertionError("a build did not settle within 15 s")
