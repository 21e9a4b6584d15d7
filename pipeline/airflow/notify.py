"""Alerts: an index's ``notifications`` as Airflow notifiers on the DAG run's callbacks.

Each configured chat becomes a :class:`~airflow.sdk.BaseNotifier` (Airflow's notifier interface):

* ``slack``: the Slack provider's ``SlackWebhookNotifier`` posts (text + Block Kit blocks) through a
  ``slackwebhook`` connection;
* ``dingtalk``: the DingTalk provider's ``DingdingHook`` posts a ``markdown`` message through a
  ``dingding`` connection (the provider has no notifier of its own, so :class:`DingTalkIndexNotifier`
  wraps the hook).

:func:`dag_callbacks` puts them on the **DAG**'s ``on_failure_callback`` / ``on_success_callback``,
never on tasks: Airflow calls a DAG's callback once per run when it decides the run's state (in the
DAG processor, from the scheduler's callback request), so a failed run posts exactly one message per
chat however many tasks failed or were upstream_failed, and a run whose task was killed before its
own callbacks ran is reported too.

The callback's context holds the run and the task instance that failed last; the facts come from the
run's XComs and task states through that instance (the DAG processor serves those requests):
``resolve_partition``'s XCom is the partition ``ds``; the failing task is the first failed one in the
DAG's order (the ``report`` teardown only if nothing else failed); its one-line reason is the first
line of the error its own failure callback recorded (``pipeline_failure``, secrets masked:
pipeline/airflow/outcome.py), read for up to ``ALERT_GRACE_S`` since the task's callback may still
be running. The facts are gathered once per callback context and shared by the index's notifiers:
the DAG processor runs every callback of a DAG file in one process bounded by
``[dag_processor] dag_file_processor_timeout`` (50 s by default), so waits and posts are kept short. ``check_partition`` failing with a guard's refusal is the ``refused_guard`` event: the
message lists each refusing guard and the conf that passes them (``override_guards``).

A notifier that cannot post (connection missing, chat down, a refused token) logs one error naming
the chat, the connection and the run, and returns: the run's own state and failure are untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from pipeline.airflow.alert_text import Alert, dingtalk_markdown, one_line_reason, plain_text, slack_blocks
from pipeline.airflow.outcome import FAILURE_XCOM_KEY

if TYPE_CHECKING:
    from pipeline.config import IndexConfig, NotificationConfig

log = logging.getLogger(__name__)

PARTITION_TASK = "resolve_partition"
CHECK_TASK = "check_partition"
REPORT_TASK = "report"
#: Seconds a post may take (connect and answer; Slack's client tries a broken connection twice): a chat
#: that hangs must not hold the DAG processor past its timeout.
POST_TIMEOUT_S = 5
#: Seconds to wait for the failing task's own record. By the time the DAG processor runs the run's
#: callback (the scheduler's next loop, then a parse of the DAG file) it is there; when it never comes
#: (a task killed before it ran) this is what the alert costs.
ALERT_GRACE_S = 5.0
#: Where the facts of one callback are kept for the index's other notifiers (Airflow hands every DAG
#: callback of one run decision the same context).
_FACTS_KEY = "pipeline_alert_facts"
#: Airflow's own fallback when ``[api] base_url`` is unset (RuntimeTaskInstance.log_url).
DEFAULT_BASE_URL = "http://localhost:8080/"


def run_url(dag_id: str, run_id: str) -> str:
    """The run in the Airflow UI: ``<[api] base_url>/dags/<dag_id>/runs/<run_id>``, built as Airflow 3.3
    builds its task log links (``RuntimeTaskInstance.log_url``: the run id %-quoted)."""
    from airflow.sdk.configuration import conf

    base = conf.get("api", "base_url", fallback=None) or DEFAULT_BASE_URL
    return f"{base.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id)}"


class _RunReader:
    """Reads the run's XComs and task states through the callback's task instance. A read that fails
    (no task instance in the context, or no supervisor to ask) is logged once and gives None."""

    def __init__(self, ti: Any, dag_id: str, run_id: str) -> None:
        self.ti, self.dag_id, self.run_id = ti, dag_id, run_id
        self.broken: str | None = None if ti is not None else "the callback's context has no task instance"

    def _read(self, what: str, read: Callable[[], Any]) -> Any:
        if self.broken:
            return None
        try:
            return read()
        except Exception as exc:  # e.g. a callback run outside the DAG processor, without its channel
            self.broken = f"{type(exc).__name__}: {exc}"
            log.warning("alert of run %s: could not read %s (%s); the message says so instead", self.run_id, what,
                        self.broken)
            return None

    def xcom(self, task_id: str, key: str = "return_value") -> Any:
        return self._read(f"the XCom {key!r} of {task_id}", lambda: self.ti.xcom_pull(task_ids=task_id, key=key))

    def failed_tasks(self) -> list[str] | None:
        states = self._read("the run's task states",
                            lambda: self.ti.get_task_states(dag_id=self.dag_id, run_ids=[self.run_id]))
        if not isinstance(states, dict):
            return None
        run_states = states.get(self.run_id) or {}
        return [task_id for task_id, state in run_states.items() if getattr(state, "value", state) == "failed"]


def failing_task(dag: Any, failed: list[str] | None, fallback: str | None) -> str | None:
    """The first failed task in the DAG's order, teardowns (the report) last; ``fallback`` (the task
    instance Airflow put in the context) when the states could not be read."""
    if failed is None:
        return fallback
    if not failed:
        return None
    order = {task_id: i for i, task_id in enumerate(getattr(dag, "task_ids", None) or ())}
    task_dict = getattr(dag, "task_dict", None) or {}

    def rank(task_id: str) -> tuple[bool, int, str]:
        return bool(getattr(task_dict.get(task_id), "is_teardown", False)), order.get(task_id, len(order)), task_id

    return min(failed, key=rank)


def wait_for_failure_record(reader: _RunReader, task_id: str, grace_s: float, *,
                            clock: Callable[[], float] = time.monotonic,
                            sleep: Callable[[float], None] = time.sleep) -> dict | None:
    """The failing task's ``pipeline_failure`` XCom, read again for up to ``grace_s`` while missing (the
    task's own callback runs right after its state is recorded, so the run may be decided first)."""
    give_up = clock() + grace_s
    while True:
        record = reader.xcom(task_id, FAILURE_XCOM_KEY)
        if isinstance(record, dict) or reader.broken or clock() >= give_up:
            return record if isinstance(record, dict) else None
        sleep(0.5)


