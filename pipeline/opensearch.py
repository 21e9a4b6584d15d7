"""OpenSearch adapter: one Airflow connection, the management SDK and the HA3 query SDK.

Management (``alibabacloud-searchengine20211025``): instance and table status, generations, reindex,
change history, pause policies. Queries (``alibabacloud-ha3engine``): HA-syntax searches. SDK errors
are mapped into our hierarchy: 5xx, throttling (with ``x-acs-retry-after``) and unreachable endpoints
are transient and retried with backoff; everything else is terminal.

The connection (any ``conn_type``; ``generic`` is fine), documented in README.md::

    login / password   the query user and password set when the instance was bought
    extra.instance_id  e.g. ha-cn-zvp2iv9a401
    extra.endpoint     management endpoint, e.g. searchengine.cn-hangzhou.aliyuncs.com
    extra.region       e.g. cn-hangzhou
    extra.access_key_id, extra.access_key_secret, optional extra.security_token (STS)
    extra.query_endpoint  the instance's API domain, e.g. ha-cn-zvp2iv9a401.public.ha.aliyuncs.com
    extra.protocol (https), extra.query_protocol (http), extra.timeout_s (30)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pipeline.connections import aget_connection, extras, get_connection
from pipeline.errors import ConnectionConfigError, OpenSearchAccessError, OpenSearchError, TransientOpenSearchError
from pipeline.redact import register_secrets
from pipeline.retry import RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")

_ACCESS_CODES = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden", "NoPermission", "InvalidSecurityToken")
_NOT_FOUND_CODES = ("NotFound", "NotExist")


@dataclass(frozen=True)
class OpenSearchConnection:
    """Everything needed to reach one instance. Secrets stay out of ``repr``."""

    conn_id: str
    instance_id: str
    endpoint: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    query_endpoint: str = ""
    query_user: str = ""
    query_password: str = field(default="", repr=False)
    security_token: str | None = field(default=None, repr=False)
    region: str | None = None
    protocol: str = "https"
    query_protocol: str = "http"
    timeout_s: float = 30.0

    @classmethod
    def from_fields(
        cls, conn_id: str, extra: dict, login: str | None = None, password: str | None = None
    ) -> OpenSearchConnection:
        required = ("instance_id", "endpoint", "access_key_id", "access_key_secret", "query_endpoint")
        missing = [name for name in required if not extra.get(name)]
        if not login:
            missing.append("login (the query user)")
        if not password:
            missing.append("password (the query password)")
        if missing:
            raise ConnectionConfigError(
                f"OpenSearch connection {conn_id!r} lacks {', '.join(missing)}; see README.md, "
                "'Pointing it at the cloud', for the connection's form"
            )
        for name in ("protocol", "query_protocol"):
            if extra.get(name, "https" if name == "protocol" else "http") not in ("http", "https"):
                raise ConnectionConfigError(f"OpenSearch connection {conn_id!r}: {name} must be http or https")
        return cls(
            conn_id=conn_id,
            instance_id=extra["instance_id"],
            endpoint=_strip_scheme(extra["endpoint"]),
            access_key_id=extra["access_key_id"],
            access_key_secret=extra["access_key_secret"],
            query_endpoint=_strip_scheme(extra["query_endpoint"]),
            query_user=login or "",
            query_password=password or "",
            security_token=extra.get("security_token") or None,
            region=extra.get("region"),
            protocol=extra.get("protocol", "https"),
            query_protocol=extra.get("query_protocol", "http"),
            timeout_s=float(extra.get("timeout_s", 30.0)),
        )

    @classmethod
    def from_airflow(cls, conn_id: str) -> OpenSearchConnection:
        conn = get_connection(conn_id, "see README.md for its form")
        return cls._registered(conn_id, extras(conn, conn_id), conn.login, conn.password)

    @classmethod
    async def from_airflow_async(cls, conn_id: str) -> OpenSearchConnection:
        """The same, for the triggerer's event loop."""
        conn = await aget_connection(conn_id, "see README.md for its form")
        return cls._registered(conn_id, extras(conn, conn_id), conn.login, conn.password)

    @classmethod
    def _registered(cls, conn_id: str, extra: dict, login: str | None, password: str | None) -> OpenSearchConnection:
        made = cls.from_fields(conn_id, extra, login, password)
        register_secrets(*made.secrets())
        return made

    def secrets(self) -> list[str]:
        """The values that must never appear in logs, errors or reports."""
        return [s for s in (self.access_key_secret, self.security_token, self.query_password) if s]


