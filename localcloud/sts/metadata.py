"""A local ECS instance metadata service: the RAM role credentials of ``auth_type: ecs_ram_role``.

The SDK's provider always asks ``http://100.100.100.200`` (the address is fixed in its code), so
offline it reaches this service as the HTTP proxy the provider supports (connection extra ``proxy``):
requests arrive in absolute form, ``GET http://100.100.100.200/latest/...``, and any other host is
refused. Served as ECS serves them:

    PUT /latest/api/token                                   IMDSv2 token (``X-aliyun-ecs-metadata-token-ttl-seconds``)
    GET /latest/meta-data/ram/security-credentials/         the instance's role name
    GET /latest/meta-data/ram/security-credentials/<role>   {"Code": "Success", "AccessKeyId", ...}

The hardened mode (IMDSv2 only) is on by default: a GET without a valid
``X-aliyun-ecs-metadata-token`` answers 401, as on an instance where IMDSv1 was switched off.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from urllib.parse import urlsplit

from localcloud.http_service import BackgroundHttpService, StrictRequestHandler
from localcloud.ram import TokenAuthority

METADATA_HOST = "100.100.100.200"
_CREDENTIALS_PATH = "/latest/meta-data/ram/security-credentials/"
_ROLE_SESSION_S = 6 * 3600  # what ECS hands out: tokens live about six hours


class LocalInstanceMetadata(BackgroundHttpService):
    """The metadata service of one instance whose RAM role is ``role_name`` in account ``account_id``."""

    name = "local-ecs-metadata"

    def __init__(self, authority: TokenAuthority, role_name: str, account_id: str, *, require_token: bool = True,
                 port: int = 0) -> None:
        super().__init__(port)
        self.authority = authority
        self.role_name = role_name
        self.account_id = account_id
        self.require_token = require_token
        self._tokens: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def proxy(self) -> str:
        """``http://127.0.0.1:PORT``: the connection's ``proxy`` extra."""
        return f"http://{self.address}"

    def handler_class(self) -> type[StrictRequestHandler]:
        return type("MetadataHandler", (_MetadataHandler,), {"service": self})

    def new_token(self, ttl_s: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = time.time() + ttl_s
        return token

    def token_valid(self, token: str | None) -> bool:
        with self._lock:
            return bool(token) and self._tokens.get(token, 0) > time.time()

    def role_credentials(self) -> dict:
        issued = self.authority.issue(f"acs:ram::{self.account_id}:role/{self.role_name}", "ecs", _ROLE_SESSION_S)
        return {
            "Code": "Success",
            "AccessKeyId": issued.access_key_id,
            "AccessKeySecret": issued.access_key_secret,
            "SecurityToken": issued.security_token,
            "Expiration": issued.expiration_iso,
            "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }


class _MetadataHandler(StrictRequestHandler):
    service: LocalInstanceMetadata
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        """Quiet."""

    def _target(self) -> tuple[str | None, str]:
        parts = urlsplit(self.path)
        host = parts.hostname if parts.scheme else (self.headers.get("Host") or "").split(":")[0]
        return host, parts.path

    def _send(self, status: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        host, path = self._target()
        if host != METADATA_HOST or path != "/latest/api/token":
            self._send(403 if host != METADATA_HOST else 404, "not the instance metadata service")
            return
        try:
            ttl = int(self.headers.get("X-aliyun-ecs-metadata-token-ttl-seconds", ""))
        except ValueError:
            ttl = -1
        if not 1 <= ttl <= 21600:
            self._send(400, "X-aliyun-ecs-metadata-token-ttl-seconds must be 1..21600")
            return
        self._send(200, self.service.new_token(ttl))

    def do_GET(self) -> None:
        host, path = self._target()
        if host != METADATA_HOST:
            self._send(403, "not the instance metadata service")
            return
        if self.service.require_token and not self.service.token_valid(self.headers.get("X-aliyun-ecs-metadata-token")):
            self._send(401, "IMDSv2 is required on this instance: PUT /latest/api/token first")
            return
        if path == _CREDENTIALS_PATH:
            self._send(200, self.service.role_name)
        elif path == _CREDENTIALS_PATH + self.service.role_name:
            self._send(200, json.dumps(self.service.role_credentials()), "application/json")
        else:
            self._send(404, "Not Found")
