"""The four local servers side by side, and a raw-socket client, for the hostile-input tests.

Raw sockets because the point is what real clients never send: duplicate lengths, odd transfer
codings, headers without a body, sockets that stall.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import oss2
from alibabacloud_searchengine20211025.client import Client as ManagementClient
from alibabacloud_tea_openapi import models as open_api_models
from odps import ODPS

from localcloud.acs3 import AcsCredential
try:
    from localcloud.http_service import Limits
except ImportError:  # the code before the bounded server (to show these tests fail on it)
    Limits = Any  # type: ignore[misc,assignment]
from localcloud.maxcompute.server import LocalMaxComputeServer
from localcloud.opensearch.engine import LocalEngine, TableSource
from localcloud.opensearch.schema import DEMO_SCHEMA, load_table_schema
from localcloud.opensearch.server import LocalOpenSearchServer
from localcloud.oss.server import Credential, LocalOssServer
from localcloud.ram import TokenAuthority
from localcloud.sts.server import LocalSts, StsAccount
from localcloud.sts.tls import LocalTls

AK, SK = "hostile-ak", "hostile-secret"
BUCKET, REGION, PROJECT, IID = "hostile-bucket", "cn-hangzhou", "hostile_project", "ha-cn-hostile"


@dataclass
class Target:
    """One running server: where it listens, a path it serves, and how a real client asks it something."""

    name: str
    host: str
    port: int
    tls: bool
    path: str  # an unauthenticated request to this path is refused (401/403/400/404)
    legit: Callable[[], Any]  # one request through the real SDK (STS: a plain HTTPS request)
    server: Any = field(repr=False)

    def connect(self, timeout: float = 5.0) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(sock)
        return sock

    @property
    def httpd(self) -> Any:
        return self.server.httpd if hasattr(self.server, "httpd") else self.server._httpd


def read_responses(sock: socket.socket, timeout: float = 5.0) -> list[tuple[int, dict[str, str], bytes]]:
    """Every response the server sends until it closes the connection (or ``timeout`` of silence)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (TimeoutError, socket.timeout, ConnectionResetError, ssl.SSLError):
        pass
    out = []
    while data.startswith(b"HTTP/1."):
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


def exchange(target: Target, raw: bytes, timeout: float = 5.0) -> list[tuple[int, dict[str, str], bytes]]:
    with target.connect(timeout) as sock:
        sock.sendall(raw)
        return read_responses(sock, timeout)


def first_status_within(target: Target, raw: bytes, seconds: float) -> int | None:
    """Send ``raw`` (headers only), and return the first status line's code if it comes within ``seconds``."""
    with target.connect(seconds) as sock:
        sock.sendall(raw)
        sock.settimeout(seconds)
        started, data = time.monotonic(), b""
        try:
            while b"\r\n" not in data and time.monotonic() - started < seconds:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, socket.timeout):
            return None
    return int(data.split()[1]) if data.startswith(b"HTTP/1.") else None


@contextmanager
def running_servers(tmp: Path, limits: Limits | None = None) -> Iterator[dict[str, Target]]:
    """OSS, OpenSearch, MaxCompute and STS on loopback, with ``limits`` (else each one's own)."""
    with ExitStack() as stack:
        (tmp / "oss" / BUCKET).mkdir(parents=True)
        oss_kw = {"limits": limits} if limits else {}
        oss = stack.enter_context(LocalOssServer(tmp / "oss", [Credential(AK, SK)], **oss_kw))
        bucket = oss2.Bucket(oss2.AuthV4(AK, SK), oss.endpoint, BUCKET, region=REGION)

        source = TableSource(load_table_schema(DEMO_SCHEMA, "hostile"), tmp / "warehouse", "image_catalog",
                             oss.endpoint, AK, SK)
        engine = LocalEngine(tmp / "opensearch", IID, {"images": source})
        os_kw = {"limits": limits} if limits else {}
        opensearch = LocalOpenSearchServer(engine, [AcsCredential(AK, SK)], "user", "password", **os_kw).start()
        stack.callback(opensearch.stop)
        management = ManagementClient(open_api_models.Config(
            access_key_id=AK, access_key_secret=SK, protocol="http", endpoint=opensearch.endpoint,
            read_timeout=10000, connect_timeout=3000))

        maxcompute = LocalMaxComputeServer(tmp / "maxcompute", {AK: SK}, projects=[PROJECT], region=REGION)
        if limits:
            maxcompute.limits = limits
        stack.enter_context(maxcompute)
        odps = ODPS(AK, SK, project=PROJECT, endpoint=maxcompute.endpoint, region_name=REGION)

        authority = TokenAuthority(b"h" * 32)
        tls = LocalTls(tmp / "tls")
        sts = LocalSts(StsAccount({AK: SK}, {}), authority, tls)
        if limits:
            sts.limits = limits
        stack.enter_context(sts)

        def sts_legit() -> int:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            import http.client

            conn = http.client.HTTPSConnection("127.0.0.1", int(sts.endpoint.rsplit(":", 1)[1]), timeout=10,
                                               context=context)
            try:
                conn.request("GET", "/?Action=GetCallerIdentity")
                response = conn.getresponse()
                response.read()
                return response.status
            finally:
                conn.close()

        def port(address: str) -> int:
            return int(address.rsplit(":", 1)[1])

        yield {
            "oss": Target("oss", "127.0.0.1", port(oss.endpoint), False, f"/{BUCKET}/k",
                          lambda: bucket.put_object("legit", b"ok").status, oss),
            "opensearch": Target("opensearch", "127.0.0.1", port(opensearch.endpoint), False,
                                 f"/openapi/ha3/instances/{IID}/pause-policies",
                                 lambda: management.get_instance(IID).status_code, opensearch),
            "maxcompute": Target("maxcompute", "127.0.0.1", port(maxcompute.address), False,
                                 f"/api/projects/{PROJECT}/instances",
                                 lambda: not odps.exist_table("no_such_table"), maxcompute),
            "sts": Target("sts", "127.0.0.1", port(sts.endpoint), True, "/?Action=AssumeRole", sts_legit, sts),
        }
