"""The local OpenSearch server's JSON configuration file: :func:`server_from_config`.

The configuration names the instance, its tables (schema, the warehouse partition source: a MaxCompute
project under ``warehouse.maxcompute`` {endpoint, project, access_key_id, access_key_secret, region} or a
local warehouse ``warehouse.root``; the OSS
endpoint images are read from, and ``auto_build_index``: whether GetTable reports Automatic Index
Rebuild on), the keys the management API accepts, the query user, fault knobs and ``report_build_figures``
(false: GetTableGeneration answers only its documented fields), and the push API's limits
``push_max_bytes_per_s`` (request bodies per data source per second, default 10 MiB) and
``push_retention_s`` (how long pushed increments are kept for a reindex to replay, default 3 days);
a secret may be given as ``<key>_env`` naming an environment variable instead of the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from localcloud.acs3 import AcsCredential
from localcloud.opensearch.build import MaxComputeSource
from localcloud.opensearch.engine import LocalEngine, TableSource
from localcloud.opensearch.faults import ENGINE_FAULT_KNOBS, EngineFaults
from localcloud.opensearch.pushing import DEFAULT_PUSH_MAX_BYTES_PER_S, DEFAULT_PUSH_RETENTION_S
from localcloud.opensearch.schema import DEMO_SCHEMA, load_table_schema, load_table_schema_file
from localcloud.opensearch.server import HttpFaults, LocalOpenSearchServer
from localcloud.ram import TokenAuthority


def _setting(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> Any:
    """``obj[key]``, or the environment variable named by ``obj[key + "_env"]`` (for secrets)."""
    if key in obj:
        return obj[key]
    env_name = obj.get(f"{key}_env")
    if env_name:
        if env_name not in os.environ:
            raise ValueError(f"{where}: {key}_env names {env_name!r}, which is not set in the environment")
        return os.environ[env_name]
    if required:
        raise ValueError(f"{where}: {key} (or {key}_env) is required")
    return None


HTTP_FAULT_KNOBS = ("unavailable_next", "throttle_next", "throttle_status", "throttle_retry_after",
                    "lose_reindex_answer_next")


def _knobs(value: Any, allowed: Sequence[str], where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or set(value) - set(allowed):
        raise ValueError(f"{where}: must be an object with keys among {list(allowed)}, got {value!r}")
    return dict(value)


def server_from_config(config: Mapping[str, Any], base_dir: str | Path = ".") -> LocalOpenSearchServer:
    """Build an unstarted server (and its engine) from the JSON config; relative paths are from ``base_dir``."""
    base = Path(base_dir)
    where = "opensearch server config"

    def path(value: str) -> Path:
        return (base / value).resolve() if not os.path.isabs(value) else Path(value)

    tables: dict[str, TableSource] = {}
    auto_build: set[str] = set()
    for name, spec in dict(_setting(config, "tables", where)).items():
        here = f"{where}: tables.{name}"
        if spec.get("auto_build_index"):
            auto_build.add(name)
        schema_spec = spec.get("schema", "demo")
        if schema_spec == "demo":
            schema = load_table_schema(DEMO_SCHEMA, "DEMO_SCHEMA")
        elif isinstance(schema_spec, str):
            schema = load_table_schema_file(path(schema_spec))
        else:
            schema = load_table_schema(schema_spec, f"{here}.schema")
        warehouse, oss = spec.get("warehouse") or {}, spec.get("oss") or {}
        odps = warehouse.get("maxcompute")
        maxcompute = None if odps is None else MaxComputeSource(
            endpoint=_setting(odps, "endpoint", f"{here}.warehouse.maxcompute"),
            project=_setting(odps, "project", f"{here}.warehouse.maxcompute"),
            access_key_id=_setting(odps, "access_key_id", f"{here}.warehouse.maxcompute"),
            access_key_secret=_setting(odps, "access_key_secret", f"{here}.warehouse.maxcompute"),
            region=odps.get("region"),
        )
        tables[name] = TableSource(
            schema=schema,
            maxcompute=maxcompute,
            warehouse_root=None if maxcompute else path(_setting(warehouse, "root", f"{here}.warehouse")),
            warehouse_table=_setting(warehouse, "table", f"{here}.warehouse"),
            oss_endpoint=_setting(oss, "endpoint", f"{here}.oss"),
            oss_access_key_id=_setting(oss, "access_key_id", f"{here}.oss"),
            oss_access_key_secret=_setting(oss, "access_key_secret", f"{here}.oss"),
            oss_region=oss.get("region", "cn-hangzhou"),
        )
    faults = EngineFaults(**_knobs(config.get("faults"), ENGINE_FAULT_KNOBS, f"{where}: faults"))
    engine = LocalEngine(
        path(_setting(config, "state_dir", where)), _setting(config, "instance_id", where), tables,
        max_decode_failure_fraction=float(config.get("max_decode_failure_fraction", 0.05)),
        fetch_workers=int(config.get("fetch_workers", 8)), faults=faults, default_table=config.get("default_table"),
        push_max_bytes_per_s=int(config.get("push_max_bytes_per_s", DEFAULT_PUSH_MAX_BYTES_PER_S)),
        push_retention_s=float(config.get("push_retention_s", DEFAULT_PUSH_RETENTION_S)),
    )
    engine.auto_build_index.update(auto_build)
    credentials = [
        AcsCredential(_setting(c, "access_key_id", f"{where}: credentials"),
                      _setting(c, "access_key_secret", f"{where}: credentials"))
        for c in _setting(config, "credentials", where)
    ]
    return LocalOpenSearchServer(
        engine, credentials, _setting(config, "query_user", where), _setting(config, "query_password", where),
        host=config.get("host", "127.0.0.1"), port=int(config.get("port", 0)),
        http_faults=HttpFaults(**_knobs(config.get("http_faults"), HTTP_FAULT_KNOBS, f"{where}: http_faults")),
        authority=TokenAuthority.from_hex(_setting(config, "sts_key_hex", where)) if _has(config, "sts_key_hex") else None,
        report_build_figures=bool(config.get("report_build_figures", True)),
    )


def _has(obj: Mapping[str, Any], key: str) -> bool:
    return key in obj or f"{key}_env" in obj
