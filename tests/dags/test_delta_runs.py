"""Delta runs through ``dag.test()`` on the local stack (README: Cost proportional to change): the branch
pushes what changed instead of rebuilding, verifies it, proves it by query, and says why; ``auto`` chooses
each way; a push the service drops fails the run naming the ids; a later full rebuild replays from its
partition's snapshot."""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# dag.test() keeps the last run's conf as the Params: every run names them all.
PARAMS = {"partition_date": None, "allow_future_partition": False, "prefixes": None, "dry_run": False,
          "source_mode": None, "rebuild_mode": None, "skip_rebuild": False, "force_rebuild": False,
          "override_guards": []}
TABLE = "demo_images"


def make_dag(config):
    from pipeline.airflow.dag_factory import build_dag

    dag = build_dag(config, REPO / "dags" / "indexes" / "demo.yaml")
    for task in dag.tasks:
        task.retries = 0
    return dag


@pytest.fixture
def demo_dag(airflow_db, demo_stack):
    return make_dag(demo_stack[2])


@pytest.fixture
def bucket(demo_stack):
    from localcloud.demo_data import reset_demo_bucket
    from pipeline.oss.client import OssConnection

    _, stack, config = demo_stack
    bucket = OssConnection.from_extras("oss_local", stack.connections()["oss_local"]["extra"]).bucket(config.source.bucket)
    reset_demo_bucket(bucket)
    yield bucket
    reset_demo_bucket(bucket)
    stack.opensearch.engine.faults.drop_next_pushes = 0


@pytest.fixture
def days(demo_stack):
    """Four partition dates after every partition the session's other tests wrote (a delta, like a rebuild,
    runs only from the newest partition); the partitions they leave and the live record are put back."""
    from airflow.models import Variable

    from pipeline.airflow.state import live_partition_key, live_record_key
    from pipeline.stages import open_index_warehouse

    warehouse = open_index_warehouse(demo_stack[2])
    before = set(warehouse.partitions())
    start = datetime.strptime(max(before | {"20261231"}), "%Y%m%d").date() + timedelta(days=1)
    keys = (live_record_key("demo"), live_partition_key("demo"))
    saved = {key: Variable.get(key, default_var=None) for key in keys}
    yield [(start + timedelta(days=i)).isoformat() for i in range(4)]
    for ds in set(warehouse.partitions()) - before:
        warehouse.drop_partition(ds)
    for key, value in saved.items():
        if value is None:
            Variable.delete(key)
        else:
            Variable.set(key, value)


def ds_of(day: str) -> str:
    return day.replace("-", "")


def run(dag, day: str, **params):
    # The days are after today: a run for them is what allow_future_partition is for.
    return dag.test(logical_date=None, run_conf={**PARAMS, "partition_date": day, "allow_future_partition": True,
                                                 **params})


def run_report(dag_run, ds: str) -> dict:
    from pipeline.report import run_file_name

    path = Path(os.environ["PIPELINE_REPORT_DIR"]) / "demo" / ds / run_file_name(dag_run.run_id)
    return json.loads(path.read_text())


def live_record() -> dict:
    from airflow.models import Variable

    from pipeline.airflow.state import live_record_key

    return Variable.get(live_record_key("demo"), deserialize_json=True)


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def test_a_delta_run_pushes_the_change_verifies_it_and_finds_it_by_image(demo_dag, demo_stack, bucket, days) -> None:
    from localcloud.demo_data import change_demo_bucket

    _, stack, _ = demo_stack
    engine = stack.opensearch.engine
    assert run(demo_dag, days[0], rebuild_mode="full").state == "success"
    generation = engine.live_generation_id(TABLE)
    changed = change_demo_bucket(bucket, 0.05)
    added, replaced, deleted = (len(changed[k]) for k in ("added", "replaced", "deleted"))
    before = engine.vectorized_images(TABLE)

    delta = run(demo_dag, days[1], rebuild_mode="delta")
    assert delta.state == "success"
    got = run_report(delta, ds_of(days[1]))
    assert states(delta)["start_rebuild"] == "skipped" and states(delta)["verify_pushes"] == "success"
    assert got["mode"]["mode"] == "delta" and "the run's rebuild_mode Param is delta" in got["mode"]["reason"]
    assert got["mode"]["changes"] == {"previous_ds": ds_of(days[0]), "added": added, "removed": deleted,
                                      "changed": replaced, "unchanged": 320 - replaced - deleted,
                                      "previous_without_etag": 0}
    pushed, verified = got["delta"]["pushed"], got["delta"]["verified"]
    assert (pushed["adds"], pushed["deletes"]) == (added + replaced, deleted)
    assert (verified["verified_adds"], verified["verified_deletes"]) == (added + replaced, deleted)
    # Only the pushed images were vectorized; no new generation was built.
    after = engine.vectorized_images(TABLE)
    assert after["push"] - before["push"] == added + replaced and after["build"] == before["build"]
    assert engine.live_generation_id(TABLE) == generation
    # The smoke queries found added and replaced images by their own ids; deleted ids answer nothing.
    images = [q for q in got["smoke_queries"] if q["kind"] == "image"]
    assert {q["sampled"] for q in images} == {"an image pushed as added by this delta run",
                                             "an image pushed as changed by this delta run"}
    assert all(q["rank"] == 1 and q["match"] == "id" for q in images)
    (gone,) = [q for q in got["smoke_queries"] if q["kind"] == "deleted"]
    assert len(gone["ids"]) == deleted and gone["found"] == []
    live = live_record()
    assert (live["ds"], live["mode"], live["last_full_ds"]) == (ds_of(days[1]), "delta", ds_of(days[0]))
    assert got["outcome"] == "success"


