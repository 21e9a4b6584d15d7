"""``guards.on_refusal: ask``: a refused guard parks the run in an approval task instead of failing it.

The graph, between ``check_partition`` (which then returns its verdict instead of raising) and
``publish_partition``::

    check_partition → choose_approval ─┬─────────────────────────────► publish_partition → ...
                                       └► approve_refused_guards ──────┘

``choose_approval`` (a branch) sends a run with refused guards to ``approve_refused_guards`` and any other
straight on to ``publish_partition``, whose trigger rule (``none_failed_min_one_success``) lets it run after
either. ``approve_refused_guards`` is Airflow's human-in-the-loop ``ApprovalOperator``: it writes the
request (subject, a Markdown body with each refused guard's numbers and examples: pipeline/approval.py)
and waits in Airflow 3.3's ``awaiting_input`` state (no worker slot, no triggerer) until a user answers in
the UI's Required Actions or through the REST API (``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}/
taskInstances/approve_refused_guards/-1/hitlDetails``), or the scheduler's sweep applies the default,
Reject, once ``guards.approval_timeout_hours`` passed.

* **Approve**: the task succeeds and records the answer (XCom ``approval``: who, when, why); the publish
  checks that exactly the refused guards were approved, and the run goes on as one whose guards passed
  (the report marks them overridden, as the ``override_guards`` Param would).
* **Reject** or **timeout**: the task records the answer, then fails with ``ApprovalRejectedError``
  (terminal: no retry), so ``publish_partition`` and everything after it are ``upstream_failed`` and the
  run fails with nothing published; the run's failure alerts name the answer. Unlike the operator's own
  reject (skip everything downstream: the run would end successful), a refusal nobody accepted stays a
  failed run, as with ``on_refusal: fail``.

The index's chats that want ``refused_guard`` (or ``failure``) are told when the request is made: the
operator's ``notifiers`` run in the task as it starts to wait, with a link to its Required Actions page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow.providers.standard.operators.hitl import ApprovalOperator, HITLOperator
from airflow.sdk import BaseNotifier, Param, task

from pipeline.airflow.alert_text import Alert
from pipeline.airflow.notify import NOTIFIERS, PARTITION_TASK, IndexNotifier, run_url, wants
from pipeline.approval import (
    COMMENT_LIMIT,
    approval_body,
    approval_subject,
    decision_record,
    describe,
    rejection_message,
)
from pipeline.errors import ApprovalRejectedError
from pipeline.guards import refused

if TYPE_CHECKING:
    from pipeline.config import IndexConfig

log = logging.getLogger(__name__)

CHECK_TASK = "check_partition"
CHOICE_TASK = "choose_approval"
APPROVAL_TASK = "approve_refused_guards"
PUBLISH_TASK = "publish_partition"
APPROVAL_XCOM = "approval"  # the answer (pipeline/approval.py's decision record), also when rejected
REQUEST_XCOM = "approval_request"  # what was asked, when, and until when

DOC = """\
Asks a human whether to publish a partition that guards refused (`guards.on_refusal: ask`). **Approve**
publishes it (the refused guards recorded as overridden by you) and the run rebuilds or pushes as usual;
**Reject** ends the run failed with nothing published; no answer within {hours:g} h is a rejection. Say
why in *comment*: the run report records who answered, when and why.
"""


def required_actions_url(dag_id: str, run_id: str, task_id: str = APPROVAL_TASK) -> str:
    """The task's page in the Airflow UI where the request is answered (as the HITL provider links it)."""
    return f"{run_url(dag_id, run_id)}/tasks/{quote(task_id)}/required_actions"


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if hasattr(moment, "isoformat") else (str(moment) if moment else None)


