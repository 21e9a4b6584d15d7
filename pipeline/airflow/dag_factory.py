"""Builds one Airflow DAG per index config. Wiring only: the work happens in ``pipeline.*`` modules.

    resolve_partition → load_partition (staged) → check_partition (guards on the staged rows)
        [→ choose_approval → approve_refused_guards (guards.on_refusal: ask, a refused run only: approval.py)]
        → publish_partition (atomic) ─┬─ (no opensearch section) ───────────────────────────────► report
                                      └► choose_rebuild ─┬► start_rebuild → wait_until_searchable ─┬► smoke_query ► report
                                                         └► push_changes → verify_pushes ──────────┘

publish_partition emits an event of the catalog asset, smoke_query one of the live index's asset
(pipeline/airflow/assets.py): downstream DAGs schedule on them.

Heavy imports (pyarrow, oss2, pyodps, duckdb, the SDKs) happen inside the tasks, so parsing the DAG
file costs only the YAML and pydantic validation.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, get_current_context, task, teardown

from pipeline.airflow.approval import approval_of, ask_before_publishing
from pipeline.airflow.assets import index_assets
from pipeline.airflow.failures import FailFastPolicy
from pipeline.airflow.lineage import (
    describe_inventory_load,
    describe_load,
    describe_publish,
    describe_push,
    describe_rebuild,
    lineage_task,
)
from pipeline.airflow.notify import dag_callbacks
from pipeline.airflow.outcome import attach_failure_recorder
from pipeline.airflow.params import index_params
from pipeline.airflow.sensors import RebuildSensor
from pipeline.assets import index_asset_ids
from pipeline.config import IndexConfig
from pipeline.opensearch.rebuild import settings_for

DOC = """\
### Image index `{name}`

{description}

Lists `oss://{bucket}/` under {prefixes}, derives one catalog row per image (`id`, `source_image`,
`cate_id`) and stages them in `{table}__staging`; only when every guard passes on the staged rows is
partition `ds` of `{table}` (connection `{warehouse_conn}`) replaced with them, atomically.
{rebuild_doc}
* **Partition date**: the `partition_date` Param, else the logical date in `{timezone}`
  (manual runs: the time the run was requested).
