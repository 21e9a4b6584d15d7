"""Run reports on disk: one per run under its ds, the day's latest real run, the index of runs; the
outcome and the summary's first line."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from pipeline.report import build_report, decide_outcome, read_runs, run_file_name, summarize, write_report


def facts(run_id: str, *, failed: list[dict] | None = None, states: dict | None = None, **params) -> dict:
    return {
        "run": {"run_id": run_id, "run_type": "manual", "started_at": "2026-12-01T00:00:00+00:00",
                "finished_at": "2026-12-01T00:01:00+00:00"},
        "params": {"dry_run": False, "skip_rebuild": False, "prefixes": None, **params},
        "tasks": states or {"load_partition": {"state": "success", "seconds": 1.0}},
        "failed_tasks": failed or [],
    }


LOAD = {"dry_run": False, "listed": 3, "kept": 3, "pages": 1, "skipped_total": 0}
DRY_LOAD = {**LOAD, "dry_run": True}


@pytest.mark.parametrize(
    ("run_id", "name"),
    [
        ("manual__2026-12-01T00:00:00+00:00", "manual__2026-12-01T00%3A00%3A00%2B00%3A00.json"),
        ("scheduled__2026-11-30T18:00:00+00:00", "scheduled__2026-11-30T18%3A00%3A00%2B00%3A00.json"),
        ("a/../b", "a%2F..%2Fb.json"),  # never a path
        ("..", "%2E..json"),  # never hidden, never the parent
        ("my run", "my%20run.json"),
    ],
)
def test_run_ids_become_distinct_safe_file_names(run_id: str, name: str) -> None:
    assert run_file_name(run_id) == name


def test_a_very_long_run_id_is_cut_but_stays_unique() -> None:
    a, b = run_file_name("x" * 300 + "a"), run_file_name("x" * 300 + "b")
    assert a != b and len(a) < 250 and "/" not in a


def test_every_run_keeps_its_report_and_a_dry_run_never_replaces_the_days_report(tmp_path: Path) -> None:
    real = build_report("demo", "20261201", {"load_partition": LOAD}, facts("manual__1"))
    dry = build_report("demo", "20261201", {"load_partition": DRY_LOAD}, facts("manual__2", dry_run=True))
    second = build_report("demo", "20261201", {"load_partition": LOAD}, facts("manual__3"))

    assert write_report("demo", "20261201", real, tmp_path) == tmp_path / "demo" / "20261201" / "manual__1.json"
    write_report("demo", "20261201", dry, tmp_path)
    assert json.loads((tmp_path / "demo" / "20261201.json").read_text())["run"]["run_id"] == "manual__1"
    write_report("demo", "20261201", second, tmp_path)
    assert json.loads((tmp_path / "demo" / "20261201.json").read_text())["run"]["run_id"] == "manual__3"

    assert sorted(p.name for p in (tmp_path / "demo" / "20261201").iterdir()) == ["manual__1.json", "manual__2.json", "manual__3.json"]
    lines = read_runs(tmp_path / "demo")
    assert [(line["run_id"], line["outcome"], line["report"]) for line in lines] == [
        ("manual__1", "success", "20261201/manual__1.json"),
        ("manual__2", "dry_run", "20261201/manual__2.json"),
        ("manual__3", "success", "20261201/manual__3.json"),
    ]
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_run_without_a_partition_date_files_its_report_under_unresolved(tmp_path: Path) -> None:
    failed = [{"task_id": "resolve_partition", "error_type": "ValueError", "message": "not a calendar date"}]
    got = build_report("demo", None, {}, facts("manual__9", failed=failed))
    path = write_report("demo", None, got, tmp_path)
    assert path == tmp_path / "demo" / "unresolved" / "manual__9.json"
    assert [p.name for p in (tmp_path / "demo").iterdir() if p.suffix == ".json"] == []  # no <ds>.json
    assert read_runs(tmp_path / "demo")[-1]["failed_tasks"] == ["resolve_partition"]


def test_concurrent_appends_keep_whole_lines(tmp_path: Path) -> None:
    """One writer per index is the design (max_active_runs=1); even several never tear a line."""
    def write(n: int) -> None:
        for i in range(20):
            report = build_report("demo", "20261201", {"load_partition": LOAD}, facts(f"run-{n}-{i}", note="x" * 2000))
            write_report("demo", "20261201", report, tmp_path)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = read_runs(tmp_path / "demo")  # every line parses
    assert len(lines) == 80 and len({line["run_id"] for line in lines}) == 80


@pytest.mark.parametrize(
    ("stages", "run", "outcome", "why"),
    [
        ({"load_partition": LOAD}, facts("r"), "success", None),
        ({"load_partition": DRY_LOAD}, facts("r", dry_run=True), "dry_run", "listed and counted only"),
        ({"load_partition": LOAD, "start_rebuild": {"started": False, "reason": "skip_rebuild Param set"}},
         facts("r", skip_rebuild=True), "rebuild_skipped", "skip_rebuild Param set"),
        ({"load_partition": LOAD},
         facts("r", failed=[{"task_id": "check_partition", "error_type": "PartitionCheckError", "message": "[empty] no rows"}],
               states={"check_partition": {"state": "failed"}, "smoke_query": {"state": "upstream_failed"}}),
         "failed", "check_partition failed: PartitionCheckError: [empty] no rows"),
        ({}, facts("r", states={"smoke_query": {"state": "upstream_failed"}}), "failed", "tasks not run because"),
        ({}, {**facts("r"), "tasks": None, "tasks_error": "ConnectionError: refused"}, "unknown", "could not be read"),
    ],
)
def test_the_outcome(stages: dict, run: dict, outcome: str, why: str | None) -> None:
    report = build_report("demo", "20261201", stages, run)
    assert report["outcome"] == outcome and decide_outcome(report)[0] == outcome
    if why is None:
        assert report["outcome_reason"] is None
    else:
        assert why in report["outcome_reason"]


def test_the_summary_starts_with_the_outcome_and_the_failing_task() -> None:
    failed = [{"task_id": "check_partition", "error_type": "PartitionCheckError",
               "message": "[empty] partition ds=20261201 has no rows\nsecond line"}]
    states = {"load_partition": {"state": "success"}, "check_partition": {"state": "failed"},
              "start_rebuild": {"state": "upstream_failed"}}
    got = summarize(build_report("demo", "20261201", {"load_partition": LOAD},
                                 facts("manual__1", failed=failed, states=states, prefixes=["nowhere/"])))
    lines = got.splitlines()
    assert lines[0] == "FAILED at check_partition: PartitionCheckError: [empty] partition ds=20261201 has no rows"
    assert lines[1] == "    second line"
    assert lines[2] == "index demo partition ds=20261201, run manual__1 (manual)"
    assert "  params: prefixes=['nowhere/']" in lines  # only the Params that were set
    assert lines[-1] == "  not run (an upstream task failed): start_rebuild"

    ok = summarize(build_report("demo", "20261201", {"load_partition": LOAD}, facts("manual__2"))).splitlines()
    assert ok[0] == "SUCCESS" and not any(line.startswith("  params") for line in ok)
    skipped = build_report("demo", "20261201", {"load_partition": LOAD, "start_rebuild": {"started": False, "reason": "older"}}, facts("r"))
    assert summarize(skipped).splitlines()[0] == "REBUILD SKIPPED: older"


def test_the_summary_says_where_the_rows_were_staged_and_published() -> None:
    from pipeline.report import build_report, summarize

    stages = {"load_partition": {"warehouse": "MaxCompute table p.t__staging at E", "listed": 1, "kept": 1},
              "publish_partition": {"ds": "20261201", "table": "MaxCompute table p.t at E", "seconds": 0.1}}
    text = summarize(build_report("demo", "20261201", stages))
    assert "written to MaxCompute table p.t__staging at E, partition ds=20261201" in text
    assert "published into MaxCompute table p.t at E, partition ds=20261201" in text
    assert "published into" not in summarize(build_report("demo", "20261201", {**stages, "publish_partition": None}))


def test_the_approval_of_a_refused_run_is_in_the_report_and_its_summary() -> None:
    guards = [{"name": "empty", "passed": True, "message": "m", "overridden": False},
              {"name": "shrink", "passed": False, "message": "80 rows, 75.0% fewer", "overridden": False}]
    checked = {"stats": {"rows": 80, "distinct_ids": 80, "rows_per_category": {"3": 80}}, "guards": guards}
    approval = {"decision": "approved", "guards": ["shrink"], "by": {"id": "admin", "name": "admin"},
                "at": "2026-12-01T10:00:00+00:00", "comment": "hats only, on purpose", "timeout_hours": 24,
                "asked_at": "2026-12-01T09:58:00+00:00"}
    stages = {"load_partition": LOAD, "check_partition": checked, "approve_refused_guards": approval,
              "publish_partition": {"ds": "20261201", "table": "t", "seconds": 0.1}}
    report = build_report("demo", "20261201", stages, facts("r"))
    assert report["approval"] == approval and report["outcome"] == "success"
    assert report["guards"][1] == {**guards[1], "overridden": True, "approved": True}
    lines = summarize(report).splitlines()
    assert "  approval: approved by admin at 2026-12-01T10:00:00+00:00 (shrink): hats only, on purpose" in lines
    assert not any(line.startswith("  guards overridden on purpose") for line in lines)  # said by the approval line

    rejected = {**approval, "decision": "rejected", "comment": None}
    failed = [{"task_id": "approve_refused_guards", "error_type": "ApprovalRejectedError",
               "message": "partition ds=20261201 of index demo was not published: ..."}]
    report = build_report("demo", "20261201", {**stages, "approve_refused_guards": rejected, "publish_partition": None},
                          facts("r", failed=failed, states={"approve_refused_guards": {"state": "failed"},
                                                            "publish_partition": {"state": "upstream_failed"}}))
    assert report["guards"] == guards and report["published"] is None  # a rejected guard stays refused
    lines = summarize(report).splitlines()
    assert lines[0] == ("FAILED at approve_refused_guards: ApprovalRejectedError: partition ds=20261201 of index demo "
                        "was not published: ...")
    assert "  approval: rejected by admin at 2026-12-01T10:00:00+00:00 (shrink), no comment given" in lines
    assert build_report("demo", "20261201", {"load_partition": LOAD}, facts("r"))["approval"] is None  # never asked