def _strip_scheme(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1].rstrip("/")


def _describe_sdk_error(exc: Exception) -> tuple[str, str, int | None, float | None]:
    """(code, message, http status, retry-after seconds) of an SDK exception, without its request."""
    code = str(getattr(exc, "code", "") or "")
    message = str(getattr(exc, "message", "") or "")
    status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
    retry_after_ms = getattr(exc, "retry_after", None)  # x-acs-retry-after: the SDK reads milliseconds
    return code, message, status, (float(retry_after_ms) / 1000 if retry_after_ms else None)


def translate_error(exc: Exception, conn: OpenSearchConnection, what: str) -> OpenSearchError:
    """Map an SDK exception to our hierarchy; the message names the connection and the call."""
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
    from Tea.exceptions import TeaException, UnretryableException

    where = f"OpenSearch instance {conn.instance_id!r} (connection {conn.conn_id!r})"
    if isinstance(exc, UnretryableException) or isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        # Transport failures: the request may or may not have reached the server.
        inner = getattr(exc, "inner_exception", None) or exc
        return TransientOpenSearchError(f"{what}: cannot reach {where} at {conn.endpoint}: {type(inner).__name__}")
    code, message, status, retry_after = _describe_sdk_error(exc)
    request_id = getattr(exc, "request_id", None)
    suffix = f" [request id {request_id}]" if request_id else ""
    if isinstance(exc, ThrottlingException) or "Throttling" in code:
        return TransientOpenSearchError(
            f"{what}: {where} is throttling requests ({code}: {message}){suffix}", retry_after_s=retry_after
        )
    if isinstance(exc, ServerException) or (status is not None and int(status) >= 500):
        return TransientOpenSearchError(f"{what}: {where} answered {status} {code}: {message}{suffix}")
    if isinstance(exc, ClientException):
        if any(c in code for c in _ACCESS_CODES):
            return OpenSearchAccessError(
                f"{what}: {where} refused the credentials ({code}); check access_key_id / access_key_secret "
                f"of connection {conn.conn_id!r}{suffix}"
            )
        if any(c in code for c in _NOT_FOUND_CODES) or status == 404:
            return OpenSearchAccessError(f"{what}: {where}: {code}: {message}; check instance_id and table{suffix}")
        return OpenSearchError(f"{what}: {where} answered {status} {code}: {message}{suffix}")
    if isinstance(exc, TeaException):
        return OpenSearchError(f"{what}: {where} failed: {code}: {message}")
    return OpenSearchError(f"{what}: {where} failed: {type(exc).__name__}")


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
                access_key_id=conn.access_key_id,
                access_key_secret=conn.access_key_secret,
                security_token=conn.security_token,
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
                return fn().body.to_map()
            except Exception as exc:  # the SDK raises a zoo of types; translate_error sorts them
                raise translate_error(exc, self.conn, what) from None

        return self._retry.call(what, once) if retry else once()

    async def _call_async(self, what: str, coro: Any) -> dict:
        """One attempt, no retry: the trigger's polling loop is its own retry."""
        try:
            return (await coro).body.to_map()
        except Exception as exc:
            raise translate_error(exc, self.conn, what) from None

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
        body = self._call(
            "GetTableGeneration",
            lambda: self._client.get_table_generation(self.conn.instance_id, table, str(generation_id)),
        )
        return body.get("result") or {}

    async def generation_async(self, table: str, generation_id: int) -> dict:
        body = await self._call_async(
            "GetTableGeneration",
            self._client.get_table_generation_async(self.conn.instance_id, table, str(generation_id)),
        )
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

    def reindex(self, table: str, partition_spec: str) -> None:
        """Start a full rebuild from ``partition_spec`` (``ds=YYYYMMDD``). Not retried here: a timed-out
        request may have started a build, so the caller checks for a new generation before repeating."""
        from alibabacloud_searchengine20211025 import models

        self._call(
            "Reindex",
            lambda: self._client.reindex(self.conn.instance_id, table, models.ReindexRequest(partition=partition_spec)),
            retry=False,
        )