class GuardApprovalOperator(ApprovalOperator):
    """Airflow's ``ApprovalOperator`` for refused guards: builds its request from the run's check, and turns
    the answer into a record (and a failure, unless approved). Default answer: Reject, on timeout."""

    def __init__(self, *, index_config: IndexConfig, load_of: Callable[[Any], dict | None], **kwargs: Any) -> None:
        guards = index_config.guards
        # The DAG's Params, which apply_defaults hands every operator: the provider keeps only the task's
        # own (the form the approver fills), so they are left out here.
        kwargs.pop("params", None)
        chats = [NOTIFIERS[n.kind](index_config.name, n, success=False)
                 for n in index_config.notifications if wants(frozenset(n.on), "refused_guard")]
        super().__init__(
            task_id=APPROVAL_TASK,
            # Both replaced when the task runs (execute), from the run's check: never rendered as Jinja,
            # since guard messages quote object keys.
            subject=f"Image index {index_config.name}: publish a partition its guards refused?",
            body=None,
            defaults=ApprovalOperator.REJECT,  # what the scheduler answers when the timeout passes
            response_timeout=timedelta(hours=guards.approval_timeout_hours),
            assigned_users=[{"id": user, "name": user} for user in guards.approvers] or None,
            params={"comment": Param("", type="string", maxLength=COMMENT_LIMIT, title="Why",
                                     description="Why you approve or reject: it goes into the run report.")},
            notifiers=[ApprovalWaitNotifier(index_config.name, chats)] if chats else None,
            doc_md=DOC.format(hours=guards.approval_timeout_hours),
            **kwargs,
        )
        self.index_config = index_config
        self.load_of = load_of
        self.request: dict = {}

    def execute(self, context: Any) -> Any:
        from airflow.sdk.exceptions import AirflowSkipException

        config, ti = self.index_config, context["ti"]
        checked = ti.xcom_pull(task_ids=CHECK_TASK) or {}
        ds = ti.xcom_pull(task_ids=PARTITION_TASK)
        names = refused(checked.get("guards") or [])
        if not names:  # only choose_approval sends a run here, and only a refused one
            raise AirflowSkipException("no guard refused the partition: nothing to approve")
        asked = datetime.now(UTC)
        deadline = asked + timedelta(hours=config.guards.approval_timeout_hours)
        self.request = {"ds": ds, "guards": names, "asked_at": asked.isoformat(), "deadline": deadline.isoformat(),
                        "timeout_hours": config.guards.approval_timeout_hours}
        ti.xcom_push(REQUEST_XCOM, self.request)
        self.subject = approval_subject(config.name, ds, names)
        self.body = approval_body(config.name, config.warehouse.table, ds, checked, self.load_of(ti),
                                  timeout_hours=config.guards.approval_timeout_hours,
                                  rebuilds=config.opensearch is not None,
                                  deadline=deadline.isoformat(timespec="minutes"))
        log.info("guard %s refused partition ds=%s: asking for approval until %s", ", ".join(names), ds,
                 deadline.isoformat(timespec="minutes"))
        return super().execute(context)  # writes the request, tells the chats, and waits (awaiting_input)

    def execute_complete(self, context: Any, event: dict[str, Any]) -> dict:
        ti = context["ti"]
        config = self.index_config
        request = ti.xcom_pull(task_ids=self.task_id, key=REQUEST_XCOM) or {}
        ds = request.get("ds") or ti.xcom_pull(task_ids=PARTITION_TASK)
        guards = request.get("guards") or refused((ti.xcom_pull(task_ids=CHECK_TASK) or {}).get("guards") or [])
        hours = config.guards.approval_timeout_hours
        if "error" in event:  # no answer and no default applied (the provider's own timeout path)
            record = decision_record([], by=None, at=datetime.now(UTC).isoformat(), comment=None, timed_out=True,
                                     guards=guards, timeout_hours=hours)
        else:
            # The provider's checks of the answer (options, params), without ApprovalOperator's reject
            # handling, which skips everything downstream and so would end the run successful.
            answer = HITLOperator.execute_complete(self, context=context, event=event)
            record = decision_record(
                answer["chosen_options"], by=answer.get("responded_by_user"), at=_iso(answer.get("responded_at")),
                comment=(answer.get("params_input") or {}).get("comment"),
                timed_out=bool(event.get("timedout")), guards=guards, timeout_hours=hours)
        record["asked_at"] = request.get("asked_at")
        ti.xcom_push(APPROVAL_XCOM, record)  # kept when the task fails: the report reads it
        log.info("approval of partition ds=%s: %s", ds, describe(record))
        if record["decision"] != "approved":
            raise ApprovalRejectedError(rejection_message(config.name, ds, record))
        return record


