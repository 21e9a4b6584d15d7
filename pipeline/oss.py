"""OSS adapter: credentials from an Airflow ``oss`` connection, and resumable listing with oss2.

The connection uses the alibaba provider's format (``conn_type`` ``oss``; extras ``auth_type``,
``access_key_id``, ``access_key_secret``, ``region``, ``endpoint``, optionally ``security_token``).
Unlike the provider's ``OSSHook`` we never derive the endpoint from the region: it is always explicit,
so the same code lists real OSS (``https://oss-cn-hangzhou-internal.aliyuncs.com``) and the local
server (``http://127.0.0.1:9470``).

Listing works on :class:`KeyRange` units (a prefix, optionally cut by ``start_after`` / ``end_before``)
so that a parallel fan-out can hand ranges to workers; each unit is listed page by page, each page
retried on its own, resuming from the continuation token of the last good page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import oss2
import oss2.exceptions

from pipeline.catalog import ListedObject
from pipeline.errors import ConnectionConfigError, SourceAccessError, SourceError, TransientSourceError
from pipeline.retry import RetryPolicy

log = logging.getLogger(__name__)

MAX_PAGE_SIZE = 1000  # the most OSS returns in one ListObjects page
_AUTH_CODES = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "SecurityTokenExpired", "InvalidSecurityToken"}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling"}


@dataclass(frozen=True)
class OssConnection:
    """What we need to reach one OSS endpoint. Secrets are kept out of ``repr``."""

    conn_id: str
    endpoint: str
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
    region: str | None = None
    connect_timeout_s: float = 30.0

    @classmethod
    def from_extras(cls, conn_id: str, extra: dict, login: str | None = None, password: str | None = None) -> OssConnection:
        """Build from an Airflow connection's fields; errors name the connection and the missing field."""
        auth_type = extra.get("auth_type", "AK")
        if auth_type not in ("AK", "STS"):
            raise ConnectionConfigError(
                f"connection {conn_id!r}: auth_type {auth_type!r} is not supported; use 'AK' (access key) or 'STS'"
            )
        access_key_id = extra.get("access_key_id") or login
        access_key_secret = extra.get("access_key_secret") or password
        token = extra.get("security_token")
        endpoint = extra.get("endpoint")
        missing = [
            name
            for name, value in (("access_key_id", access_key_id), ("access_key_secret", access_key_secret), ("endpoint", endpoint))
            if not value
        ]
        if auth_type == "STS" and not token:
            missing.append("security_token")
        if missing:
            raise ConnectionConfigError(
                f"connection {conn_id!r} lacks extra field(s) {', '.join(missing)}; the endpoint is always explicit, "
                "e.g. https://oss-cn-hangzhou-internal.aliyuncs.com or http://127.0.0.1:9470 for the local server"
            )
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        timeout = extra.get("connect_timeout_s", 30.0)
        return cls(conn_id, endpoint, access_key_id, access_key_secret, token, extra.get("region"), float(timeout))

    @classmethod
    def from_airflow(cls, conn_id: str) -> OssConnection:
        """Read the Airflow connection ``conn_id`` (any secrets backend Airflow is configured with)."""
        from airflow.sdk import BaseHook  # lazy: keeps the DAG file's import cheap
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = BaseHook.get_connection(conn_id)
        except AirflowNotFoundException:
            raise ConnectionConfigError(
                f"Airflow connection {conn_id!r} is not defined: create it (type 'oss') or set AIRFLOW_CONN_{conn_id.upper()}"
            ) from None
        extra = conn.extra_dejson if conn.extra else {}
        if not isinstance(extra, dict):
            raise ConnectionConfigError(f"connection {conn_id!r}: extra must be a JSON object")
        return cls.from_extras(conn_id, extra, conn.login, conn.password)

    def bucket(self, name: str, pool_size: int = 10) -> oss2.Bucket:
        """An oss2 Bucket on this endpoint; ``pool_size`` should match the listing concurrency."""
        if self.security_token:
            auth: oss2.AuthBase = oss2.StsAuth(self.access_key_id, self.access_key_secret, self.security_token)
        else:
            auth = oss2.Auth(self.access_key_id, self.access_key_secret)
        session = oss2.Session(pool_size=pool_size)
        return oss2.Bucket(auth, self.endpoint, name, session=session, connect_timeout=self.connect_timeout_s)


