"""Approving a refused run, without Airflow: the request the approver reads, the answer as a record, and
what the publish and the report make of it (pipeline/approval.py)."""

from __future__ import annotations

import pytest

from pipeline.approval import (
    approval_body,
    approval_subject,
    approved_guards,
    decision_record,
    describe,
    mark_approved,
    md,
    rejection_message,
)
from pipeline.errors import ApprovalRejectedError

SHRINK = ("partition ds=20261230 of demo_image_catalog has 80 rows, 75.0% fewer than the 320 of ds=20261231, the "
          "partition that last went live (limit 10%): was a prefix wrong or an upload incomplete?")
CHECKED = {
    "dry_run": False,
    "stats": {"ds": "20261230", "rows": 80, "distinct_ids": 80, "rows_per_category": {"3": 80}, "duplicate_ids": []},
    "baseline_stats": {"ds": "20261231", "rows": 320, "distinct_ids": 320,
                       "rows_per_category": {"1": 80, "2": 80, "3": 80, "4": 80}},
    "guards": [
        {"name": "empty", "passed": True, "message": "has 80 rows", "overridden": False},
        {"name": "shrink", "passed": False, "message": SHRINK, "overridden": False},
        {"name": "duplicates", "passed": True, "message": "every id is unique", "overridden": False},
        {"name": "unmapped", "passed": False, "message": "5 of 85 images (5.9%) had an unmapped category",
         "overridden": True},
        {"name": "skipped", "passed": True, "message": "...", "overridden": False},
    ],
    "id_changes": {"previous_ds": "20261231", "added": 0, "removed": 240},
}
LOAD = {"listed": 90, "kept": 80, "skipped_total": 10, "skipped": {"not_image": 5, "unmapped_category": 5, "bad_id": 0},
        "unmapped_category_examples": {"misc": 5}, "archived_examples": ["catalog/hats/old_*.jpg"]}


def body(**kwargs) -> str:
    return approval_body("demo", "demo_image_catalog", "20261230", CHECKED, LOAD,
                         **{"timeout_hours": 24, "rebuilds": True, "deadline": "2026-12-02T10:00+00:00", **kwargs})


def test_the_request_names_the_index_the_partition_and_the_refused_guard_with_its_numbers() -> None:
    assert approval_subject("demo", "20261230", ["shrink"]) == (
        "Image index demo ds=20261230: guard shrink refused the partition. Publish it anyway?")
    text = body()
    assert text.startswith("Guards refused partition **ds=20261230** of `demo_image_catalog` (index `demo`). "
                           "Nothing is published yet: the rows wait in `demo_image_catalog__staging`.")
    # Only the guard that refused is listed as refused; one passed by the override_guards Param says so.
    refused_part = text.split("#### Refused")[1].split("####")[0]
    assert "- **shrink**: partition ds=20261230 of demo\\_image\\_catalog has 80 rows, 75.0% fewer" in refused_part
    assert "**unmapped**" not in refused_part and "unmapped (overridden by the `override_guards` Param)" in refused_part
    lines = text.splitlines()
    assert "| | this run (ds=20261230) | compared with (ds=20261231) |" in lines
    assert "| rows | 80 | 320 |" in lines and "| category 1 | 0 | 80 |" in lines and "| category 3 | 80 | 80 |" in lines
    assert "- ids against ds=20261231: 0 added, 240 removed" in lines
    assert "- the load listed 90 objects, kept 80, skipped 10 (not\\_image 5, unmapped\\_category 5)" in lines
    assert "- unmapped categories (name: objects): {'misc': 5}" in lines
    assert "- archived, not restored: \\['catalog/hats/old\\_\\*.jpg'\\]" in lines


def test_the_request_says_what_each_answer_does() -> None:
    lines = body().splitlines()
    assert ("- **Approve** publishes ds=20261230 into `demo_image_catalog` with shrink recorded as overridden by you; "
            "then the run rebuilds the index from it or pushes what changed (`choose_rebuild`), as a run whose "
            "guards passed.") in lines
    assert "- **Reject** ends the run failed: the published partition and the index stay as they are." in lines
    assert "- No answer by 2026-12-02T10:00+00:00 (24 h): rejected." in lines
    assert "nothing to rebuild" in body(rebuilds=False, deadline=None) and "- No answer within 24 h: rejected." in \
        body(deadline=None).splitlines()


