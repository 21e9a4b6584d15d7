"""OSS client: credentials from an Airflow ``oss`` connection, an oss2 bucket on an explicit endpoint,
errors mapped to our hierarchy, and single-object reads.

The connection uses the alibaba provider's format (``conn_type`` ``oss``; extras ``endpoint``,
``region``, and the credentials of :mod:`pipeline.credentials`: ``auth_type`` with its fields).
Unlike the provider's ``OSSHook`` we never derive the endpoint from the region: it is always explicit,
so the same code lists real OSS (``https://oss-cn-hangzhou-internal.aliyuncs.com``) and the local
server (``http://127.0.0.1:9470``). Requests are signed with V4 (``OSS4-HMAC-SHA256``, which needs the
region; read from the endpoint when it names one); V1 only when the connection sets
``signature_version: v1``, since OSS refuses V1 for new accounts and new buckets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import oss2
import oss2.exceptions
import requests

from pipeline.connections import extras, get_connection
from pipeline.credentials import CredentialSettings, CredentialSource, credential_source
from pipeline.errors import (
    ArchivedObjectError,
    ConnectionConfigError,
    ObjectTooLargeError,
    SourceAccessError,
    SourceError,
    TransientSourceError,
)
from pipeline.redact import quiet_sdk_loggers, register_secrets
from pipeline.retry import RetryPolicy

quiet_sdk_loggers()  # oss2 logs headers and server-echoed signing material below WARNING

_AUTH_CODES = {"AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "SecurityTokenExpired", "InvalidSecurityToken"}
_TRANSIENT_CODES = {"SlowDown", "RequestTimeout", "ServiceUnavailable", "InternalError", "Throttling"}


@dataclass(frozen=True)
class OssConnection:
    """What we need to reach one OSS endpoint; the credentials are settings, resolved when used."""

    conn_id: str
    endpoint: str
    credentials: CredentialSettings
    region: str | None = None
    signature_version: str = "v4"
    connect_timeout_s: float = 30.0

    @classmethod
    def from_extras(cls, conn_id: str, extra: dict, login: str | None = None, password: str | None = None) -> OssConnection:
        """Build from an Airflow connection's fields; errors name the connection and the missing field."""
        endpoint = extra.get("endpoint")
        if not endpoint:
            raise ConnectionConfigError(
                f"connection {conn_id!r} lacks extra field(s) endpoint; the endpoint is always explicit, "
                "e.g. https://oss-cn-hangzhou-internal.aliyuncs.com or http://127.0.0.1:9470 for the local server"
            )
        credentials = CredentialSettings.from_extras(conn_id, extra, login=login, password=password)
        if "://" not in endpoint:
            endpoint = "https://" + endpoint
        version = str(extra.get("signature_version", "v4")).lower()
        if version not in ("v4", "v1"):
            raise ConnectionConfigError(
                f"connection {conn_id!r}: signature_version {version!r} is not supported; use 'v4' (the default) "
                "or 'v1' (only for old buckets that still accept it)"
            )
        region = _region(conn_id, endpoint, extra.get("region"))
        if version == "v4" and not region:
            raise ConnectionConfigError(
                f"connection {conn_id!r}: V4 signing needs the bucket's region; set extra 'region' "
                "(e.g. cn-hangzhou)"
            )
        timeout = float(extra.get("connect_timeout_s", 30.0))
        return cls(conn_id, endpoint, credentials, region, version, timeout)

    @classmethod
    def from_airflow(cls, conn_id: str) -> OssConnection:
        """Read the Airflow connection ``conn_id`` (any secrets backend Airflow is configured with)."""
        conn = get_connection(conn_id, "type 'oss'")
        extra = extras(conn, conn_id)
        made = cls.from_extras(conn_id, extra, conn.login, conn.password)
        register_secrets(*made.credentials.secrets())
        return made

    def bucket(self, name: str, pool_size: int = 10, *, kind: type[oss2.Bucket] = oss2.Bucket) -> oss2.Bucket:
        """An oss2 Bucket on this endpoint; ``pool_size`` should match the listing concurrency.

        Signed with V4 and the region unless the connection asks for V1; keys come from the
        connection's credential provider on every request, so refreshed tokens are picked up.
        ``kind``: an ``oss2.Bucket`` subclass, e.g. the listing's lean parser
        (:class:`pipeline.oss.pages.LeanListingBucket`).
        """
        provider = _Oss2Credentials(credential_source(self.credentials))
        auth = oss2.ProviderAuthV4(provider) if self.signature_version == "v4" else oss2.ProviderAuth(provider)
        session = oss2.Session(pool_size=pool_size)
        return kind(
            auth, self.endpoint, name, session=session, connect_timeout=self.connect_timeout_s, region=self.region
        )