class ApprovalWaitNotifier(BaseNotifier):
    """Tells the index's chats that a refused run waits for approval (the ``refused_guard`` event), from the
    approval task as it starts to wait. Never raises: a chat that cannot take it is logged."""

    template_fields = ()  # the text is built from the run's facts, never rendered as a Jinja template

    def __init__(self, index: str, chats: list[IndexNotifier]) -> None:
        super().__init__()
        self.index, self.chats = index, chats

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to render."""

    def notify(self, context: Any) -> None:
        try:
            alert = waiting_alert(self.index, context)
        except Exception:
            log.exception("could not gather the facts of the approval request of index %s: nothing posted", self.index)
            return
        for chat in self.chats:
            try:
                chat.post(alert, context)
            except Exception as exc:
                log.error("could not post the approval request of index %s, run %s to %s connection %r: %s: %s",
                          self.index, alert.run_id, chat.kind, chat.conn_id, type(exc).__name__, exc)
                continue
            log.info("posted the approval request of index %s, run %s to %s connection %r", self.index,
                     alert.run_id, chat.kind, chat.conn_id)


def waiting_alert(index: str, context: Any) -> Alert:
    """The ``refused_guard`` alert of a run waiting in ``approve_refused_guards``."""
    from pipeline.redact import redact_text

    ti, task_ = context["ti"], context["task"]
    request = getattr(task_, "request", None) or {}
    checked = ti.xcom_pull(task_ids=CHECK_TASK) or {}
    messages = {g["name"]: g.get("message") or "" for g in checked.get("guards") or []}
    names = request.get("guards") or refused(checked.get("guards") or [])
    url = run_url(ti.dag_id, ti.run_id)
    return Alert(
        event="refused_guard", index=index, dag_id=ti.dag_id, run_id=ti.run_id, url=url, ds=request.get("ds"),
        task_id=APPROVAL_TASK, refused=tuple((name, redact_text(messages.get(name, ""))) for name in names),
        waiting={"task_id": APPROVAL_TASK, "url": required_actions_url(ti.dag_id, ti.run_id),
                 "timeout_hours": request.get("timeout_hours"), "deadline": request.get("deadline")},
    )


def ask_before_publishing(config: IndexConfig, checked: Any, *, load_of: Callable[[Any], dict | None]) -> list:
    """Create ``choose_approval`` and ``approve_refused_guards`` after the check (see the module doc) and
    return them: the publish goes downstream of both, with the trigger rule ``none_failed_min_one_success``."""

    @task.branch(task_id=CHOICE_TASK)
    def choose_approval(checked: dict) -> str:
        names = [] if checked.get("dry_run") else refused(checked.get("guards") or [])
        if names:
            log.info("guard %s refused the partition: asking for approval", ", ".join(names))
            return APPROVAL_TASK
        return PUBLISH_TASK

    choice = choose_approval(checked)
    approve = GuardApprovalOperator(index_config=config, load_of=load_of)
    choice >> approve
    return [choice, approve]


def approval_of(ti: Any, checked: dict | None) -> dict | None:
    """The recorded answer of this run's approval; None when this run's check refused nothing (then the
    approval task was skipped, and an XCom it kept from a try before the run was cleared is not this run's)."""
    if not refused((checked or {}).get("guards") or []):
        return None
    return ti.xcom_pull(task_ids=APPROVAL_TASK, key=APPROVAL_XCOM)