def test_auto_pushes_a_small_change_and_rebuilds_a_large_one(demo_dag, demo_stack, bucket, days) -> None:
    from localcloud.demo_data import change_demo_bucket

    assert run(demo_dag, days[0], rebuild_mode="full").state == "success"
    change_demo_bucket(bucket, 0.02, seed=3)  # 6 of 320: under max_change_fraction 5%
    small = run(demo_dag, days[1], rebuild_mode="auto")
    assert small.state == "success"
    decision = run_report(small, ds_of(days[1]))["mode"]
    assert decision["mode"] == "delta" and decision["reason"].startswith("auto: 6 of 320 live rows changed")

    change_demo_bucket(bucket, 0.2, seed=4)  # 64 more: over 5%
    large = run(demo_dag, days[2], rebuild_mode="auto")
    assert large.state == "success"
    got = run_report(large, ds_of(days[2]))
    assert got["mode"]["mode"] == "full" and "more than max_change_fraction 5.00%" in got["mode"]["reason"]
    assert states(large)["push_changes"] == "skipped" and got["rebuild"]["outcome"] == "ready"
    # Documents were pushed before this partition's rows were captured: the rebuild replays from its snapshot.
    assert got["rebuild"]["replay_from"] == int(got["load"]["snapshot_at"])


def quick_dag(config):
    """The demo's DAG with a verification bound of 3 s (the config's floor is 6 s)."""
    push = config.opensearch.rebuild.push.model_copy(update={"verify_timeout_minutes": 0.05, "verify_poll_s": 0.2})
    rebuild = config.opensearch.rebuild.model_copy(update={"push": push})
    return make_dag(config.model_copy(update={"opensearch": config.opensearch.model_copy(update={"rebuild": rebuild})}))


def test_a_push_the_service_drops_fails_the_run_naming_the_ids(demo_stack, airflow_db, bucket, days) -> None:
    from localcloud.demo_data import change_demo_bucket

    _, stack, config = demo_stack
    dag = quick_dag(config)
    assert run(dag, days[0], rebuild_mode="full").state == "success"
    changed = change_demo_bucket(bucket, 0.02, seed=5)
    stack.opensearch.engine.faults.drop_next_pushes = 100  # answered OK, never applied

    lost = run(dag, days[1], rebuild_mode="delta")
    assert lost.state == "failed"
    assert states(lost)["push_changes"] == "success" and states(lost)["verify_pushes"] == "failed"
    assert states(lost)["smoke_query"] == "upstream_failed"
    got = run_report(lost, ds_of(days[1]))
    (failure,) = [f for f in got["failed_tasks"] if f["task_id"] == "verify_pushes"]
    message = failure["message"]
    # The added ids are missing; the replaced ones still answer by primary key, with their old document.
    new_ids = sorted(int(key.rsplit("/", 1)[1].split(".")[0]) for key in changed["added"])
    pushed = len(changed["added"]) + len(changed["replaced"])
    assert f"{len(new_ids)} of {pushed} pushed documents do not answer as pushed" in message
    assert all(f"{pk} (not found)" in message for pk in new_ids[:3])
    assert f"{len(changed['deleted'])} of {len(changed['deleted'])} deleted documents still answer" in message
    assert live_record()["ds"] == ds_of(days[0])  # nothing proven: the live record is unchanged


def test_a_dropped_replacement_is_caught_by_its_new_bytes(demo_stack, airflow_db, bucket, days) -> None:
    """A replaced image answers a primary-key lookup alike before and after its push: the image check
    is what catches a lost replacement."""
    from localcloud.demo_data import _image

    _, stack, config = demo_stack
    dag = quick_dag(config)
    assert run(dag, days[0], rebuild_mode="full").state == "success"
    for key, seed in (("catalog/bags/20013.jpg", 777), ("catalog/hats/30044.jpg", 778)):
        bucket.put_object(key, _image(seed, "JPEG"))
    stack.opensearch.engine.faults.drop_next_pushes = 100

    lost = run(dag, days[1], rebuild_mode="delta")
    assert lost.state == "failed" and states(lost)["verify_pushes"] == "failed"
    (failure,) = [f for f in run_report(lost, ds_of(days[1]))["failed_tasks"] if f["task_id"] == "verify_pushes"]
    assert failure["message"].startswith("2 of 2 replaced images checked (of 2 replaced) are not found by their new "
                                         "bytes: 20013 (/catalog/bags/20013.jpg), 30044 (/catalog/hats/30044.jpg)")
