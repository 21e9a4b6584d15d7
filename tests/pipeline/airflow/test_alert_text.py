"""What an alert says, from its facts: Slack text and blocks, DingTalk markdown (plain functions)."""

from __future__ import annotations

from pipeline.airflow.alert_text import (
    REASON_LIMIT,
    Alert,
    dingtalk_markdown,
    first_line,
    one_line_reason,
    plain_text,
    slack_blocks,
    title,
)

URL = "https://airflow.example/dags/image_index_shop/runs/scheduled__2026-12-01T18%3A00%3A00%2B00%3A00"
RUN = "scheduled__2026-12-01T18:00:00+00:00"


def alert(event="failure", **facts) -> Alert:
    base = {"index": "shop", "dag_id": "image_index_shop", "run_id": RUN, "url": URL, "ds": "20261202"}
    return Alert(event=event, **{**base, **facts})


FAILED = alert(task_id="load_partition", reason="SourceAccessError: OSS refused the key: check the connection")
REFUSED = alert(
    "refused_guard", task_id="check_partition", reason="PartitionCheckError: [shrink] ...",
    refused=(("shrink", "partition ds=20261202 of t has 80 rows, 75.0% fewer than the 320 of ds=20261201 (limit 10%)"),
             ("skipped", "90 of 100 listed objects (90.0%) were skipped (limit 50%): {'not_image': 90}")),
    rerun_conf={"partition_date": "20261202", "override_guards": ["shrink", "skipped"]},
)


def test_the_reason_is_the_errors_first_line_with_its_type() -> None:
    message = "\n\n  OSS refused the key: check the connection  \nTraceback (most recent call last):\n  ..."
    assert first_line(message) == "OSS refused the key: check the connection"
    assert one_line_reason("SourceAccessError", message) == "SourceAccessError: OSS refused the key: check the connection"
    assert one_line_reason(None, "bare") == "bare" and one_line_reason("KeyError", "") == "KeyError"
    long = one_line_reason("E", "x" * 2000)
    assert len(long) == REASON_LIMIT and long.endswith("…")


def test_titles_name_what_happened_the_index_and_the_partition() -> None:
    assert title(FAILED) == "FAILED image index shop ds=20261202 at load_partition"
    assert title(alert(ds=None, task_id="resolve_partition")) == "FAILED image index shop no partition at resolve_partition"
    assert title(alert(task_id=None)) == "FAILED image index shop ds=20261202"
    assert title(REFUSED) == "REFUSED image index shop ds=20261202: guard shrink, skipped refused the partition"
    assert title(alert("success", outcome="success")) == "SUCCESS image index shop ds=20261202"
    assert title(alert("success", outcome="rebuild_skipped")) == "SUCCESS image index shop ds=20261202 (rebuild_skipped)"


def test_a_failure_in_plain_text() -> None:
    assert plain_text(FAILED).splitlines() == [
        "FAILED image index shop ds=20261202 at load_partition",
        "task load_partition: SourceAccessError: OSS refused the key: check the connection",
        f"run {RUN}: {URL}",
    ]
    assert "task no task failed: no message recorded" in plain_text(alert(task_id=None))


def test_a_refusal_lists_each_guard_and_the_conf_that_passes_them() -> None:
    lines = plain_text(REFUSED).splitlines()
    assert lines[1] == f"[shrink] {REFUSED.refused[0][1]}" and lines[2] == f"[skipped] {REFUSED.refused[1][1]}"
    assert lines[3] == (
        "Nothing was published or rebuilt. If the numbers are intended, trigger image_index_shop again with the "
        'override_guards Param naming shrink, skipped: conf {"override_guards": ["shrink", "skipped"], '
        '"partition_date": "20261202"}'
    )
    unknown_ds = plain_text(alert("refused_guard", ds=None, refused=(("empty", "no rows"),)))
    assert "with the override_guards Param naming empty" in unknown_ds and "conf" not in unknown_ds


def test_slack_blocks_hold_the_facts_escaped_and_a_link() -> None:
    hostile = alert(task_id="load_partition", reason="KeyError: <script> & 'x' > y", index="shop")
    header, facts, reason, link = slack_blocks(hostile)
    assert header == {"type": "header", "text": {"type": "plain_text",
                                                 "text": "FAILED image index shop ds=20261202 at load_partition"}}
    assert [f["text"] for f in facts["fields"]] == [
        "*Index*\nshop", "*Partition*\nds=20261202", "*Failed task*\nload_partition", f"*Run*\n<{URL}|{RUN}>",
    ]
    assert reason["text"]["text"] == "*Reason*\nKeyError: &lt;script&gt; &amp; 'x' &gt; y"
    assert link["text"]["text"] == f"<{URL}|Open the run in Airflow>"


def test_slack_blocks_of_a_refusal_and_a_success() -> None:
    blocks = slack_blocks(REFUSED)
    assert blocks[2]["text"]["text"].startswith("*Refused by*\n• *shrink*: partition ds=20261202 of t has 80 rows")
    assert "• *skipped*: 90 of 100" in blocks[2]["text"]["text"]
    assert blocks[3]["text"]["text"].startswith("*To pass it*\nNothing was published or rebuilt.")
    success = slack_blocks(alert("success", outcome="success", rows=320))
    assert [f["text"] for f in success[1]["fields"]] == ["*Index*\nshop", "*Partition*\nds=20261202", f"*Run*\n<{URL}|{RUN}>"]
    assert success[2]["text"]["text"] == "320 rows, outcome success"


def test_slack_limits_are_kept() -> None:
    huge = alert(task_id="t" * 300, reason="r" * 10_000, index="shop")
    header, facts, reason, _ = slack_blocks(huge)
    assert len(header["text"]["text"]) == 150
    assert all(len(f["text"]) <= 2000 for f in facts["fields"]) and len(reason["text"]["text"]) <= 3000


def test_dingtalk_markdown_mentions_the_numbers_it_names() -> None:
    message = dingtalk_markdown(FAILED, ["13800000000", "+86-13900000000"])
    assert message["title"] == "FAILED image index shop ds=20261202 at load_partition"
    assert message["text"].splitlines() == [
        "#### FAILED image index shop ds=20261202 at load_partition",
        "",
        "- **Index**: shop",
        "- **Partition**: ds=20261202",
        "- **Failed task**: load_partition",
        "- **Reason**: SourceAccessError: OSS refused the key: check the connection",
        f"- **Run**: [{RUN}]({URL})",
        "",
        "@13800000000 @+86-13900000000",
    ]
    assert not dingtalk_markdown(FAILED)["text"].endswith("\n")  # no mentions, no trailing line


def test_dingtalk_markdown_of_a_refusal() -> None:
    text = dingtalk_markdown(REFUSED)["text"].splitlines()
    assert "- **Refused by**:" in text
    assert f"  - **shrink**: {REFUSED.refused[0][1]}" in text and f"  - **skipped**: {REFUSED.refused[1][1]}" in text
    assert any(line.startswith("- **To pass it**: Nothing was published or rebuilt.") for line in text)