@dataclass(frozen=True)
class KeyRange:
    """Keys under ``prefix`` that sort after ``start_after`` and before ``end_before`` (both exclusive)."""

    prefix: str
    start_after: str = ""
    end_before: str | None = None


def _translate(exc: oss2.exceptions.OssError, conn: OssConnection, bucket: str, what: str) -> Exception:
    """Map an oss2 error to our hierarchy with a message that says what to do."""
    code = getattr(exc, "code", "") or ""
    status = getattr(exc, "status", 0) or 0
    where = f"bucket {bucket!r} at {conn.endpoint} (connection {conn.conn_id!r})"
    request_id = getattr(exc, "request_id", "") or ""
    suffix = f" [request id {request_id}]" if request_id else ""
    if isinstance(exc, oss2.exceptions.RequestError):
        return TransientSourceError(f"{what}: cannot reach {where}: {exc.body or exc}{suffix}")
    if isinstance(exc, oss2.exceptions.NoSuchBucket):
        return SourceAccessError(f"{what}: {where} does not exist; check the bucket name in the index config and the endpoint{suffix}")
    if code in _AUTH_CODES or status == 403:
        return SourceAccessError(
            f"{what}: {where} refused the credentials ({code or status}); check access_key_id / access_key_secret "
            f"of connection {conn.conn_id!r} and that the key may list the bucket{suffix}"
        )
    if status >= 500 or status == 429 or code in _TRANSIENT_CODES:
        return TransientSourceError(f"{what}: {where} answered {status} {code}{suffix}")
    return SourceError(f"{what}: {where} answered {status} {code}: {getattr(exc, 'message', '') or exc}{suffix}")


class OssLister:
    """Lists one bucket page by page with bounded, resuming retries. Memory: one page at a time."""

    def __init__(
        self,
        conn: OssConnection,
        bucket: oss2.Bucket,
        *,
        page_size: int = MAX_PAGE_SIZE,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}, got {page_size}")
        self._conn = conn
        self._bucket = bucket
        self._page_size = page_size
        self._retry = retry or RetryPolicy()
        self.pages_listed = 0

    @classmethod
    def connect(cls, conn: OssConnection, bucket_name: str, **kwargs) -> OssLister:
        return cls(conn, conn.bucket(bucket_name), **kwargs)

    def iter_pages(self, key_range: KeyRange) -> Iterator[list[ListedObject]]:
        """Yield pages of objects in ``key_range`` in key order; every page is retried independently."""
        token = ""
        start_after = key_range.start_after
        end = key_range.end_before
        while True:
            result = self._retry.call(
                f"listing {key_range.prefix!r} of bucket {self._bucket.bucket_name!r}",
                lambda: self._list_page(key_range.prefix, token, start_after),
            )
            self.pages_listed += 1
            page = [ListedObject(obj.key, obj.size) for obj in result.object_list]
            if end is not None and page and page[-1].key >= end:
                yield [obj for obj in page if obj.key < end]
                return
            if page:
                yield page
            if not result.is_truncated:
                return
            token = result.next_continuation_token

    def _list_page(self, prefix: str, token: str, start_after: str) -> oss2.models.ListObjectsV2Result:
        try:
            return self._bucket.list_objects_v2(
                prefix=prefix,
                continuation_token=token,
                # start-after is ignored by OSS once a continuation token is given; send it only first.
                start_after="" if token else start_after,
                max_keys=self._page_size,
            )
        except oss2.exceptions.OssError as exc:
            raise _translate(exc, self._conn, self._bucket.bucket_name, "listing OSS") from None

    def iter_objects(self, prefixes: list[str]) -> Iterator[list[ListedObject]]:
        """Pages for every prefix in turn. Overlapping prefixes would list keys twice: callers dedupe config."""
        for prefix in prefixes:
            log.info("listing oss://%s/%s", self._bucket.bucket_name, prefix)
            yield from self.iter_pages(KeyRange(prefix))


def describe_connection(conn: OssConnection) -> str:
    """A log-safe one-liner: never the secret or the token."""
    return json.dumps({"conn_id": conn.conn_id, "endpoint": conn.endpoint, "access_key_id": conn.access_key_id})
