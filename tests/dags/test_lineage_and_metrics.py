"""OpenLineage events and StatsD metrics of one real run of the demo DAG (``dag.test()`` on the local stack).

One run serves both. It runs in a child process, and that is the narrowest honest seam: Airflow reads
``[metrics]`` when its stats backend is first built, and the OpenLineage provider decides whether its
plugin registers the listener when the plugin is imported (``conf.is_disabled()``: no transport, no
listener); both happen once per process, and other tests in this session may already have done both
with nothing configured. The child is configured from the start as a deployment would be:
``AIRFLOW__OPENLINEAGE__TRANSPORT`` (the provider's file transport, one JSON event a line) and
``AIRFLOW__METRICS__STATSD_*`` pointing at a UDP socket this test reads. Nothing else is replaced:
``dag.test()`` runs each task in-process through the Task SDK's runner, which calls the plugins'
listeners, and the provider's listener extracts and emits as it does on a worker (in a forked child).

The child has an Airflow home of its own (a fresh metadata DB, about 3 s to migrate), so the demo
index's Variables (its live partition) and reports in this session's DB stay as the other DAG tests
left them; it shares the local stack (warehouse, OpenSearch) with them, and writes a past day of its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INDEX, DS = "demo", "20260606"  # a past day of its own, rebuilt from on purpose (force_rebuild)
CONF = {"partition_date": "2026-06-06", "allow_future_partition": False, "prefixes": None, "dry_run": False,
        "source_mode": None, "rebuild_mode": "full", "skip_rebuild": False, "force_rebuild": True,
        "override_guards": []}

CHILD = """
import json, sys
from airflow.dag_processing.dagbag import DagBag

dag = DagBag(dag_folder=sys.argv[1]).dags[sys.argv[2]]
for task in dag.tasks:
    task.retries = 0
run = dag.test(logical_date=None, run_conf=json.loads(sys.argv[3]))
print("RESULT " + json.dumps({"state": str(run.state),
                               "tasks": {ti.task_id: str(ti.state) for ti in run.get_task_instances()}}))
"""


class StatsdReceiver:
    """A UDP socket on loopback that keeps every StatsD line it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.lines.extend(data.decode(errors="replace").splitlines())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def gauges(self, prefix: str) -> dict[str, float]:
        """The last value of each gauge whose name starts with ``prefix`` (``name:value|g``)."""
        found = {}
        for line in self.lines:
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if name.startswith(prefix) and kind == "g":
                found[name.removeprefix(prefix)] = float(value)
        return found


@pytest.fixture(scope="module")
def lineage_run(demo_stack, airflow_db, tmp_path_factory):
    """The run (states and its report), its OpenLineage events (as JSON) and the StatsD lines it sent."""
    tmp = tmp_path_factory.mktemp("lineage")
    events_file = tmp / "openlineage.jsonl"
    receiver = StatsdReceiver()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "PIPELINE_REPORT_DIR": str(tmp / "reports"),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps({"type": "file", "log_file_path": str(events_file),
                                                      "append": True}),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "image-index-test",
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(receiver.port),
        "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    try:
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=120)
        subprocess.run([sys.executable, "-m", "pipeline.airflow.pools"], env=env, check=True, capture_output=True,
                       timeout=120)
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(REPO / "dags"), f"image_index_{INDEX}", json.dumps(CONF)],
            env=env, capture_output=True, text=True, timeout=300,
        )
        (tmp / "child.log").write_text(child.stdout + child.stderr)
        results = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
        assert child.returncode == 0 and results, f"the run failed; its output is in {tmp / 'child.log'}"
        threading.Event().wait(0.5)  # the last datagrams
    finally:
        receiver.close()
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    result = json.loads(results[-1].removeprefix("RESULT "))
    result["report"] = json.loads((tmp / "reports" / INDEX / f"{DS}.json").read_text())
    return result, events, receiver


def task_events(events: list[dict], task_id: str) -> dict[str, dict]:
    """The task's events by type (START, COMPLETE, FAIL)."""
    job = f"image_index_{INDEX}.{task_id}"
    return {e["eventType"]: e for e in events if e.get("job", {}).get("name") == job}


def datasets(event: dict, kind: str) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in event[kind]]


def test_the_run_succeeds_with_a_full_rebuild(lineage_run) -> None:
    result, _, _ = lineage_run
    assert result["state"] == "success", result
    assert result["tasks"]["start_rebuild"] == "success" and result["tasks"]["push_changes"] == "skipped"


