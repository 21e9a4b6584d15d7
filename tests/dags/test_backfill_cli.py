"""`airflow backfill create` through a real scheduler: one partition per date, and no rollback; then
a triggered run that goes live, whose asset event makes the scheduler run the example downstream DAG;
then a run a guard refuses, which waits for approval until the standalone's admin approves it through
the REST API, and is published.

This is the one test that runs Airflow as operators do (``airflow standalone``: scheduler, dag
processor, triggerer, API server, LocalExecutor), so it is slow (two to three minutes) and marked so.
The checks share one Airflow: starting it takes most of the time. Its DAGs folder is a copy of
``dags/`` whose demo index asks for approval of a refused guard (``guards.on_refusal: ask``); the runs
whose guards pass are the same either way.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import urllib.request
from contextlib import closing
from pathlib import Path

import pytest

from tests.dags.processes import free_port, stop_tree, wait_for

REPO = Path(__file__).resolve().parents[2]
APPROVAL_RUN = "approval_check"
pytestmark = pytest.mark.slow


def query(db: Path, sql: str) -> list[tuple] | None:
    """Rows from the standalone's SQLite metadata DB, read-only; None while a writer holds it."""
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return None


def asking_dags(folder: Path) -> Path:
    """A copy of the repository's DAGs whose demo index waits for approval when a guard refuses."""
    shutil.copytree(REPO / "dags", folder, ignore=shutil.ignore_patterns("__pycache__"))
    with (folder / "indexes" / "demo.yaml").open("a") as fh:
        fh.write("\nguards:\n  on_refusal: ask\n  approval_timeout_hours: 1\n")
    return folder


def api(url: str, path: str, *, token: str | None = None, body: dict | None = None, method: str = "GET") -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url + path, data=data, headers=headers, method=method),
                                timeout=30) as answer:
        return json.load(answer)


