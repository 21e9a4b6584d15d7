"""Every DAG imports cleanly, is cheap to parse and carries the settings operators rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags"))


def test_no_import_errors(dagbag) -> None:
    assert dagbag.import_errors == {}
    # one DAG per index config, and the example consumer of the demo index's live asset
    assert set(dagbag.dags) == {"image_index_demo", "example_downstream"}


def test_every_dag_has_tags_retries_and_docs(dagbag) -> None:
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags, dag_id
        assert dag.default_args.get("retries", 0) >= 1, dag_id
        assert dag.max_active_runs == 1, dag_id
        assert dag.doc_md, dag_id
        assert dag.catchup is False, dag_id
        if dag_id.startswith("image_index_"):
            assert set(dag.params.keys()) >= {"partition_date", "prefixes", "dry_run"}, dag_id


def test_task_chain(dagbag) -> None:
    dag = dagbag.dags["image_index_demo"]
    # Two routes (the demo's config has an inventory section): a branch chooses one load; the check runs
    # after whichever ran.
    assert dag.get_task("choose_route").upstream_task_ids == {"resolve_partition"}
    assert dag.get_task("choose_route").downstream_task_ids == {"load_partition", "load_from_inventory"}
    assert dag.get_task("check_partition").upstream_task_ids == {"resolve_partition", "load_partition",
                                                                 "load_from_inventory"}
    assert dag.get_task("check_partition").trigger_rule == "none_failed_min_one_success"
    # nothing is published before the guards passed, and nothing rebuilt or pushed before it is published
    assert dag.get_task("publish_partition").upstream_task_ids == {"resolve_partition", "check_partition"}
    assert dag.get_task("choose_rebuild").upstream_task_ids == {"resolve_partition", "check_partition", "publish_partition"}
    assert dag.get_task("choose_rebuild").trigger_rule == "none_failed"  # also after a dry run's skipped publish
    assert dag.get_task("choose_rebuild").downstream_task_ids == {"start_rebuild", "push_changes"}
    assert dag.get_task("start_rebuild").upstream_task_ids == {"resolve_partition", "check_partition", "choose_rebuild"}
    assert dag.get_task("wait_until_searchable").upstream_task_ids == {"start_rebuild"}
    assert dag.get_task("push_changes").upstream_task_ids == {"resolve_partition", "check_partition", "choose_rebuild"}
    assert dag.get_task("verify_pushes").upstream_task_ids == {"resolve_partition", "check_partition", "push_changes"}
    # the smoke samples ids new against the live partition that check_partition read, after either path
    assert dag.get_task("smoke_query").upstream_task_ids == {"resolve_partition", "check_partition",
                                                             "wait_until_searchable", "verify_pushes"}
    # the assets: a published partition, a partition proven live
    assert [a.name for a in dag.get_task("publish_partition").outlets] == ["image_index.demo.catalog"]
    assert [a.name for a in dag.get_task("smoke_query").outlets] == ["image_index.demo.live"]
    assert dag.get_task("smoke_query").trigger_rule == "none_failed_min_one_success"
    # The report runs whatever happened (all done), as a teardown so that its success never decides the
    # run's state; every other task records its error message for it.
    from pipeline.airflow.outcome import record_failure

    report = dag.get_task("report")
    assert report.upstream_task_ids == {"smoke_query"}
    assert report.is_teardown and not report.on_failure_fail_dagrun and report.trigger_rule == "all_done_setup_success"
    assert all(record_failure in task.on_failure_callback for task in dag.tasks if task is not report)


def test_rebuild_runs_in_the_instance_pool_and_the_wait_defers(dagbag) -> None:
    dag = dagbag.dags["image_index_demo"]
    assert dag.get_task("start_rebuild").pool == "opensearch_opensearch_local"
    assert dag.get_task("push_changes").pool == "opensearch_opensearch_local"  # one writer per instance
    # reindex is not idempotent, yet retries are safe: a retry follows the build an earlier try started
    assert dag.get_task("start_rebuild").retries == dag.default_args["retries"] == 2
    from pipeline.airflow.sensors import RebuildSensor

    assert isinstance(dag.get_task("wait_until_searchable"), RebuildSensor)


def test_parsing_is_cheap(dagbag) -> None:
    (stat,) = [s for s in dagbag.dagbag_stats if s.file.endswith("image_index.py")]
    # The dag processor re-parses every file in a loop; ours reads a few YAML files (about 25 ms here).
    assert stat.duration.total_seconds() < 1.0


def test_parsing_imports_no_heavy_or_networked_module() -> None:
    """Heavy and networked clients are imported inside tasks, never when the file is parsed."""
    code = (
        "import sys, runpy; runpy.run_path(sys.argv[1]); "
        "print(','.join(m for m in ('pyarrow', 'oss2', 'odps', 'duckdb', 'pandas', 'PIL', 'openlineage') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO / "dags" / "image_index.py")],
        check=True,
        capture_output=True,
        text=True,
    )
    assert out.stdout.strip().splitlines()[-1:] in ([""], [])


def test_bad_config_fails_import_naming_file_and_field(tmp_path: Path) -> None:
    from airflow.dag_processing.dagbag import DagBag

    dags = tmp_path / "dags"
    (dags / "indexes").mkdir(parents=True)
    (dags / "image_index.py").write_text((REPO / "dags" / "image_index.py").read_text())
    (dags / "indexes" / "broken.yaml").write_text((REPO / "dags" / "indexes" / "demo.yaml").read_text().replace("Asia/Shanghai", "Mars/Base"))
    bag = DagBag(dag_folder=str(dags))
    (message,) = bag.import_errors.values()
    assert "broken.yaml: invalid index config" in message
    assert "timezone: unknown time zone 'Mars/Base'" in message