def test_first_live_partition_has_nothing_to_compare_with() -> None:
    text = approval_body("demo", "t", "20261230", {**CHECKED, "baseline_stats": None, "id_changes": None}, None,
                         timeout_hours=1.5, rebuilds=True)
    assert "| rows | 80 | - |" in text and "nothing to compare with" in text and "within 1.5 h" in text


def test_markdown_in_a_value_is_text_never_markup() -> None:
    assert md("a_b *c* [x](http://e) <script>|#") == "a\\_b \\*c\\* \\[x\\](http://e) \\<script\\>\\|\\#"
    assert md("one\ntwo   three") == "one two three"
    assert md("x" * 50, limit=10) == "x" * 9 + "…"


def test_an_answer_becomes_a_record() -> None:
    by = {"id": "7", "name": "alice"}
    approved = decision_record(["Approve"], by=by, at="2026-12-01T10:00:00+00:00", comment="  known  gap ",
                               timed_out=False, guards=["shrink"], timeout_hours=24)
    assert approved == {"decision": "approved", "guards": ["shrink"], "by": by, "at": "2026-12-01T10:00:00+00:00",
                        "comment": "known gap", "timeout_hours": 24}
    assert describe(approved) == "approved by alice (id 7) at 2026-12-01T10:00:00+00:00 (shrink): known gap"
    rejected = decision_record(["Reject"], by={"id": "bob", "name": "bob"}, at="t", comment="", timed_out=False,
                               guards=["shrink"], timeout_hours=24)
    assert rejected["decision"] == "rejected" and rejected["comment"] is None
    assert describe(rejected) == "rejected by bob at t (shrink), no comment given"
    # The scheduler applies the default (Reject) when the deadline passes: nobody answered.
    timed_out = decision_record(["Reject"], by=None, at="t", comment="", timed_out=True, guards=["empty", "shrink"],
                                timeout_hours=0.5)
    assert timed_out["decision"] == "timed_out" and timed_out["by"] is None
    assert describe(timed_out) == "timed out after 0.5 h with no answer at t: rejected (empty, shrink), no comment given"
    assert decision_record(["Approve"], by=None, at="t", comment="x" * 5000, timed_out=False, guards=[],
                           timeout_hours=1)["comment"] == "x" * 2000
    message = rejection_message("demo", "20261230", rejected)
    assert message.startswith("partition ds=20261230 of index demo was not published: the refused guards were "
                              "rejected by bob at t (shrink), no comment given. The published partition and the "
                              "index are unchanged.")
    assert "clear approve_refused_guards" in message and "override_guards Param naming shrink" in message


def test_the_publish_lets_a_refused_guard_through_only_with_its_approval() -> None:
    approval = {"decision": "approved", "guards": ["shrink"]}
    assert approved_guards("demo", "20261230", CHECKED, approval) == ["shrink"]
    passed = {**CHECKED, "guards": [g for g in CHECKED["guards"] if g["name"] != "shrink"]}
    assert approved_guards("demo", "20261230", passed, None) == []  # nothing refused: nothing to approve
    for missing in (None, {"decision": "rejected", "guards": ["shrink"]}, {"decision": "approved", "guards": ["empty"]}):
        with pytest.raises(ApprovalRejectedError, match="guard shrink refused it and no approval is recorded"):
            approved_guards("demo", "20261230", CHECKED, missing)  # e.g. the approval task marked success by hand


def test_an_approved_guard_reads_as_overridden_in_the_report() -> None:
    marked = mark_approved(CHECKED["guards"], {"decision": "approved", "guards": ["shrink"]})
    shrink = next(g for g in marked if g["name"] == "shrink")
    assert shrink["overridden"] is True and shrink["approved"] is True
    assert next(g for g in marked if g["name"] == "unmapped").get("approved") is None
    assert mark_approved(CHECKED["guards"], {"decision": "rejected", "guards": ["shrink"]}) == CHECKED["guards"]
    assert mark_approved(None, None) is None
