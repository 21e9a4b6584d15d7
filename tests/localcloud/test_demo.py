"""The demo: its --fault option sets the local servers' knobs (and refuses what does not exist); its
output is a progress line and the run summary, Airflow's logs going to a file."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from localcloud.demo import apply_faults

REPO = Path(__file__).resolve().parents[2]


def test_fault_knobs_reach_the_running_stack(demo_stack) -> None:
    _, stack, _ = demo_stack
    try:
        apply_faults(stack, ["oss.slow_down_next=2", "opensearch.fail_next_build=disk full", "opensearch-http.throttle_next=1",
                             "oss.short_pages_rate=0.3", "oss.short_pages_seed=4",
                             "opensearch.hold_switch_next_build=true", "maxcompute.sql_delay_s=0.5",
                             "tunnel.fail_next_commit=1"])
        assert stack.maxcompute.faults.sql_delay_s == 0.5 and stack.maxcompute.tunnel.faults.fail_next_commit == 1
        assert stack.oss.faults.slow_down_next == 2
        assert (stack.oss.faults.short_pages_rate, stack.oss.faults.short_pages_seed) == (0.3, 4)
        assert stack.opensearch.engine.faults.fail_next_build == "disk full"
        assert stack.opensearch.engine.faults.hold_switch_next_build is True
        assert stack.opensearch.http_faults.throttle_next == 1
    finally:
        stack.oss.faults.reset()
        stack.maxcompute.faults.sql_delay_s = 0.0
        stack.maxcompute.tunnel.faults.fail_next_commit = 0
        stack.opensearch.engine.faults.fail_next_build = None
        stack.opensearch.engine.faults.hold_switch_next_build = False
        stack.opensearch.http_faults.throttle_next = 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("oss.no_such_knob=1", "unknown OSS fault knob 'no_such_knob'"),
        ("opensearch.take=1", "EngineFaults has no knob 'take'"),
        ("dns.fail=1", "target must be oss or one of maxcompute, opensearch, opensearch-http, tunnel"),
        ("maxcompute.take=1", "MaxComputeFaults has no knob 'take'"),
        ("oss.slow_down_next", "expected TARGET.KNOB=VALUE"),
        ("oss.short_pages_rate=1", r"short_pages_rate must be in \[0, 1\)"),
    ],
)
def test_bad_fault_specs_are_refused(demo_stack, spec: str, message: str) -> None:
    _, stack, _ = demo_stack
    with pytest.raises(SystemExit, match=message):
        apply_faults(stack, [spec])


# The demo's output: a progress line and the run summary on the console, everything else in a log file.

def test_the_default_day_is_today_in_the_index_time_zone() -> None:
    from localcloud.demo import demo_date

    evening_utc = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)  # 04:00 on the 2nd in Shanghai
    assert demo_date("Asia/Shanghai", evening_utc) == "2026-12-02"
    assert demo_date("America/Los_Angeles", datetime(2026, 12, 1, 5, 0, tzinfo=UTC)) == "2026-11-30"


def test_the_demo_names_its_day_by_the_partition_date_param() -> None:
    """No logical date on the command line: `dags test` would start the run's clock at it (midnight),
    and the UI showed the demo's run as 23 hours long (issue 11)."""
    from localcloud.demo import dags_test_args

    args = dags_test_args("demo", "2026-12-02")
    assert args[:3] == ["dags", "test", "image_index_demo"]
    assert args[3:] == ["--conf", json.dumps({"partition_date": "2026-12-02"})]