def test_backfill_writes_one_partition_per_date_and_never_rolls_back_and_a_live_index_triggers_its_consumer(
    demo_stack, tmp_path: Path
) -> None:
    from pipeline.stages import load_partition

    paths, stack, config = demo_stack
    load_partition(config, "20261231", publish=True)  # the newest partition: older backfill dates must not rebuild
    live_before = stack.opensearch.engine.live_generation_id("demo_images")

    port = free_port()
    reports = tmp_path / "reports"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "5",
        "PIPELINE_REPORT_DIR": str(reports),
        "AIRFLOW__CORE__DAGS_FOLDER": str(asking_dags(tmp_path / "dags")),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    db = tmp_path / "airflow" / "airflow.db"

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([airflow, *args], env=env, capture_output=True, text=True, timeout=120)

    assert cli("db", "migrate").returncode == 0
    subprocess.run([sys.executable, "-m", "pipeline.airflow.pools"], env=env, check=True, capture_output=True)
    log = open(tmp_path / "standalone.log", "w")
    standalone = subprocess.Popen([airflow, "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for("the DAGs to be parsed",
                 lambda: {"image_index_demo", "example_downstream"} <= set(cli("dags", "list").stdout.split()), 120)
        assert cli("dags", "unpause", "image_index_demo").returncode == 0
        assert cli("dags", "unpause", "example_downstream").returncode == 0  # a paused consumer is never queued
        # SQLite (the test's metadata DB) lets one writer in at a time: while the scheduler writes, the CLI's
        # insert can fail with "database is locked". Production uses PostgreSQL/MySQL; here, try again.
        for _ in range(10):
            created = cli("backfill", "create", "--dag-id", "image_index_demo", "--from-date", "2026-11-15",
                          "--to-date", "2026-11-17")
            if created.returncode == 0 or "database is locked" not in created.stderr:
                break
            time.sleep(2)
        assert created.returncode == 0, created.stderr[-2000:]

        # Logical dates 11-15 and 11-16 at 18:00 UTC are the 02:00 Shanghai runs of the 16th and 17th.
        wanted = [reports / "demo" / f"{ds}.json" for ds in ("20261116", "20261117")]
        wait_for("both backfill runs to report", lambda: all(p.exists() for p in wanted), 420)  # a loaded 2-core machine

        # Then a run that goes live: the newest partition, rebuilt (after the backfills, which compare
        # nothing with a live partition). Its smoke query's event must start example_downstream.
        for _ in range(10):
            triggered = cli("dags", "trigger", "image_index_demo", "--conf",
                            json.dumps({"partition_date": "2026-12-31", "allow_future_partition": True}))
            if triggered.returncode == 0 or "database is locked" not in triggered.stderr:
                break
            time.sleep(2)
        assert triggered.returncode == 0, triggered.stderr[-2000:]
        consumed = ("select value from xcom where dag_id = 'example_downstream' and task_id = 'warm_cache' "
                    "and key = 'return_value'")
        finished = "select state from dag_run where dag_id = 'example_downstream' and state in ('success', 'failed')"
        wait_for("example_downstream to run on the live asset's event", lambda: query(db, finished), 420)

        # A day of hats only: 80 rows against the 320 now live. The shrink guard refuses and, with
        # on_refusal: ask, the run waits in approve_refused_guards until the admin approves it.
        refused_conf = {"partition_date": "2026-12-30", "allow_future_partition": True, "prefixes": ["catalog/hats/"]}
        for _ in range(10):
            triggered = cli("dags", "trigger", "image_index_demo", "--run-id", APPROVAL_RUN, "--conf",
                            json.dumps(refused_conf))
            if triggered.returncode == 0 or "database is locked" not in triggered.stderr:
                break
            time.sleep(2)
        assert triggered.returncode == 0, triggered.stderr[-2000:]
        waiting = (f"select 1 from task_instance where run_id = '{APPROVAL_RUN}' and task_id = "
                   "'approve_refused_guards' and state = 'awaiting_input'")
        wait_for("the refused run to wait for approval", lambda: query(db, waiting), 300)
        url = f"http://127.0.0.1:{port}"
        # The standalone's admin, with the password it generated (as `airflow standalone` prints it).
        password = json.loads((tmp_path / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
        token = api(url, "/auth/token", body={"username": "admin", "password": password}, method="POST")["access_token"]
        hitl = f"/api/v2/dags/image_index_demo/dagRuns/{APPROVAL_RUN}/taskInstances/approve_refused_guards/-1/hitlDetails"
        asked = api(url, hitl, token=token)  # what the approver sees
        answered = api(url, hitl, token=token, method="PATCH",
                       body={"chosen_options": ["Approve"], "params_input": {"comment": "hats only, on purpose"}})
        run_state = f"select state from dag_run where run_id = '{APPROVAL_RUN}' and state in ('success', 'failed')"
        approved_report = reports / "demo" / "20261230.json"
        wait_for("the approved run to finish and report",
                 lambda: query(db, run_state) and approved_report.exists()
                 and json.loads(approved_report.read_text())["run"]["run_id"] == APPROVAL_RUN, 300)
        approval_states = query(db, f"select task_id, state from task_instance where run_id = '{APPROVAL_RUN}'")
    finally:
        stop_tree(standalone)
        log.close()

    for path in wanted:
        report = json.loads(path.read_text())
        assert report["partition"]["rows"] == 320
        assert report["rebuild"]["started"] is False and "roll the live index back" in report["rebuild"]["reason"]
    from pipeline.stages import open_index_warehouse

    assert {"20261116", "20261117"} <= set(open_index_warehouse(config).partitions())
    live_now = stack.opensearch.engine.live_generation_id("demo_images")
    assert live_now != live_before  # the triggered run rebuilt the index

    # The events: a published partition per run (also the scheduled run of the latest 02:00, which
    # unpausing starts, catchup being off); the index went live once, for ds=20261231 only.
    events = query(db, "select a.name, e.extra from asset_event e join asset a on a.id = e.asset_id "
                       "where e.source_dag_id = 'image_index_demo' order by e.id")
    by_asset: dict[str, list[dict]] = {}
    for name, extra in events:
        by_asset.setdefault(name, []).append(json.loads(extra))
    assert {"20261116", "20261117", "20261231"} <= {e["ds"] for e in by_asset["image_index.demo.catalog"]}
    (live,) = by_asset["image_index.demo.live"]
    assert (live["ds"], live["mode"], live["generation_id"]) == ("20261231", "full", live_now)
    report = json.loads((reports / "demo" / "20261231.json").read_text())
    assert report["rebuild"]["generation_id"] == live_now  # never rolled back by a backfill run after it

    # The consumer ran because of that event (asset_triggered) and its task read the event's extra.
    ((value,),) = query(db, consumed)
    seen = json.loads(value)
    assert (seen["ds"], seen["mode"], seen["generation_id"], seen["events"]) == ("20261231", "full", live_now, 1)
    assert query(db, "select run_type, state from dag_run where dag_id = 'example_downstream'") == [("asset_triggered", "success")]

    # The approval: asked with the guard's numbers, answered by the admin, and the partition published.
    assert asked["subject"] == "Image index demo ds=20261230: guard shrink refused the partition. Publish it anyway?"
    assert "- **shrink**: partition ds=20261230 of demo\\_image\\_catalog has 80 rows, 75.0% fewer than the 320" \
        in asked["body"]
    assert asked["options"] == ["Approve", "Reject"] and asked["defaults"] == ["Reject"]
    assert answered["responded_by"]["name"] == "admin" and answered["chosen_options"] == ["Approve"]
    states = dict(approval_states)
    assert (states["check_partition"], states["choose_approval"], states["approve_refused_guards"],
            states["publish_partition"]) == ("success", "success", "success", "success"), states
    assert query(db, f"select state from dag_run where run_id = '{APPROVAL_RUN}'") == [("success",)]
    approved = json.loads(approved_report.read_text())
    assert approved["run"]["run_id"] == APPROVAL_RUN and approved["published"]["ds"] == "20261230"
    assert approved["partition"]["rows"] == 80
    assert open_index_warehouse(config).partition_stats("20261230").rows == 80  # published
    record = approved["approval"]
    assert (record["decision"], record["by"]["name"], record["guards"], record["comment"]) == (
        "approved", "admin", ["shrink"], "hats only, on purpose")
    assert next(g for g in approved["guards"] if g["name"] == "shrink")["overridden"] is True
    # An older partition than the live one: published, never rebuilt (no rollback), as without approval.
    assert approved["outcome"] == "rebuild_skipped" and stack.opensearch.engine.live_generation_id("demo_images") == live_now
