"""Listing through oss2 against the local OSS server: pages, resumption, errors, connections."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import oss2
import pytest

from localcloud.oss.server import Credential, LocalOssServer
from localcloud.ram import TokenAuthority
from pipeline.errors import ConnectionConfigError, SourceAccessError, SourceError, TransientSourceError
from pipeline.oss.catalog import ListedObject
from pipeline.oss.client import OssConnection
from pipeline.oss.pages import KeyRange, OssLister
from pipeline.retry import RetryPolicy

CREDENTIAL = Credential("LTAItestkey", "test-secret-123")
NO_SLEEP = RetryPolicy(attempts=4, sleep=lambda _s: None)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("oss")
    bucket = root / "imgs"
    for folder, count in (("flat", 2500), ("nested/a", 30), ("nested/b", 20)):
        (bucket / folder).mkdir(parents=True)
        for i in range(count):
            (bucket / folder / f"{i:05d}.jpg").write_bytes(b"x" * (i % 7 + 1))
    with LocalOssServer(root, [CREDENTIAL]) as srv:
        yield srv


def connection(server: LocalOssServer, secret: str = CREDENTIAL.access_key_secret) -> OssConnection:
    extra = {"auth_type": "AK", "access_key_id": CREDENTIAL.access_key_id, "access_key_secret": secret, "region": "cn-hangzhou", "endpoint": server.endpoint}
    return OssConnection.from_extras("oss_test", extra)


def keys(pages) -> list[str]:
    return [obj.key for page in pages for obj in page]


def test_lists_every_key_once_in_pages_of_1000(server: LocalOssServer) -> None:
    lister = OssLister.connect(connection(server), "imgs", retry=NO_SLEEP)
    pages = list(lister.iter_pages(KeyRange("flat/")))
    assert [len(p) for p in pages] == [1000, 1000, 500]
    assert keys(pages) == [f"flat/{i:05d}.jpg" for i in range(2500)]
    # The ETag as OSS lists it, without its quotes: the MD5 of the content, upper-case hex here.
    assert pages[0][1] == ListedObject("flat/00001.jpg", 2, etag=hashlib.md5(b"xx").hexdigest().upper())


def test_key_range_bounds_split_a_flat_prefix(server: LocalOssServer) -> None:
    lister = OssLister.connect(connection(server), "imgs", retry=NO_SLEEP)
    ranges = [KeyRange("flat/", "", "flat/01200.jpg"), KeyRange("flat/", "flat/01199.jpg", None)]
    listed = [k for r in ranges for k in keys(lister.iter_pages(r))]
    assert listed == [f"flat/{i:05d}.jpg" for i in range(2500)]


def test_several_prefixes_and_empty_prefix(server: LocalOssServer) -> None:
    lister = OssLister.connect(connection(server), "imgs", retry=NO_SLEEP)
    listed = keys(lister.iter_objects(["nested/b/", "nested/a/", "missing/"]))
    assert len(listed) == 50 and listed[0] == "nested/b/00000.jpg"


class FlakyBucket:
    """Delegates to a real oss2 Bucket; the listed call numbers fail once with a 503 SlowDown."""

    def __init__(self, bucket: oss2.Bucket, fail_on: set[int]) -> None:
        self._bucket = bucket
        self._fail_on = fail_on
        self.calls: list[str] = []
        self.bucket_name = bucket.bucket_name

    def list_objects_v2(self, **kwargs):
        self.calls.append(kwargs["continuation_token"])
        if len(self.calls) in self._fail_on:
            raise oss2.exceptions.ServerError(503, {}, b"", {"Code": "SlowDown", "Message": "Please reduce your request rate."})
        return self._bucket.list_objects_v2(**kwargs)


def test_a_failed_page_is_retried_from_its_own_token(server: LocalOssServer) -> None:
    conn = connection(server)
    flaky = FlakyBucket(conn.bucket("imgs"), fail_on={2, 3})
    lister = OssLister(conn, flaky, retry=NO_SLEEP)  # type: ignore[arg-type]
    listed = keys(lister.iter_pages(KeyRange("flat/")))
    assert listed == [f"flat/{i:05d}.jpg" for i in range(2500)]  # nothing lost, nothing twice
    # Calls 2 and 3 failed; the retry (call 4) asked for the same page as call 2, not the first page.
    assert flaky.calls[1] == flaky.calls[2] == flaky.calls[3] != ""
    assert lister.pages_listed == 3


def test_retries_are_bounded(server: LocalOssServer) -> None:
    conn = connection(server)
    flaky = FlakyBucket(conn.bucket("imgs"), fail_on=set(range(1, 100)))
    lister = OssLister(conn, flaky, retry=NO_SLEEP)  # type: ignore[arg-type]
    with pytest.raises(TransientSourceError, match="answered 503 SlowDown"):
        list(lister.iter_pages(KeyRange("flat/")))
    assert len(flaky.calls) == NO_SLEEP.attempts


def test_wrong_secret_names_the_connection(server: LocalOssServer) -> None:
    lister = OssLister.connect(connection(server, secret="not-the-secret"), "imgs", retry=NO_SLEEP)
    with pytest.raises(SourceAccessError) as err:
        list(lister.iter_pages(KeyRange("flat/")))
    message = str(err.value)
    assert "SignatureDoesNotMatch" in message and "connection 'oss_test'" in message
    assert "not-the-secret" not in message


def test_missing_bucket_is_a_clear_error(server: LocalOssServer) -> None:
    lister = OssLister.connect(connection(server), "no-such-bucket", retry=NO_SLEEP)
    with pytest.raises(SourceAccessError, match="'no-such-bucket' .* does not exist"):
        list(lister.iter_pages(KeyRange("")))


def test_unreachable_endpoint_is_transient() -> None:
    extra = {"access_key_id": "a", "access_key_secret": "b", "region": "cn-hangzhou", "endpoint": "http://127.0.0.1:9", "connect_timeout_s": 2}
    lister = OssLister.connect(OssConnection.from_extras("dead", extra), "imgs", retry=RetryPolicy(attempts=2, sleep=lambda _s: None))
    with pytest.raises(TransientSourceError, match="cannot reach"):
        list(lister.iter_pages(KeyRange("")))


def test_sts_token_connection(tmp_path: Path) -> None:
    authority = TokenAuthority(b"pages-test-authority-key-0123456789")
    temporary = authority.issue("acs:ram::1:role/reader", "pages", 3600)
    extra = {
        "auth_type": "STS",
        "access_key_id": temporary.access_key_id,
        "access_key_secret": temporary.access_key_secret,
        "security_token": temporary.security_token,
        "region": "cn-hangzhou",
    }
    (tmp_path / "imgs" / "sts").mkdir(parents=True)
    (tmp_path / "imgs" / "sts" / "a.jpg").write_bytes(b"x")
    with LocalOssServer(tmp_path, [CREDENTIAL], authority=authority) as sts_server:
        conn = OssConnection.from_extras("oss_sts", {**extra, "endpoint": sts_server.endpoint})
        assert temporary.security_token not in repr(conn) and temporary.access_key_secret not in repr(conn)
        assert keys(OssLister.connect(conn, "imgs").iter_pages(KeyRange("sts/"))) == ["sts/a.jpg"]


def test_connection_from_airflow_environment(server: LocalOssServer, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"auth_type": "AK", "access_key_id": CREDENTIAL.access_key_id, "access_key_secret": CREDENTIAL.access_key_secret, "region": "cn-hangzhou", "endpoint": server.endpoint}
    monkeypatch.setenv("AIRFLOW_CONN_OSS_ENV", json.dumps({"conn_type": "oss", "extra": extra}))
    conn = OssConnection.from_airflow("oss_env")
    assert conn.endpoint == server.endpoint and conn.region == "cn-hangzhou"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"access_key_id": "a", "access_key_secret": "b"}, r"lacks extra field\(s\) endpoint"),
        ({"endpoint": "http://x"}, r"lacks extra field\(s\) access_key_id, access_key_secret"),
        ({"auth_type": "STS", "access_key_id": "a", "access_key_secret": "b", "region": "cn-hangzhou", "endpoint": "e"}, "security_token"),
        ({"auth_type": "RAM", "endpoint": "e"}, "auth_type 'RAM' is not supported"),
    ],
)
def test_incomplete_connections_are_refused(extra: dict, expected: str) -> None:
    with pytest.raises(ConnectionConfigError, match=expected):
        OssConnection.from_extras("oss_bad", extra)


def test_undefined_airflow_connection() -> None:
    with pytest.raises(ConnectionConfigError, match="'oss_nowhere' is not defined"):
        OssConnection.from_airflow("oss_nowhere")


class TokenlessBucket:
    """Delegates to a real oss2 Bucket, but drops the token of truncated pages. The local server never
    does that (nor does OSS): a fake at the narrowest seam, to prove the listing refuses to loop."""

    def __init__(self, bucket: oss2.Bucket) -> None:
        self._bucket = bucket
        self.bucket_name = bucket.bucket_name

    def list_objects_v2(self, **kwargs):
        result = self._bucket.list_objects_v2(**kwargs)
        result.next_continuation_token = ""
        return result


def test_a_truncated_page_without_a_token_stops_the_listing(server: LocalOssServer) -> None:
    conn = connection(server)
    lister = OssLister(conn, TokenlessBucket(conn.bucket("imgs")), page_size=100, retry=NO_SLEEP)  # type: ignore[arg-type]
    with pytest.raises(SourceError, match=r"connection 'oss_test'\): a truncated ListObjectsV2 page came without a NextContinuationToken"):
        list(lister.iter_pages(KeyRange("flat/")))
    with pytest.raises(SourceError, match="without a NextContinuationToken"):
        lister.list_delimited("flat/")


def test_short_and_empty_pages_are_followed_to_the_end(server: LocalOssServer) -> None:
    """Only IsTruncated ends a listing: pages shorter than max-keys, even empty ones, do not."""
    lister = OssLister.connect(connection(server), "imgs", page_size=100, retry=NO_SLEEP)
    server.faults.set(short_pages_rate=0.6, short_pages_seed=2)
    try:
        pages = list(lister.iter_pages(KeyRange("flat/", "flat/00099.jpg", "flat/02300.jpg")))
        delimited, token = [], ""
        while True:
            page = lister.list_delimited("nested/", token=token, delimiter="")
            delimited += [obj.key for obj in page.objects]
            if not page.is_truncated:
                break
            assert page.next_token
            token = page.next_token
        assert server.faults.short_pages_sent and server.faults.empty_pages_sent
    finally:
        server.faults.reset()
    assert keys(pages) == [f"flat/{i:05d}.jpg" for i in range(100, 2300)]
    assert all(pages) and any(len(page) < 100 for page in pages)  # empty pages are not handed on
    assert delimited == [f"nested/{d}/{i:05d}.jpg" for d, n in (("a", 30), ("b", 20)) for i in range(n)]
