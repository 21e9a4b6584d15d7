"""OpenSearch connection: one Airflow connection per instance, and SDK errors mapped to ours.

The connection (any ``conn_type``; ``generic`` is fine), documented in README.md::

    login / password   the query user and password set when the instance was bought
    extra.instance_id  e.g. ha-cn-zvp2iv9a401
    extra.endpoint     management endpoint, e.g. searchengine.cn-hangzhou.aliyuncs.com
    extra.region       e.g. cn-hangzhou
    extra.auth_type and its fields (see pipeline.credentials), e.g. access_key_id, access_key_secret
    extra.query_endpoint  the instance's API domain, e.g. ha-cn-zvp2iv9a401.public.ha.aliyuncs.com
    extra.protocol (https), extra.query_protocol (https; http warns unless the host is loopback),
    extra.timeout_s (30)

SDK errors are mapped into our hierarchy: 5xx, throttling (with ``x-acs-retry-after``) and unreachable
endpoints are transient and retried with backoff; everything else is terminal.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeline.connections import aget_connection, extras, get_connection
from pipeline.credentials import CredentialSettings, CredentialSource, credential_source
from pipeline.errors import (
    ConnectionConfigError,
    OpenSearchAccessError,
    OpenSearchError,
    PipelineError,
    TransientOpenSearchError,
)
from pipeline.redact import register_secrets

log = logging.getLogger(__name__)

_ACCESS_CODES = ("SignatureDoesNotMatch", "InvalidAccessKeyId", "Forbidden", "NoPermission", "InvalidSecurityToken")
_NOT_FOUND_CODES = ("NotFound", "NotExist")



@dataclass(frozen=True)
class OpenSearchConnection:
    """Everything needed to reach one instance. Secrets stay out of ``repr``."""

    conn_id: str
    instance_id: str
    endpoint: str
    credentials: CredentialSettings
    query_endpoint: str = ""
    query_user: str = ""
    query_password: str = field(default="", repr=False)
    region: str | None = None
    protocol: str = "https"
    query_protocol: str = "https"
    timeout_s: float = 30.0

    @classmethod
    def from_fields(
        cls, conn_id: str, extra: dict, login: str | None = None, password: str | None = None
    ) -> OpenSearchConnection:
        required = ("instance_id", "endpoint", "query_endpoint")
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
        # login/password are the query user here, never an access key pair.
        credentials = CredentialSettings.from_extras(conn_id, extra)
        for name in ("protocol", "query_protocol"):
            if extra.get(name, "https") not in ("http", "https"):
                raise ConnectionConfigError(f"OpenSearch connection {conn_id!r}: {name} must be http or https")
        query_endpoint = _strip_scheme(extra["query_endpoint"])
        query_protocol = extra.get("query_protocol", "https")
        if query_protocol == "http" and not _is_loopback(query_endpoint):
            log.warning(
                "OpenSearch connection %r sends the query user's password over plain http to %s; "
                "set query_protocol https unless this endpoint is inside a network you trust",
                conn_id, query_endpoint,
            )
        return cls(
            conn_id=conn_id,
            instance_id=extra["instance_id"],
            endpoint=_strip_scheme(extra["endpoint"]),
            credentials=credentials,
            query_endpoint=query_endpoint,
            query_user=login or "",
            query_password=password or "",
            region=extra.get("region"),
            protocol=extra.get("protocol", "https"),
            query_protocol=query_protocol,
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
        """The static values that must never appear in logs, errors or reports."""
        return [*self.credentials.secrets(), *([self.query_password] if self.query_password else [])]

    def sdk_credential(self) -> TeaCredential:
        """What tea-openapi's ``Config(credential=...)`` takes: asked before every signed request."""
        return TeaCredential(credential_source(self.credentials))


class TeaCredential:
    """tea-openapi's credential interface over our source, so provider failures arrive as our errors."""

    def __init__(self, source: CredentialSource) -> None:
        self._source = source

    def get_credential(self) -> Any:
        return self._source.model()

    async def get_credential_async(self) -> Any:
        return await self._source.amodel()


def _is_loopback(host_port: str) -> bool:
    host = urlsplit("//" + host_port).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _strip_scheme(endpoint: str) -> str:
    return endpoint.split("://", 1)[-1].rstrip("/")


def _describe_sdk_error(exc: Exception) -> tuple[str, str, int | None, float | None]:
    """(code, message, http status, retry-after seconds) of an SDK exception, without its request."""
    code = str(getattr(exc, "code", "") or "")
    message = str(getattr(exc, "message", "") or "")
    status = getattr(exc, "status_code", None) or getattr(exc, "statusCode", None)
    retry_after_ms = getattr(exc, "retry_after", None)  # x-acs-retry-after: the SDK reads milliseconds
    return code, message, status, (float(retry_after_ms) / 1000 if retry_after_ms else None)


def translate_error(exc: Exception, conn: OpenSearchConnection, what: str) -> PipelineError:
    """Map an SDK exception to our hierarchy; the message names the connection and the call."""
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
    from Tea.exceptions import TeaException, UnretryableException

    if isinstance(exc, PipelineError):  # ours already, e.g. the credential provider was refused
        return exc
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
        if "InvalidSecurityToken.Expired" in code:
            return OpenSearchAccessError(
                f"{what}: {where} refused an expired security token ({code}); "
                + conn.credentials.expired_token_advice() + suffix
            )
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
