"""OSS client: credentials from an Airflow ``oss`` connection, an oss2 bucket on an explicit endpoint,
errors mapped to our hierarchy, and single-object reads.

The connection uses the alibaba provider's format (``conn_type`` ``oss``; extras ``auth_type``,
``access_key_id``, ``access_key_secret``, ``region``, ``endpoint``, optionally ``security_token``).
Unlike the provider's ``OSSHook`` we never derive the endpoint from the region: it is always explicit,
so the same code lists real OSS (``https://oss-cn-hangzhou-internal.aliyuncs.com``) and the local
server (``http://127.0.0.1:9470``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import oss2
import oss2.exceptions
import requests

from pipeline.connections import extras, get_connection
from pipeline.errors import ConnectionConfigError, SourceAccessError, SourceError, TransientSourceError
from pipeline.redact import quiet_sdk_loggers, register_secrets
from pipeline.retry import RetryPolicy

quiet_sdk_loggers()  # oss2 logs headers and server-echoed signing material below WARNING

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
        conn = get_connection(conn_id, "type 'oss'")
        extra = extras(conn, conn_id)
        made = cls.from_extras(conn_id, extra, conn.login, conn.password)
        register_secrets(made.access_key_secret, made.security_token)
        return made

    def bucket(self, name: str, pool_size: int = 10, *, kind: type[oss2.Bucket] = oss2.Bucket) -> oss2.Bucket:
        """An oss2 Bucket on this endpoint; ``pool_size`` should match the listing concurrency.

        ``kind``: an ``oss2.Bucket`` subclass, e.g. the listing's lean parser
        (:class:`pipeline.oss.pages.LeanListingBucket`).
        """
        if self.security_token:
            auth: oss2.AuthBase = oss2.StsAuth(self.access_key_id, self.access_key_secret, self.security_token)
        else:
            auth = oss2.Auth(self.access_key_id, self.access_key_secret)
        session = oss2.Session(pool_size=pool_size)
        return kind(auth, self.endpoint, name, session=session, connect_timeout=self.connect_timeout_s)


def translate_error(exc: oss2.exceptions.OssError, conn: OssConnection, bucket: str, what: str) -> Exception:
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


def read_object(conn: OssConnection, bucket: oss2.Bucket, key: str, retry: RetryPolicy | None = None) -> bytes:
    """One object's bytes, retried on transient errors (a GET is safe to repeat)."""

    def once() -> bytes:
        try:
            return bucket.get_object(key).read()
        except oss2.exceptions.OssError as exc:
            raise translate_error(exc, conn, bucket.bucket_name, f"reading {key!r}") from None
        except requests.RequestException as exc:  # reset while oss2 reads the body: not wrapped by oss2
            raise translate_error(oss2.exceptions.RequestError(exc), conn, bucket.bucket_name, f"reading {key!r}") from None

    return (retry or RetryPolicy()).call(f"reading oss://{bucket.bucket_name}/{key}", once)


def object_etag(conn: OssConnection, bucket: oss2.Bucket, key: str, retry: RetryPolicy | None = None) -> str:
    """One object's ETag (a HEAD), retried on transient errors like :func:`read_object`. Objects with the
    same bytes, uploaded whole, share it."""

    def once() -> str:
        try:
            return bucket.head_object(key).etag
        except oss2.exceptions.OssError as exc:
            raise translate_error(exc, conn, bucket.bucket_name, f"reading the ETag of {key!r}") from None
        except requests.RequestException as exc:
            raise translate_error(oss2.exceptions.RequestError(exc), conn, bucket.bucket_name, f"reading the ETag of {key!r}") from None

    return (retry or RetryPolicy()).call(f"HEAD oss://{bucket.bucket_name}/{key}", once)


def describe_connection(conn: OssConnection) -> str:
    """A log-safe one-liner: never the secret or the token."""
    return json.dumps({"conn_id": conn.conn_id, "endpoint": conn.endpoint, "access_key_id": conn.access_key_id})
