"""Builds one Airflow DAG per index config. Wiring only: the work happens in ``pipeline.stages``.

Heavy imports (pyarrow, oss2, pyodps, duckdb) happen inside the tasks, so parsing the DAG file costs
only the YAML and pydantic validation.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, get_current_context, task

from pipeline.config import IndexConfig

DOC = """\
### Image index `{name}`

{description}

Lists `oss://{bucket}/` under {prefixes}, derives one catalog row per image (`id`, `source_image`,
`cate_id`) and replaces partition `ds` of `{table}` (connection `{warehouse_conn}`) in one commit.

* **Partition date**: the `partition_date` Param, else the logical date in `{timezone}`
  (manual runs: the time the run was requested).
* **Params**: `partition_date`, `prefixes` (override the config's list), `dry_run` (list and count only).
* Config file: `{config_path}`.
"""


def dag_id_for(config: IndexConfig) -> str:
    return f"image_index_{config.name}"


def build_dag(config: IndexConfig, config_path: Path | str) -> DAG:
    """The DAG for one index: resolve ds → load partition → check partition."""
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
        },
        tags=sorted({"image-search", "opensearch", f"index:{config.name}", *config.tags}),
        doc_md=DOC.format(
            name=config.name,
            description=config.description,
            bucket=config.source.bucket,
            prefixes=", ".join(f"`{p}`" for p in config.source.prefixes),
            table=config.warehouse.table,
            warehouse_conn=config.warehouse.conn_id,
            timezone=config.timezone,
            config_path=config_path,
        ),
        params={
            "partition_date": Param(
                None,
                type=["null", "string"],
                description="Partition to write, YYYY-MM-DD or YYYYMMDD. Empty: the run's date.",
            ),
            "prefixes": Param(
                None,
                type=["null", "array"],
                items={"type": "string"},
                description="List these OSS prefixes instead of the config's.",
            ),
            "dry_run": Param(False, type="boolean", description="List and count only; write nothing."),
        },
    ) as dag:

        @task
        def resolve_partition() -> str:
            from pipeline.dates import resolve_partition_date

            context = get_current_context()
            dag_run = context["dag_run"]
            return resolve_partition_date(
                context["params"].get("partition_date"),
                dag_run.logical_date,
                dag_run.run_after,
                config.timezone,
            )

        @task(pool=config.load_pool or "default_pool")
        def load_partition(partition: str) -> dict:
            from pipeline.stages import load_partition as load

            params = get_current_context()["params"]
            result = load(config, partition, prefixes=params.get("prefixes"), dry_run=bool(params.get("dry_run")))
            return result.as_dict()

        @task
        def check_partition(partition: str, load_result: dict) -> dict:
            import logging

            from pipeline.report import summarize, write_report
            from pipeline.stages import check_partition as check
            from pipeline.stages import open_index_warehouse

            report: dict = {"index": config.name, "ds": partition, "load": load_result}
            if load_result["dry_run"]:
                logging.getLogger(__name__).info("dry run: nothing was written, so nothing to check")
            else:
                stats = check(open_index_warehouse(config), partition, config.warehouse.table)
                report["partition"] = stats.as_dict()
            path = write_report(config.name, partition, report)
            logging.getLogger(__name__).info("run report %s\n%s", path, summarize(report))
            return report

        # Named `partition`, not `ds`: Airflow reserves `ds` for its own (UTC) context value.
        partition = resolve_partition()
        check_partition(partition, load_partition(partition))

    return dag
