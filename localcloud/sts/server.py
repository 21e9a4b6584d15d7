"""A local STS (Security Token Service): ``AssumeRole`` and ``AssumeRoleWithOIDC`` over HTTPS, as the
credential providers of ``alibabacloud-credentials`` call them, and an ECS instance metadata service.

STS (RPC style, ``Version=2015-04-01``, JSON): ``GET /?Action=AssumeRole&...&Signature=...`` signed
with HMAC-SHA1 over the sorted, ``quote_plus``-encoded query exactly as the SDK's
``parameter_helper.compose_string_to_sign`` builds it, with the caller's secret + ``&``; a temporary
caller (``STS.`` key) must send its ``SecurityToken``. ``AssumeRoleWithOIDC`` is unsigned: it carries
an OIDC token issued by the account's identity provider (:meth:`TokenAuthority.oidc_token`) and the
provider's ARN. Answers as STS does::

    {"RequestId", "AssumedRoleUser": {"Arn", "AssumedRoleId"},
     "Credentials": {"AccessKeyId", "AccessKeySecret", "SecurityToken", "Expiration"}}

Refusals are STS's JSON errors (``RequestId``, ``HostId``, ``Code``, ``Message``): 404
``InvalidAccessKeyId.NotFound`` and ``EntityNotExist.Role``, 400 ``SignatureDoesNotMatch``,
``InvalidTimeStamp.Expired`` (more than 15 minutes off), ``SignatureNonceUsed``,
``InvalidParameter.DurationSeconds`` (outside 900..the role's maximum), ``MissingParameter``,
``InvalidSecurityToken.Expired`` / ``.Malformed``, ``AuthenticationFail.OIDCToken.Invalid`` /
``.Expired``, ``AuthenticationFail.NoPermission`` (unknown OIDC provider). The codes are STS's
documented ones; which field STS checks first is our choice.

Every issued credential comes from the account's :class:`~localcloud.ram.TokenAuthority`, whose
``max_lifetime_s`` knob can make tokens shorter than asked (to rehearse expiry in seconds).
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote_plus, urlsplit

from localcloud.http_service import BackgroundHttpService, StrictRequestHandler
from localcloud.ram import TokenAuthority, TokenProblem
from localcloud.sts.tls import LocalTls

log = logging.getLogger(__name__)

MIN_DURATION_S = 900
MAX_CLOCK_SKEW_S = 15 * 60
_HOST_ID = "sts.aliyuncs.com"


@dataclass(frozen=True)
class StsAccount:
    """Who may assume what: long-lived keys, role ARNs with their longest session, the OIDC provider."""

    keys: Mapping[str, str] = field(repr=False)
    roles: Mapping[str, int]  # role ARN -> MaxSessionDuration (seconds)
    oidc_provider_arn: str | None = None


class StsError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status, self.code, self.message = status, code, message


class LocalSts(BackgroundHttpService):
    """The STS endpoint on 127.0.0.1 over HTTPS; give ``endpoint`` to a connection's ``sts_endpoint``."""

    name = "local-sts"

    def __init__(self, account: StsAccount, authority: TokenAuthority, tls: LocalTls, port: int = 0) -> None:
        super().__init__(port, tls=tls.ensure().server_context())
        self.account = account
        self.authority = authority
        self._nonces: set[str] = set()
        self._nonce_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT`` (the providers take a host, and always speak https)."""
        return self.address

    def handler_class(self) -> type[StrictRequestHandler]:
        return type("StsHandler", (_StsHandler,), {"sts": self})

    # -- the two actions --------------------------------------------------------------------------

    def answer(self, query: Mapping[str, str]) -> dict:
        action = query.get("Action")
        if action == "AssumeRole":
            self._check_signature(query)
            return self._issue(query)
        if action == "AssumeRoleWithOIDC":
            self._check_oidc(query)
            return self._issue(query)
        raise StsError(400, "InvalidAction.NotFound", f"Specified api is not found: {action!r}.")

    def _check_signature(self, query: Mapping[str, str]) -> None:
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp", "RoleArn", "RoleSessionName"):
            if not query.get(name):
                raise StsError(400, "MissingParameter", f"The input parameter {name} that is mandatory is not supplied.")
        if query.get("SignatureMethod") != "HMAC-SHA1" or query.get("SignatureVersion") != "1.0":
            raise StsError(400, "InvalidSignatureMethod", "Specified signature method or version is not supported.")
        self._check_timestamp(query["Timestamp"])
        key_id = query["AccessKeyId"]
        if self.authority.is_temporary(key_id):
            try:
                secret = self.authority.resolve(key_id, query.get("SecurityToken"))
            except TokenProblem as problem:
                code = "InvalidSecurityToken.Expired" if problem.kind == "expired" else "InvalidSecurityToken.Malformed"
                raise StsError(400, code, problem.message) from None
        else:
            secret = self.account.keys.get(key_id)
            if secret is None:
                raise StsError(404, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        unsigned = {k: v for k, v in query.items() if k != "Signature"}
        canonical = "&".join(f"{quote_plus(k)}={quote_plus(unsigned[k])}" for k in sorted(unsigned))
        to_sign = "GET&" + quote_plus("/") + "&" + quote_plus(canonical)
        expected = base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected.encode(), query["Signature"].encode("utf-8", "replace")):
            raise StsError(400, "SignatureDoesNotMatch",
                           "Specified signature is not matched with our calculation. server string to sign is:" + to_sign)
        with self._nonce_lock:
            if query["SignatureNonce"] in self._nonces:
                raise StsError(400, "SignatureNonceUsed", "Specified signature nonce was used already.")
            self._nonces.add(query["SignatureNonce"])

    def _check_oidc(self, query: Mapping[str, str]) -> None:
        for name in ("OIDCProviderArn", "OIDCToken", "RoleArn", "RoleSessionName"):
            if not query.get(name):
                raise StsError(400, "MissingParameter", f"The input parameter {name} that is mandatory is not supplied.")
        if query.get("Timestamp"):
            self._check_timestamp(query["Timestamp"])
        if query["OIDCProviderArn"] != self.account.oidc_provider_arn:
            raise StsError(403, "AuthenticationFail.NoPermission",
                           f"The OIDC provider {query['OIDCProviderArn']!r} is not trusted by this account.")
        try:
            self.authority.verify_oidc_token(query["OIDCToken"])
        except TokenProblem as problem:
            code = "AuthenticationFail.OIDCToken.Expired" if problem.kind == "expired" else "AuthenticationFail.OIDCToken.Invalid"
            raise StsError(400, code, problem.message) from None

    def _check_timestamp(self, value: str) -> None:
        try:
            sent = calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            raise StsError(400, "InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted.") from None
        if abs(time.time() - sent) > MAX_CLOCK_SKEW_S:
            raise StsError(400, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")

    def _issue(self, query: Mapping[str, str]) -> dict:
        role = query["RoleArn"]
        max_session = self.account.roles.get(role)
        if max_session is None:
            raise StsError(404, "EntityNotExist.Role", f"The role not exists: {role}.")
        try:
            duration = int(query.get("DurationSeconds") or 3600)
        except ValueError:
            duration = -1
        if not MIN_DURATION_S <= duration <= max_session:
            raise StsError(400, "InvalidParameter.DurationSeconds",
                           f"The DurationSeconds must be in range {MIN_DURATION_S} to {max_session}.")
        session = query["RoleSessionName"]
        issued = self.authority.issue(role, session, duration)
        role_name = role.rsplit("/", 1)[-1]
        return {
            "RequestId": _request_id(),
            "AssumedRoleUser": {"Arn": f"{role.replace(':role/', ':assumed-role/')}/{session}",
                                "AssumedRoleId": f"3{secrets.randbelow(10**17):017d}:{session}"},
            "Credentials": {"AccessKeyId": issued.access_key_id, "AccessKeySecret": issued.access_key_secret,
                            "SecurityToken": issued.security_token, "Expiration": issued.expiration_iso},
            "SourceIdentity": role_name,
        }


class _StsHandler(StrictRequestHandler):
    sts: LocalSts
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Quiet: a request line holds tokens."""

    def do_GET(self) -> None:
        query = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        try:
            status, body = 200, self.sts.answer(query)
        except StsError as err:
            status = err.status
            body = {"RequestId": _request_id(), "HostId": _HOST_ID, "Code": err.code, "Message": err.message}
            log.info("local STS refused %s: %s", query.get("Action"), err.code)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_POST = do_GET


def _request_id() -> str:
    raw = secrets.token_hex(16).upper()
    return f"{raw[:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:]}"
