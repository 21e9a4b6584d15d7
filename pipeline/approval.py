"""Approving a refused run (``guards.on_refusal: ask``): what the approver reads, and what the answer means.

Plain functions of plain data, no Airflow: ``pipeline/airflow/approval.py`` asks through Airflow's
human-in-the-loop ``ApprovalOperator`` and records the answer; the run report (``pipeline/report.py``)
prints it. The request names the index and the partition, lists each refused guard with its message
(its numbers and examples), the staged partition's figures against the live one's, and says what each
answer does: **Approve** publishes the partition with the refused guards recorded as overridden (as the
``override_guards`` Param would) and the run goes on to rebuild or push; **Reject**, or no answer within
``guards.approval_timeout_hours``, ends the run failed with nothing published.

The answer is kept as a record (the report's ``approval`` section)::

    {"decision": "approved" | "rejected" | "timed_out", "guards": [names], "by": {"id", "name"} | None,
     "at": ISO time, "comment": str | None, "timeout_hours": float}
"""

from __future__ import annotations

import re
from typing import Any

from pipeline.errors import ApprovalRejectedError
from pipeline.guards import refused

APPROVE, REJECT = "Approve", "Reject"  # the ApprovalOperator's two options
DECISIONS = ("approved", "rejected", "timed_out")
MESSAGE_LIMIT = 1200  # characters of one guard's message in the request
COMMENT_LIMIT = 2000  # characters of an approver's comment kept
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#~])")