class _Oss2Credentials(oss2.credentials.CredentialsProvider):
    """oss2's provider interface over ours: oss2 asks before signing each request."""

    def __init__(self, source: CredentialSource) -> None:
        self._source = source

    def get_credentials(self) -> oss2.credentials.Credentials:
        current = self._source.get()
        return oss2.credentials.Credentials(current.access_key_id, current.access_key_secret, current.security_token or "")


# oss-cn-hangzhou.aliyuncs.com, oss-cn-hangzhou-internal.aliyuncs.com, oss-accelerate... (no region)
_ENDPOINT_REGION_RE = re.compile(r"^oss-((?:cn|ap|eu|us|me|rg)-[a-z0-9-]+?)(?:-internal)?\.aliyuncs\.com$")


def _region(conn_id: str, endpoint: str, configured: str | None) -> str | None:
    """The configured region, else the one an ``oss-<region>[-internal].aliyuncs.com`` endpoint names."""
    host = endpoint.split("://", 1)[-1].split("/", 1)[0].split(":", 1)[0]
    match = _ENDPOINT_REGION_RE.match(host)
    named = match.group(1) if match else None
    if configured and named and configured != named:
        raise ConnectionConfigError(
            f"connection {conn_id!r}: region {configured!r} does not match the endpoint {host!r} "
            f"(region {named!r}); V4 signatures would be refused"
        )
    return configured or named


def translate_error(exc: oss2.exceptions.OssError, conn: OssConnection, bucket: str, what: str) -> Exception:
    """Map an oss2 error to our hierarchy with a message that says what to do."""
    code = getattr(exc, "code", "") or ""
    status = getattr(exc, "status", 0) or 0
    where = f"bucket {bucket!r} at {conn.endpoint} (connection {conn.conn_id!r})"
    request_id = getattr(exc, "request_id", "") or ""
    suffix = f" [request id {request_id}]" if request_id else ""
    if isinstance(exc, oss2.exceptions.RequestError):
        return TransientSourceError(f"{what}: cannot reach {where}: {exc.body or exc}{suffix}")
    if code == "SecurityTokenExpired":
        return SourceAccessError(
            f"{what}: {where} refused an expired security token; {conn.credentials.expired_token_advice()}{suffix}"
        )
    if code == "InvalidObjectState":  # a 403 that is not about credentials: the object is archived
        return ArchivedObjectError(
            f"{what}: {where}: the object is in an archive storage class (Archive, ColdArchive or "
            "DeepColdArchive) and not restored, so OSS refuses to read it (InvalidObjectState), and OpenSearch "
            "could not read it either; restore it (RestoreObject, e.g. `ossutil restore`) and wait until HeadObject "
            "shows x-oss-restore: ongoing-request=\"false\", or convert it to Standard or IA; the catalog skips "
            f"such objects as 'archived' when it lists them{suffix}"
        )
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


def read_object_limited(
    conn: OssConnection, bucket: oss2.Bucket, key: str, max_bytes: int, retry: RetryPolicy | None = None
) -> tuple[bytes, str]:
    """One object's bytes and ETag, for a reader that must stay bounded (a page showing an image): an
    object over ``max_bytes`` raises :class:`ObjectTooLargeError` from its GET's Content-Length, before
    its body is read, and at most ``max_bytes + 1`` bytes are ever read. Retried like :func:`read_object`."""

    def once() -> tuple[bytes, str]:
        try:
            result = bucket.get_object(key)
            try:
                size = result.content_length
                if size is not None and size > max_bytes:
                    raise ObjectTooLargeError(f"oss://{bucket.bucket_name}/{key} is {size} bytes, over the limit of {max_bytes}")
                data = result.read(max_bytes + 1)
            finally:
                result.close()
            if len(data) > max_bytes:  # no Content-Length, or a wrong one
                raise ObjectTooLargeError(f"oss://{bucket.bucket_name}/{key} is over the limit of {max_bytes} bytes")
            return data, result.etag
        except oss2.exceptions.OssError as exc:
            raise translate_error(exc, conn, bucket.bucket_name, f"reading {key!r}") from None
        except requests.RequestException as exc:
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

