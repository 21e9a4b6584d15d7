"""What the pipeline remembers between runs: which partition last went live, per index.

Kept in an Airflow Variable (``image_index.<name>.live_partition``): it lives in the metadata DB, so
every worker sees the same value, and operators can read or correct it in the UI. The shrink guard
compares each new partition with it.
"""

from __future__ import annotations


def live_partition_key(index: str) -> str:
    return f"image_index.{index}.live_partition"


def get_live_partition(index: str) -> str | None:
    from airflow.sdk import Variable

    value = Variable.get(live_partition_key(index), default=None)
    return str(value) if value else None


def set_live_partition(index: str, ds: str) -> None:
    from airflow.sdk import Variable

    Variable.set(live_partition_key(index), ds, description=f"partition that last went live for index {index}")
