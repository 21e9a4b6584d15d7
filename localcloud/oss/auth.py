"""Request authentication of the local OSS server: OSS signatures V1 and V4, checked as oss2 signs.

Why a module of its own: the signing rules are long, exacting and independent of how objects are
stored or served; the HTTP handler only calls :func:`authenticate` before routing a request.

Signature V4 (``OSS4-HMAC-SHA256``, ``oss2.AuthV4`` / ``ProviderAuthV4``) is what the server accepts by
default: the credential scope must name the server's region and the product ``oss`` (as a bucket in
that region requires), and ``x-oss-date`` must be within 15 minutes of the server's clock
(``RequestTimeTooSkewed`` otherwise, with ``RequestTime``, ``ServerTime`` and
``MaxAllowedSkewMilliseconds``; a date that does not parse is 403 ``AccessDenied``, EC ``0002-00000505``,
as OSS documents for an invalid Date / x-oss-date). A V4 pre-signed URL carries its own validity
(``x-oss-date`` + ``x-oss-expires``, at most 7 days): expired is 403 ``AccessDenied`` "Request has
expired.", and one dated more than 15 minutes in the future is refused too (EC ``0002-00000235``, "not
yet valid"), else a URL could be made valid for longer than 7 days. Signature V1 (``Authorization: OSS <ak>:<sig>``, HMAC-SHA1, and
V1 pre-signed URLs) is refused with 403 ``AccessDenied`` / EC ``0002-00000080``, as OSS refuses it for
new accounts (from 2025-03-01) and new buckets (from 2025-09-01); with ``accept_v1`` it is verified
byte for byte as ``oss2.Auth`` computes it, including the canonical sub-resource list copied from oss2
2.19.1, with the same clock check on its ``Date``. V2 (``OSS2``) is refused with AccessDenied.

STS: an ``STS.`` AccessKey ID is resolved by the account's :class:`~localcloud.ram.TokenAuthority`
from its ``x-oss-security-token`` (or ``security-token`` of a pre-signed URL): a missing, malformed or
mismatched token answers 403 ``InvalidSecurityToken``, an expired one 403 ``SecurityTokenExpired``
(EC 0002-00000007; OSS documents the EC, the code name is our reading). Unknown access key ids answer
``AccessDenied`` (real OSS says ``InvalidAccessKeyId``, which oss2 has no class for); unsigned
requests answer ``AccessDenied``.
"""

from __future__ import annotations

import base64
import calendar
import hashlib
import hmac
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Mapping, Sequence
from urllib.parse import quote

from localcloud.oss.protocol import OssError, invalid_argument
from localcloud.ram import TokenAuthority, TokenProblem

_V4_ALGORITHM = "OSS4-HMAC-SHA256"
MAX_CLOCK_SKEW_S = 15 * 60


@dataclass(frozen=True)
class AuthPolicy:
    """Whom the server trusts and how strictly: long-lived keys, the STS authority, region, V1."""

    secrets_by_id: Mapping[str, str]
    authority: TokenAuthority | None = None
    region: str = "cn-hangzhou"
    accept_v1: bool = False
    max_clock_skew_s: float | None = MAX_CLOCK_SKEW_S

# Query parameters that oss2 (2.19.1, oss2/auth.py ProviderAuth._subresource_key_set) puts into the V1
# canonicalized resource. Every other parameter (prefix, marker, max-keys, delimiter, encoding-type,
# list-type, start-after, fetch-owner, ...) is NOT signed by V1.
V1_SUBRESOURCES = frozenset(
    [
        "response-content-type", "response-content-language", "response-cache-control", "logging",
        "response-content-encoding", "acl", "uploadId", "uploads", "partNumber", "group", "link",
        "delete", "website", "location", "objectInfo", "objectMeta", "response-expires",
        "response-content-disposition", "cors", "lifecycle", "restore", "qos", "referer", "stat",
        "bucketInfo", "append", "position", "security-token", "live", "comp", "status", "vod",
        "startTime", "endTime", "x-oss-process", "symlink", "callback", "callback-var", "tagging",
        "encryption", "versions", "versioning", "versionId", "policy", "requestPayment",
        "x-oss-traffic-limit", "qosInfo", "asyncFetch", "x-oss-request-payer", "sequential",
        "inventory", "inventoryId", "continuation-token", "worm", "wormId", "wormExtend",
        "replication", "replicationLocation", "replicationProgress", "transferAcceleration", "cname",
        "metaQuery", "x-oss-ac-source-ip", "x-oss-ac-subnet-mask", "x-oss-ac-vpc-id",
        "x-oss-ac-forward-allow", "resourceGroup", "style", "styleName", "x-oss-async-process",
        "regionList", "x-oss-write-get-object-response", "bucketArchiveDirectRead", "httpsConfig",
        "redundancyTransition", "x-oss-target-redundancy-type", "x-oss-redundancy-transition-taskid",
        "accessPoint", "accessPointPolicy", "publicAccessBlock", "x-oss-access-point-name",
        "requesterQosInfo", "qosRequester", "resourcePoolInfo", "resourcePool", "resourcePoolBuckets",
    ]
)
_PRESIGN_PARAMS = frozenset(["OSSAccessKeyId", "Expires", "Signature"])