def test_the_load_reads_the_oss_prefix_and_writes_the_maxcompute_partition(lineage_run) -> None:
    from localcloud.stack import MAXCOMPUTE_PROJECT

    _, events, _ = lineage_run
    load = task_events(events, "load_partition")
    assert set(load) == {"START", "COMPLETE"}
    for event in load.values():
        assert datasets(event, "inputs") == [("oss://demo-images", "catalog/")]
        assert datasets(event, "outputs") == [(f"maxcompute://{MAXCOMPUTE_PROJECT}", "demo_image_catalog__staging")]
        assert event["outputs"][0]["facets"]["imageIndexPartition"]["value"] == DS
        facet = event["run"]["facets"]["imageIndex"]
        assert (facet["index"], facet["ds"], facet["task"]) == (INDEX, DS, "load_partition")
    complete = load["COMPLETE"]
    assert complete["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 320
    details = complete["run"]["facets"]["imageIndex"]["details"]
    assert details["rows_written"] == 320 and details["skipped"]["unmapped_category"] == 5


def test_publish_moves_the_partition_from_staging_into_the_table(lineage_run) -> None:
    from localcloud.stack import MAXCOMPUTE_PROJECT

    _, events, _ = lineage_run
    complete = task_events(events, "publish_partition")["COMPLETE"]
    namespace = f"maxcompute://{MAXCOMPUTE_PROJECT}"
    assert datasets(complete, "inputs") == [(namespace, "demo_image_catalog__staging")]
    assert datasets(complete, "outputs") == [(namespace, "demo_image_catalog")]
    assert complete["outputs"][0]["facets"]["imageIndexPartition"] == {
        **complete["outputs"][0]["facets"]["imageIndexPartition"], "column": "ds", "value": DS}


def test_the_rebuild_writes_the_opensearch_table(lineage_run) -> None:
    from localcloud.stack import INSTANCE_ID, MAXCOMPUTE_PROJECT

    _, events, _ = lineage_run
    rebuild = task_events(events, "start_rebuild")
    assert set(rebuild) == {"START", "COMPLETE"}
    for event in rebuild.values():
        assert datasets(event, "inputs") == [(f"maxcompute://{MAXCOMPUTE_PROJECT}", "demo_image_catalog")]
        assert event["inputs"][0]["facets"]["imageIndexPartition"]["value"] == DS
        assert datasets(event, "outputs") == [(f"opensearch://{INSTANCE_ID}", "demo_images")]
        assert event["run"]["facets"]["imageIndex"]["ds"] == DS
    details = rebuild["COMPLETE"]["run"]["facets"]["imageIndex"]["details"]
    assert details["started"] is True and isinstance(details["generation_id"], int)


def test_the_custom_facets_match_their_published_schema(lineage_run) -> None:
    import jsonschema

    _, events, _ = lineage_run
    schema = json.loads((REPO / "docs" / "lineage-facets.schema.json").read_text())
    checked = 0
    for event in events:
        if facet := event["run"]["facets"].get("imageIndex"):
            jsonschema.validate(facet, {**schema, "$ref": "#/$defs/ImageIndexRunFacet"})
            checked += 1
        for dataset in event.get("inputs", []) + event.get("outputs", []):
            if facet := dataset.get("facets", {}).get("imageIndexPartition"):
                jsonschema.validate(facet, {**schema, "$ref": "#/$defs/ImageIndexPartitionDatasetFacet"})
    assert checked == 6  # START and COMPLETE of the load, the publish and the rebuild


def test_the_metrics_arrive_over_statsd_with_the_runs_figures(lineage_run) -> None:
    result, _, receiver = lineage_run
    gauges = receiver.gauges(f"airflow.image_index.{INDEX}.")
    load = result["report"]["load"]  # the same run's figures, as its report has them
    assert gauges["keys_listed"] == load["listed"] == 336
    assert gauges["rows"] == load["rows_written"] == 320
    assert gauges["load_seconds"] == load["seconds"]
    skipped = {k.removeprefix("skipped."): v for k, v in gauges.items() if k.startswith("skipped.")}
    assert skipped == load["skipped"]  # every reason, zeros included (too_small)
    assert skipped["unmapped_category"] == 5 and skipped["too_small"] == 0
    # build: reindex request → generation seen ready; wait: wait_until_searchable's own time, within it
    assert 0 < gauges["build_seconds"] < 300 and 0 <= gauges["wait_seconds"] <= gauges["build_seconds"]
    assert gauges["wait_seconds"] <= result["report"]["seconds"]["wait_until_searchable"] + 1
    assert "push_seconds" not in gauges and "pushed_documents" not in gauges  # a full rebuild: nothing pushed
    assert f"airflow.image_index.{INDEX}.rows:320|g" in receiver.lines  # counts as integers
