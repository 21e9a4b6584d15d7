"""What the pipeline remembers between tasks and runs, in Airflow Variables (the metadata DB: every
worker sees the same value, and operators can read or correct it in the UI).

* ``image_index.<name>.live_partition``: the partition that last went live; the smoke query samples ids
  new against it. ``image_index.<name>.live``: that partition's figures (rows, distinct ids, rows per
  category) as they were when it went live: the shrink guard compares each staged partition with
  them, also when a same-day rerun is about to replace that very partition.
* ``image_index.<name>.rebuild_attempt.<run_id>``: what ``start_rebuild`` saw and did before calling
  reindex in this DAG run (the generation snapshot, when a reindex may have been sent). Airflow clears
  a task's own XComs when it runs again (retry or clear), so an XCom cannot tell a second attempt what
  the first one started; a Variable keyed by the run can. It is deleted once the run's index is proven
  live; a run that failed keeps it, so its rerun follows the build instead of starting another.
* ``image_index.<name>.push.<run_id>``: how far a delta run's pushes got (the last id answered OK), so a
  retried ``push_changes`` resumes after it; deleted with the rebuild attempt.
* ``image_index.<name>.last_push_at``: when documents were last pushed to the index (epoch seconds),
  written before the first byte of a run's pushes: a full rebuild that could not replay back to the
  partition's snapshot would lose them, and is refused (pipeline/opensearch/rebuild.py, replay_from).
"""

from __future__ import annotations


def live_partition_key(index: str) -> str:
    return f"image_index.{index}.live_partition"


def get_live_partition(index: str) -> str | None:
    from airflow.sdk import Variable

    value = Variable.get(live_partition_key(index), default=None)
    return str(value) if value else None


def live_record_key(index: str) -> str:
    return f"image_index.{index}.live"


def set_live_partition(index: str, ds: str, stats: dict | None = None, how: dict | None = None) -> None:
    """``ds`` went live; ``stats`` (PartitionStats.as_dict of what was published) are what later runs are
    judged against. ``how``: the mode (full/delta) and when the last full rebuild went live
    (``last_full_at``, ``last_full_ds``), which ``rebuild.mode: auto`` reads."""
    from airflow.sdk import Variable

    Variable.set(live_partition_key(index), ds, description=f"partition that last went live for index {index}")
    if stats is not None:
        Variable.set(live_record_key(index), {"ds": ds, "stats": stats, **(how or {})}, serialize_json=True,
                     description=f"figures of the partition that last went live for index {index} (shrink guard, "
                     "rebuild mode)")


def get_live_record(index: str) -> dict | None:
    from airflow.sdk import Variable

    value = Variable.get(live_record_key(index), default=None, deserialize_json=True)
    return value if isinstance(value, dict) else None


def rebuild_attempt_key(index: str, run_id: str) -> str:
    return f"image_index.{index}.rebuild_attempt.{run_id}"


def get_rebuild_attempt(index: str, run_id: str) -> dict | None:
    from airflow.sdk import Variable

    value = Variable.get(rebuild_attempt_key(index, run_id), default=None, deserialize_json=True)
    return value if isinstance(value, dict) else None


def set_rebuild_attempt(index: str, run_id: str, attempt: dict) -> None:
    from airflow.sdk import Variable

    Variable.set(
        rebuild_attempt_key(index, run_id), attempt, serialize_json=True,
        description=f"rebuild started by DAG run {run_id} of index {index}: a rerun follows it (see pipeline/airflow/state.py)",
    )


def forget_rebuild_attempt(index: str, run_id: str) -> None:
    from airflow.sdk import Variable

    Variable.delete(rebuild_attempt_key(index, run_id))


def push_progress_key(index: str, run_id: str) -> str:
    return f"image_index.{index}.push.{run_id}"


def get_push_progress(index: str, run_id: str) -> dict | None:
    from airflow.sdk import Variable

    value = Variable.get(push_progress_key(index, run_id), default=None, deserialize_json=True)
    return value if isinstance(value, dict) else None


def set_push_progress(index: str, run_id: str, progress: dict) -> None:
    from airflow.sdk import Variable

    Variable.set(push_progress_key(index, run_id), progress, serialize_json=True,
                 description=f"pushes of DAG run {run_id} of index {index}: a retry resumes after after_pk")
    if progress.get("first_push_at"):  # before the first request, then after each one answered
        import time

        set_last_push_at(index, time.time() if progress.get("requests") else float(progress["first_push_at"]))


def forget_push_progress(index: str, run_id: str) -> None:
    from airflow.sdk import Variable

    Variable.delete(push_progress_key(index, run_id))


def last_push_key(index: str) -> str:
    return f"image_index.{index}.last_push_at"


def set_last_push_at(index: str, at: float) -> None:
    from airflow.sdk import Variable

    known = get_last_push_at(index)
    if known is None or at > known:
        Variable.set(last_push_key(index), str(at), description=f"when documents were last pushed to index {index}")


def get_last_push_at(index: str) -> float | None:
    from airflow.sdk import Variable

    value = Variable.get(last_push_key(index), default=None)
    try:
        return float(value) if value else None
    except ValueError:
        return None
