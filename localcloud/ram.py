"""The account's identity, shared by the local services: temporary credentials that the local STS
issues and every local server verifies, as RAM and STS do for the cloud's services.

Temporary credentials are stateless, so separate processes agree on them without talking: given the
authority's key, a server recomputes the secret of any ``STS.`` AccessKey ID and checks the token's
signature and expiry. A token is ``CAIS`` + base64url(JSON payload) + ``.`` + base64url(HMAC); the
payload names the AccessKey ID, the expiry (epoch seconds), the role and the session.

What the services answer for a missing, malformed, mismatched or expired token is theirs to say
(OSS and the POP gateway use different codes); :meth:`TokenAuthority.resolve` raises
:class:`TokenProblem` with a ``kind`` they map.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Literal

STS_KEY_PREFIX = "STS."
_TOKEN_PREFIX = "CAIS"


@dataclass(frozen=True)
class TemporaryCredential:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str = field(repr=False)
    expiration: int  # epoch seconds

    @property
    def expiration_iso(self) -> str:
        """``2026-12-01T03:00:00Z``: the form STS and the ECS metadata service answer with."""
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.expiration))


class TokenProblem(Exception):
    """Why a temporary credential is refused; ``kind`` is what the service maps to its error code."""

    def __init__(self, kind: Literal["missing", "malformed", "mismatch", "expired"], message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class TokenAuthority:
    """Issues temporary credentials and resolves them back to their secret.

    ``max_lifetime_s`` caps every token's life below what was asked (a test knob: the real STS gives
    at least 900 s, so a wait longer than a token's life is otherwise hours long to rehearse).
    """

    def __init__(self, key: bytes, *, max_lifetime_s: float | None = None, clock: Callable[[], float] = time.time) -> None:
        if len(key) < 16:
            raise ValueError("the token authority's key must be at least 16 bytes")
        self._key = key
        self.max_lifetime_s = max_lifetime_s
        self.clock = clock

    @classmethod
    def from_hex(cls, key_hex: str, **kwargs) -> TokenAuthority:
        return cls(bytes.fromhex(key_hex), **kwargs)

    def issue(self, role_arn: str, session_name: str, duration_s: float) -> TemporaryCredential:
        lifetime = duration_s if self.max_lifetime_s is None else min(duration_s, self.max_lifetime_s)
        expiration = int(self.clock() + lifetime)
        access_key_id = STS_KEY_PREFIX + base64.b32encode(secrets.token_bytes(10)).decode().rstrip("=")
        payload = json.dumps(
            {"ak": access_key_id, "exp": expiration, "role": role_arn, "session": session_name},
            separators=(",", ":"), sort_keys=True,
        ).encode()
        token = f"{_TOKEN_PREFIX}{_b64(payload)}.{_b64(self._mac(b'token:' + payload))}"
        return TemporaryCredential(access_key_id, self._secret(access_key_id), token, expiration)

    def is_temporary(self, access_key_id: str) -> bool:
        return access_key_id.startswith(STS_KEY_PREFIX)

    def resolve(self, access_key_id: str, token: str | None) -> str:
        """The secret of ``access_key_id`` if ``token`` is its valid, unexpired token."""
        if not token:
            raise TokenProblem("missing", f"AccessKey ID {access_key_id!r} is temporary but no security token was sent")
        body, dot, mac = token.removeprefix(_TOKEN_PREFIX).partition(".")
        try:
            payload = _unb64(body)
            valid = dot and hmac.compare_digest(_unb64(mac), self._mac(b"token:" + payload))
            claims = json.loads(payload) if valid else None
        except (ValueError, TypeError):
            valid, claims = False, None
        if not token.startswith(_TOKEN_PREFIX) or not valid or not isinstance(claims, dict):
            raise TokenProblem("malformed", "the security token was not issued by this account's STS")
        if claims.get("ak") != access_key_id:
            raise TokenProblem("mismatch", "the security token belongs to another AccessKey ID")
        if int(claims.get("exp", 0)) <= self.clock():
            raise TokenProblem("expired", f"the security token expired at {claims.get('exp')} (epoch seconds)")
        return self._secret(access_key_id)

    def oidc_token(self, subject: str, lifetime_s: float = 3600) -> str:
        """A service-account token as the cluster's OIDC issuer would mount it (RRSA on ACK)."""
        claims = {"sub": subject, "exp": int(self.clock() + lifetime_s), "iss": "localcloud"}
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        body = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
        return f"{header}.{body}.{_b64(self._mac(f'oidc:{header}.{body}'.encode()))}"

    def verify_oidc_token(self, token: str) -> dict:
        """The claims of a token from :meth:`oidc_token`; :class:`TokenProblem` if forged or expired."""
        try:
            header, body, mac = token.strip().split(".")
            valid = hmac.compare_digest(_unb64(mac), self._mac(f"oidc:{header}.{body}".encode()))
            claims = json.loads(_unb64(body)) if valid else None
        except (ValueError, TypeError):
            claims = None
        if not isinstance(claims, dict):
            raise TokenProblem("malformed", "the OIDC token was not issued by this account's identity provider")
        if int(claims.get("exp", 0)) <= self.clock():
            raise TokenProblem("expired", "the OIDC token has expired")
        return claims

    def _secret(self, access_key_id: str) -> str:
        return _b64(self._mac(b"secret:" + access_key_id.encode()))[:30]

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._key, data, hashlib.sha256).digest()


class RoleRefused(Exception):
    """A service could not assume a role: ``code`` as STS words it (``EntityNotExist.Role``, ``NoPermission``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ServiceRoles:
    """The account's roles as a cloud service assumes them on its behalf (MaxCompute reading OSS for an
    external table): ``trusted`` roles (ARN -> longest session, seconds) name the service in their trust
    policy; ``untrusted`` ones exist but do not, so STS refuses the service, as it does in the cloud."""

    def __init__(self, authority: TokenAuthority, trusted: Mapping[str, int], untrusted: Collection[str] = (),
                 *, service: str = "odps.aliyuncs.com") -> None:
        self.authority = authority
        self.trusted = dict(trusted)
        self.untrusted = frozenset(untrusted)
        self.service = service

    def assume(self, role_arn: str, session_name: str) -> TemporaryCredential:
        if role_arn in self.untrusted:
            raise RoleRefused("NoPermission", f"You are not authorized to do this action. You should be authorized "
                              f"by RAM: the trust policy of {role_arn} does not name {self.service}.")
        if role_arn not in self.trusted:
            raise RoleRefused("EntityNotExist.Role", f"The role not exists: {role_arn}.")
        return self.authority.issue(role_arn, session_name, self.trusted[role_arn])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
