"""What an alert says: one run's facts (:class:`Alert`) as Slack text and blocks, and as DingTalk markdown.

Plain functions of plain data, no Airflow: ``pipeline/airflow/notify.py`` gathers the facts from the
callback's context and posts. Every alert names the index, the partition (``ds``), the run and a link
to it in the Airflow UI; a failure adds the failing task and its one-line reason (the error's first
line, secrets already masked); a guard's refusal lists each refusing guard with its numbers and says
how to pass it deliberately (the ``override_guards`` Param, with the conf to trigger), or, with
``guards.on_refusal: ask``, that the run waits for approval and where to give it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

Event = Literal["failure", "refused_guard", "success"]

REASON_LIMIT = 500  # characters of an error's first line
GUARD_LIMIT = 600  # characters of one guard's message
# Slack's own limits: a header's text 150 characters, a section's 3,000, a field's 2,000.
_SLACK_HEADER, _SLACK_SECTION, _SLACK_FIELD = 150, 3000, 2000


@dataclass(frozen=True)
class Alert:
    """One run's facts for a chat message. ``ds`` None: the run failed before resolving its partition;
    ``task_id`` None on a failure: no task failed (Airflow ended the run, ``reason`` says why)."""

    event: Event
    index: str
    dag_id: str
    run_id: str
    url: str
    ds: str | None = None
    task_id: str | None = None
    reason: str | None = None  # one line: "ErrorType: first line of the message"
    refused: tuple[tuple[str, str], ...] = ()  # (guard, its message) for a guard's refusal
    rerun_conf: dict | None = field(default=None)  # the conf that passes the refusing guards
    outcome: str | None = None  # a success: the report's outcome (success, dry_run, rebuild_skipped)
    rows: int | None = None  # a success: rows in the partition
    # A refusal with guards.on_refusal: ask: the run waits for approval. {"task_id", "url" (the task's
    # Required Actions page), "timeout_hours", "deadline" (ISO time)}.
    waiting: dict | None = field(default=None)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(text: str | None, limit: int = REASON_LIMIT) -> str:
    """The first non-empty line of ``text``, clipped (an error message's headline)."""
    for line in (text or "").splitlines():
        if line.strip():
            return clip(line.strip(), limit)
    return ""


def one_line_reason(error_type: str | None, message: str | None) -> str:
    """``ErrorType: first line`` (as the run report's summary writes a failure)."""
    line = first_line(message)
    if error_type and line:
        return clip(f"{error_type}: {line}", REASON_LIMIT)
    return line or (error_type or "")


def _partition(alert: Alert) -> str:
    return f"ds={alert.ds}" if alert.ds else "no partition (the run failed before resolving its date)"


def title(alert: Alert) -> str:
    """One line naming what happened, the index and the partition."""
    where = f"ds={alert.ds}" if alert.ds else "no partition"
    if alert.event == "success":
        done = f" ({alert.outcome})" if alert.outcome and alert.outcome != "success" else ""
        return f"SUCCESS image index {alert.index} {where}{done}"
    if alert.event == "refused_guard":
        names = ", ".join(name for name, _ in alert.refused) or "a guard"
        waits = "; waiting for approval" if alert.waiting else ""
        return f"REFUSED image index {alert.index} {where}: guard {names} refused the partition{waits}"
    at = f" at {alert.task_id}" if alert.task_id else ""
    return f"FAILED image index {alert.index} {where}{at}"


def _how_to_pass(alert: Alert) -> str:
    names = [name for name, _ in alert.refused]
    if alert.waiting:
        waiting = alert.waiting
        return (f"Nothing is published until someone answers task {waiting.get('task_id')} of the run: approve "
                f"(publish anyway, then rebuild) or reject, in Airflow's Required Actions ({waiting.get('url')}) or "
                f"through the REST API. With no answer by {waiting.get('deadline')} ({waiting.get('timeout_hours'):g} "
                "h) it is rejected.")
    if alert.rerun_conf is not None:
        conf = json.dumps(alert.rerun_conf, sort_keys=True)
        return (f"Nothing was published or rebuilt. If the numbers are intended, trigger {alert.dag_id} again "
                f"with the override_guards Param naming {', '.join(names)}: conf {conf}")
    return (f"Nothing was published or rebuilt. If the numbers are intended, trigger {alert.dag_id} again "
            f"with the override_guards Param naming {', '.join(names) or 'the guard'}")


def _task_label(alert: Alert) -> str:
    return "Waiting task" if alert.waiting else "Failed task"


def plain_text(alert: Alert) -> str:
    """The message as plain lines: Slack's ``text`` (its notification and fallback) and the log line."""
    lines = [title(alert)]
    if alert.event == "failure":
        task = alert.task_id or "no task failed"
        lines.append(f"task {task}: {alert.reason or 'no message recorded (see the task log)'}")
    elif alert.event == "refused_guard":
        lines += [f"[{name}] {clip(message, GUARD_LIMIT)}" for name, message in alert.refused]
        if not alert.refused and alert.reason:
            lines.append(alert.reason)
        lines.append(_how_to_pass(alert))
    elif alert.rows is not None:
        lines.append(f"{alert.rows} rows in partition {_partition(alert)}")
    lines.append(f"run {alert.run_id}: {alert.url}")
    return "\n".join(lines)


# -- Slack (Block Kit, mrkdwn) ---------------------------------------------------------------------

def slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters: &, < and > (https://api.slack.com/reference/surfaces/formatting)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, _SLACK_SECTION)}}


def slack_blocks(alert: Alert) -> list[dict]:
    """Header, the facts as fields, the reason (or the refusing guards and how to pass them), a link."""
    facts = [f"*Index*\n{slack_escape(alert.index)}", f"*Partition*\n{slack_escape(_partition(alert))}"]
    if alert.event != "success":
        facts.append(f"*{_task_label(alert)}*\n{slack_escape(alert.task_id or 'none: Airflow ended the run')}")
    facts.append(f"*Run*\n<{alert.url}|{slack_escape(alert.run_id)}>")
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title(alert), _SLACK_HEADER)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": clip(f, _SLACK_FIELD)} for f in facts]},
    ]
    if alert.event == "failure":
        blocks.append(_section(f"*Reason*\n{slack_escape(alert.reason or 'no message recorded (see the task log)')}"))
    elif alert.event == "refused_guard":
        refused = "\n".join(f"• *{slack_escape(name)}*: {slack_escape(clip(message, GUARD_LIMIT))}"
                            for name, message in alert.refused) or slack_escape(alert.reason or "")
        blocks.append(_section(f"*Refused by*\n{refused}"))
        blocks.append(_section(f"*{'To answer' if alert.waiting else 'To pass it'}*\n{slack_escape(_how_to_pass(alert))}"))
    elif alert.rows is not None:
        blocks.append(_section(f"{alert.rows} rows, outcome {slack_escape(alert.outcome or 'success')}"))
    blocks.append(_section(f"<{alert.url}|Open the run in Airflow>"))
    return blocks


