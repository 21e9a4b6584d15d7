"""Alibaba Cloud credentials for all three services, from an Airflow connection's extras.

The extras name an ``auth_type``; the official ``alibabacloud-credentials`` providers do the rest,
including refreshing temporary tokens before they expire (also inside the triggerer during a long
wait)::

    auth_type        extras it needs                                   token refreshed
    AK (default)     access_key_id, access_key_secret                   never expires
    STS              access_key_id, access_key_secret, security_token  no: it expires, see below
    ram_role_arn     access_key_id, access_key_secret, role_arn         yes (STS AssumeRole)
    ecs_ram_role     [role_name]                                        yes (ECS instance metadata)
    oidc_role_arn    role_arn, oidc_provider_arn, oidc_token_file       yes (STS AssumeRoleWithOIDC; RRSA on ACK)
    credentials_uri  credentials_uri                                    yes (a URI serving credentials)
    default          nothing                                            the SDK's default chain

Optional for the STS-based types: ``role_session_name``, ``duration_seconds``, ``policy``,
``external_id`` (ram_role_arn), ``sts_endpoint``; for ``oidc_role_arn`` the three required fields
default to the ``ALIBABA_CLOUD_ROLE_ARN`` / ``_OIDC_PROVIDER_ARN`` / ``_OIDC_TOKEN_FILE`` variables
that RRSA injects into a pod. ``ecs_ram_role`` takes ``disable_imds_v1``; every type takes ``proxy``
(an HTTP proxy for the provider's own calls).

A static ``STS`` token cannot be renewed: a run that outlives it fails with the service's "token
expired" error. Use one of the refreshing types for production.

Providers are built once per process and connection (:func:`credential_source`), so tokens are
reused until they go stale rather than fetched for every request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConnectionConfigError, CredentialsError, TransientCredentialsError
from pipeline.redact import register_secrets

#: auth_type → the ``alibabacloud_credentials`` Config type (``default`` has none: the default chain).
AUTH_TYPES = {
    "AK": "access_key",
    "STS": "sts",
    "ram_role_arn": "ram_role_arn",
    "ecs_ram_role": "ecs_ram_role",
    "oidc_role_arn": "oidc_role_arn",
    "credentials_uri": "credentials_uri",
    "default": None,
}
_ALIASES = {"access_key": "AK", "ak": "AK", "sts": "STS"}
_REQUIRED = {
    "AK": ("access_key_id", "access_key_secret"),
    "STS": ("access_key_id", "access_key_secret", "security_token"),
    "ram_role_arn": ("access_key_id", "access_key_secret", "role_arn"),
    "ecs_ram_role": (),
    "oidc_role_arn": (),  # the provider falls back to RRSA's environment variables
    "credentials_uri": ("credentials_uri",),
    "default": (),
}
_OPTIONAL = (
    "role_session_name", "duration_seconds", "policy", "external_id", "sts_endpoint", "role_name",
    "disable_imds_v1", "oidc_provider_arn", "oidc_token_file", "proxy",
)
DEFAULT_ROLE_SESSION_NAME = "oss-image-index"


@dataclass(frozen=True)
class Credential:
    """One set of keys as a service call signs with them. Secrets stay out of ``repr``."""

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CredentialSettings:
    """What a connection says about its credentials, validated; no network call is made here."""

    conn_id: str
    auth_type: str
    values: dict[str, Any] = field(default_factory=dict, repr=False, compare=True, hash=False)

    @classmethod
    def from_extras(
        cls, conn_id: str, extra: dict, *, login: str | None = None, password: str | None = None
    ) -> CredentialSettings:
        """Read ``auth_type`` and its fields; ``login``/``password`` stand in for the access key pair."""
        raw_type = str(extra.get("auth_type") or "AK")
        auth_type = _ALIASES.get(raw_type, raw_type)
        if auth_type not in AUTH_TYPES:
            raise ConnectionConfigError(
                f"connection {conn_id!r}: auth_type {raw_type!r} is not supported; use one of "
                f"{', '.join(AUTH_TYPES)} (see README.md, 'Credentials')"
            )
        values = {name: extra[name] for name in (*_REQUIRED["STS"], *_REQUIRED["ram_role_arn"],
                                                  *_REQUIRED["credentials_uri"], *_OPTIONAL)
                  if extra.get(name) not in (None, "")}
        if auth_type in ("AK", "STS", "ram_role_arn"):
            values.setdefault("access_key_id", extra.get("access_key_id") or login)
            values.setdefault("access_key_secret", extra.get("access_key_secret") or password)
        missing = [name for name in _REQUIRED[auth_type] if not values.get(name)]
        if missing:
            raise ConnectionConfigError(
                f"connection {conn_id!r} (auth_type {auth_type}) lacks extra field(s) {', '.join(missing)}"
            )
        if "duration_seconds" in values:
            try:
                values["duration_seconds"] = int(values["duration_seconds"])
            except (TypeError, ValueError):
                raise ConnectionConfigError(
                    f"connection {conn_id!r}: duration_seconds must be a whole number of seconds"
                ) from None
            if values["duration_seconds"] < 900:
                raise ConnectionConfigError(
                    f"connection {conn_id!r}: duration_seconds must be at least 900 (the STS minimum)"
                )
        return cls(conn_id, auth_type, values)

    @property
    def access_key_id(self) -> str | None:
        """The long-lived key id, when the connection holds one (safe to log)."""
        return self.values.get("access_key_id")

    @property
    def refreshes(self) -> bool:
        """Whether tokens are renewed by the provider (False for long-lived keys and static tokens)."""
        return self.auth_type not in ("AK", "STS")

    def secrets(self) -> list[str]:
        """The static secret values, for the log masker."""
        return [v for k, v in self.values.items() if k in ("access_key_secret", "security_token") and v]

    def describe(self) -> str:
        """A log-safe one-liner."""
        detail = self.access_key_id or self.values.get("role_arn") or self.values.get("role_name") or ""
        return f"{self.auth_type}{f' ({detail})' if detail else ''}"

    def expired_token_advice(self) -> str:
        """What to do when a service refused one of these tokens as expired."""
        if self.refreshes:
            return (f"auth_type {self.auth_type} refreshes tokens 15 minutes before they expire, so the "
                    "clock of this machine or the token's lifetime is off: check both")
        return (f"auth_type {self.auth_type} cannot renew a token: use ram_role_arn, ecs_ram_role or "
                "oidc_role_arn, whose tokens the provider refreshes")

    def fingerprint(self) -> str:
        """Identifies these settings without revealing them: the cache key of the provider."""
        blob = json.dumps([self.conn_id, self.auth_type, self.values], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()


class CredentialSource:
    """The provider behind one connection: current credentials, refreshed by the SDK when stale.

    :meth:`get` returns a plain :class:`Credential`; :meth:`model` / :meth:`amodel` the SDK's own model for
    adapters (oss2, tea-openapi, pyodps). All raise our errors and register fresh secrets with the masker.
    """

    def __init__(self, settings: CredentialSettings) -> None:
        self.settings = settings
        self.client = _build_client(settings)
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def model(self) -> Any:
        """The SDK's ``CredentialModel`` (what tea-openapi and pyodps adapters hand on)."""
        try:
            model = self.client.get_credential()
        except Exception as exc:  # the providers raise CredentialException, ValueError, OSError, ...
            raise _credentials_error(self.settings, exc) from None
        return self._remember(model)

    async def amodel(self) -> Any:
        try:
            model = await self.client.get_credential_async()
        except Exception as exc:
            raise _credentials_error(self.settings, exc) from None
        return self._remember(model)

    def get(self) -> Credential:
        model = self.model()
        return Credential(model.access_key_id, model.access_key_secret, model.security_token or None)

    def _remember(self, model: Any) -> Any:
        # Temporary secrets are new with every refresh: mask each one the first time it is seen.
        with self._lock:
            fresh = [s for s in (model.access_key_secret, model.security_token) if s and s not in self._seen]
            self._seen.update(fresh)
        register_secrets(*fresh)
        return model


