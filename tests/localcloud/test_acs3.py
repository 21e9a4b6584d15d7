"""ACS3-HMAC-SHA256 verification, driven by the real alibabacloud_searchengine20211025 SDK.

A stdlib HTTP server on 127.0.0.1:0 calls ``verify_acs3_request`` and answers like the POP gateway:
2xx ``{"requestId", "result"}`` or 4xx ``{"requestId", "code", "message"}``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
from alibabacloud_searchengine20211025 import models as se_models
from alibabacloud_searchengine20211025.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils import Utils
from darabonba.core import DaraCore
from darabonba.request import DaraRequest

from localcloud.acs3 import Acs3SignatureError, AcsCredential, canonical_query_string, verify_acs3_request
from localcloud.ram import TokenAuthority

AK_ID = "LTAI5tLocalTestKey01"
AK_SECRET = "local-secret-Zx9+/=&%20~*"  # characters that would show if echoed or mis-encoded
# Temporary credentials as the account's local STS issues them (the authority verifies them back).
AUTHORITY = TokenAuthority(b"acs3-test-authority-key-0123456789")
TEMPORARY = AUTHORITY.issue("acs:ram::1:role/test", "acs3", 3600)
STS_ID, STS_SECRET = TEMPORARY.access_key_id, TEMPORARY.access_key_secret
CREDENTIALS = {
    AK_ID: AcsCredential(AK_ID, AK_SECRET),
}
INSTANCE = "ha-cn-abc123"


@dataclass
class Seen:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    outcome: str  # access key id on success, else the error code


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request_id = str(uuid.uuid4()).upper()
        headers = list(self.headers.items())
        try:
            cred = verify_acs3_request(
                self.command, self.path, None, self.headers, body, CREDENTIALS, seen_nonces=self.server.nonces,
                authority=AUTHORITY,
            )
        except Acs3SignatureError as exc:
            self.server.seen.append(Seen(self.command, self.path, headers, body, exc.code))
            self._reply(exc.http_status, exc.to_response_body(request_id))
            return
        self.server.seen.append(Seen(self.command, self.path, headers, body, cred.access_key_id))
        action = self.headers.get("x-acs-action", "")
        result: Any = {"instanceId": INSTANCE, "status": "READY"} if action == "GetInstance" else {}
        if action == "ListTableGenerations":
            result = [{"generationId": 1700000000, "status": "ready"}]
        elif action in ("ListTasks", "ListInstances"):
            result = []
        self._reply(200, {"requestId": request_id, "result": result})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[Seen] = []
        self.nonces: set[str] = set()


@pytest.fixture(scope="module")
def server() -> Iterator[_Server]:
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def _client(srv: _Server, key_id: str = AK_ID, secret: str = AK_SECRET, token: str | None = None) -> Client:
    config = open_api_models.Config(
        access_key_id=key_id,
        access_key_secret=secret,
        security_token=token,
        protocol="http",
        endpoint=f"127.0.0.1:{srv.server_address[1]}",
        read_timeout=3000,
        connect_timeout=1000,
    )
    return Client(config)


# --- the real SDK against the verifier -------------------------------------------------------------


def test_sdk_operations_verify(server: _Server) -> None:
    client = _client(server)
    server.seen.clear()

    inst = client.get_instance(INSTANCE)
    assert inst.status_code == 200 and inst.body.result.status == "READY"
    gens = client.list_table_generations(INSTANCE, "images")
    assert gens.body.result[0].generation_id == 1700000000
    client.reindex(INSTANCE, "images", se_models.ReindexRequest(partition="ds=20261123", data_time_sec=1795392000))
    client.list_tasks(INSTANCE, se_models.ListTasksRequest(start=1795300000, end=1795392000))
    client.modify_pause_policy(
        INSTANCE, se_models.ModifyPausePolicyRequest(body={"images": se_models.BodyValue(pause_index=True)})
    )
    client.force_switch(INSTANCE, "fsm-42")

    assert [s.outcome for s in server.seen] == [AK_ID] * 6
    by_method = [(s.method, urlsplit(s.path).path) for s in server.seen]
    assert by_method == [
        ("GET", f"/openapi/ha3/instances/{INSTANCE}"),
        ("GET", f"/openapi/ha3/instances/{INSTANCE}/tables/images/index_versions"),
        ("POST", f"/openapi/ha3/instances/{INSTANCE}/tables/images/reindex"),
        ("GET", f"/openapi/ha3/instances/{INSTANCE}/tasks"),
        ("PUT", f"/openapi/ha3/instances/{INSTANCE}/pause-policies"),
        ("PUT", f"/openapi/ha3/instances/{INSTANCE}/force-switch/fsm-42"),
    ]
    # Compact JSON, None fields dropped, and signed with that exact byte string.
    assert server.seen[2].body == b'{"dataTimeSec":1795392000,"partition":"ds=20261123"}'
    assert urlsplit(server.seen[3].path).query == "end=1795392000&start=1795300000"
    assert json.loads(server.seen[4].body) == {"body": {"images": {"pauseIndex": True}}}
    assert server.seen[5].body == b""


def test_query_and_path_that_need_encoding(server: _Server) -> None:
    client = _client(server)
    server.seen.clear()
    odd_id = "ha cn/é~*+&?=%2F"
    client.get_instance(odd_id)
    client.list_table_generations(odd_id, "tbl name+1")
    client.list_instances(
        se_models.ListInstancesRequest(
            description="a b+c/d~e*f 中文&=?%20'\"",
            instance_id=odd_id,
            page_number=1,
            tags=[se_models.ListInstancesRequestTags(key="env", value="dev test")],
        )
    )
    assert [s.outcome for s in server.seen] == [AK_ID] * 3
    # ids are percent-encoded by the product client ('/' too, '~' kept) and travel unchanged
    assert urlsplit(server.seen[0].path).path == "/openapi/ha3/instances/ha%20cn%2F%C3%A9~%2A%2B%26%3F%3D%252F"
    assert urlsplit(server.seen[1].path).path.endswith("/tables/tbl%20name%2B1/index_versions")
    # the wire query is urlencode()d (space as '+'), while the signature used quote() (%20);
    # list parameters such as tags travel as one JSON string
    query = urlsplit(server.seen[2].path).query
    assert "description=a+b%2Bc%2Fd~e%2Af+%E4%B8%AD%E6%96%87%26%3D%3F%2520%27%22&" in query
    assert "tags=%5B%7B%22key%22%3A%22env%22%2C%22value%22%3A%22dev+test%22%7D%5D" in query


def test_wrong_secret_is_signature_does_not_match(server: _Server) -> None:
    wrong = "not-the-secret-123"
    with pytest.raises(ClientException) as info:
        _client(server, secret=wrong).get_instance(INSTANCE)
    exc = info.value
    assert exc.code == "SignatureDoesNotMatch"
    assert exc.status_code == 400
    assert "secret" in exc.message and AK_ID in exc.message
    assert exc.message.startswith("code: 400, Specified signature is not matched with our calculation.")
    assert exc.request_id and exc.message.endswith(f"request id: {exc.request_id}")
    for secret in (AK_SECRET, wrong):
        assert secret not in str(exc) and secret not in json.dumps(exc.data, default=str)


def test_unknown_key_id(server: _Server) -> None:
    with pytest.raises(ClientException) as info:
        _client(server, key_id="LTAI5tNobodyKnowsMe").list_table_generations(INSTANCE, "images")
    assert info.value.code == "InvalidAccessKeyId.NotFound"
    assert info.value.status_code == 404
    assert "LTAI5tNobodyKnowsMe" in info.value.message


def test_sts_token_is_accepted_and_must_be_signed(server: _Server) -> None:
    server.seen.clear()
    _client(server, key_id=STS_ID, secret=STS_SECRET, token=TEMPORARY.security_token).get_instance(INSTANCE)
    seen = server.seen[-1]
    assert seen.outcome == STS_ID
    names = {k.lower(): v for k, v in seen.headers}
    assert names["x-acs-security-token"] == TEMPORARY.security_token
    assert names["x-acs-accesskey-id"] == STS_ID
    assert "x-acs-security-token" in names["authorization"]

    # The same request with the token header but without it in SignedHeaders is refused.
    headers = dict(seen.headers)
    auth = names["authorization"].replace("x-acs-security-token;", "")
    headers = {k: (auth if k.lower() == "authorization" else v) for k, v in headers.items()}
    with pytest.raises(Acs3SignatureError) as info:
        verify_acs3_request(seen.method, seen.path, None, headers, seen.body, CREDENTIALS, authority=AUTHORITY)
    assert info.value.code == "IncompleteSignature" and "x-acs-security-token" in info.value.message


@pytest.mark.parametrize(
    ("key_id", "secret", "token", "code"),
    [
        (STS_ID, STS_SECRET, None, "MissingSecurityToken"),
        (STS_ID, STS_SECRET, "CAISforged.AAAA", "InvalidSecurityToken.Malformed"),
        (STS_ID, STS_SECRET, AUTHORITY.issue("acs:ram::1:role/test", "other", 3600).security_token,
         "InvalidSecurityToken.MismatchWithAccessKey"),
        (AK_ID, AK_SECRET, TEMPORARY.security_token, "InvalidSecurityToken.MismatchWithAccessKey"),
    ],
    # Stable ids: the temporary keys are random, and pytest-xdist's workers must collect the same names.
    ids=["no-token", "forged-token", "another-keys-token", "token-with-a-long-lived-key"],
)
def test_bad_security_tokens_are_refused(server: _Server, key_id: str, secret: str, token: str | None, code: str) -> None:
    with pytest.raises(ClientException) as info:
        _client(server, key_id=key_id, secret=secret, token=token).get_instance(INSTANCE)
    assert info.value.code == code


def test_expired_security_tokens_are_refused(server: _Server) -> None:
    expired = TokenAuthority(b"acs3-test-authority-key-0123456789", clock=lambda: time.time() - 7200).issue(
        "acs:ram::1:role/test", "old", 3600
    )
    with pytest.raises(ClientException) as info:
        _client(server, key_id=expired.access_key_id, secret=expired.access_key_secret,
                token=expired.security_token).get_instance(INSTANCE)
    assert info.value.code == "InvalidSecurityToken.Expired"


# --- raw replays of captured SDK requests ----------------------------------------------------------


def _capture_reindex(server: _Server) -> Seen:
    server.seen.clear()
    _client(server).reindex(INSTANCE, "images", se_models.ReindexRequest(partition="ds=20261123"))
    return server.seen[-1]


def _replay(
    server: _Server, seen: Seen, body: bytes, path: str | None = None, **header_changes: str
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=3)
    headers = {k: v for k, v in seen.headers if k.lower() != "content-length"}
    for name, value in header_changes.items():
        headers = {k: v for k, v in headers.items() if k.lower() != name.replace("_", "-")}
        headers[name.replace("_", "-")] = value
    headers["Content-Length"] = str(len(body))
    try:
        conn.request(seen.method, path or seen.path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_tampered_body_is_rejected(server: _Server) -> None:
    seen = _capture_reindex(server)
    assert seen.outcome == AK_ID
    tampered = seen.body.replace(b"20261123", b"20261124")
    assert len(tampered) == len(seen.body) and tampered != seen.body
    # A proxy rewrote the body but not the headers: the signature alone would still match.
    status, payload = _replay(server, seen, tampered)
    assert (status, payload["code"]) == (400, "ContentSHA256NotMatched")
    assert "x-acs-content-sha256" in payload["message"]


def test_replay_and_other_tampering(server: _Server) -> None:
    seen = _capture_reindex(server)
    # Exact replay: signature fine, nonce already used.
    status, payload = _replay(server, seen, seen.body)
    assert (status, payload["code"]) == (400, "SignatureNonceUsed")
    # Body and its hash both changed: the hash is signed, so the signature breaks.
    body = seen.body.replace(b"20261123", b"20261124")
    status, payload = _replay(server, seen, body, x_acs_content_sha256=hashlib.sha256(body).hexdigest())
    assert (status, payload["code"]) == (400, "SignatureDoesNotMatch")
    # A changed query value breaks the signature.
    status, payload = _replay(server, seen, seen.body, path=seen.path + "?dryRun=true")
    assert (status, payload["code"]) == (400, "SignatureDoesNotMatch")
    # An x-acs-* header added by someone else must have been signed.
    status, payload = _replay(server, seen, seen.body, x_acs_extra="1")
    assert (status, payload["code"]) == (400, "IncompleteSignature")


# --- the verifier without a server: edge cases and the SDK's own signer ---------------------------


def _sdk_sign(method: str, pathname: str, query: dict[str, str], body: bytes = b"", secret: str = AK_SECRET,
              extra_headers: dict[str, str] | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
    """Sign like Client.do_request does, then return what the wire carries (target, headers, body)."""
    req = DaraRequest()
    req.protocol, req.method, req.pathname, req.query = "http", method, pathname, dict(query)
    req.headers = {
        "host": "127.0.0.1:1",
        "x-acs-version": "2021-10-25",
        "x-acs-action": "Test",
        "user-agent": Utils.get_user_agent(None),
        "x-acs-date": Utils.get_timestamp(),
        "x-acs-signature-nonce": Utils.get_nonce(),
        "accept": "application/json",
        **(extra_headers or {}),
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
    }
    req.headers["Authorization"] = Utils.get_authorization(
        req, "ACS3-HMAC-SHA256", req.headers["x-acs-content-sha256"], AK_ID, secret
    )
    url = urlsplit(DaraCore.compose_url(req))
    target = url.path + (f"?{url.query}" if url.query else "")
    return target, list(req.headers.items()), body


@pytest.mark.parametrize(
    ("pathname", "query"),
    [
        ("/", {}),
        ("/openapi/ha3/instances/ha-cn-1", {"a": "1"}),
        ("/p/%E4%B8%AD%2F~%2A", {"k": "v w", "z": "+/~*'()!", "e": ""}),
        ("/p", {"中文": "值 with spaces", "x.y.1": "{\"a\": [1, 2]}"}),
        ("/p", {"b": "2", "a": "1", "B": "0", "_": "%41"}),
    ],
)
def test_sdk_signer_round_trip(pathname: str, query: dict[str, str]) -> None:
    target, headers, body = _sdk_sign("GET", pathname, query)
    assert verify_acs3_request("GET", target, None, headers, body, CREDENTIALS) == CREDENTIALS[AK_ID]


def test_canonical_query_matches_sdk() -> None:
    from alibabacloud_tea_openapi.utils import get_canonical_query_string

    q = {"b": "x y", "a": "~*+/", "中": "é", "e": ""}
    assert canonical_query_string(q) == get_canonical_query_string(q)
    assert canonical_query_string(list(q.items())) == "a=~%2A%2B%2F&b=x%20y&e=&中=%C3%A9"


def test_header_edge_cases() -> None:
    content_type = {"content-type": "application/json; charset=utf-8"}
    target, headers, body = _sdk_sign("POST", "/p", {}, b'{"a":1}', extra_headers=content_type)
    mapping = dict(headers)
    # case-insensitive names
    upper = {k.upper(): v for k, v in mapping.items()}
    assert verify_acs3_request("POST", target, None, upper, body, CREDENTIALS).access_key_id == AK_ID

    def refused(hdrs: Any, code: str, **kw: Any) -> Acs3SignatureError:
        with pytest.raises(Acs3SignatureError) as info:
            verify_acs3_request("POST", target, None, hdrs, body, CREDENTIALS, **kw)
        assert info.value.code == code, info.value
        assert AK_SECRET not in str(info.value) and AK_SECRET not in (info.value.canonical_request or "")
        return info.value

    refused({k: v for k, v in mapping.items() if k != "Authorization"}, "IncompleteSignature")
    auth = mapping["Authorization"]
    refused({**mapping, "Authorization": "ACS3-HMAC-SM3 " + auth.split(" ", 1)[1]}, "InvalidSignatureMethod")
    refused({**mapping, "Authorization": auth.replace(",Signature=", ",Sig=")}, "IncompleteSignature")
    refused({**mapping, "Authorization": mapping["Authorization"][:-1]}, "IncompleteSignature")
    refused({k: v for k, v in mapping.items() if k != "content-type"}, "IncompleteSignature")
    refused({**mapping, "x-acs-date": "yesterday"}, "InvalidTimeStamp.Format")
    refused({**mapping, "x-acs-content-sha256": "é" * 64}, "ContentSHA256NotMatched")
    err = refused(mapping, "InvalidTimeStamp.Expired", now=datetime.now(UTC) + timedelta(minutes=16))
    assert err.http_status == 400
    err = refused({**mapping, "content-type": "text/plain"}, "SignatureDoesNotMatch")
    assert err.canonical_request and "content-type:text/plain" in err.canonical_request
    # a wrong HTTP method is a different canonical request
    with pytest.raises(Acs3SignatureError, match="SignatureDoesNotMatch"):
        verify_acs3_request("PUT", target, None, mapping, body, CREDENTIALS)
    # the clock check can be switched off, e.g. for recorded requests
    old = {**mapping}
    assert verify_acs3_request("POST", target, None, old, body, CREDENTIALS, max_clock_skew=None)


def test_secret_never_in_repr_or_messages() -> None:
    cred = CREDENTIALS[AK_ID]
    assert AK_SECRET not in repr(cred) and AK_SECRET not in str(cred)
    target, headers, body = _sdk_sign("GET", "/p", {}, secret="wrong")
    with pytest.raises(Acs3SignatureError) as info:
        verify_acs3_request("GET", target, None, headers, body, CREDENTIALS)
    err = info.value
    text = str(err) + err.message + repr(err.to_response_body("r")) + (err.canonical_request or "")
    assert AK_SECRET not in text and "wrong" not in text


def test_fuzzed_headers_only_raise_signature_errors() -> None:
    import random

    rng = random.Random(1123)
    target, headers, body = _sdk_sign("POST", "/p", {"a": "b c"}, b'{"a":1}')
    base = dict(headers)
    alphabet = list("=,; \t:-ACS3HMACSHA256CredentialSignedHeadersSignatureabcdef0123456789é\x00\uffff")
    refused = 0
    for _ in range(2000):
        mutated = dict(base)
        name = rng.choice([*mutated, "Authorization", "Authorization", "x-acs-date"])
        value = mutated.get(name, "")
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(value) + 1)
            insert = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 4)))
            value = value[:i] + insert + value[i + rng.randint(0, 3):]
        mutated[name] = value
        try:
            verify_acs3_request("POST", target, None, mutated, body, CREDENTIALS)
        except Acs3SignatureError as exc:
            refused += 1
            assert AK_SECRET not in str(exc)
    assert refused > 1500