def _v1_canonical_resource(bucket: str, key: str, params: Mapping[str, str]) -> str:
    resource = f"/{bucket}/{key}" if bucket else "/"
    subresources = sorted((k, v) for k, v in params.items() if k in V1_SUBRESOURCES)
    if subresources:
        resource += "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)
    return resource


def _v1_string_to_sign(
    method: str, headers: Mapping[str, str], bucket: str, key: str, params: Mapping[str, str], date: str
) -> bytes:
    oss_headers = sorted((k.lower(), v) for k, v in headers.items() if k.lower().startswith("x-oss-"))
    canon_headers = "".join(f"{k}:{v}\n" for k, v in oss_headers)
    return "\n".join(
        [
            method,
            headers.get("content-md5", ""),
            headers.get("content-type", ""),
            date,
            canon_headers + _v1_canonical_resource(bucket, key, params),
        ]
    ).encode("utf-8")


def _v4_uri_encode(text: str, keep_slash: bool) -> str:
    safe = "-_.~/" if keep_slash else "-_.~"
    return quote(text.encode("utf-8"), safe=safe)


def _v4_canonical_request(
    method: str,
    headers: Mapping[str, str],
    bucket: str,
    key: str,
    params: Mapping[str, str],
    additional: Sequence[str],
) -> str:
    uri = _v4_uri_encode(f"/{bucket}/{key}" if bucket else "/", keep_slash=True)
    encoded = sorted((_v4_uri_encode(k, False), _v4_uri_encode(v, False)) for k, v in params.items())
    query = "&".join(f"{k}={v}" if v else k for k, v in encoded)
    extra = {h.lower() for h in additional}
    signed = sorted(
        (k.lower(), v)
        for k, v in headers.items()
        if k.lower().startswith("x-oss-") or k.lower() in ("content-type", "content-md5") or k.lower() in extra
    )
    canon_headers = "".join(f"{k}:{v}\n" for k, v in signed)
    return "\n".join(
        [
            method,
            uri,
            query,
            canon_headers,
            ";".join(sorted(extra)),
            headers.get("x-oss-content-sha256", "UNSIGNED-PAYLOAD"),
        ]
    )


def _same_signature(expected: str, provided: str) -> bool:
    """Constant-time comparison that also copes with non-ASCII garbage in the provided value."""
    return hmac.compare_digest(expected.encode("ascii"), provided.encode("utf-8", "surrogateescape"))


def _v4_signing_key(secret: str, date: str, region: str, product: str) -> bytes:
    k = hmac.new(("aliyun_v4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    k = hmac.new(k, region.encode(), hashlib.sha256).digest()
    k = hmac.new(k, product.encode(), hashlib.sha256).digest()
    return hmac.new(k, b"aliyun_v4_request", hashlib.sha256).digest()


def authenticate(
    method: str,
    bucket: str,
    key: str,
    params: Mapping[str, str],
    headers: Mapping[str, str],
    policy: AuthPolicy,
) -> None:
    """Check the request's signature (header or pre-signed URL); raise the OssError OSS would answer.

    ``headers`` have lower-case names.
    """
    authorization = headers.get("authorization", "")
    if not authorization:
        if "Signature" in params and "OSSAccessKeyId" in params:
            _refuse_v1_unless_accepted(policy)
            _check_presigned_v1(method, bucket, key, params, headers, policy)
            return
        if "x-oss-signature" in params or "x-oss-signature-version" in params:
            _check_presigned_v4(method, bucket, key, params, headers, policy)
            return
        raise OssError(
            403, "AccessDenied", "You have no right to access this object: the request is not signed."
        )
    scheme, _, rest = authorization.partition(" ")
    if scheme == "OSS":
        _refuse_v1_unless_accepted(policy)
        access_key_id, sep, signature = rest.strip().rpartition(":")
        if not sep or not access_key_id:
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.")
        secret = _secret_for(policy, access_key_id, headers.get("x-oss-security-token"))
        date = headers.get("x-oss-date") or headers.get("date", "")
        _check_skew(policy, _http_date(date), date, ec="0002-00000504")
        to_sign = _v1_string_to_sign(method, headers, bucket, key, params, date)
        expected = base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha1).digest()).decode()
        if not _same_signature(expected, signature):
            raise _signature_mismatch(access_key_id, signature, to_sign)
    elif scheme == _V4_ALGORITHM:
        _check_v4(method, bucket, key, params, headers, policy, rest)
    elif scheme == "OSS2":
        raise OssError(403, "AccessDenied", "The local OSS server supports signature V4 (and V1 when asked), not V2.")
    else:
        raise OssError(400, "InvalidArgument", "Authorization header is invalid.")


