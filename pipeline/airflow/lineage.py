"""OpenLineage for the DAG's TaskFlow tasks: what each one reads and writes, with the run's ``ds``.

How it reaches the OpenLineage provider, and why this way. For a ``@task`` the provider has no
extractor (its PythonExtractor is registered for ``PythonOperator`` only; a TaskFlow task's type is
``_PythonDecoratedOperator``), so it falls back to hook-level lineage, then to the task's static
``inlets``/``outlets``. Hook lineage (``get_hook_lineage_collector().add_input_asset(...)``) carries
Airflow assets, and the provider keeps only those whose URI scheme some installed provider maps to an
OpenLineage dataset (here: ``file`` only): an ``oss://``, MaxCompute or OpenSearch asset is silently
dropped. Static inlets/outlets are fixed when the DAG is parsed, so they cannot name the run's
partition, nor the prefixes a run's ``prefixes`` Param chose. What the provider does honour for any
operator is its "operator facets" (the DefaultExtractor): ``get_openlineage_facets_on_start /
_on_complete / _on_failure`` methods on the operator, called after the task's arguments are rendered.
So these tasks are ``@task``s of a small subclass (``lineage_task``) that has those methods and asks a
``describe`` function of the index's config what the task reads and writes. Nothing here runs when the
DAG is parsed, nor at all unless the provider is configured (``[openlineage] transport``); the provider
runs it in a forked child (or a thread) and logs, never raises, what fails: lineage cannot fail a run.

Dataset names. The OpenLineage naming spec has no entry for OSS, MaxCompute or OpenSearch; we follow
its pattern (namespace = the data source, globally unique; name = the dataset within it):

    OSS prefix                oss://<bucket>          <prefix> as configured (``catalog/``; ``/`` = all)
                              (as s3://<bucket> and gs://<bucket>; bucket names are global in OSS)
    MaxCompute table          maxcompute://<project>  <table>   (``<table>__staging`` for the load)
                              the partition in the ``imageIndexPartition`` facet: {"column": "ds", ...}
    local warehouse (fs)      file                    <root>/<table>
    OpenSearch table          opensearch://<instance id>  <table>   (Alibaba Cloud OpenSearch instance)

Every event's run carries the ``imageIndex`` run facet {index, ds, task, details}; the schema of both
custom facets is docs/lineage-facets.schema.json.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow.providers.standard.decorators.python import _PythonDecoratedOperator
from airflow.sdk.bases.decorator import task_decorator_factory

from pipeline.config import IndexConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetRef:
    """One dataset as OpenLineage names it; ``ds``: the partition read or written; ``rows``: rows written."""

    namespace: str
    name: str
    ds: str | None = None
    rows: int | None = None


@dataclass(frozen=True)
class TaskLineage:
    """What one task reads and writes, and the run details for the ``imageIndex`` facet."""

    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)
    details: dict = field(default_factory=dict)


# describe(config, args, params, result): args are the task's rendered positional arguments (the first
# is always the partition ds), params the run's Params, result the task's return value (None at start
# or on failure).
Describe = Callable[[IndexConfig, Sequence[Any], Mapping[str, Any], Any], TaskLineage]


# ---- dataset names -------------------------------------------------------------------------------


def oss_dataset(bucket: str, prefix: str) -> DatasetRef:
    return DatasetRef(f"oss://{bucket}", prefix or "/")


def warehouse_dataset(config: IndexConfig, table: str, ds: str | None, rows: int | None = None) -> DatasetRef:
    """The catalog table (or its staging table) of ``config``'s warehouse connection, partition ``ds``."""
    from pipeline.connections import extras, get_connection

    conn_id = config.warehouse.conn_id
    conn = get_connection(conn_id, "type 'maxcompute' or 'fs'")
    extra = extras(conn, conn_id)
    if (conn.conn_type or "").lower() == "maxcompute":
        return DatasetRef(f"maxcompute://{extra.get('project')}", table, ds, rows)
    root = str(extra.get("path") or conn.host or "").rstrip("/")
    return DatasetRef("file", f"{root}/{table}", ds, rows)


def opensearch_dataset(config: IndexConfig, rows: int | None = None) -> DatasetRef:
    from pipeline.connections import extras, get_connection

    assert config.opensearch is not None
    conn_id = config.opensearch.conn_id
    instance = extras(get_connection(conn_id, "OpenSearch"), conn_id).get("instance_id")
    return DatasetRef(f"opensearch://{instance}", config.opensearch.table, rows=rows)


def staging_table(config: IndexConfig) -> str:
    from pipeline.schema import STAGING_SUFFIX

    return f"{config.warehouse.table}{STAGING_SUFFIX}"


# ---- what each task reads and writes -------------------------------------------------------------


def _load_details(result: Mapping[str, Any] | None) -> dict:
    if not result:
        return {}
    keep = ("route", "dry_run", "listed", "kept", "skipped", "rows_written", "pages", "seconds", "route_reason")
    return {k: result.get(k) for k in keep if k in result}


def describe_load(config: IndexConfig, args: Sequence[Any], params: Mapping[str, Any], result: Any) -> TaskLineage:
    """load_partition: the listed OSS prefixes → partition ds of the staging table (nothing on a dry run)."""
    ds = str(args[0])
    prefixes = (result or {}).get("prefixes") or params.get("prefixes") or config.source.prefixes
    dry_run = (result or {}).get("dry_run", bool(params.get("dry_run")))
    rows = (result or {}).get("rows_written")
    outputs = [] if dry_run else [warehouse_dataset(config, staging_table(config), ds, rows)]
    return TaskLineage([oss_dataset(config.source.bucket, p) for p in prefixes], outputs, _load_details(result))