def test_make_demo_end_to_end_records_a_run_as_long_as_it_took(tmp_path: Path) -> None:
    """What `make demo` runs, in a folder of its own: the summary is the last thing on the console, the
    partition is the day asked for, and the metadata DB's run lasted seconds, not the hours since a
    midnight logical date."""
    import sqlite3

    env = {**os.environ, "PIPELINE_LOCAL_DIR": str(tmp_path / "local"), "AIRFLOW_HOME": str(tmp_path / "airflow"),
           "PIPELINE_REPORT_DIR": str(tmp_path / "reports")}
    env.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    done = subprocess.run([sys.executable, "-m", "localcloud.demo", "--date", "2026-11-28"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "ds=20261128" in done.stdout and done.stdout.rstrip().endswith("=" * 78)
    db = next((tmp_path / "airflow").glob("*.db"))
    with sqlite3.connect(db) as con:
        ((start, end),) = con.execute("SELECT start_date, end_date FROM dag_run").fetchall()
    took = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    assert 0 < took.total_seconds() < 300, (start, end)


REDIRECTED = r"""
import logging, subprocess, sys
from pathlib import Path
from localcloud.demo import output_to_log

logging.basicConfig(level=logging.INFO)
with output_to_log(Path(sys.argv[1])) as console:
    print("python stdout")
    print("python stderr", file=sys.stderr)
    logging.getLogger("airflow.task").info("a log record")
    subprocess.run([sys.executable, "-c", "import sys; print('child stdout'); print('child stderr', file=sys.stderr)"])
    console.write("progress line\n")
print("back on the console")
try:
    with output_to_log(Path(sys.argv[2])):
        raise RuntimeError("boom")
except RuntimeError:
    print("restored after an error", file=sys.stderr)
"""


def test_output_to_log_sends_this_process_and_its_children_to_the_file(tmp_path: Path) -> None:
    log, other = tmp_path / "logs" / "demo-20261201.log", tmp_path / "logs" / "other.log"
    done = subprocess.run([sys.executable, "-c", REDIRECTED, str(log), str(other)], capture_output=True, text=True,
                          timeout=60, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "progress line\nback on the console\n"  # the console: only what the demo writes to it
    assert done.stderr == "restored after an error\n"
    text = log.read_text()
    for line in ("python stdout", "python stderr", "a log record", "child stdout", "child stderr"):
        assert line in text
    assert "progress line" not in text and other.exists()


def test_the_progress_line_names_each_step_and_task() -> None:
    from localcloud.demo import Progress

    console = io.StringIO()
    progress = Progress(console, "demo image_index_demo ds=20261201 (log: x.log):")
    progress.step("stack")
    for line in ("2026-12-01T06:10:05Z [info] [DAG TEST] starting task_id=resolve_partition map_index=-1",
                 "2026-12-01T06:10:05Z [info] Task started",
                 "2026-12-01T06:10:06Z [info] [DAG TEST] starting task_id=load_partition map_index=-1",
                 "2026-12-01T06:11:06Z [info] [DAG TEST] starting task_id=load_partition map_index=-1",
                 "2026-12-01T06:11:10Z [info] [DAG TEST] starting task_id=report map_index=-1"):
        progress.watch(line)
    progress.end("done")
    assert console.getvalue() == ("demo image_index_demo ds=20261201 (log: x.log): stack · resolve_partition · "
                                  "load_partition · load_partition (retry 1) · report done\n")


def test_a_second_dag_run_s_tasks_are_no_retries_of_the_first_s() -> None:
    """``--change``: a full run, then a delta run, in one progress line."""
    from localcloud.demo import Progress

    console = io.StringIO()
    progress = Progress(console, "demo:")
    started = "[DAG TEST] starting task_id={}"
    progress.step("full run of 2026-11-30", new_run=True)
    for task in ("resolve_partition", "report"):
        progress.watch(started.format(task))
    progress.step("delta run of 2026-12-01", new_run=True)
    for task in ("resolve_partition", "resolve_partition", "report"):
        progress.watch(started.format(task))
    progress.end("done")
    assert console.getvalue() == ("demo: full run of 2026-11-30 · resolve_partition · report · delta run of 2026-12-01"
                                  " · resolve_partition · resolve_partition (retry 1) · report done\n")


def test_the_change_flag_takes_a_share_of_the_images_and_names_the_delta_params() -> None:
    import argparse

    from localcloud.demo import _percent, dags_test_args

    assert _percent("5%") == 0.05 and _percent("1") == 0.01
    for bad in ("0%", "60%", "five", "-3%"):
        with pytest.raises(argparse.ArgumentTypeError, match="share of the images"):
            _percent(bad)
    args = dags_test_args("demo", "2026-12-01", None, rebuild_mode="delta")
    assert json.loads(args[-1]) == {"partition_date": "2026-12-01", "rebuild_mode": "delta"}


def _failed_report() -> dict:
    from pipeline.report import build_report

    return build_report("demo", "20261201", {"load_partition": {"dry_run": False, "listed": 0}}, {
        "run": {"run_id": "manual__1", "run_type": "manual"},
        "params": {"prefixes": ["nowhere/"]},
        "tasks": {"check_partition": {"state": "failed"}, "smoke_query": {"state": "upstream_failed"}},
        "failed_tasks": [{"task_id": "check_partition", "error_type": "PartitionCheckError",
                          "message": "[empty] partition ds=20261201 of demo_image_catalog has no rows"}],
    })


def test_a_failed_run_shows_the_failing_task_its_message_and_the_log_first(tmp_path: Path) -> None:
    from localcloud.demo import new_report, show_outcome
    from pipeline.report import write_report

    index_dir = tmp_path / "reports" / "demo"
    assert new_report(index_dir, 0) is None
    path = write_report("demo", "20261201", _failed_report(), tmp_path / "reports")
    found = new_report(index_dir, 0)
    assert found is not None and found[1] == path and new_report(index_dir, 1) is None

    console = io.StringIO()
    show_outcome(console, found, tmp_path / "logs" / "demo-20261201.log")
    lines = console.getvalue().splitlines()
    assert lines[0] == "=" * 78 and lines[-1] == "=" * 78
    assert lines[1] == ("FAILED at check_partition: PartitionCheckError: [empty] partition ds=20261201 of "
                        "demo_image_catalog has no rows")
    assert f"report: {path}" in lines and f"Airflow's log: {tmp_path / 'logs' / 'demo-20261201.log'}" in lines


def test_a_run_that_wrote_no_report_shows_the_end_of_the_log(tmp_path: Path) -> None:
    from localcloud.demo import show_outcome

    log = tmp_path / "demo-20261201.log"
    log.write_text("".join(f"line {i}\n" for i in range(40)) + "ERROR: the DAG failed to import\n")
    console = io.StringIO()
    show_outcome(console, None, log)
    text = console.getvalue()
    assert "FAILED: the run wrote no report" in text and "ERROR: the DAG failed to import" in text
    assert "line 10\n" not in text and f"Airflow's log: {log}" in text
