"""Warehouses holding the catalog table, and ``open_warehouse`` to pick one from an Airflow connection.

    maxcompute connection  -> MaxComputeWarehouse (pyodps: the cloud, or the local MaxCompute server)
    fs connection          -> LocalWarehouse (Parquet + DuckDB under extra.path, or host; no server:
                              the benchmarks' baseline)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pipeline.connections import extras, get_connection
from pipeline.errors import ConnectionConfigError
from pipeline.warehouse.base import Warehouse
from pipeline.warehouse.local import LocalWarehouse

if TYPE_CHECKING:
    from pipeline.warehouse.maxcompute import MaxComputeWarehouse

__all__ = ["LocalWarehouse", "MaxComputeWarehouse", "Warehouse", "open_warehouse", "ACCEPTED_CONN_TYPES"]

log = logging.getLogger(__name__)

ACCEPTED_CONN_TYPES = ("maxcompute", "fs")


def __getattr__(name: str) -> Any:
    # pyodps takes about half a second to import; only pay for it when MaxCompute is used.
    if name == "MaxComputeWarehouse":
        from pipeline.warehouse.maxcompute import MaxComputeWarehouse

        return MaxComputeWarehouse
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_warehouse(conn_id: str, table: str, lifecycle_days: int) -> Warehouse:
    """The warehouse that Airflow connection ``conn_id`` points at.

    ``maxcompute``: extras ``project``, ``endpoint``, the credentials (``auth_type`` ...), optional
    ``region`` and ``tunnel_endpoint`` (see :meth:`MaxComputeWarehouse.from_airflow`).
    ``fs`` (Airflow's "File (path)" type): extra ``path`` (or ``host``) is the LocalWarehouse root.
    """
    conn = get_connection(conn_id, f"conn_type one of {list(ACCEPTED_CONN_TYPES)}")
    conn_type = (conn.conn_type or "").lower()
    if conn_type == "maxcompute":
        from pipeline.warehouse.maxcompute import MaxComputeWarehouse

        log.info("warehouse: MaxCompute table %s via connection %s", table, conn_id)
        return MaxComputeWarehouse.from_airflow(conn_id, table, lifecycle_days)
    if conn_type == "fs":
        path = extras(conn, conn_id).get("path") or conn.host
        if not path:
            raise ConnectionConfigError(
                f"Airflow connection {conn_id!r} (type fs) has neither extra.path nor host; "
                "set extra.path to the local warehouse root directory"
            )
        log.info("warehouse: local table %s under %s via connection %s", table, path, conn_id)
        return LocalWarehouse(root=path, table=table, lifecycle_days=lifecycle_days)
    raise ConnectionConfigError(
        f"Airflow connection {conn_id!r} has conn_type {conn.conn_type!r}; a warehouse connection "
        f"must be one of {list(ACCEPTED_CONN_TYPES)}"
    )
