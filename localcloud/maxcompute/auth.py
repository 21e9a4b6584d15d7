"""MaxCompute's request signatures, verified as the service verifies pyodps'.

pyodps signs every REST and tunnel request (``odps.accounts.BaseAccount._build_canonical_str``)::

    METHOD \\n content-type \\n content-md5 \\n [x-odps-* headers and params as "k:v", sorted] \\n
    Date \\n /resource?sorted&params

(content-type, content-md5 and date are bare values; all keys sorted together). The resource is the
URL after the endpoint (``/api`` stripped), percent-decoded, its query parameters sorted by name.
The ``Authorization`` header is then one of:

* ``ODPS <AccessKeyId>:<base64 HMAC-SHA1(secret, canonical)>``: the legacy form, which pyodps sends
  when it knows no region (a loopback endpoint names none);
* ``ODPS <AccessKeyId>/<yyyymmdd>/<region>/odps/aliyun_v4_request:<base64 HMAC-SHA1(key, canonical)>``
  where ``key`` chains HMAC-SHA256 over ``"aliyun_v4" + secret``, the date, the region, ``odps`` and
  ``aliyun_v4_request``: the form pyodps sends with ``region_name``.

Temporary credentials add ``authorization-sts-token``; the account's :class:`~localcloud.ram.TokenAuthority`
resolves their secret. The ``Date`` header must be within 15 minutes of the server's clock.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import parse_qsl, unquote, urlparse

from localcloud.maxcompute.errors import MaxComputeError
from localcloud.ram import STS_KEY_PREFIX, TokenAuthority, TokenProblem

MAX_SKEW_S = 15 * 60
_V4_PREFIX = "aliyun_v4"


@dataclass(frozen=True)
class Caller:
    access_key_id: str
    temporary: bool
    signature_version: str  # "v2" | "v4"


def canonical_string(method: str, resource: str, headers: Mapping[str, str]) -> str:
    """What pyodps signs: ``resource`` is the raw path + query after the endpoint (still quoted)."""
    url = urlparse(unquote(resource), allow_fragments=False)
    params = dict(parse_qsl(url.query, True)) if url.query else {}
    canonical_resource = url.path
    if url.query:
        canonical_resource += "?" + "&".join(
            k if v == "" else f"{k}={v}" for k, v in sorted(params.items())
        )
    lower = {k.lower(): v for k, v in headers.items()}
    signed = {k: v for k, v in lower.items() if k in ("content-type", "content-md5") or k.startswith("x-odps-")}
    signed.setdefault("content-type", "")
    signed.setdefault("content-md5", "")
    signed["date"] = lower.get("date", "")
    for key, value in params.items():
        if key.startswith("x-odps-"):
            signed[key] = value
    lines = [method.upper()]
    for key in sorted(signed):
        lines.append(f"{key}:{signed[key]}" if key.startswith("x-odps-") else signed[key])
    lines.append(canonical_resource)
    return "\n".join(lines)


def _v4_key(secret: str, day: str, region: str) -> bytes:
    key = hmac.new((_V4_PREFIX + secret).encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, "odps", _V4_PREFIX + "_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _unauthorized(message: str) -> MaxComputeError:
    return MaxComputeError(401, "Unauthorized", message)


class RequestVerifier:
    """Checks a request's signature against the account's long-lived keys and temporary credentials."""

    def __init__(self, credentials: Mapping[str, str], region: str, *, authority: TokenAuthority | None = None,
                 clock=None) -> None:
        self.credentials = dict(credentials)
        self.region = region
        self.authority = authority
        self._clock = clock

    def _now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return self.authority.clock() if self.authority is not None else datetime.now(UTC).timestamp()

    def verify(self, method: str, resource: str, headers: Mapping[str, str]) -> Caller:
        lower = {k.lower(): v for k, v in headers.items()}
        auth = lower.get("authorization", "")
        if not auth.startswith("ODPS ") or ":" not in auth:
            raise _unauthorized("ODPS-0410031:Authentication request expired or missing - the request is not signed "
                                "(expected 'Authorization: ODPS <AccessKeyId>:<signature>')")
        self._check_date(lower.get("date"))
        credential, _, signature = auth[5:].rpartition(":")
        access_key_id, *scope = credential.split("/")
        secret, temporary = self._secret(access_key_id, lower.get("authorization-sts-token"))
        if scope:
            if len(scope) != 4 or scope[2:] != ["odps", _V4_PREFIX + "_request"]:
                raise MaxComputeError(400, "InvalidParameter", f"ODPS-0410051:Invalid credentials - malformed "
                                      f"signature scope {'/'.join(scope)!r}")
            day, region = scope[0], scope[1]
            if region != self.region:
                raise MaxComputeError(400, "InvalidParameter", f"ODPS-0410051:Invalid credentials - the signature is "
                                      f"scoped to region {region!r}, this endpoint serves {self.region!r}")
            if abs((datetime.strptime(day, "%Y%m%d").replace(tzinfo=UTC).timestamp() + 43200) - self._now()) > 2 * 86400:
                raise MaxComputeError(403, "SignatureNotMatch", f"ODPS-0410042:Invalid signature value - the "
                                      f"signature date {day} is not today")
            key, version = _v4_key(secret, day, region), "v4"
        else:
            key, version = secret.encode(), "v2"
        expected = base64.b64encode(hmac.new(key, canonical_string(method, resource, headers).encode(),
                                             hashlib.sha1).digest()).decode()
        if not hmac.compare_digest(expected, signature):
            raise MaxComputeError(403, "SignatureNotMatch",
                                  "ODPS-0410042:Invalid signature value - User signature dose not match")
        return Caller(access_key_id, temporary, version)

    def _check_date(self, date: str | None) -> None:
        if not date:
            raise MaxComputeError(403, "RequestTimeTooSkewed", "ODPS-0410041:Missing Date header")
        try:
            sent = email.utils.parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            raise MaxComputeError(400, "InvalidParameter", f"invalid Date header {date!r}") from None
        if abs(sent - self._now()) > MAX_SKEW_S:
            raise MaxComputeError(403, "RequestTimeTooSkewed", f"ODPS-0410041:The difference between the request "
                                  f"time ({date}) and the server's time is over 15 minutes")

    def _secret(self, access_key_id: str, token: str | None) -> tuple[str, bool]:
        if access_key_id.startswith(STS_KEY_PREFIX):
            if self.authority is None:
                raise MaxComputeError(400, "InvalidParameter", "ODPS-0410051:Invalid credentials - temporary "
                                      "credentials are not accepted by this server (no STS configured)")
            if not token:
                raise _unauthorized(f"ODPS-0410051:Invalid credentials - {access_key_id} is a temporary AccessKey "
                                    "but the request carries no security token")
            try:
                return self.authority.resolve(access_key_id, token), True
            except TokenProblem as problem:
                if problem.kind == "expired":
                    # pyodps reloads its account and retries once on this code
                    raise MaxComputeError(401, "AuthenticationRequestExpired",
                                          f"ODPS-0410050:Security token expired - {problem.message}") from None
                raise MaxComputeError(400, "InvalidParameter",
                                      f"ODPS-0410051:Invalid credentials - {problem.message}") from None
        secret = self.credentials.get(access_key_id)
        if secret is None:
            raise MaxComputeError(400, "InvalidParameter",
                                  f"ODPS-0410051:Invalid credentials - accessKeyId not found: {access_key_id}")
        if token:
            raise MaxComputeError(400, "InvalidParameter", f"ODPS-0410051:Invalid credentials - a security token "
                                  f"was sent with the long-lived AccessKey {access_key_id}")
        return secret, False