@dataclass(frozen=True)
class SearchHit:
    fields: dict[str, Any]
    score: float | None


class OpenSearchQuery:
    """HA-syntax queries through the HA3 query SDK. The body comes back as a JSON string."""

    def __init__(self, conn: OpenSearchConnection, retry: RetryPolicy | None = None) -> None:
        from alibabacloud_ha3engine import client, models
        from alibabacloud_tea_util import models as util_models

        self.conn = conn
        self._retry = retry or RetryPolicy(attempts=3)
        self._models = models
        timeout_ms = int(conn.timeout_s * 1000)
        self._client = client.Client(
            models.Config(
                endpoint=conn.query_endpoint,
                instance_id=conn.instance_id,
                protocol=conn.query_protocol,
                access_user_name=conn.query_user,
                access_pass_word=conn.query_password,
                # Our RetryPolicy retries; the SDK's own retry would multiply attempts without backoff.
                runtime_options=util_models.RuntimeOptions(
                    connect_timeout=timeout_ms, read_timeout=timeout_ms, autoretry=False
                ),
            )
        )

    def search(self, query: str, method: str = "POST") -> dict:
        """Run one HA query (POST keeps Base64 images out of URLs); raise on transport or HA errors."""

        def once() -> dict:
            request = self._models.SearchRequestModel({}, self._models.SearchQuery(query=query))
            request.method = method
            try:
                response = self._client.search(request)
            except Exception as exc:
                raise _translate_query_error(exc, self.conn) from None
            body = response.body
            try:
                return json.loads(body) if isinstance(body, str) else dict(body)
            except ValueError:
                raise OpenSearchError(f"query on {self.conn.query_endpoint}: answer is not JSON: {str(body)[:200]}") from None

        return self._retry.call("HA query", once)


def _translate_query_error(exc: Exception, conn: OpenSearchConnection) -> OpenSearchError:
    from Tea.exceptions import TeaException, UnretryableException

    where = f"query endpoint {conn.query_endpoint} (connection {conn.conn_id!r})"
    if isinstance(exc, UnretryableException) or isinstance(exc, OSError):
        return TransientOpenSearchError(f"HA query: cannot reach {where}")
    if isinstance(exc, TeaException):
        status = exc.code
        errors = (exc.data or {}).get("errors") if isinstance(exc.data, dict) else None
        detail = json.dumps(errors, ensure_ascii=False)[:500] if errors else exc.message
        if status in (401, 403):
            return OpenSearchAccessError(
                f"HA query: {where} refused the query user/password ({status}); check login and password "
                f"of connection {conn.conn_id!r}"
            )
        if isinstance(status, int) and (status >= 500 or status == 429):
            return TransientOpenSearchError(f"HA query: {where} answered {status}: {detail}")
        return OpenSearchError(f"HA query: {where} answered {status}: {detail}")
    return OpenSearchError(f"HA query: {where} failed: {type(exc).__name__}")


def ha_errors(result: dict) -> list[dict]:
    """The ``errors`` list of an HA JSON answer (empty when the query succeeded)."""
    return [e for e in result.get("errors") or [] if e]


def ha_hits(result: dict) -> list[SearchHit]:
    items = (result.get("result") or {}).get("items") or []
    hits = []
    for item in items:
        scores = item.get("sortExprValues") or []
        try:
            score = float(scores[0]) if scores else None
        except (TypeError, ValueError):
            score = None
        hits.append(SearchHit(dict(item.get("fields") or {}), score))
    return hits
