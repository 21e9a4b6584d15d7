"""Request authentication of the local OSS server: OSS signatures V1 and V4, checked as oss2 signs.

Why a module of its own: the signing rules are long, exacting and independent of how objects are
stored or served; the HTTP handler only calls :func:`authenticate` before routing a request.

Signature V1 (``Authorization: OSS <ak>:<sig>``, HMAC-SHA1) is verified byte for byte as ``oss2.Auth``
computes it, including the canonical sub-resource list copied from oss2 2.19.1. V1 pre-signed URLs
(``OSSAccessKeyId``/``Expires``/``Signature``) are accepted too. Signature V4 (``OSS4-HMAC-SHA256``,
``oss2.AuthV4``) is verified as well; any region and product in the credential scope are accepted. V2
(``OSS2``) is refused with AccessDenied. STS: a request carrying ``x-oss-security-token`` is accepted
when its key pair is configured and the token is non-empty; the local server does NOT validate tokens
(there is no STS here). No clock-skew check is made. Unknown access key ids answer ``AccessDenied``
(real OSS says ``InvalidAccessKeyId``, which oss2 has no class for); unsigned requests answer
``AccessDenied``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Mapping, Sequence
from urllib.parse import quote

from localcloud.oss.protocol import OssError, invalid_argument

_V4_ALGORITHM = "OSS4-HMAC-SHA256"

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
    secrets_by_id: Mapping[str, str],
) -> None:
    """Check the request's signature (header or pre-signed URL); raise the OssError OSS would answer.

    ``headers`` have lower-case names; ``secrets_by_id`` maps access key ids to their secrets.
    """
    authorization = headers.get("authorization", "")
    if not authorization:
        if "Signature" in params and "OSSAccessKeyId" in params:
            _check_presigned_v1(method, bucket, key, params, headers, secrets_by_id)
            return
        if "x-oss-signature" in params or "x-oss-signature-version" in params:
            raise OssError(403, "AccessDenied", "The local OSS server accepts V1 pre-signed URLs only.")
        raise OssError(
            403, "AccessDenied", "You have no right to access this object: the request is not signed."
        )
    scheme, _, rest = authorization.partition(" ")
    if scheme == "OSS":
        access_key_id, sep, signature = rest.strip().rpartition(":")
        if not sep or not access_key_id:
            raise OssError(400, "InvalidArgument", "Authorization header is invalid.")
        secret = _secret_for(secrets_by_id, access_key_id)
        _check_security_token(headers)
        date = headers.get("x-oss-date") or headers.get("date", "")
        to_sign = _v1_string_to_sign(method, headers, bucket, key, params, date)
        expected = base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha1).digest()).decode()
        if not _same_signature(expected, signature):
            raise _signature_mismatch(access_key_id, signature, to_sign)
    elif scheme == _V4_ALGORITHM:
        _check_v4(method, bucket, key, params, headers, secrets_by_id, rest)
    elif scheme == "OSS2":
        raise OssError(403, "AccessDenied", "The local OSS server supports signature V1 and V4, not V2.")
    else:
        raise OssError(400, "InvalidArgument", "Authorization header is invalid.")


def _secret_for(secrets_by_id: Mapping[str, str], access_key_id: str) -> str:
    secret = secrets_by_id.get(access_key_id)
    if secret is None:
        raise OssError(
            403,
            "AccessDenied",
            "The OSS Access Key Id you provided does not exist in our records.",
            OSSAccessKeyId=access_key_id,
        )
    return secret


def _check_security_token(headers: Mapping[str, str]) -> None:
    # STS: the token is accepted, not validated (documented); an empty one is a client bug.
    if "x-oss-security-token" in headers and not headers["x-oss-security-token"].strip():
        raise OssError(403, "InvalidSecurityToken", "The security token you provided is empty.")


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
    method: str, bucket: str, key: str, params: Mapping[str, str], headers: Mapping[str, str],
    secrets_by_id: Mapping[str, str],
) -> None:
    access_key_id = params["OSSAccessKeyId"]
    secret = _secret_for(secrets_by_id, access_key_id)
    expires = params.get("Expires", "")
    if not expires.isdigit():
        raise invalid_argument("Expires is not a number.", "Expires", expires)
    if int(expires) < time.time():
        raise OssError(403, "AccessDenied", "Request has expired.", Expires=expires)
    signed_params = {k: v for k, v in params.items() if k not in _PRESIGN_PARAMS}
    if "security-token" in signed_params and not signed_params["security-token"]:
        raise OssError(403, "InvalidSecurityToken", "The security token you provided is empty.")
    to_sign = _v1_string_to_sign(method, headers, bucket, key, signed_params, expires)
    expected = base64.b64encode(hmac.new(secret.encode(), to_sign, hashlib.sha1).digest()).decode()
    if not _same_signature(expected, params["Signature"]):
        raise _signature_mismatch(access_key_id, params["Signature"], to_sign)


def _check_v4(
    method: str, bucket: str, key: str, params: Mapping[str, str], headers: Mapping[str, str],
    secrets_by_id: Mapping[str, str], rest: str,
) -> None:
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            fields[name.strip()] = value.strip()
    credential = fields.get("Credential", "")
    provided = fields.get("Signature", "")
    scope_parts = credential.split("/")
    if len(scope_parts) != 5 or scope_parts[4] != "aliyun_v4_request" or not provided:
        raise OssError(400, "InvalidArgument", "Authorization header (V4) is invalid.")
    access_key_id, scope_date, region, product = scope_parts[:4]
    secret = _secret_for(secrets_by_id, access_key_id)
    _check_security_token(headers)
    date_time = headers.get("x-oss-date", "")
    if not date_time.startswith(scope_date):
        raise OssError(403, "AccessDenied", "The x-oss-date header does not match the credential scope date.")
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