* **Params**: `partition_date` (YYYY-MM-DD or YYYYMMDD, not after today unless `allow_future_partition`),
  `prefixes` (instead of the config's; within them unless `source.allow_param_prefixes_outside`),
  `dry_run` (list and count only),
  `rebuild_mode` (full, delta or auto instead of the config's), `skip_rebuild`, `force_rebuild` (rebuild
  even from a partition older than the newest),
  `override_guards` (pass named guards deliberately: empty, shrink, duplicates, unmapped, skipped).
  A malformed value is refused when the run is triggered; the rest when it starts (`resolve_partition`).
* **A refused guard** {refusal}.
* **Retries** are for what a retry may cure (5xx, throttling, timeouts); an error no retry can fix (a bad
  Param, refused credentials, a failed guard or build) fails its task on the first try.
* Run reports, also of failed runs: `<report dir>/{name}/<ds>/<run id>.json`, the latest non-dry run's
  as `<ds>.json`, one line per run in `runs.jsonl`. Config file: `{config_path}`.
* **Alerts** (config `notifications`, one message per run and chat): {alerts}.
* **Assets** (schedule downstream DAGs on them; the extra of each event holds `ds` and the run's
  figures): {assets}.
"""

REBUILD_DOC = """
Then (`choose_rebuild`, rebuild mode `{mode}`) either starts a full rebuild of OpenSearch table `{table}`
(connection `{conn}`, pool `{pool}`) from that partition and waits in the triggerer until the new
generation is live, or pushes only the documents that changed against the live partition and verifies
each by primary key; either way a smoke query proves it. A partition older than the newest one is
written but never rebuilt from unless `force_rebuild` is set.
"""


def dag_id_for(config: IndexConfig) -> str:
    return f"image_index_{config.name}"


def _doc(config: IndexConfig, config_path: Path | str) -> str:
    os_cfg = config.opensearch
    ids = index_asset_ids(config)
    assets = f"`{ids.catalog.name}` (`{ids.catalog.uri}`), an event per published partition"
    if ids.live is not None:
        assets += f"; `{ids.live.name}` (`{ids.live.uri}`), an event per partition proven live"
    rebuild_doc = (
        REBUILD_DOC.format(table=os_cfg.table, conn=os_cfg.conn_id, pool=os_cfg.pool_name, mode=os_cfg.rebuild.mode)
        if os_cfg else ""
    )
    return DOC.format(
        name=config.name,
        description=config.description,
        bucket=config.source.bucket,
        prefixes=", ".join(f"`{p}`" for p in config.source.prefixes),
        table=config.warehouse.table,
        warehouse_conn=config.warehouse.conn_id,
        timezone=config.timezone,
        config_path=config_path,
        rebuild_doc=rebuild_doc,
        alerts="; ".join(f"{n.kind} connection `{n.conn_id}` on {', '.join(n.on)}" for n in config.notifications)
        or "none",
        assets=assets,
        refusal=(f"waits for approval in `approve_refused_guards` (Required Actions): approve publishes, reject or "
                 f"no answer within {config.guards.approval_timeout_hours:g} h ends the run failed"
                 if config.guards.on_refusal == "ask" else
                 "fails `check_partition`: rerun with `override_guards` naming it to pass it deliberately"),
    )


def build_dag(config: IndexConfig, config_path: Path | str) -> DAG:
    """The DAG for one index."""
    os_cfg = config.opensearch
    assets = index_assets(config)  # from the config alone: parsing stays free of network and database
    with DAG(
        dag_id=dag_id_for(config),
        description=config.description or f"OSS images → {config.warehouse.table} partitions",
        schedule=config.schedule,
        start_date=pendulum.parse(config.start_date, tz=config.timezone),
        catchup=False,
        max_active_runs=1,
        default_args={
            "owner": config.owner,
            "retries": config.retries,
            "retry_delay": timedelta(minutes=config.retry_delay_minutes),
            "retry_exponential_backoff": True,
            "retry_policy": FailFastPolicy(),  # terminal errors fail at once (pipeline/airflow/failures.py)
        },
        tags=sorted({"image-search", "opensearch", f"index:{config.name}", *config.tags}),
        doc_md=_doc(config, config_path),
        params=index_params(config),
        # The index's chats (config `notifications`): once per run, on the run's outcome (notify.py).
        **dag_callbacks(config),
    ) as dag:

        @task
        def resolve_partition() -> str:
            from pipeline.airflow.params import resolve_run_partition

            context = get_current_context()
            dag_run = context["dag_run"]
            return resolve_run_partition(config, context["params"], dag_run.logical_date, dag_run.run_after)

        routes = config.source.inventory is not None  # a graph with both routes and a branch between them
        ask = config.guards.on_refusal == "ask"  # a refused guard waits for approval instead of failing the run

        # The loads, the publish, the rebuild and the pushes are @tasks whose OpenLineage events name what
        # they read and write (pipeline/airflow/lineage.py); the loads and pushes send metrics (metrics.py).
        @lineage_task(config, describe_load, pool=config.load_pool or "default_pool")
        def load_partition(partition: str) -> dict:
            from pipeline.airflow.metrics import load_metrics, send_gauges
            from pipeline.stages import load_partition as load

            params = get_current_context()["params"]
            result = load(config, partition, prefixes=params.get("prefixes"), dry_run=bool(params.get("dry_run")))
            send_gauges(config.name, load_metrics(result.as_dict()))
            route = get_current_context()["ti"].xcom_pull(task_ids="choose_route", key="route") if routes else None
            return {**result.as_dict(), "route_reason": (route or {}).get("reason")}

        @task.branch
        def choose_route(partition: str) -> str:
            from pipeline.airflow.routes import choose_load_route

            context = get_current_context()
            route = choose_load_route(config, partition, context["params"])
            context["ti"].xcom_push(key="route", value=route)
            return route["task_id"]

        @lineage_task(config, describe_inventory_load, pool=config.load_pool or "default_pool")
        def load_from_inventory(partition: str) -> dict:
            from pipeline.airflow.metrics import load_metrics, send_gauges
            from pipeline.stages import load_partition_from_inventory

            context = get_current_context()
            route = context["ti"].xcom_pull(task_ids="choose_route", key="route") or {}
            result = load_partition_from_inventory(config, partition, prefixes=context["params"].get("prefixes"),
                                                   run_name=route.get("run"))  # the run the route was chosen on
            send_gauges(config.name, load_metrics(result.as_dict()))
            return {**result.as_dict(), "route_reason": route.get("reason")}

        # With both routes, one of the loads is skipped: check_partition runs after whichever ran.
        @task(trigger_rule="none_failed_min_one_success" if routes else "all_success")
        def check_partition(partition: str) -> dict:
            from pipeline.airflow.state import get_live_partition, get_live_record
            from pipeline.stages import check_partition as check
            from pipeline.stages import live_baseline, open_index_warehouse

            load_result = pulled_load(get_current_context()["ti"])
            if load_result["dry_run"]:
                return {"dry_run": True}
            started = time.monotonic()
            warehouse = open_index_warehouse(config)
            staging = warehouse.staging()  # the guards judge the staged rows: nothing is published yet
            partitions = warehouse.partitions()
            live = get_live_partition(config.name)
            baseline, baseline_ds = live_baseline(warehouse, partition, get_live_record(config.name))
            stats, guards = check(
                staging, partition, config.warehouse.table,
                load=load_result, limits=config.guards, baseline=baseline,
                overrides=get_current_context()["params"].get("override_guards") or (),
                id_rule=config.id_rule.kind,
                refuse=not ask,  # ask: a refused guard is in the verdict, and choose_approval reads it
            )
            changes = staging.id_changes(partition, baseline_ds, previous=warehouse) if baseline_ds else None
            # What a delta would push: only against the live partition, intact, and not this ds itself.
            row_changes = (staging.row_changes(partition, live, previous=warehouse).as_dict()
                           if os_cfg is not None and live and live != partition and live in partitions else None)
            return {
                "dry_run": False,
                "snapshot_at": load_result.get("snapshot_at"),
                "row_changes": row_changes,
                "stats": stats.as_dict(),
                "guards": [g.as_dict() for g in guards],
                "baseline_ds": baseline_ds,
                "baseline_stats": baseline.as_dict() if baseline else None,  # what the guards compared with
                "live_ds": live,  # before this run: the smoke samples ids new against it
                "id_changes": changes.as_dict() if changes else None,
                "partitions": partitions,
                "seconds": round(time.monotonic() - started, 3),
            }

        # Its success records an event of the catalog asset (a skipped or failed task records none). With
        # `ask`, after either choose_approval's direct path or an approval (the other one skipped).
        @lineage_task(config, describe_publish, outlets=[assets.catalog],
                      trigger_rule="none_failed_min_one_success" if ask else "all_success")
        def publish_partition(partition: str, checked: dict) -> dict:
            from airflow.sdk.exceptions import AirflowSkipException

            from pipeline.airflow.assets import catalog_event_extra
            from pipeline.airflow.state import set_live_partition
            from pipeline.approval import approved_guards
            from pipeline.stages import publish_partition as publish

            if checked.get("dry_run"):  # skipped, not succeeded: no asset event says a partition was published
                raise AirflowSkipException("dry run: nothing was written, so nothing to publish")
            if ask:  # a refused guard passes only with its approval recorded (not e.g. a task marked success)
                approved_guards(config.name, partition, checked, approval_of(get_current_context()["ti"], checked))
            published = publish(config, partition)
            if os_cfg is None:  # no index to rebuild: the published partition is the product
                set_live_partition(config.name, partition, checked["stats"])
            context = get_current_context()
            context["outlet_events"][assets.catalog].extra = catalog_event_extra(
                config, partition, checked, published, pulled_load(context["ti"]))
            return published

        # Named `partition`, not `ds`: Airflow reserves `ds` for its own (UTC) context value.
        partition = resolve_partition()
        # Created in the graph's order (the report lists tasks in it): the branch, the loads, the check.
        if routes:
            route = choose_route(partition)
            loaded = [load_partition(partition), load_from_inventory(partition)]
            route >> loaded
        else:
            loaded = [load_partition(partition)]
        checked = check_partition(partition)
        loaded >> checked
        gate = ask_before_publishing(config, checked, load_of=pulled_load) if ask else []
        published = publish_partition(partition, checked)
        if gate:
            gate >> published

        upstream: Any = published
        if os_cfg is not None:
            settings = asdict(settings_for(os_cfg, config.guards))  # JSON-able: it travels to the trigger

            # Retries (and reruns) are safe: reindex is not idempotent, so each attempt records what it
            # started in a Variable keyed by the run, and the next attempt follows that build instead of
            # starting a second one (pipeline/opensearch/rebuild.py, resume_rebuild).
            # none_failed: also after a dry run's skipped publish (it then chooses the full path, which
            # starts nothing and says why).
            @task.branch(trigger_rule="none_failed")
            def choose_rebuild(partition: str, checked: dict) -> str:
                from pipeline.airflow.state import get_live_record
                from pipeline.delta import choose_rebuild as choose

                context = get_current_context()
                decision = choose(config, partition, checked, get_live_record(config.name), context["params"])
                context["ti"].xcom_push(key="decision", value=decision)
                return decision["task_id"]

            @lineage_task(config, describe_rebuild, pool=os_cfg.pool_name)
            def start_rebuild(partition: str, checked: dict) -> dict:
                from pipeline.airflow.state import get_last_push_at, get_rebuild_attempt, set_rebuild_attempt
                from pipeline.stages import start_index_rebuild

                context = get_current_context()
                params, run_id = context["params"], context["dag_run"].run_id
                return start_index_rebuild(
                    config, partition, checked,
                    skip=bool(params.get("skip_rebuild")), force=bool(params.get("force_rebuild")),
                    earlier_attempt=get_rebuild_attempt(config.name, run_id),
                    remember=lambda attempt: set_rebuild_attempt(config.name, run_id, attempt),
                    last_push_at=get_last_push_at(config.name),
                )

            # Pushes are idempotent (add replaces, delete of a missing id succeeds): a retry resumes after
            # the last request answered OK, which each attempt records in a Variable keyed by the run.
            @lineage_task(config, describe_push, pool=os_cfg.pool_name)
            def push_changes(partition: str, checked: dict) -> dict:
                from pipeline.airflow.metrics import push_metrics, send_gauges
                from pipeline.airflow.state import get_push_progress, set_push_progress
                from pipeline.delta import push_index_changes

                run_id = get_current_context()["dag_run"].run_id
                pushed = push_index_changes(
                    config, partition, checked, earlier=get_push_progress(config.name, run_id),
                    remember=lambda progress: set_push_progress(config.name, run_id, progress),
                )
                send_gauges(config.name, push_metrics(pushed))
                return pushed

            @task
            def verify_pushes(partition: str, checked: dict) -> dict:
                from pipeline.delta import verify_index_changes

                return verify_index_changes(config, partition, checked)

            # After whichever path ran (the other is skipped by the branch). Its success (the partition
            # proven live) records an event of the live asset; skipped when the full path started no build.
            @task(trigger_rule="none_failed_min_one_success", outlets=[assets.live])
            def smoke_query(partition: str, checked: dict) -> list[dict]:
                from pipeline.airflow.assets import live_event_extra
                from pipeline.airflow.state import (
                    forget_push_progress,
                    forget_rebuild_attempt,
                    get_live_record,
                    set_live_partition,
                )
                from pipeline.delta import run_delta_smoke_queries
                from pipeline.stages import run_smoke_queries

                context = get_current_context()
                ti = context["ti"]
                decision = ti.xcom_pull(task_ids="choose_rebuild", key="decision") or {"mode": "full"}
                started = ti.xcom_pull(task_ids="start_rebuild") if decision["mode"] == "full" else None
                # The trigger rule lets this task run after either path, and check_partition (an argument)
                # always succeeds first: so a full path that started no build (a dry run, skip_rebuild, an
                # older partition) must stop here, or it would mark a partition live that never went live.
                if decision["mode"] == "full" and not (started or {}).get("started"):
                    from airflow.sdk.exceptions import AirflowSkipException

                    raise AirflowSkipException("no rebuild was started for this run: nothing went live")
                verified = ti.xcom_pull(task_ids="verify_pushes") if decision["mode"] == "delta" else None
                if verified and verified.get("samples") and any(verified["samples"].values()):
                    results = run_delta_smoke_queries(config, partition, verified)
                else:  # a full rebuild, or a delta that pushed nothing: the index answers for this partition
                    results = run_smoke_queries(config, partition, live_ds=checked.get("live_ds"))
                previous = get_live_record(config.name) or {}
                if decision["mode"] == "full":  # a build started (else skipped above) and went live
                    how = {"mode": "full", "last_full_at": time.time(), "last_full_ds": partition}
                else:  # pushed: the last full rebuild is still the one on record
                    how = {"mode": decision["mode"], **{k: previous.get(k) for k in ("last_full_at", "last_full_ds")}}
                set_live_partition(config.name, partition, checked.get("stats"), how)  # proven live: the next baseline
                run_id = context["dag_run"].run_id
                forget_rebuild_attempt(config.name, run_id)  # nothing to follow
                forget_push_progress(config.name, run_id)
                context["outlet_events"][assets.live].extra = live_event_extra(
                    config, partition, checked, decision, started, ti.xcom_pull(task_ids="wait_until_searchable"),
                    ti.xcom_pull(task_ids="push_changes") if decision["mode"] == "delta" else None, verified)
                return results

            decided = choose_rebuild(partition, checked)
            published >> decided
            started = start_rebuild(partition, checked)
            waited = RebuildSensor(task_id="wait_until_searchable", handle=started["handle"], settings=settings,
                                   index=config.name)
            pushed = push_changes(partition, checked)
            verified = verify_pushes(partition, checked)
            smoked = smoke_query(partition, checked)
            decided >> [started, pushed]
            started >> waited >> smoked
            pushed >> verified >> smoked
            upstream = smoked

        # The report runs whatever happened upstream, and a failed run still fails: as a teardown
        # (trigger rule all_done_setup_success, i.e. all_done without setups) it is not counted when
        # Airflow decides the run's state from its leaves (DagRun.update_state), so smoke_query (or
        # whichever task ends the chain) decides it, failed or upstream_failed included. Unlike a plain
        # all_done leaf, whose success would mark a failed run successful; and a DAG's fail_fast skips
        # every task but teardowns.
        @teardown
        def report() -> dict:
            from pipeline.airflow.outcome import run_facts
            from pipeline.stages import write_run_report

            context = get_current_context()
            ti = context["ti"]
            pulled = {
                name: ti.xcom_pull(task_ids=name)
                for name in ("check_partition", "publish_partition", "start_rebuild",
                             "wait_until_searchable", "push_changes", "verify_pushes", "smoke_query")
            }
            pulled["choose_rebuild"] = ti.xcom_pull(task_ids="choose_rebuild", key="decision")
            pulled["load_partition"] = pulled_load(ti)  # whichever route loaded
            if ask:
                # who answered, when, why (None: nothing was asked)
                pulled["approve_refused_guards"] = approval_of(ti, pulled["check_partition"])
            # Pulled, not passed as an argument: a failed resolve_partition must not stop the report.
            partition = ti.xcom_pull(task_ids="resolve_partition")
            return write_run_report(config, partition, pulled, run_facts(context))

        attach_failure_recorder(dag.tasks)  # each task's error message, for the report (outcome.py)
        upstream >> report()

    return dag


LOAD_TASKS = ("load_partition", "load_from_inventory")


def pulled_load(ti: Any) -> dict | None:
    """The load's result, from the route ``choose_route`` chose (without routes, ``load_partition``). Never
    "whichever has an XCom": a skipped task keeps an earlier try's XCom when a run is cleared, and the
    guards would judge the other route's counts."""
    route = ti.xcom_pull(task_ids="choose_route", key="route")
    task_id = route["task_id"] if route else LOAD_TASKS[0]
    return ti.xcom_pull(task_ids=task_id)