# -- DingTalk (custom robot, markdown) --------------------------------------------------------------

def dingtalk_markdown(alert: Alert, at_mobiles: list[str] | tuple[str, ...] = ()) -> dict:
    """The robot's ``markdown`` message: ``{"title", "text"}``. A mention needs ``@<mobile>`` in the
    text as well as in the message's ``at`` (DingTalk's rule), so each is appended."""
    heading = title(alert)
    lines = [f"#### {heading}", "", f"- **Index**: {alert.index}", f"- **Partition**: {_partition(alert)}"]
    if alert.event != "success":
        lines.append(f"- **{_task_label(alert)}**: {alert.task_id or 'none: Airflow ended the run'}")
    if alert.event == "failure":
        lines.append(f"- **Reason**: {alert.reason or 'no message recorded (see the task log)'}")
    elif alert.event == "refused_guard":
        lines.append("- **Refused by**:")
        lines += [f"  - **{name}**: {clip(message, GUARD_LIMIT)}" for name, message in alert.refused]
        if not alert.refused and alert.reason:
            lines.append(f"  - {alert.reason}")
        lines.append(f"- **{'To answer' if alert.waiting else 'To pass it'}**: {_how_to_pass(alert)}")
    elif alert.rows is not None:
        lines.append(f"- **Rows**: {alert.rows} (outcome {alert.outcome or 'success'})")
    lines.append(f"- **Run**: [{alert.run_id}]({alert.url})")
    if at_mobiles:
        lines += ["", " ".join(f"@{mobile}" for mobile in at_mobiles)]
    return {"title": clip(heading, 100), "text": "\n".join(lines)}