def _refuse_v1_unless_accepted(policy: AuthPolicy) -> None:
    if not policy.accept_v1:
        raise OssError(
            403,
            "AccessDenied",
            "V1 signatures are not accepted for this bucket: sign requests with V4 (OSS4-HMAC-SHA256) and "
            "the bucket's region.",
            EC="0002-00000080",
        )


def _secret_for(policy: AuthPolicy, access_key_id: str, token: str | None) -> str:
    if policy.authority is not None and policy.authority.is_temporary(access_key_id):
        try:
            return policy.authority.resolve(access_key_id, token)
        except TokenProblem as problem:
            if problem.kind == "expired":
                raise OssError(403, "SecurityTokenExpired", "The security token you provided has expired.",
                               EC="0002-00000007") from None
            raise OssError(403, "InvalidSecurityToken", f"The security token you provided is invalid: {problem}.",
                           EC="0002-00000008") from None
    secret = policy.secrets_by_id.get(access_key_id)
    if secret is None:
        raise OssError(
            403,
            "AccessDenied",
            "The OSS Access Key Id you provided does not exist in our records.",
            OSSAccessKeyId=access_key_id,
        )
    if token is not None:  # a token belongs to a temporary key, never to a long-lived one
        raise OssError(403, "InvalidSecurityToken",
                       "The security token you provided does not belong to this AccessKey ID.", EC="0002-00000008")
    return secret


def _http_date(value: str) -> float | None:
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def _check_skew(policy: AuthPolicy, sent_at: float | None, sent: str, ec: str = "") -> None:
    """Refuse a request signed too long ago (or ahead): OSS allows 15 minutes either way.

    The EC of the V1 case (0002-00000504) and of an unparseable date (0002-00000505) are documented;
    ``RequestTime`` / ``ServerTime`` are what S3 puts in this error and what OSS answers in examples
    seen in the wild (not in OSS's own documentation); oss2 has no class for the code and surfaces it as
    ``ServerError`` with ``code == "RequestTimeTooSkewed"`` and these fields in ``details``.
    """
    if policy.max_clock_skew_s is None:
        return
    if sent_at is None:
        raise OssError(403, "AccessDenied", "The request carries no valid date to check its signature's age: "
                       f"{sent[:64]!r} is not an HTTP date (Date) or ISO 8601 basic date-time (x-oss-date).",
                       EC="0002-00000505")
    now = time.time()
    if abs(now - sent_at) > policy.max_clock_skew_s:
        extra = {"EC": ec} if ec else {}
        raise OssError(
            403, "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            RequestTime=sent[:64], ServerTime=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now)),
            MaxAllowedSkewMilliseconds=str(int(policy.max_clock_skew_s * 1000)), **extra,
        )


def _signature_mismatch(access_key_id: str, provided: str, to_sign: bytes, **extra: str) -> OssError:
    return OssError(
        403,
        "SignatureDoesNotMatch",
        "The request signature we calculated does not match the signature you provided. "
        "Check your key and signing method.",
        StringToSign=to_sign.decode("utf-8", "replace"),
        SignatureProvided=provided,
        OSSAccessKeyId=access_key_id,
        **extra,
    )


def _check_presigned_v1(
    method: str, bucket: str, key: str, params: Mapping[str, str], headers: Mapping[str, str], policy: AuthPolicy
) -> None:
    access_key_id = params["OSSAccessKeyId"]
    secret = _secret_for(policy, access_key_id, params.get("security-token"))
    expires = params.get("Expires", "")
    if not expires.isdigit():
        raise invalid_argument("Expires is not a number.", "Expires", expires)
    if int(expires) < time.time():
        raise OssError(403, "AccessDenied", "Request has expired.", Expires=expires)
    signed_params = {k: v for k, v in params.items() if k not in _PRESIGN_PARAMS}
    to_sign = _v1_string_to_sign(method, headers, bucket, key, signed_params, expires)
    expected = base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha1).digest()).decode()
    if not _same_signature(expected, params["Signature"]):
        raise _signature_mismatch(access_key_id, params["Signature"], to_sign)