def describe_inventory_load(config: IndexConfig, args: Sequence[Any], params: Mapping[str, Any],
                            result: Any) -> TaskLineage:
    """load_from_inventory: the bucket inventory's files (the run read, once known) → the staging table."""
    from pipeline.oss.inventory.runs import inventory_base

    inventory = config.source.inventory
    assert inventory is not None
    ds = str(args[0])
    folder = inventory_base(config.source.bucket, inventory)
    manifest = ((result or {}).get("inventory") or {}).get("manifest")  # oss://<bucket>/<run folder>manifest.json
    if manifest:
        folder = manifest.removeprefix(f"oss://{inventory.bucket}/").rsplit("/", 1)[0] + "/"
    rows = (result or {}).get("rows_written")
    details = {**_load_details(result), "inventory": (result or {}).get("inventory")} if result else {}
    return TaskLineage([oss_dataset(inventory.bucket, folder)],
                       [warehouse_dataset(config, staging_table(config), ds, rows)], details)


def describe_publish(config: IndexConfig, args: Sequence[Any], params: Mapping[str, Any], result: Any) -> TaskLineage:
    """publish_partition: staged partition ds → partition ds of the catalog table (a dry run publishes nothing)."""
    ds, checked = str(args[0]), (args[1] if len(args) > 1 else None) or {}
    if checked.get("dry_run"):
        return TaskLineage(details={"dry_run": True})
    rows = (checked.get("stats") or {}).get("rows")
    return TaskLineage([warehouse_dataset(config, staging_table(config), ds)],
                       [warehouse_dataset(config, config.warehouse.table, ds, rows)],
                       {"seconds": (result or {}).get("seconds")} if result else {})


def describe_rebuild(config: IndexConfig, args: Sequence[Any], params: Mapping[str, Any], result: Any) -> TaskLineage:
    """start_rebuild: partition ds of the catalog table → the OpenSearch table (nothing if none started)."""
    ds = str(args[0])
    if result is not None and not result.get("started"):
        return TaskLineage(details={"started": False, "reason": result.get("reason")})
    handle = (result or {}).get("handle") or {}
    details = {"started": True, "reason": result.get("reason"), "generation_id": handle.get("generation_id"),
               "data_time_sec": result.get("data_time_sec")} if result else {}
    return TaskLineage([warehouse_dataset(config, config.warehouse.table, ds)], [opensearch_dataset(config)], details)


def describe_push(config: IndexConfig, args: Sequence[Any], params: Mapping[str, Any], result: Any) -> TaskLineage:
    """push_changes: partition ds and the live partition it is compared with → the OpenSearch table."""
    ds, checked = str(args[0]), (args[1] if len(args) > 1 else None) or {}
    inputs = [warehouse_dataset(config, config.warehouse.table, ds)]
    if checked.get("live_ds") and checked["live_ds"] != ds:
        inputs.append(warehouse_dataset(config, config.warehouse.table, str(checked["live_ds"])))
    pushed = None if result is None else int(result.get("adds", 0)) + int(result.get("deletes", 0))
    details = {k: result.get(k) for k in ("data_source", "adds", "deletes", "requests", "seconds")} if result else {}
    return TaskLineage(inputs, [opensearch_dataset(config, rows=pushed)], details)


# ---- the operator ----------------------------------------------------------------------------------


class LineageTaskOperator(_PythonDecoratedOperator):
    """A ``@task`` that answers the OpenLineage provider's operator-facet methods (see the module doc)."""

    def __init__(self, *, index_config: IndexConfig, describe: Describe, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._index_config = index_config
        self._describe = describe
        self._lineage_params: dict | None = None
        self._lineage_result: Any = None

    def execute(self, context: Any) -> Any:
        self._lineage_params = dict(context["params"])  # for the complete/failure events, after the context
        result = super().execute(context)
        self._lineage_result = result
        return result

    def _params(self) -> Mapping[str, Any]:
        if self._lineage_params is not None:
            return self._lineage_params
        try:  # the start event: the run's context is set (the provider calls us before execute)
            from airflow.sdk import get_current_context

            return dict(get_current_context()["params"])
        except Exception:
            return {}

    def _facets(self, result: Any, failed: bool = False) -> Any:
        from pipeline.airflow.lineage_facets import operator_lineage

        args = list(self.op_args or [])
        described = self._describe(self._index_config, args, self._params(), result)
        details = {**described.details, **({"failed": True} if failed else {})}
        return operator_lineage(described, index=self._index_config.name, ds=str(args[0]) if args else None,
                                task=self.task_id, details=details)

    def get_openlineage_facets_on_start(self) -> Any:
        return self._facets(None)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        return self._facets(self._lineage_result)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        return self._facets(None, failed=True)


def lineage_task(config: IndexConfig, describe: Describe, **kwargs: Any) -> Any:
    """``@task(**kwargs)``, whose OpenLineage events name what ``describe`` says the task reads and writes."""
    return task_decorator_factory(decorated_operator_class=LineageTaskOperator, index_config=config,
                                  describe=describe, **kwargs)
