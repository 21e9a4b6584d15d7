"""``python -m pipeline.airflow.pools``: create the one-slot rebuild pool of every index config.

One full rebuild at a time per OpenSearch instance: every index whose ``opensearch`` section names the
same pool (by default ``opensearch_<conn_id>``) queues its rebuild behind the others. Idempotent.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.config import IndexConfig, load_index_configs

DEFAULT_INDEX_DIR = Path(__file__).resolve().parents[2] / "dags" / "indexes"


def rebuild_pools(configs: list[IndexConfig]) -> dict[str, list[str]]:
    """Pool name → the indexes whose rebuilds it serialises."""
    pools: dict[str, list[str]] = {}
    for config in configs:
        if config.opensearch is not None:
            pools.setdefault(config.opensearch.pool_name, []).append(config.name)
    return pools


def ensure_pools(index_dir: Path = DEFAULT_INDEX_DIR) -> dict[str, list[str]]:
    pools = rebuild_pools([config for _, config in load_index_configs(index_dir)])
    airflow = Path(sys.executable).with_name("airflow")
    for name, indexes in sorted(pools.items()):
        description = f"one OpenSearch rebuild at a time (indexes: {', '.join(indexes)})"
        subprocess.run([str(airflow), "pools", "set", name, "1", description], check=True, capture_output=True)
    return pools


def main() -> int:
    for name, indexes in sorted(ensure_pools().items()):
        print(f"pool {name}: 1 slot for {', '.join(indexes)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