def _check_presigned_v4(
    method: str, bucket: str, key: str, params: Mapping[str, str], headers: Mapping[str, str], policy: AuthPolicy
) -> None:
    """A V4 pre-signed URL (``oss2.AuthV4.sign_url``): the signature covers every other query parameter."""
    if params.get("x-oss-signature-version") != _V4_ALGORITHM or not params.get("x-oss-signature"):
        raise invalid_argument("x-oss-signature-version must be OSS4-HMAC-SHA256, with x-oss-signature.")
    expires, date_time = params.get("x-oss-expires", ""), params.get("x-oss-date", "")
    if not expires.isdigit() or not 0 < int(expires) <= 7 * 24 * 3600:
        raise invalid_argument("x-oss-expires must be 1..604800 seconds.", "x-oss-expires", expires)
    try:
        signed_at = calendar.timegm(time.strptime(date_time, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        raise invalid_argument("x-oss-date is not an ISO 8601 basic date-time.", "x-oss-date", date_time) from None
    now = time.time()
    if signed_at + int(expires) < now:
        raise OssError(403, "AccessDenied", "Request has expired.", Expires=expires)
    if policy.max_clock_skew_s is not None and signed_at - now > policy.max_clock_skew_s:
        raise OssError(403, "AccessDenied", "Request is not valid yet: x-oss-date is in the future.",
                       EC="0002-00000235")
    unsigned = {k: v for k, v in params.items() if k != "x-oss-signature"}
    fields = {"Credential": params.get("x-oss-credential", ""), "Signature": params["x-oss-signature"],
              "AdditionalHeaders": params.get("x-oss-additional-headers", "")}
    _verify_v4(method, bucket, key, unsigned, headers, policy, fields, params.get("x-oss-security-token"),
               date_time, check_skew=False)


def _check_v4(
    method: str, bucket: str, key: str, params: Mapping[str, str], headers: Mapping[str, str],
    policy: AuthPolicy, rest: str,
) -> None:
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    _verify_v4(method, bucket, key, params, headers, policy, fields, headers.get("x-oss-security-token"),
               headers.get("x-oss-date", ""))


def _verify_v4(
    method: str, bucket: str, key: str, params: Mapping[str, str], headers: Mapping[str, str],
    policy: AuthPolicy, fields: Mapping[str, str], token: str | None, date_time: str, check_skew: bool = True,
) -> None:
    credential = fields.get("Credential", "")
    provided = fields.get("Signature", "")
    scope_parts = credential.split("/")
    if len(scope_parts) != 5 or scope_parts[4] != "aliyun_v4_request" or not provided:
        raise OssError(400, "InvalidArgument", "Authorization header (V4) is invalid.")
    access_key_id, scope_date, region, product = scope_parts[:4]
    if region != policy.region or product != "oss":
        raise OssError(
            400, "InvalidArgument",
            f"The credential scope names region {region!r} and product {product!r}; this bucket is in "
            f"{policy.region!r} (product 'oss'): set the connection's region.",
        )
    secret = _secret_for(policy, access_key_id, token)
    if not date_time.startswith(scope_date):
        raise OssError(403, "AccessDenied", "The x-oss-date does not match the credential scope date.")
    try:
        sent_at: float | None = calendar.timegm(time.strptime(date_time, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        sent_at = None
    if check_skew:
        _check_skew(policy, sent_at, date_time)
    additional = [h for h in fields.get("AdditionalHeaders", "").split(";") if h]
    canonical = _v4_canonical_request(method, headers, bucket, key, params, additional)
    scope = "/".join(scope_parts[1:])
    to_sign = "\n".join(
        [_V4_ALGORITHM, date_time, scope, hashlib.sha256(canonical.encode("utf-8")).hexdigest()]
    ).encode("utf-8")
    signing_key = _v4_signing_key(secret, scope_date, region, product)
    expected = hmac.new(signing_key, to_sign, hashlib.sha256).hexdigest()
    if not _same_signature(expected, provided):
        raise _signature_mismatch(access_key_id, provided, to_sign, CanonicalRequest=canonical)
