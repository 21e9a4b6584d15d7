"""Server-side check of the ACS3-HMAC-SHA256 signature that Alibaba Cloud's Python SDKs send.

alibabacloud-tea-openapi 0.4.x (``Client.do_request`` + ``alibabacloud_tea_openapi.utils``) signs
every ROA call of alibabacloud_searchengine20211025 like this, and :func:`verify_acs3_request`
recomputes exactly the same thing from what arrives on the wire::

    canonical_request = METHOD                  "GET", "POST", "PUT", ...
                        + "\\n" + pathname      as signed; path ids were DaraURL.percent_encode()d
                        + "\\n" + query         keys sorted; "key=" + quote(value, safe="~")
                        + "\\n" + headers       "name:value\\n" per signed header (see below)
                        + "\\n" + signed_names  "host;x-acs-action;..." (';'-joined, sorted)
                        + "\\n" + x-acs-content-sha256   hex SHA-256 of the body ("" when none)
    string_to_sign    = "ACS3-HMAC-SHA256\\n" + hex(sha256(canonical_request))
    signature         = hex(hmac_sha256(secret, string_to_sign))
    Authorization     = "ACS3-HMAC-SHA256 Credential=<ak>,SignedHeaders=<names>,Signature=<sig>"

Facts the verifier relies on (read in the SDK source, confirmed by the tests with the real SDK):

* The SDK signs *every* header it has set at that moment (accept, content-type when there is a
  body, host, user-agent, x-acs-action, x-acs-content-sha256, x-acs-credentials-provider
  (``static_ak`` / ``static_sts``), x-acs-date, x-acs-signature-nonce, x-acs-version, and with STS
  x-acs-accesskey-id and x-acs-security-token), lower-cased, values stripped; duplicates are
  sorted and joined with ",". ``Authorization`` is added afterwards, and the HTTP stack adds
  unsigned ``Accept-Encoding: identity`` and ``Content-Length``. So we rebuild the header block
  from the ``SignedHeaders`` list, not from a fixed set; we require that list to cover ``host``,
  every ``x-acs-*`` header present and ``content-type`` if present.
* The path is signed exactly as sent: ids are ``quote(id, safe='')`` encoded by the product client
  and requests does not re-encode them, so the raw request path *is* the canonical URI (no decode,
  no re-encode, no normalisation here).
* The query is sent with ``urlencode`` (space as ``+``) but signed with ``quote(v, safe='~')``
  (space as ``%20``) and with the *key unencoded*; so we URL-decode the wire query and re-encode
  the values the SDK's way.
* The body hash is hex SHA-256 of the exact body bytes (JSON bodies are compact
  ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``); a request without a body hashes
  the empty string.

Error codes are Alibaba Cloud POP gateway codes: ``IncompleteSignature`` (400),
``InvalidAccessKeyId.NotFound`` (404, "Specified access key is not found."),
``SignatureDoesNotMatch`` (400, "Specified signature is not matched with our calculation."),
``InvalidTimeStamp.Expired`` (400, "Specified time stamp or date value is expired."),
``InvalidTimeStamp.Format`` (400), ``SignatureNonceUsed`` (400, "Specified signature nonce was used
already."), ``InvalidSignatureMethod`` (400). A body that does not match x-acs-content-sha256 gets
``ContentSHA256NotMatched`` (400): named after the V1 gateway's ``ContentMD5NotMatched``; the real
V3 gateway's code for this case is not documented, so this one is ours.

STS: a temporary (``STS.``) AccessKey ID is resolved by the account's
:class:`~localcloud.ram.TokenAuthority` from the signed ``x-acs-security-token``; a missing,
malformed, mismatched or expired token is refused with the POP gateway's codes
(``MissingSecurityToken``, ``InvalidSecurityToken.Malformed`` / ``.MismatchWithAccessKey`` /
``.Expired``, 400). Policies are not evaluated.

No message ever contains a secret. stdlib only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, MutableSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote

from localcloud.ram import TokenAuthority, TokenProblem

__all__ = [
    "SIGNATURE_ALGORITHM",
    "AcsCredential",
    "Acs3SignatureError",
    "verify_acs3_request",
    "verify_body_sha256",
    "canonical_query_string",
    "canonical_request",
    "parse_authorization",
]

SIGNATURE_ALGORITHM = "ACS3-HMAC-SHA256"
MAX_CLOCK_SKEW_SECONDS = 15 * 60  # the POP gateway's window for x-acs-date
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

# Headers every SDK call carries and signs; a request without one is not an ACS3 request.
_REQUIRED_SIGNED = (
    "host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256",
)
_HEX64_RE = re.compile(r"[0-9a-f]{64}\Z")
_HEADER_NAME_RE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+\Z")


@dataclass(frozen=True)
class AcsCredential:
    access_key_id: str
    access_key_secret: str = field(repr=False)  # never in reprs, logs or tracebacks


class Acs3SignatureError(Exception):
    """A request the POP gateway would refuse. ``code`` is the POP error code."""

    code: str
    message: str
    http_status: int

    def __init__(self, code: str, message: str, http_status: int = 400, canonical_request: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        # For server logs when a signature mismatches; holds no secret (security token redacted).
        self.canonical_request = canonical_request

    def to_response_body(self, request_id: str) -> dict[str, str]:
        """The JSON error body the SDK parses: it reads ``code``/``Code`` and ``message``/``Message``."""
        return {"requestId": request_id, "code": self.code, "message": self.message}


def _incomplete(why: str) -> Acs3SignatureError:
    return Acs3SignatureError(
        "IncompleteSignature", f"The request signature does not conform to Aliyun standards: {why}", 400
    )


def _normalize_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Lower-case names; keep every value (a Message/HTTPMessage yields repeated names in items())."""
    items = headers.items() if hasattr(headers, "items") else headers
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(str(name).lower(), []).append(str(value))
    return out