def md(text: Any, limit: int = MESSAGE_LIMIT) -> str:
    """``text`` as literal Markdown (its control characters escaped), on one line, clipped."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", text)


def approval_subject(index: str, ds: str, guards: list[str]) -> str:
    return f"Image index {index} ds={ds}: guard {', '.join(guards)} refused the partition. Publish it anyway?"


def _numbers(checked: dict) -> list[str]:
    stats, live = checked.get("stats") or {}, checked.get("baseline_stats") or {}
    ds = stats.get("ds")
    lines = ["| | this run (ds=" + md(ds) + ") | " + (f"compared with (ds={md(live.get('ds'))})" if live else "compared with")
             + " |",
             "| --- | ---: | ---: |"]

    def row(label: str, here: Any, there: Any) -> None:
        lines.append(f"| {label} | {md(here if here is not None else '-')} | {md(there if there is not None else '-')} |")

    row("rows", stats.get("rows"), live.get("rows") if live else None)
    row("distinct ids", stats.get("distinct_ids"), live.get("distinct_ids") if live else None)
    here_cats, live_cats = stats.get("rows_per_category") or {}, (live.get("rows_per_category") or {}) if live else {}
    for cat in sorted({*here_cats, *live_cats}, key=lambda c: (len(str(c)), str(c))):
        row(f"category {md(cat)}", here_cats.get(cat, 0), live_cats.get(cat, 0) if live else None)
    if not live:
        lines.append("")
        lines.append("No partition went live before this one: nothing to compare with.")
    return lines


def _load_line(load: dict | None) -> str | None:
    if not load:
        return None
    skipped = {k: v for k, v in (load.get("skipped") or {}).items() if v}
    by_reason = ", ".join(f"{md(k)} {v}" for k, v in skipped.items())
    return (f"- the load listed {load.get('listed', 0)} objects, kept {load.get('kept', 0)}, skipped "
            f"{load.get('skipped_total', 0)}" + (f" ({by_reason})" if by_reason else ""))


def _examples(checked: dict, load: dict | None) -> list[str]:
    load = load or {}
    stats = checked.get("stats") or {}
    lines = []
    if stats.get("duplicate_ids"):
        lines.append(f"- duplicate ids: {md(stats['duplicate_ids'][:10])}")
    if load.get("unmapped_category_examples"):
        lines.append(f"- unmapped categories (name: objects): {md(load['unmapped_category_examples'])}")
    if load.get("archived_examples"):
        lines.append(f"- archived, not restored: {md(load['archived_examples'][:5])}")
    return lines


def approval_body(index: str, table: str, ds: str, checked: dict, load: dict | None, *, timeout_hours: float,
                  rebuilds: bool, deadline: str | None = None) -> str:
    """The request in Markdown: the refused guards (numbers, examples), the figures, what each answer does."""
    names = refused(checked.get("guards") or [])
    lines = [f"Guards refused partition **ds={md(ds)}** of `{table}` (index `{index}`). Nothing is published "
             f"yet: the rows wait in `{table}__staging`.", "", "#### Refused"]
    for guard in checked.get("guards") or []:
        if guard["name"] in names:
            lines.append(f"- **{md(guard['name'])}**: {md(guard.get('message'))}")
    passed = [g for g in checked.get("guards") or [] if g["name"] not in names]
    if passed:
        lines += ["", "Passed: " + "; ".join(
            f"{md(g['name'])}{' (overridden by the `override_guards` Param)' if g.get('overridden') else ''}"
            for g in passed)]
    lines += ["", "#### Numbers", *_numbers(checked)]
    changes = checked.get("id_changes")
    extra = [line for line in (
        f"- ids against ds={md(changes['previous_ds'])}: {changes['added']} added, {changes['removed']} removed"
        if changes else None,
        _load_line(load)) if line]
    if extra:
        lines += ["", *extra]
    examples = _examples(checked, load)
    if examples:
        lines += ["", "#### Examples", *examples]
    then = ("then the run rebuilds the index from it or pushes what changed (`choose_rebuild`), as a run whose "
            "guards passed" if rebuilds else "(the index has no OpenSearch section: nothing to rebuild)")
    until = f"by {md(deadline)} ({timeout_hours:g} h)" if deadline else f"within {timeout_hours:g} h"
    lines += [
        "", "#### Your answer",
        f"- **Approve** publishes ds={md(ds)} into `{table}` with {', '.join(names)} recorded as overridden by you; "
        f"{then}.",
        "- **Reject** ends the run failed: the published partition and the index stay as they are.",
        f"- No answer {until}: rejected.",
        "",
        "Say why in **comment**: the run report records who answered, when and why.",
    ]
    return "\n".join(lines)


def decision_record(chosen: list[str], *, by: dict | None, at: str | None, comment: Any, timed_out: bool,
                    guards: list[str], timeout_hours: float) -> dict:
    """The answer as the report keeps it. A timeout is a rejection nobody made (``by`` None)."""
    if timed_out:
        decision = "timed_out"
    else:
        decision = "approved" if list(chosen) == [APPROVE] else "rejected"
    text = " ".join(str(comment).split())[:COMMENT_LIMIT] if comment else None
    who = {"id": str(by.get("id")), "name": str(by.get("name"))} if isinstance(by, dict) else None
    return {"decision": decision, "guards": list(guards), "by": who, "at": at, "comment": text or None,
            "timeout_hours": timeout_hours}


def who(record: dict) -> str:
    by = record.get("by") or {}
    name, uid = by.get("name"), by.get("id")
    if not name and not uid:
        return "nobody"
    return name if not uid or uid == name else f"{name} (id {uid})"


def describe(record: dict) -> str:
    """One line: ``approved by admin at 2026-12-01T06:20:00+00:00 (shrink): <comment>``."""
    guards = ", ".join(record.get("guards") or [])
    if record.get("decision") == "timed_out":
        text = f"timed out after {record.get('timeout_hours'):g} h with no answer at {record.get('at')}: rejected ({guards})"
    else:
        text = f"{record.get('decision')} by {who(record)} at {record.get('at')} ({guards})"
    comment = record.get("comment")
    return f"{text}: {comment}" if comment else f"{text}, no comment given"


def rejection_message(index: str, ds: str, record: dict) -> str:
    """The error that ends a rejected (or timed out) run."""
    return (f"partition ds={ds} of index {index} was not published: the refused guards were {describe(record)}. "
            "The published partition and the index are unchanged. To publish it after all, clear "
            "approve_refused_guards (a new request) or trigger the run again with the override_guards Param "
            f"naming {', '.join(record.get('guards') or [])}")


def approved_guards(index: str, ds: str, checked: dict, approval: dict | None) -> list[str]:
    """The guards an approval lets through (none when nothing was refused); raise when some were refused and
    no approval of exactly them is recorded, e.g. the approval task marked successful by hand."""
    names = refused(checked.get("guards") or [])
    if not names:
        return []
    if not approval or approval.get("decision") != "approved" or sorted(approval.get("guards") or []) != sorted(names):
        raise ApprovalRejectedError(
            f"partition ds={ds} of index {index}: guard {', '.join(names)} refused it and no approval is recorded "
            f"(approve_refused_guards answered {approval.get('decision') if approval else 'nothing'}): nothing "
            "was published. Clear approve_refused_guards to ask again, or trigger a run with the override_guards "
            "Param")
    return names


def mark_approved(guards: list[dict] | None, approval: dict | None) -> list[dict] | None:
    """The guards' verdicts with those an approval let through marked ``overridden`` (``approved``: true)."""
    if not guards or not approval or approval.get("decision") != "approved":
        return guards
    names = set(approval.get("guards") or [])
    return [{**g, "overridden": True, "approved": True} if g["name"] in names and not g.get("passed") else g
            for g in guards]
