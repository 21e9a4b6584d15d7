"""Hostile input at every local server (OSS, OpenSearch, MaxCompute, STS), through raw sockets.

Why: a stand-in must be at least as strict as the cloud. Ambiguous framing (two lengths, a length and
chunks, codings other than chunked) is how requests are smuggled past a front end; a server that reads
a body before authenticating it can be made to buffer megabytes for anyone; an ``Expect:
100-continue`` answered before authentication invites that body. All four servers share one
implementation (:mod:`localcloud.http_service`), so each case runs against each server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.localcloud.hostile import Target, exchange, first_status_within, running_servers

SERVERS = ["oss", "opensearch", "maxcompute", "sts"]
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Target]]:
    with running_servers(tmp_path_factory.mktemp("hostile")) as running:
        yield running


def _request(target: Target, headers: list[str], body: bytes = b"", method: str = "POST") -> bytes:
    lines = [f"{method} {target.path} HTTP/1.1", f"Host: 127.0.0.1:{target.port}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n0\r\n\r\n"


FRAMINGS = {
    "two different Content-Length": (["Content-Length: 5", "Content-Length: 40"], b"hello" + SMUGGLED[:35]),
    "the same Content-Length twice": (["Content-Length: 5", "Content-Length: 5"], b"hello"),
    "Content-Length and chunked": ([f"Content-Length: {len(_chunked(SMUGGLED))}", "Transfer-Encoding: chunked"],
                                   _chunked(SMUGGLED)),
    "gzip, chunked": (["Transfer-Encoding: gzip, chunked"], _chunked(b"hello")),
    "chunked not last": (["Transfer-Encoding: chunked, gzip"], _chunked(b"hello")),
    "an unknown coding": (["Transfer-Encoding: xchunked"], _chunked(b"hello")),
    "a signed Content-Length": (["Content-Length: +5"], b"hello"),
    "a space before the colon": (["Content-Length : 5"], b"hello"),
    "obsolete line folding": (["X-Folded: a", " b", "Content-Length: 5"], b"hello"),
}


@pytest.mark.parametrize("case", list(FRAMINGS))
@pytest.mark.parametrize("name", SERVERS)
def test_ambiguous_framing_is_refused_with_400_and_a_closed_connection(servers: dict[str, Target], name: str,
                                                                        case: str) -> None:
    headers, body = FRAMINGS[case]
    answers = exchange(servers[name], _request(servers[name], headers, body))
    assert [status for status, _, _ in answers] == [400], (name, case, answers)
    assert answers[0][1].get("connection") == "close"


@pytest.mark.parametrize("coding", ["chunked ", "CHUNKED", " chunked"])
@pytest.mark.parametrize("name", SERVERS)
def test_chunked_with_odd_case_or_spaces_is_still_chunked(servers: dict[str, Target], name: str,
                                                          coding: str) -> None:
    """``chunked `` must be read as chunked: else the chunks are parsed as the next request."""
    raw = _request(servers[name], [f"Transfer-Encoding: {coding}"], _chunked(SMUGGLED), method="POST")
    answers = exchange(servers[name], raw)
    assert len(answers) == 1, (name, [a[0] for a in answers])
    assert answers[0][0] != 400 or b"smuggled" not in answers[0][2]


@pytest.mark.parametrize("name", SERVERS)
def test_an_unread_body_is_never_parsed_as_the_next_request(servers: dict[str, Target], name: str) -> None:
    raw = _request(servers[name], [f"Content-Length: {len(SMUGGLED)}"], SMUGGLED, method="POST")
    answers = exchange(servers[name], raw)
    assert len(answers) == 1, (name, [a[0] for a in answers])


@pytest.mark.parametrize("name", SERVERS)
def test_an_unauthenticated_body_is_not_read_nor_invited_before_the_answer(servers: dict[str, Target],
                                                                           name: str) -> None:
    """Headers only, declaring 8 MiB and asking for 100-continue: the refusal comes at once, final."""
    raw = _request(servers[name], [f"Content-Length: {8 * 1024 * 1024}", "Expect: 100-continue",
                                   "Content-Type: application/octet-stream"])
    status = first_status_within(servers[name], raw, seconds=3.0)
    assert status is not None, f"{name} waited for a body it had not authenticated"
    assert status in (400, 401, 403, 404), (name, status)


@pytest.mark.parametrize("name", SERVERS)
def test_oversized_headers_are_refused_with_431(servers: dict[str, Target], name: str) -> None:
    """20 headers of 10 KiB (200 KiB): under the stdlib's per-line and count limits, over ours."""
    headers = [f"X-Pad-{i}: {'a' * 10240}" for i in range(20)] + ["Content-Length: 0"]
    answers = exchange(servers[name], _request(servers[name], headers))
    assert [status for status, _, _ in answers] == [431], (name, answers)


@pytest.mark.parametrize("name", SERVERS)
def test_too_many_headers_and_too_long_a_request_line_are_refused(servers: dict[str, Target], name: str) -> None:
    target = servers[name]
    many = [f"X-H{i}: v" for i in range(101)] + ["Content-Length: 0"]
    assert [a[0] for a in exchange(target, _request(target, many))] == [431]
    limit = getattr(getattr(target.httpd, "limits", None), "max_request_line", 16 * 1024)
    long_line = f"GET /{'a' * limit} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    assert [a[0] for a in exchange(target, long_line, timeout=10)] == [414]


def test_the_opensearch_body_cap_answers_413_before_reading(servers: dict[str, Target]) -> None:
    target = servers["opensearch"]
    raw = _request(target, [f"Content-Length: {65 * 1024 * 1024}"], method="POST")
    assert first_status_within(target, raw, seconds=3.0) == 413


def test_the_oss_put_cap_answers_entity_too_large_before_reading(servers: dict[str, Target]) -> None:
    target = servers["oss"]
    answers = exchange(target, _request(target, [f"Content-Length: {5 * 1024**3 + 1}"]))
    assert [a[0] for a in answers] == [400] and b"<Code>EntityTooLarge</Code>" in answers[0][2]


def test_a_half_open_socket_does_not_stall_the_tls_server(servers: dict[str, Target]) -> None:
    """The STS accept loop did the TLS handshake: one silent TCP connection blocked every later client."""
    import socket
    import time

    target = servers["sts"]
    silent = socket.create_connection((target.host, target.port), timeout=5)
    try:
        time.sleep(0.3)
        started = time.monotonic()
        assert target.legit() == 400  # answered (an unsigned call), not stuck behind the silent socket
        assert time.monotonic() - started < 3.0
    finally:
        silent.close()