def _header_value(values: list[str]) -> str:
    # The SDK: to_str(v).strip() per value, then ",".join(sorted(values)).
    return ",".join(sorted(v.strip() for v in values))


def canonical_query_string(query: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """The SDK's ``get_canonical_query_string`` over already-decoded pairs.

    Keys sorted and *not* encoded, values ``quote(value, safe="~")``, pairs joined by ``&``.
    Pairs with a None value are skipped, as the SDK skips them.
    """
    pairs = list(query.items()) if isinstance(query, Mapping) else list(query)
    pairs = [(str(k), str(v)) for k, v in pairs if v is not None]
    pairs.sort()  # the SDK's dict cannot repeat a key; for repeats, sorting by value is deterministic
    return "&".join(f"{k}={quote(v, safe='~', encoding='utf-8')}" for k, v in pairs)


def canonical_request(
    method: str,
    canonical_uri: str,
    query: Mapping[str, str] | Iterable[tuple[str, str]],
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    signed_headers: list[str],
    hashed_payload: str,
) -> str:
    """Build the canonical request the SDK's ``Utils.get_authorization`` hashes."""
    norm = _normalize_headers(headers)
    header_block = "".join(f"{name}:{_header_value(norm.get(name, []))}\n" for name in signed_headers)
    parts = [method.upper(), canonical_uri or "/", canonical_query_string(query), header_block]
    return "\n".join([*parts, ";".join(signed_headers), hashed_payload])


@dataclass(frozen=True)
class _Authorization:
    algorithm: str
    access_key_id: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> _Authorization:
    """Split ``ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..``; raise on any defect."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != SIGNATURE_ALGORITHM:
        if algorithm.startswith("ACS3-"):
            raise Acs3SignatureError(
                "InvalidSignatureMethod",
                f"Signature algorithm {algorithm!r} is not supported here; use {SIGNATURE_ALGORITHM}.",
                400,
            )
        raise _incomplete(f"the Authorization header must start with {SIGNATURE_ALGORITHM}")
    fields: dict[str, str] = {}
    for part in rest.split(","):
        key, eq, val = part.strip().partition("=")
        if not eq or key in fields:
            raise _incomplete(f"malformed Authorization element {part.strip()[:40]!r}")
        fields[key] = val
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
    if missing:
        raise _incomplete(f"the Authorization header lacks {', '.join(missing)}")
    if not _HEX64_RE.match(fields["Signature"]):
        raise _incomplete("Signature must be 64 lower-case hex digits")
    names = fields["SignedHeaders"].split(";")
    if any(not _HEADER_NAME_RE.match(n) for n in names):
        raise _incomplete("SignedHeaders must be lower-case header names joined by ';'")
    if names != sorted(set(names)):
        raise _incomplete("SignedHeaders must be sorted and free of repeats")
    return _Authorization(algorithm, fields["Credential"], names, fields["Signature"])


def _check_date(value: str, now: datetime, max_skew: float) -> None:
    try:
        stamp = datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise Acs3SignatureError(
            "InvalidTimeStamp.Format",
            f"Specified time stamp or date value is not well formatted: x-acs-date {value[:40]!r} "
            "must be yyyy-MM-ddTHH:mm:ssZ (UTC).",
            400,
        ) from None
    skew = abs((now - stamp).total_seconds())
    if skew > max_skew:
        raise Acs3SignatureError(
            "InvalidTimeStamp.Expired",
            f"Specified time stamp or date value is expired: x-acs-date {value} is {skew:.0f} s away "
            f"from the server clock (limit {max_skew:.0f} s). Check the client's clock.",
            400,
        )


def _redact(canonical: str) -> str:
    return re.sub(r"(?m)^(x-acs-security-token:).*$", r"\1<redacted>", canonical)


def verify_acs3_request(
    method: str,
    raw_path: str,
    query: Mapping[str, str] | list[tuple[str, str]] | None,
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | None,
    credentials: Mapping[str, AcsCredential],
    *,
    now: datetime | None = None,
    max_clock_skew: float | None = MAX_CLOCK_SKEW_SECONDS,
    seen_nonces: MutableSet[str] | None = None,
    authority: TokenAuthority | None = None,
) -> AcsCredential:
    """Verify one request; return the matching credential or raise :class:`Acs3SignatureError`.

    ``raw_path``: the request target as received (``self.path`` of a BaseHTTPRequestHandler);
    anything after ``?`` is used as the query only when ``query`` is None. ``query``: decoded
    pairs (``parse_qsl(raw, keep_blank_values=True)``). ``headers``: any mapping or pair list,
    names case-insensitive. ``credentials``: by AccessKey ID. ``now`` / ``max_clock_skew``:
    x-acs-date window (None disables). ``seen_nonces``: pass a set to refuse replays
    (``SignatureNonceUsed``); a nonce is recorded only once the request has verified. ``authority``:
    the account's STS, whose temporary (``STS.``) keys are resolved from ``x-acs-security-token``.
    ``body`` None: the body is not read yet (a server authenticates before it reads a body): the
    signature is checked over the declared ``x-acs-content-sha256``, and the caller checks the body
    against it with :func:`verify_body_sha256` once read.
    """
    path, _, raw_query = raw_path.partition("?")
    if query is None:
        query = parse_qsl(raw_query, keep_blank_values=True)
    norm = _normalize_headers(headers)
    auth_values = norm.get("authorization")
    if not auth_values:
        raise _incomplete("the Authorization header is missing")
    if len(auth_values) > 1:
        raise _incomplete("more than one Authorization header")
    auth = parse_authorization(auth_values[0])

    signed = set(auth.signed_headers)
    must_sign = set(_REQUIRED_SIGNED) | {n for n in norm if n.startswith("x-acs-")}
    declared_hash = (norm.get("x-acs-content-sha256") or [""])[0].strip()
    has_body = bool(body) if body is not None else declared_hash != EMPTY_SHA256
    if "content-type" in norm and has_body:
        # Only a request with a body must sign its content type: the SDK's async path (aiohttp) adds an
        # unsigned "Content-Type: application/octet-stream" to bodiless GETs and PUTs.
        must_sign.add("content-type")
    unsigned = sorted(must_sign - signed)
    if unsigned:
        raise _incomplete(f"SignedHeaders must include {', '.join(unsigned)}")
    absent = sorted(n for n in signed if n not in norm)
    if absent:
        raise _incomplete(f"signed header(s) {', '.join(absent)} are not in the request")
    for name in ("x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce", "host"):
        if len(norm[name]) > 1:
            raise _incomplete(f"header {name} appears more than once")

    credential = credentials.get(auth.access_key_id)
    token_values = norm.get("x-acs-security-token")
    if credential is None and authority is not None and authority.is_temporary(auth.access_key_id):
        credential = _temporary(authority, auth.access_key_id, _header_value(token_values) if token_values else None)
    elif credential is not None and token_values:  # a token belongs to a temporary key, never a long-lived one
        raise Acs3SignatureError(*_TOKEN_CODES["mismatch"], 400)
    if credential is None:
        raise Acs3SignatureError(
            "InvalidAccessKeyId.NotFound",
            f"Specified access key is not found: AccessKey ID {auth.access_key_id[:64]!r} is unknown "
            "to this server.",
            404,
        )
    sts_key_id = norm.get("x-acs-accesskey-id")
    if sts_key_id is not None and _header_value(sts_key_id) != auth.access_key_id:
        raise _incomplete("x-acs-accesskey-id differs from the Credential of the Authorization header")

    if max_clock_skew is not None:
        _check_date(norm["x-acs-date"][0].strip(), now or datetime.now(UTC), max_clock_skew)

    declared = norm["x-acs-content-sha256"][0].strip()
    if body is not None:
        verify_body_sha256(declared, body)

    canonical = canonical_request(method, path, query, _pairs(norm), auth.signed_headers, declared)
    string_to_sign = f"{SIGNATURE_ALGORITHM}\n{hashlib.sha256(canonical.encode('utf-8')).hexdigest()}"
    secret = credential.access_key_secret.encode("utf-8")
    expected = hmac.new(secret, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, auth.signature):
        raise Acs3SignatureError(
            "SignatureDoesNotMatch",
            "Specified signature is not matched with our calculation. Check that the AccessKey "
            f"secret configured for AccessKey ID {auth.access_key_id!r} is the one paired with that ID "
            "(no stray spaces or newlines). server string to sign is: " + string_to_sign,
            400,
            canonical_request=_redact(canonical),
        )

    if seen_nonces is not None:
        nonce = norm["x-acs-signature-nonce"][0].strip()
        if nonce in seen_nonces:
            raise Acs3SignatureError("SignatureNonceUsed", "Specified signature nonce was used already.", 400)
        seen_nonces.add(nonce)
    return credential


def verify_body_sha256(declared: str, body: bytes) -> None:
    """Raise ``ContentSHA256NotMatched`` unless ``body`` hashes to the signed x-acs-content-sha256."""
    actual = hashlib.sha256(body).hexdigest()
    if not hmac.compare_digest(declared.strip().encode("utf-8", "replace"), actual.encode("ascii")):
        raise Acs3SignatureError(
            "ContentSHA256NotMatched",
            f"The body does not match x-acs-content-sha256 (declared {declared.strip()[:64]!r}, body hashes to "
            f"{actual}, {len(body)} bytes): the body was changed after signing.",
            400,
        )


_TOKEN_CODES = {
    "missing": ("MissingSecurityToken", "SecurityToken is mandatory for this action."),
    "malformed": ("InvalidSecurityToken.Malformed", "Specified SecurityToken is malformed."),
    "mismatch": ("InvalidSecurityToken.MismatchWithAccessKey", "Specified SecurityToken mismatch with the AccessKey."),
    "expired": ("InvalidSecurityToken.Expired", "Specified SecurityToken is expired."),
}


def _temporary(authority: TokenAuthority, access_key_id: str, token: str | None) -> AcsCredential:
    try:
        return AcsCredential(access_key_id, authority.resolve(access_key_id, token))
    except TokenProblem as problem:
        code, message = _TOKEN_CODES[problem.kind]
        raise Acs3SignatureError(code, message, 400) from None


def _pairs(norm: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, values in norm.items() for value in values]
