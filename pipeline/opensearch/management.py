"""OpenSearch management (``alibabacloud-searchengine20211025``): instance and table status,
generations, reindex, change history, pause policies; each call retried when that is safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from pipeline.errors import ReindexNotStartedError, TransientOpenSearchError
from pipeline.opensearch.connection import OpenSearchConnection, translate_error
from pipeline.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")


class OpenSearchManagement:
    """The management calls the rebuild needs, each retried when that is safe."""

    def __init__(self, conn: OpenSearchConnection, retry: RetryPolicy | None = None) -> None:
        from alibabacloud_searchengine20211025.client import Client
        from alibabacloud_tea_openapi import models as open_api_models

        self.conn = conn
        self._retry = retry or RetryPolicy()
        timeout_ms = int(conn.timeout_s * 1000)
        self._client = Client(
            open_api_models.Config(
                credential=conn.sdk_credential(),  # asked before every call: refreshed tokens are used
                endpoint=conn.endpoint,
                protocol=conn.protocol,
                region_id=conn.region,
                connect_timeout=timeout_ms,
                read_timeout=timeout_ms,
            )
        )

    # -- plumbing ---------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], Any], retry: bool = True) -> dict:
        def once() -> dict:
            try:
                return _body(fn())
            except Exception as exc:  # the SDK raises a zoo of types; translate_error sorts them
                raise translate_error(exc, self.conn, what) from None

        return self._retry.call(what, once) if retry else once()

    async def _call_async(self, what: str, coro: Any) -> dict:
        """One attempt, no retry: the trigger's polling loop is its own retry."""
        try:
            return _body(await coro)
        except Exception as exc:
            raise translate_error(exc, self.conn, what) from None

    def _generation_request(self, table: str, generation_id: int) -> tuple[Any, Any, Any]:
        """GetTableGeneration as the SDK's ``get_table_generation_with_options`` sends it (same action,
        path, signature), for :meth:`generation`: the SDK's response model keeps only ``generationId``
        and ``status``, and drops whatever else the service answers, such as the build's figures."""
        from alibabacloud_tea_openapi import utils_models
        from darabonba.runtime import RuntimeOptions
        from darabonba.url import Url

        iid, name, gen = (Url.percent_encode(v) for v in (self.conn.instance_id, table, str(generation_id)))
        params = utils_models.Params(
            action="GetTableGeneration", version="2021-10-25", protocol="HTTPS",
            pathname=f"/openapi/ha3/instances/{iid}/tables/{name}/index_versions/{gen}",
            method="GET", auth_type="AK", style="ROA", req_body_type="json", body_type="json",
        )
        return params, utils_models.OpenApiRequest(headers={}), RuntimeOptions()

    # -- reads (safe to repeat) -------------------------------------------------------------------

    def instance(self) -> dict:
        return self._call("GetInstance", lambda: self._client.get_instance(self.conn.instance_id)).get("result", {})

    def table(self, table: str) -> dict:
        return self._call("GetTable", lambda: self._client.get_table(self.conn.instance_id, table)).get("result", {})

    def generation_ids(self, table: str) -> list[int]:
        body = self._call(
            "ListTableGenerations", lambda: self._client.list_table_generations(self.conn.instance_id, table)
        )
        return sorted(int(g["generationId"]) for g in body.get("result") or [] if g.get("generationId") is not None)

    def generation(self, table: str, generation_id: int) -> dict:
        """GetTableGeneration's whole result: ``generationId``, ``status`` and any other field the service
        answers (the build's figures, where it reports them: see pipeline/opensearch/figures.py)."""
        request = self._generation_request(table, generation_id)
        body = self._call("GetTableGeneration", lambda: self._client.call_api(*request))
        return body.get("result") or {}

    async def generation_async(self, table: str, generation_id: int) -> dict:
        request = self._generation_request(table, generation_id)
        body = await self._call_async("GetTableGeneration", self._client.call_api_async(*request))
        return body.get("result") or {}

    def data_source_tasks(self) -> list[dict]:
        body = self._call(
            "ListDataSourceTasks", lambda: self._client.list_data_source_tasks(self.conn.instance_id)
        )
        return list(body.get("result") or [])

    async def data_source_tasks_async(self) -> list[dict]:
        body = await self._call_async(
            "ListDataSourceTasks", self._client.list_data_source_tasks_async(self.conn.instance_id)
        )
        return list(body.get("result") or [])

    def pause_policies(self) -> dict[str, dict]:
        body = self._call("ListPausePolicys", lambda: self._client.list_pause_policys(self.conn.instance_id))
        return dict(body.get("result") or {})

    # -- the one write ----------------------------------------------------------------------------

    def reindex(self, table: str, partition_spec: str, data_time_sec: int | None = None) -> None:
        """Start a full rebuild from ``partition_spec`` (``ds=YYYYMMDD``); with ``data_time_sec`` the build
        then replays the documents pushed since that time (epoch seconds). Never retried here: a failed
        call may still have started a build. Raises :class:`ReindexNotStartedError` only when it certainly
        did not (the request never left: refused connection, unknown host, connect timeout; or the service
        throttled it), the one case a caller may simply repeat."""
        from alibabacloud_searchengine20211025 import models

        try:
            self._client.reindex(self.conn.instance_id, table, models.ReindexRequest(partition=partition_spec,
                                                                                data_time_sec=data_time_sec))
        except Exception as exc:
            error = translate_error(exc, self.conn, "Reindex")
            if isinstance(error, TransientOpenSearchError) and _certainly_not_started(exc):
                raise ReindexNotStartedError(f"{error} (the request started nothing)", error.retry_after_s) from None
            raise error from None


def _body(response: Any) -> dict:
    """The answer's body as a dict: from an SDK response model, or from ``call_api``'s raw answer."""
    if isinstance(response, dict):
        body = response.get("body")
        return body if isinstance(body, dict) else {}
    return response.body.to_map()


# urllib3's words for a connection that was never made: no request bytes were sent.
_NEVER_CONNECTED = ("NewConnectionError", "Failed to establish a new connection", "NameResolutionError",
                    "ConnectTimeoutError", "Connection refused")


def _certainly_not_started(exc: Exception) -> bool:
    from alibabacloud_tea_openapi.exceptions import ThrottlingException

    if isinstance(exc, ThrottlingException) or "Throttling" in str(getattr(exc, "code", "") or ""):
        return True  # denied at the gateway, before any work
    text = f"{exc} {getattr(exc, 'inner_exception', '')}"
    return any(words in text for words in _NEVER_CONNECTED)
