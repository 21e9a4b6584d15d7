"""Reading Airflow connections: one lookup with one error, for every adapter.

Works wherever Airflow can resolve connections: in a task (through the supervisor), in the triggerer
(the async variant), or outside either (``AIRFLOW_CONN_*`` variables, a secrets backend).
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConnectionConfigError


def _not_defined(conn_id: str, kind: str) -> ConnectionConfigError:
    return ConnectionConfigError(
        f"Airflow connection {conn_id!r} is not defined: create it ({kind}) or set AIRFLOW_CONN_{conn_id.upper()}"
    )


def get_connection(conn_id: str, kind: str) -> Any:
    """The connection ``conn_id``; ``kind`` (e.g. "type 'oss'") completes the error message."""
    from airflow.sdk import BaseHook  # lazy: keeps DAG parsing cheap
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        raise _not_defined(conn_id, kind) from None


async def aget_connection(conn_id: str, kind: str) -> Any:
    """The same for an event loop (the triggerer refuses blocking lookups)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        return await BaseHook.aget_connection(conn_id)
    except AirflowNotFoundException:
        raise _not_defined(conn_id, kind) from None


def extras(conn: Any, conn_id: str) -> dict:
    """The connection's extra as a dict; anything else is a configuration error."""
    extra = conn.extra_dejson if conn.extra else {}
    if not isinstance(extra, dict):
        raise ConnectionConfigError(f"connection {conn_id!r}: extra must be a JSON object")
    return extra