def rerun_conf(conf: Any, ds: str | None, refused: tuple[tuple[str, str], ...],
               params: Any = None) -> dict | None:
    """The run's own conf (its Params only, when the DAG's ``params`` are known) plus the refusing guards
    in ``override_guards`` (and its partition, for a scheduled run, whose conf names none): what to
    trigger to pass them deliberately."""
    if not ds or not refused:
        return None
    conf = dict(conf) if isinstance(conf, dict) else {}
    names = set(params.keys()) if hasattr(params, "keys") else set()
    if names:
        conf = {key: value for key, value in conf.items() if key in names}
    overrides = conf.get("override_guards") if isinstance(conf.get("override_guards"), list) else []
    conf["override_guards"] = sorted({*map(str, overrides), *(name for name, _ in refused)})
    conf.setdefault("partition_date", ds)
    return conf


def gather_alert(index: str, context: Any, *, success: bool, grace_s: float = ALERT_GRACE_S) -> Alert:
    """The facts of the run a DAG callback's ``context`` describes."""
    from pipeline.redact import redact_text

    dag, dag_run, ti = context.get("dag"), context.get("dag_run"), context.get("ti")
    dag_id = str(getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", "") or "")
    run_id = str(context.get("run_id") or getattr(dag_run, "run_id", "") or "")
    reader = _RunReader(ti, dag_id, run_id)
    ds = reader.xcom(PARTITION_TASK)
    ds = ds if isinstance(ds, str) else None
    base = {"index": index, "dag_id": dag_id, "run_id": run_id, "url": run_url(dag_id, run_id), "ds": ds}
    if success:
        report = reader.xcom(REPORT_TASK)
        report = report if isinstance(report, dict) else {}
        rows = (report.get("partition") or {}).get("rows") if isinstance(report.get("partition"), dict) else None
        return Alert(event="success", outcome=report.get("outcome"), rows=rows if isinstance(rows, int) else None,
                     **base)

    task_id = failing_task(dag, reader.failed_tasks(), getattr(ti, "task_id", None))
    if task_id is None:  # no task failed: Airflow ended the run (e.g. its tasks deadlocked)
        why = str(context.get("reason") or "unknown")
        return Alert(event="failure", reason=f"no task failed: Airflow marked the run failed ({why})", **base)
    record = wait_for_failure_record(reader, task_id, grace_s) or {}
    reason = one_line_reason(record.get("error_type"), record.get("message"))
    reason = redact_text(reason) if reason else (
        f"no message recorded: the run's XComs could not be read ({reader.broken}); see the task log"
        if reader.broken else
        "no message recorded: the task did not reach its failure callback (killed, out of memory, or failed "
        "by the scheduler); see the task log")
    refused = tuple((redact_text(str(g.get("name"))), redact_text(str(g.get("message"))))
                    for g in record.get("refused_guards") or () if isinstance(g, dict))
    if task_id == CHECK_TASK and record.get("error_type") == "PartitionCheckError" and refused:
        return Alert(event="refused_guard", task_id=task_id, reason=reason, refused=refused,
                     rerun_conf=rerun_conf(getattr(dag_run, "conf", None), ds, refused, getattr(dag, "params", None)),
                     **base)
    return Alert(event="failure", task_id=task_id, reason=reason, **base)


def shared_alert(index: str, context: Any, *, success: bool, grace_s: float = ALERT_GRACE_S) -> Alert:
    """:func:`gather_alert`, once per callback context: the index's next notifier reuses the facts
    (and never waits for a missing record twice)."""
    kept = context.get(_FACTS_KEY) if hasattr(context, "get") else None
    if isinstance(kept, Alert) and kept.index == index and (kept.event == "success") == success:
        return kept
    alert = gather_alert(index, context, success=success, grace_s=grace_s)
    try:
        context[_FACTS_KEY] = alert
    except TypeError:  # a read-only mapping: the next notifier gathers again
        pass
    return alert


def wants(on: frozenset[str], event: str) -> bool:
    """``failure`` covers every failed run, a guard's refusal included; ``refused_guard`` only those."""
    return event in on or (event == "refused_guard" and "failure" in on)


class IndexNotifier(BaseNotifier):
    """One chat of one index, on one of the DAG's callbacks (``success`` or not). Subclasses post."""

    kind: ClassVar[str] = ""
    template_fields = ()  # the text is built from the run's facts, never rendered as a Jinja template

    def __init__(self, index: str, notification: NotificationConfig, *, success: bool,
                 grace_s: float = ALERT_GRACE_S) -> None:
        super().__init__()
        self.index = index
        self.conn_id = notification.conn_id
        self.on = frozenset(notification.on)
        self.at_mobiles = tuple(notification.at_mobiles)
        self.success = success
        self.grace_s = grace_s

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.index!r}, conn_id={self.conn_id!r}, on={sorted(self.on)})"

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render. (BaseNotifier would build a Jinja environment from ``context["dag"]`` even
        so, which fails where that is the scheduler's serialized DAG, as under ``dag.test()``.)"""

    def notify(self, context: Any) -> None:
        run_id = context.get("run_id") or getattr(context.get("dag_run"), "run_id", "?")
        try:
            alert = shared_alert(self.index, context, success=self.success, grace_s=self.grace_s)
        except Exception:  # never let an alert hide or change the run's own outcome
            log.exception("%s alert of index %s, run %s: could not gather the run's facts; nothing posted",
                          self.kind, self.index, run_id)
            return
        if not wants(self.on, alert.event):
            log.info("%s connection %r: %s not in on %s, nothing posted", self.kind, self.conn_id, alert.event,
                     sorted(self.on))
            return
        try:
            self.post(alert, context)
        except Exception as exc:
            log.error(
                "could not post the %s alert of index %s, run %s to %s connection %r: %s: %s. The run's own "
                "state is unchanged; check the connection (README: Alerts) and the chat's webhook. The message "
                "was:\n%s", alert.event, self.index, alert.run_id, self.kind, self.conn_id, type(exc).__name__,
                exc, plain_text(alert),
            )
            return
        log.info("posted the %s alert of index %s, run %s to %s connection %r", alert.event, self.index,
                 alert.run_id, self.kind, self.conn_id)

    def post(self, alert: Alert, context: Any) -> None:
        raise NotImplementedError


class SlackIndexNotifier(IndexNotifier):
    """Posts through the Slack provider's ``SlackWebhookNotifier`` (an incoming webhook)."""

    kind = "slack"

    def post(self, alert: Alert, context: Any) -> None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        notifier = SlackWebhookNotifier(slack_webhook_conn_id=self.conn_id, text=plain_text(alert),
                                        blocks=slack_blocks(alert), timeout=POST_TIMEOUT_S,
                                        unfurl_links=False, unfurl_media=False)
        notifier.notify(context)  # not notifier(context): that would render the error text as Jinja


def _dingding_hook_class() -> type:
    from airflow.providers.dingding.hooks.dingding import DingdingHook

    class TimedDingdingHook(DingdingHook):
        """The provider's hook with a timeout: ``DingdingHook.send`` passes none to requests."""

        def run_and_check(self, session: Any, prepped_request: Any, extra_options: dict) -> Any:
            return super().run_and_check(session, prepped_request, {**extra_options, "timeout": POST_TIMEOUT_S})

    return TimedDingdingHook


class DingTalkIndexNotifier(IndexNotifier):
    """Posts a ``markdown`` message through the DingTalk provider's ``DingdingHook`` (a custom robot)."""

    kind = "dingtalk"

    def post(self, alert: Alert, context: Any) -> None:
        hook = _dingding_hook_class()(dingding_conn_id=self.conn_id, message_type="markdown",
                                      message=dingtalk_markdown(alert, self.at_mobiles),
                                      at_mobiles=list(self.at_mobiles), at_all=False)
        hook.send()  # raises when the robot answers an errcode other than 0


NOTIFIERS: dict[str, type[IndexNotifier]] = {"slack": SlackIndexNotifier, "dingtalk": DingTalkIndexNotifier}


def build_notifiers(config: IndexConfig, *, grace_s: float = ALERT_GRACE_S) -> tuple[list, list]:
    """``(on_failure, on_success)``: the notifiers of ``config.notifications`` for the DAG's two callbacks."""
    on_failure, on_success = [], []
    for notification in config.notifications:
        cls = NOTIFIERS[notification.kind]
        if {"failure", "refused_guard"} & set(notification.on):
            on_failure.append(cls(config.name, notification, success=False, grace_s=grace_s))
        if "success" in notification.on:
            on_success.append(cls(config.name, notification, success=True, grace_s=grace_s))
    return on_failure, on_success


def dag_callbacks(config: IndexConfig) -> dict[str, list]:
    """``DAG(...)`` keyword arguments: ``on_failure_callback`` / ``on_success_callback`` with the index's
    notifiers (only those that have any). Passed when the DAG is created: Airflow records
    ``has_on_*_callback`` then, and the scheduler asks for a run's callback only when it is set."""
    on_failure, on_success = build_notifiers(config)
    callbacks = {"on_failure_callback": on_failure, "on_success_callback": on_success}
    return {name: notifiers for name, notifiers in callbacks.items() if notifiers}