_SOURCES: dict[str, CredentialSource] = {}
_SOURCES_LOCK = threading.Lock()


def credential_source(settings: CredentialSettings) -> CredentialSource:
    """The process-wide source for these settings (built on first use: providers cache and refresh)."""
    key = settings.fingerprint()
    with _SOURCES_LOCK:
        source = _SOURCES.get(key)
        if source is None:
            source = _SOURCES[key] = CredentialSource(settings)
        return source


def _build_client(settings: CredentialSettings) -> Any:
    from alibabacloud_credentials.client import Client
    from alibabacloud_credentials.models import Config
    from alibabacloud_credentials.provider.default import DefaultCredentialsProvider

    v = settings.values
    sdk_type = AUTH_TYPES[settings.auth_type]
    # The ECS provider refreshes from an APScheduler job that logs every start and stop at INFO.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        if sdk_type is None:
            return Client(provider=DefaultCredentialsProvider())
        return Client(Config(
            type=sdk_type,
            access_key_id=v.get("access_key_id"),
            access_key_secret=v.get("access_key_secret"),
            security_token=v.get("security_token"),
            role_arn=v.get("role_arn"),
            role_session_name=v.get("role_session_name") or DEFAULT_ROLE_SESSION_NAME,
            role_session_expiration=v.get("duration_seconds"),
            policy=v.get("policy"),
            external_id=v.get("external_id"),
            sts_endpoint=v.get("sts_endpoint"),
            role_name=v.get("role_name"),
            disable_imds_v1=_flag(v.get("disable_imds_v1")),
            oidc_provider_arn=v.get("oidc_provider_arn"),
            oidc_token_file_path=v.get("oidc_token_file"),
            credentials_uri=v.get("credentials_uri"),
            proxy=v.get("proxy"),
        ))
    except ValueError as exc:  # e.g. oidc_role_arn without the RRSA environment
        raise ConnectionConfigError(f"connection {settings.conn_id!r} (auth_type {settings.auth_type}): {exc}") from None


def _flag(value: Any) -> bool | None:
    if value is None:
        return None
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def _credentials_error(settings: CredentialSettings, exc: Exception) -> Exception:
    """A provider failure, sorted: refused by STS / the metadata service (terminal), or unreachable."""
    where = f"connection {settings.conn_id!r} (auth_type {settings.auth_type})"
    text = str(exc)
    refused = any(f"http_code: {code}" in text or f"HttpCode={code}" in text for code in ("400", "401", "403", "404"))
    if refused or isinstance(exc, ValueError):
        return CredentialsError(
            f"{where}: the credential provider was refused: {_short(text)}; check the role, its trust "
            "policy and the source credentials"
        )
    return TransientCredentialsError(f"{where}: could not get credentials: {type(exc).__name__}: {_short(text)}")


def _short(text: str, limit: int = 300) -> str:
    # A failed STS call's message may hold its URL or its string to sign, both carrying the source
    # token when the source is itself temporary: drop the query and everything from the string to sign.
    text = re.split(r"(?i)string to sign", text)[0]
    text = re.sub(r"\?[^\s'\"]*", "?...", text)
    return text if len(text) <= limit else text[:limit] + "..."
