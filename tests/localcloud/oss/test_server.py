"""The local OSS server, exercised through the real oss2 client (and raw HTTP where oss2 would refuse).

Why these tests exist: the pipeline's listing code is developed against this stand-in, so the
stand-in must answer oss2 the way OSS does (pagination, delimiters, URL-encoded keys, error codes,
signatures) and must never serve anything outside its root folder.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import logging
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

import oss2
import pytest
import requests

from localcloud.oss import cli as oss_cli
from localcloud.oss.cli import main
from localcloud.oss.server import DIR_MARKER_NAME, TEMP_PREFIX, Credential, LocalOssServer
from localcloud.ram import TokenAuthority
from tests.localcloud.cli import server_arguments, wait_for_endpoint

AK = "test-ak"
SK = "test-secret"
BUCKET = "test-bucket"
REGION = "cn-hangzhou"
REPO_ROOT = Path(__file__).resolve().parents[3]
SECRET_CONTENT = b"TOP-SECRET-OUTSIDE-ROOT"


@pytest.fixture()
def oss_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / BUCKET).mkdir(parents=True)
    # Something outside the root that no request may ever return.
    (tmp_path / "secret.txt").write_bytes(SECRET_CONTENT)
    return root


@pytest.fixture()
def oss_server(oss_root: Path):
    with LocalOssServer(oss_root, [Credential(AK, SK)]) as server:
        yield server


@pytest.fixture()
def bucket(oss_server: LocalOssServer) -> oss2.Bucket:
    return oss2.Bucket(oss2.AuthV4(AK, SK), oss_server.endpoint, BUCKET, region=REGION)


def _touch_many(base: Path, keys: list[str]) -> None:
    for key in keys:
        path = base / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def _utf8_sorted(keys) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def _raw(
    server: LocalOssServer,
    method: str,
    raw_path: str,
    *,
    sign_bucket: str | None = None,
    sign_key: str = "",
    secret: str = SK,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    v1: bool = False,
) -> tuple[int, dict[str, str], bytes]:
    """Send a request with an exact request-target; sign it with V4 as oss2 does (resource
    /sign_bucket/sign_key), or with V1 when ``v1`` is set."""
    parsed = urlparse(server.endpoint)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    hdrs = dict(headers or {})
    if sign_bucket is not None and v1:
        date = formatdate(usegmt=True)
        hdrs["Date"] = date
        to_sign = f"{method}\n\n{hdrs.get('Content-Type', '')}\n{date}\n/{sign_bucket}/{sign_key}"
        sig = base64.b64encode(hmac.new(secret.encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
        hdrs["Authorization"] = f"OSS {AK}:{sig}"
    elif sign_bucket is not None:
        query = dict(parse_qsl(urlparse(raw_path).query, keep_blank_values=True))
        request = oss2.http.Request(method, server.endpoint, params=query, headers=hdrs, region=REGION, product="oss")
        oss2.AuthV4(AK, secret)._sign_request(request, sign_bucket, sign_key)
        hdrs = {k: v for k, v in request.headers.items() if v is not None}
    try:
        conn.request(method, raw_path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------

# Names chosen so that per-directory name order differs from global key order ('-' < '.' < '/' < '0')
# and so that UTF-8 byte order differs from UTF-16 order (U+E000 sorts before U+1F600 in UTF-8 only).
TRICKY = ["big/a-b", "big/a.b", "big/a/b", "big/a/c/d", "big/a0", "big/\ue000", "big/\U0001F600", "big/Z", "big/z"]


@pytest.fixture(scope="module")
def big_listing(tmp_path_factory: pytest.TempPathFactory):
    """A read-only bucket of 2,109 empty files, shared by the pagination tests (built once)."""
    root = tmp_path_factory.mktemp("big") / "root"
    keys = [f"big/{i:05d}.jpg" for i in range(2000)]
    keys += [f"big/sub{j:02d}/img{i}.png" for j in range(10) for i in range(10)]
    keys += TRICKY
    _touch_many(root / BUCKET, keys)
    (root / BUCKET / "other.txt").write_bytes(b"not under big/")
    with LocalOssServer(root, [Credential(AK, SK)]) as server:
        yield oss2.Bucket(oss2.AuthV4(AK, SK), server.endpoint, BUCKET, region=REGION), _utf8_sorted(keys)


def test_iterators_page_through_more_than_1000_keys(big_listing) -> None:
    bucket, expected = big_listing
    assert len(expected) > 2000
    v1 = [o.key for o in oss2.ObjectIterator(bucket, prefix="big/", max_keys=1000)]
    v2 = [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="big/", max_keys=1000)]
    assert v1 == expected
    assert v2 == expected
    everything = [o.key for o in oss2.ObjectIteratorV2(bucket, max_keys=1000)]
    assert everything == _utf8_sorted(expected + ["other.txt"])


def test_direct_calls_follow_markers_and_tokens(big_listing) -> None:
    bucket, expected = big_listing
    seen: list[str] = []
    marker, pages = "", 0
    while True:
        page = bucket.list_objects(prefix="big/", marker=marker, max_keys=1000)
        pages += 1
        assert len(page.object_list) <= 1000
        seen += [o.key for o in page.object_list]
        if not page.is_truncated:
            break
        assert page.next_marker == page.object_list[-1].key
        marker = page.next_marker
    assert pages == 3
    assert seen == expected

    seen, token, pages = [], "", 0
    while True:
        page = bucket.list_objects_v2(prefix="big/", continuation_token=token, max_keys=1000)
        pages += 1
        seen += [o.key for o in page.object_list]
        if not page.is_truncated:
            break
        token = page.next_continuation_token
        assert token
    assert pages == 3
    assert seen == expected


def test_listing_metadata(bucket: oss2.Bucket) -> None:
    put = bucket.put_object("meta/one.bin", b"12345")
    [obj] = bucket.list_objects_v2(prefix="meta/").object_list
    assert (obj.key, obj.size, obj.type, obj.storage_class) == ("meta/one.bin", 5, "Normal", "Standard")
    assert obj.etag == put.etag
    assert re.fullmatch(r"[0-9A-F]{32}", obj.etag)
    assert abs(obj.last_modified - time.time()) < 3600


def test_max_keys_limits(bucket: oss2.Bucket) -> None:
    for bad in (1001, 0):
        with pytest.raises(oss2.exceptions.InvalidArgument) as err:
            bucket.list_objects(max_keys=bad)
        assert err.value.name == "max-keys"
        with pytest.raises(oss2.exceptions.InvalidArgument):
            bucket.list_objects_v2(max_keys=bad)


@pytest.fixture()
def nested(oss_root: Path) -> None:
    _touch_many(
        oss_root / BUCKET,
        ["a/1.jpg", "a/b/2.jpg", "a/b/c/3.jpg", "a-x.jpg", "top.jpg", "d/e/f.jpg", "d/g.jpg"],
    )
    (oss_root / BUCKET / "empty" / "deeper").mkdir(parents=True)  # no objects: invisible


def test_delimiter_and_common_prefixes(bucket: oss2.Bucket, nested: None) -> None:
    top = bucket.list_objects(delimiter="/")
    assert [o.key for o in top.object_list] == ["a-x.jpg", "top.jpg"]
    assert top.prefix_list == ["a/", "d/"]

    inner = bucket.list_objects_v2(prefix="a/", delimiter="/")
    assert [o.key for o in inner.object_list] == ["a/1.jpg"]
    assert inner.prefix_list == ["a/b/"]

    partial = bucket.list_objects(prefix="a", delimiter="/")
    assert [o.key for o in partial.object_list] == ["a-x.jpg"]
    assert partial.prefix_list == ["a/"]

    # One entry per page: a rolled-up prefix is never repeated on the next page.
    for iterator in (
        oss2.ObjectIterator(bucket, delimiter="/", max_keys=1),
        oss2.ObjectIteratorV2(bucket, delimiter="/", max_keys=1),
    ):
        assert [o.key for o in iterator] == ["a-x.jpg", "a/", "d/", "top.jpg"]


def test_start_after(bucket: oss2.Bucket, nested: None) -> None:
    after = bucket.list_objects_v2(start_after="a/b/2.jpg")
    assert [o.key for o in after.object_list] == ["a/b/c/3.jpg", "d/e/f.jpg", "d/g.jpg", "top.jpg"]
    split = [o.key for o in oss2.ObjectIteratorV2(bucket, start_after="a/b/", max_keys=1)]
    assert split == ["a/b/2.jpg", "a/b/c/3.jpg", "d/e/f.jpg", "d/g.jpg", "top.jpg"]
    assert [o.key for o in bucket.list_objects(marker="d/g.jpg").object_list] == ["top.jpg"]


def test_v2_xml_shape(oss_server: LocalOssServer, bucket: oss2.Bucket, nested: None) -> None:
    status, headers, body = _raw(
        oss_server,
        "GET",
        f"/{BUCKET}/?list-type=2&max-keys=2&encoding-type=url&prefix=a%2F&fetch-owner=true",
        sign_bucket=BUCKET,
    )
    assert status == 200 and headers["x-oss-request-id"]
    root = ET.fromstring(body)
    assert root.tag == "ListBucketResult"
    assert root.findtext("KeyCount") == "2"
    assert root.findtext("EncodingType") == "url"
    assert root.findtext("IsTruncated") == "true"
    assert root.findtext("NextContinuationToken")
    assert root.find("Contents/Owner/ID") is not None


# --------------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------------

SPECIAL_KEYS = [
    "猫/图 1+%.jpg",
    "with space/a b.txt",
    "plus+sign",
    "percent%20literal%2F",
    "quote'\"&<>.txt",
    "😀/e\u0301/tab\there",
    "/".join(f"d{i}" for i in range(20)) + "/deep.bin",
]


def test_special_keys_round_trip(bucket: oss2.Bucket, oss_root: Path) -> None:
    payloads = {key: f"payload of {key}".encode() for key in SPECIAL_KEYS}
    for key, data in payloads.items():
        bucket.put_object(key, data)
    listed = [o.key for o in oss2.ObjectIteratorV2(bucket)]
    assert listed == _utf8_sorted(payloads)
    assert [o.key for o in oss2.ObjectIterator(bucket)] == listed
    for key in listed:
        assert bucket.get_object(key).read() == payloads[key]
        assert [o.key for o in bucket.list_objects(prefix=key).object_list] == [key]
    assert (oss_root / BUCKET / "猫" / "图 1+%.jpg").read_bytes() == payloads["猫/图 1+%.jpg"]
    assert not list((oss_root / BUCKET).rglob(f"{TEMP_PREFIX}*"))


def test_range_reads(bucket: oss2.Bucket) -> None:
    data = bytes(range(100))
    bucket.put_object("r.bin", data)
    part = bucket.get_object("r.bin", byte_range=(10, 19))
    assert part.status == 206 and part.content_range == "bytes 10-19/100"
    assert part.read() == data[10:20]
    assert bucket.get_object("r.bin", byte_range=(90, None)).read() == data[90:]
    assert bucket.get_object("r.bin", byte_range=(None, 5)).read() == data[-5:]
    # OSS default: an out-of-bounds range is ignored and the whole object comes back with 200.
    whole = bucket.get_object("r.bin", byte_range=(50, 500))
    assert whole.status == 200 and whole.read() == data
    assert bucket.get_object("r.bin", byte_range=(100, 200)).status == 200
    # With x-oss-range-behavior: standard the end is clamped and a start past the end is 416.
    standard = {"x-oss-range-behavior": "standard"}
    clamped = bucket.get_object("r.bin", byte_range=(50, 500), headers=standard)
    assert clamped.status == 206 and clamped.read() == data[50:]
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.get_object("r.bin", byte_range=(100, 200), headers=standard)
    assert (err.value.status, err.value.code) == (416, "InvalidRange")


def test_head_object_and_meta(bucket: oss2.Bucket) -> None:
    put = bucket.put_object("h/photo.jpg", b"x" * 42)
    head = bucket.head_object("h/photo.jpg")
    assert head.content_length == 42
    assert head.content_type == "image/jpeg"
    assert head.object_type == "Normal"
    assert head.etag == put.etag == bucket.get_object("h/photo.jpg").etag
    meta = bucket.get_object_meta("h/photo.jpg")
    assert meta.content_length == 42 and meta.etag == put.etag
    assert bucket.object_exists("h/photo.jpg")
    assert not bucket.object_exists("h/missing.jpg")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.head_object("h/missing.jpg")


def test_delete_is_idempotent_and_prunes_folders(bucket: oss2.Bucket, oss_root: Path) -> None:
    bucket.put_object("del/deep/x.txt", b"x")
    assert bucket.delete_object("del/deep/x.txt").status == 204
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("del/deep/x.txt")
    assert bucket.delete_object("del/deep/x.txt").status == 204
    assert bucket.delete_object("never/existed").status == 204
    assert not (oss_root / BUCKET / "del").exists()
    assert bucket.list_objects(prefix="del").object_list == []


def test_folder_marker(bucket: oss2.Bucket, oss_root: Path) -> None:
    bucket.put_object("a/b/", b"")
    bucket.put_object("a/b/c.jpg", b"c")
    assert (oss_root / BUCKET / "a" / "b" / DIR_MARKER_NAME).is_file()
    listed = bucket.list_objects(prefix="a/")
    assert [(o.key, o.size) for o in listed.object_list] == [("a/b/", 0), ("a/b/c.jpg", 1)]
    assert bucket.list_objects(prefix="a/", delimiter="/").prefix_list == ["a/b/"]
    assert bucket.list_objects_v2(prefix="a/b/", delimiter="/").object_list[0].key == "a/b/"
    assert bucket.get_object("a/b/").read() == b""
    bucket.delete_object("a/b/")
    assert [o.key for o in oss2.ObjectIterator(bucket)] == ["a/b/c.jpg"]


def test_hidden_files_and_reserved_names(bucket: oss2.Bucket, oss_root: Path) -> None:
    base = oss_root / BUCKET
    (base / "x").mkdir()
    (base / "x" / f"{TEMP_PREFIX}abandoned").write_bytes(b"half")
    (base / "x" / "real.txt").write_bytes(b"r")
    assert [o.key for o in oss2.ObjectIterator(bucket)] == ["x/real.txt"]
    for key in (f"x/{TEMP_PREFIX}1", f"x/{DIR_MARKER_NAME}", f"{DIR_MARKER_NAME}/y"):
        with pytest.raises(oss2.exceptions.InvalidArgument):
            bucket.put_object(key, b"no")


def test_key_folder_conflict(bucket: oss2.Bucket) -> None:
    bucket.put_object("c/file", b"1")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.put_object("c/file/child", b"2")
    assert err.value.status == 409
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.put_object("c", b"3")
    assert err.value.status == 409
    assert bucket.get_object("c/file").read() == b"1"


def test_content_md5_is_checked(bucket: oss2.Bucket) -> None:
    good = base64.b64encode(hashlib.md5(b"abc").digest()).decode()
    assert bucket.put_object("md5.txt", b"abc", headers={"Content-MD5": good}).status == 200
    with pytest.raises(oss2.exceptions.InvalidDigest):
        bucket.put_object("md5.txt", b"abd", headers={"Content-MD5": good})
    assert bucket.get_object("md5.txt").read() == b"abc"


def test_response_overrides_are_signed_subresources(bucket: oss2.Bucket) -> None:
    bucket.put_object("o/data.bin", b"d")
    got = bucket.get_object("o/data.bin", params={"response-content-type": "text/plain; charset=utf-8"})
    assert got.content_type == "text/plain; charset=utf-8"


def test_refused_upload_keeps_the_session_usable(oss_server: LocalOssServer) -> None:
    session = oss2.Session(pool_size=1)
    good = oss2.Bucket(oss2.AuthV4(AK, SK), oss_server.endpoint, BUCKET, region=REGION, session=session)
    bad = oss2.Bucket(oss2.AuthV4(AK, "wrong"), oss_server.endpoint, BUCKET, region=REGION, session=session)
    payload = os.urandom(2 * 1024 * 1024)
    for _ in range(2):
        with pytest.raises(oss2.exceptions.SignatureDoesNotMatch):
            bad.put_object("big.bin", payload)
        good.put_object("big.bin", payload)
        assert good.get_object("big.bin").read() == payload


def test_create_bucket(oss_server: LocalOssServer, oss_root: Path) -> None:
    fresh = oss2.Bucket(oss2.AuthV4(AK, SK), oss_server.endpoint, "fresh-bucket", region=REGION)
    fresh.create_bucket()
    assert (oss_root / "fresh-bucket").is_dir()
    fresh.put_object("k", b"v")
    assert [o.key for o in oss2.ObjectIterator(fresh)] == ["k"]


def test_streamed_upload(bucket: oss2.Bucket) -> None:
    chunks = [b"part-%d;" % i for i in range(50)]
    bucket.put_object("stream.bin", iter(chunks))  # no length known: chunked transfer encoding
    assert bucket.get_object("stream.bin").read() == b"".join(chunks)


# --------------------------------------------------------------------------------------------------
# Errors and authentication
# --------------------------------------------------------------------------------------------------


def test_wrong_secret(oss_server: LocalOssServer) -> None:
    bad = oss2.Bucket(oss2.AuthV4(AK, "wrong"), oss_server.endpoint, BUCKET, region=REGION)
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch) as err:
        bad.list_objects()
    assert f"\n/{BUCKET}/\n" in err.value.details["CanonicalRequest"]
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch):
        bad.get_object("anything")


def test_garbage_authorization_headers(oss_server: LocalOssServer) -> None:
    for value in (f"OSS {AK}:sïgnature", "OSS no-colon", f"OSS4-HMAC-SHA256 Credential={AK}/x", "Bearer abc"):
        status, headers, body = _raw(oss_server, "GET", f"/{BUCKET}/", headers={"Authorization": value})
        assert status in (400, 403), (value, status)
        assert ET.fromstring(body).findtext("Code") in ("SignatureDoesNotMatch", "InvalidArgument", "AccessDenied")
    v2_header = {"Authorization": "OSS2 AccessKeyId:x,Signature:y"}
    status, _, body = _raw(oss_server, "GET", f"/{BUCKET}/", headers=v2_header)
    assert status == 403 and b"not V2" in body


def test_unknown_key_id(oss_server: LocalOssServer) -> None:
    stranger = oss2.Bucket(oss2.AuthV4("nobody", SK), oss_server.endpoint, BUCKET, region=REGION)
    with pytest.raises(oss2.exceptions.AccessDenied):
        stranger.list_objects_v2()


def test_unsigned_request(oss_server: LocalOssServer) -> None:
    anonymous = oss2.Bucket(oss2.AnonymousAuth(), oss_server.endpoint, BUCKET)
    with pytest.raises(oss2.exceptions.AccessDenied):
        anonymous.list_objects()
    status, headers, body = _raw(oss_server, "GET", f"/{BUCKET}/")
    assert status == 403 and headers["x-oss-request-id"]
    root = ET.fromstring(body)
    assert root.findtext("Code") == "AccessDenied"
    assert root.findtext("RequestId") == headers["x-oss-request-id"]


def test_missing_bucket_and_key(oss_server: LocalOssServer, bucket: oss2.Bucket) -> None:
    ghost = oss2.Bucket(oss2.AuthV4(AK, SK), oss_server.endpoint, "no-such-bucket", region=REGION)
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        ghost.list_objects()
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        ghost.get_object("k")
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        ghost.object_exists("k")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        bucket.get_object("missing/key.jpg")


def test_head_errors_have_no_body(oss_server: LocalOssServer) -> None:
    status, headers, body = _raw(oss_server, "HEAD", f"/{BUCKET}/nope", sign_bucket=BUCKET, sign_key="nope")
    assert (status, body) == (404, b"")
    assert headers["x-oss-request-id"]
    assert b"<Code>NoSuchKey</Code>" in base64.b64decode(headers["x-oss-err"])


def test_unsupported_methods_and_subresources(oss_server: LocalOssServer, bucket: oss2.Bucket) -> None:
    status, headers, body = _raw(oss_server, "POST", f"/{BUCKET}/k", sign_bucket=BUCKET, sign_key="k", body=b"")
    assert status == 405 and b"MethodNotAllowed" in body and headers["x-oss-request-id"]
    status, _, body = _raw(oss_server, "BREW", f"/{BUCKET}/k")
    assert status == 405 and b"<Error>" in body
    with pytest.raises(oss2.exceptions.NotImplemented):
        bucket.get_bucket_acl()


def test_invalid_bucket_name(oss_server: LocalOssServer) -> None:
    for name in ("UPPER", "ab", "under_score", "-dash"):
        status, _, body = _raw(oss_server, "GET", f"/{name}/", sign_bucket=name)
        assert status == 400 and b"InvalidBucketName" in body


TRAVERSALS = [
    "/test-bucket/../secret.txt",
    "/test-bucket/../../secret.txt",
    "/test-bucket/%2e%2e/%2e%2e/secret.txt",
    "/test-bucket/%2E%2E%2F%2E%2E%2Fsecret.txt",
    "/test-bucket/a/../../../secret.txt",
    "/test-bucket/..%5c..%5csecret.txt",
    "/test-bucket/%2F..%2Fsecret.txt",
    "/test-bucket//../secret.txt",
    "/test-bucket/x%00/../../secret.txt",
    "/../secret.txt",
    "/%2e%2e/secret.txt",
    "/test-bucket/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/test-bucket/../../../../../../../../etc/passwd",
]


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
def test_path_traversal_is_refused(oss_server: LocalOssServer, tmp_path: Path, method: str) -> None:
    for raw_path in TRAVERSALS:
        bucket_raw, _, key_raw = raw_path[1:].partition("/")
        for signed in (True, False):
            status, headers, body = _raw(
                oss_server,
                method,
                raw_path,
                sign_bucket=unquote(bucket_raw) if signed else None,
                sign_key=unquote(key_raw),
                body=b"overwrite!" if method == "PUT" else None,
            )
            assert status in (400, 403), (method, raw_path, signed, status, body)
            assert SECRET_CONTENT not in body and b"root:" not in body
            assert headers["x-oss-request-id"]
    assert (tmp_path / "secret.txt").read_bytes() == SECRET_CONTENT
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root", "secret.txt"]


def test_symlinks_cannot_escape(bucket: oss2.Bucket, oss_root: Path, tmp_path: Path) -> None:
    base = oss_root / BUCKET
    (base / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (base / "leakdir").symlink_to(tmp_path)
    (base / "inside.txt").write_bytes(b"in")
    (base / "alias.txt").symlink_to(base / "inside.txt")
    assert [o.key for o in oss2.ObjectIterator(bucket)] == ["alias.txt", "inside.txt"]
    for key in ("leak.txt", "leakdir/secret.txt"):
        with pytest.raises(oss2.exceptions.AccessDenied):
            bucket.get_object(key)
        with pytest.raises(oss2.exceptions.AccessDenied):
            bucket.put_object(key, b"overwrite!")
    assert bucket.list_objects(prefix="leakdir/").object_list == []
    assert bucket.get_object("alias.txt").read() == b"in"
    assert (tmp_path / "secret.txt").read_bytes() == SECRET_CONTENT


def test_v1_is_refused_by_default_as_by_a_new_bucket(oss_server: LocalOssServer) -> None:
    v1 = oss2.Bucket(oss2.Auth(AK, SK), oss_server.endpoint, BUCKET)
    with pytest.raises(oss2.exceptions.AccessDenied) as err:
        v1.list_objects_v2()
    assert err.value.ec == "0002-00000080" and "V4" in err.value.message
    with pytest.raises(oss2.exceptions.AccessDenied):
        v1.get_object("anything")
    status, _, body = _raw(oss_server, "GET", f"/{BUCKET}/", sign_bucket=BUCKET, v1=True)
    assert status == 403 and b"0002-00000080" in body
    presigned = v1.sign_url("GET", "anything", 60)
    assert requests.get(presigned, timeout=10).status_code == 403


def test_v1_is_verified_when_the_bucket_accepts_it(oss_root: Path) -> None:
    with LocalOssServer(oss_root, [Credential(AK, SK)], accept_v1=True) as server:
        v1 = oss2.Bucket(oss2.Auth(AK, SK), server.endpoint, BUCKET)
        v1.put_object("v1/k.txt", b"v1")
        assert [o.key for o in oss2.ObjectIteratorV2(v1)] == ["v1/k.txt"]
        with pytest.raises(oss2.exceptions.SignatureDoesNotMatch):
            oss2.Bucket(oss2.Auth(AK, "wrong"), server.endpoint, BUCKET).list_objects()
        status, _, body = _raw(server, "GET", f"/{BUCKET}/", sign_bucket=BUCKET, v1=True)
        assert status == 200, body
        assert requests.get(v1.sign_url("GET", "v1/k.txt", 60), timeout=10).content == b"v1"


def test_sts_tokens_are_verified_and_expire(oss_root: Path) -> None:
    now = [1_000_000.0]
    authority = TokenAuthority(b"k" * 32, clock=lambda: now[0])
    temporary = authority.issue("acs:ram::1:role/reader", "test", 900)
    with LocalOssServer(oss_root, [Credential(AK, SK)], authority=authority) as server:
        def sts_bucket(token: str, secret: str = temporary.access_key_secret) -> oss2.Bucket:
            auth = oss2.StsAuth(temporary.access_key_id, secret, token, auth_version="v4")
            return oss2.Bucket(auth, server.endpoint, BUCKET, region=REGION)

        # The server's clock is the authority's: the token is valid now...
        sts = sts_bucket(temporary.security_token)
        sts.put_object("sts/k.txt", b"sts")
        assert sts.get_object("sts/k.txt").read() == b"sts"
        with pytest.raises(oss2.exceptions.SignatureDoesNotMatch):
            sts_bucket(temporary.security_token, secret="nope").list_objects_v2()
        other = authority.issue("acs:ram::1:role/reader", "other", 900)
        for token in ("", "CAISforged.AAAA", other.security_token):
            with pytest.raises(oss2.exceptions.OssError) as err:
                sts_bucket(token).list_objects_v2()
            assert err.value.status == 403 and err.value.code in ("InvalidSecurityToken", "AccessDenied")
        # ...and refused once expired, with the code the pipeline maps to "expired".
        now[0] += 901
        with pytest.raises(oss2.exceptions.OssError) as err:
            sts.list_objects_v2()
        assert (err.value.status, err.value.code, err.value.ec) == (403, "SecurityTokenExpired", "0002-00000007")


def test_auth_v4(oss_server: LocalOssServer) -> None:
    v4 = oss2.Bucket(oss2.AuthV4(AK, SK), oss_server.endpoint, BUCKET, region="cn-hangzhou")
    for key in SPECIAL_KEYS[:3]:
        v4.put_object(key, key.encode())
    assert [o.key for o in oss2.ObjectIteratorV2(v4, max_keys=1)] == _utf8_sorted(SPECIAL_KEYS[:3])
    assert [o.key for o in oss2.ObjectIterator(v4, prefix="with space/")] == ["with space/a b.txt"]
    assert v4.get_object(SPECIAL_KEYS[0], byte_range=(0, 2)).read() == SPECIAL_KEYS[0].encode()[:3]
    assert v4.head_object(SPECIAL_KEYS[1]).content_length == len(SPECIAL_KEYS[1].encode())
    elsewhere = oss2.Bucket(oss2.AuthV4(AK, SK), oss_server.endpoint, BUCKET, region="cn-shanghai")
    with pytest.raises(oss2.exceptions.OssError) as err:  # a scope in another region is refused
        elsewhere.get_object("plus+sign")
    assert err.value.status == 400 and "cn-hangzhou" in err.value.message
    bad = oss2.Bucket(oss2.AuthV4(AK, "wrong"), oss_server.endpoint, BUCKET, region="cn-hangzhou")
    with pytest.raises(oss2.exceptions.SignatureDoesNotMatch) as err:
        bad.list_objects_v2()
    assert "CanonicalRequest" in err.value.details


def test_requests_are_logged_without_secrets(bucket: oss2.Bucket, caplog: pytest.LogCaptureFixture) -> None:
    def server_lines() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == "localcloud.oss.server"]

    with caplog.at_level(logging.DEBUG, logger="localcloud.oss.server"):
        bucket.put_object("logged/key.txt", b"x")
        bucket.get_object("logged/key.txt").read()
        # The server logs once the answer is out, which may be just after the client has it.
        deadline = time.monotonic() + 5
        while len(server_lines()) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    lines = server_lines()
    assert any(line.startswith("PUT /test-bucket/logged/key.txt -> 200") for line in lines), lines
    assert any(line.startswith("GET /test-bucket/logged/key.txt -> 200") for line in lines), lines
    assert not any(SK in line or "OSS " + AK in line for line in lines)


def test_concurrent_writers_and_deleters(bucket: oss2.Bucket) -> None:
    """Deletes prune emptied folders while other threads write into them: no write may be lost."""

    def churn(worker: int) -> str:
        for i in range(15):
            bucket.put_object(f"race/w{worker}-{i}", b"tmp")
            bucket.delete_object(f"race/w{worker}-{i}")
        bucket.put_object(f"race/final-{worker}", str(worker).encode())
        return f"race/final-{worker}"

    with ThreadPoolExecutor(max_workers=6) as pool:
        finals = list(pool.map(churn, range(6)))
    assert [o.key for o in oss2.ObjectIterator(bucket, prefix="race/")] == sorted(finals)


def test_presigned_url(bucket: oss2.Bucket) -> None:
    bucket.put_object("signed/猫.jpg", b"meow")
    assert requests.get(bucket.sign_url("GET", "signed/猫.jpg", 60), timeout=10).content == b"meow"
    tampered = bucket.sign_url("GET", "signed/猫.jpg", 60).replace("x-oss-signature=", "x-oss-signature=0")
    assert requests.get(tampered, timeout=10).status_code == 403


def test_constructor_refuses_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LocalOssServer(tmp_path, [Credential(AK, SK)], host="0.0.0.0")
    with pytest.raises(ValueError):
        LocalOssServer(tmp_path, [])
    assert SK not in repr(Credential(AK, SK))
    with pytest.raises(FileNotFoundError):
        LocalOssServer(tmp_path / "missing", [Credential(AK, SK)])
    server = LocalOssServer(tmp_path, [Credential(AK, SK)], latency_s=0.01)
    with pytest.raises(RuntimeError):
        server.endpoint  # noqa: B018 - the port is only known once started
    with server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.endpoint)
    server.stop()  # idempotent


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def test_cli_serves_until_sigterm(oss_root: Path, tmp_path: Path) -> None:
    (oss_root / BUCKET / "cli.txt").write_bytes(b"from cli")
    pidfile = tmp_path / "oss.pid"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOCAL_OSS_ACCESS_KEY_SECRET": SK}
    proc = subprocess.Popen(
        [sys.executable, "-m", "localcloud.oss", "--root", str(oss_root), "--port", "0",
         "--access-key-id", AK, "--pidfile", str(pidfile)],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        endpoint, output = wait_for_endpoint(proc)
        assert pidfile.read_text().strip() == str(proc.pid)
        cli_bucket = oss2.Bucket(oss2.AuthV4(AK, SK), endpoint, BUCKET, region=REGION)
        assert cli_bucket.get_object("cli.txt").read() == b"from cli"
        assert SK.encode() not in output
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        assert not pidfile.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_main_rejects_missing_credentials(oss_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_OSS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("LOCAL_OSS_ACCESS_KEY_SECRET", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(oss_root)])
    assert exit_info.value.code == 2


def test_cli_sets_region_v1_and_the_sts_authority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["--root", str(tmp_path), "--access-key-id", "ak", "--access-key-secret", "sk"]
    strict = server_arguments(monkeypatch, oss_cli, base)
    assert (strict["region"], strict["accept_v1"], strict["authority"]) == ("cn-hangzhou", False, None)
    relaxed = server_arguments(monkeypatch, oss_cli, [*base, "--region", "cn-shanghai", "--accept-v1",
                                                      "--sts-key-hex", "ab" * 16])
    assert (relaxed["region"], relaxed["accept_v1"]) == ("cn-shanghai", True)
    assert relaxed["authority"].is_temporary("STS.X")
