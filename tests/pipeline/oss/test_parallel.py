"""Parallel listing through oss2 against the local OSS server: same objects as a sequential listing,
whatever the layout and wherever ranges are split; retries, errors, early stops and progress lines.

Behaviour only: nothing here measures time (see bench/ for that).
"""

from __future__ import annotations

import logging
import threading
import time

import oss2
import pytest
from oss2 import xml_utils
from oss2.models import ListObjectsV2Result

from localcloud.oss.server import DIR_MARKER_NAME, Credential, GeneratedBucket, LocalOssServer
from pipeline.config import CategoryRule, IdRule, SourceConfig
from pipeline.errors import TransientSourceError
from pipeline.oss.catalog import CatalogBuilder, ListedObject
from pipeline.oss.client import OssConnection
from pipeline.oss.pages import KeyRange, LeanListingBucket, OssLister, parse_listing_page
from pipeline.oss.parallel import ParallelLister, guess_split_points
from pipeline.oss.progress import ListingProgress
from pipeline.retry import RetryPolicy

CREDENTIAL = Credential("LTAIparallel", "parallel-secret")
NO_SLEEP = RetryPolicy(attempts=4, sleep=lambda _s: None)

# Nested folders, a flat folder, folder markers, objects next to folders (including names that sort
# between a folder and its siblings: '-' < '.' < '/' < '0'), unicode, and keys at likely split points.
DISK_KEYS = (
    [f"flat/{i:05d}.jpg" for i in range(1500)]
    + [f"nested/{a}/{b}/{i:03d}.png" for a in "abc" for b in ("x", "y") for i in range(40)]
    + ["nested/", "nested/a/", "nested/b/x/", "nested/top.jpg", "nested/zz.jpg"]
    + [f"mixed/{name}" for name in ("a-b.jpg", "a.b.jpg", "a/1.jpg", "a/2.jpg", "a0.jpg", "b.old/3.jpg", "b/4.jpg", "c.jpg")]
    + [f"deep/{'/'.join('d' * (i + 1) for i in range(depth))}/k{depth}.jpg" for depth in range(1, 8)]
    + [f"uni/猫/{i}.jpg" for i in range(30)] + ["uni/\ue000.jpg", "uni/\U0001f600.jpg", "uni/a b+c%20.jpg"]
    + ["edge-a", "edge.jpg", "edge/", "edge/0/0", "edge/1", "edge0"]
)
GENERATED = GeneratedBucket("gen-imgs", prefixes=12, keys_per_prefix=130, flat_keys=2100, digits=6)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("oss")
    bucket = root / "disk-imgs"
    for key in DISK_KEYS:
        path = bucket / key / DIR_MARKER_NAME if key.endswith("/") else bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * (len(key) % 5 + 1))
    (root / "empty-imgs").mkdir()
    with LocalOssServer(root, [CREDENTIAL], generated=[GENERATED]) as srv:
        yield srv


def connection(server: LocalOssServer) -> OssConnection:
    extra = {"access_key_id": CREDENTIAL.access_key_id, "access_key_secret": CREDENTIAL.access_key_secret, "region": "cn-hangzhou", "endpoint": server.endpoint}
    return OssConnection.from_extras("oss_parallel", extra)


def sequential(server: LocalOssServer, bucket: str, prefixes: list[str]) -> list[ListedObject]:
    lister = OssLister.connect(connection(server), bucket, retry=NO_SLEEP)
    return [obj for page in lister.iter_objects(prefixes) for obj in page]


def parallel(lister: ParallelLister, prefixes: list[str]) -> list[ListedObject]:
    listed = [obj for page in lister.iter_objects(prefixes) for obj in page]
    assert len(listed) == len(set(listed)), "an object was listed twice"
    return listed


class Records(logging.Handler):
    """Records of one logger, whatever handlers and propagation Airflow's logging set up."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.INFO)
        self.logger = logging.getLogger(name)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def __enter__(self) -> Records:
        self.logger.addHandler(self)
        self._level, self.logger.level = self.logger.level, logging.INFO
        return self

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self)
        self.logger.level = self._level


def listing_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("oss-list-")]


def make(server: LocalOssServer, bucket: str, *, concurrency: int, page_size: int, **kwargs) -> ParallelLister:
    conn = connection(server)
    lister = OssLister(conn, conn.bucket(bucket, pool_size=concurrency, kind=LeanListingBucket), page_size=page_size, retry=NO_SLEEP)
    return ParallelLister(lister, concurrency=concurrency, **kwargs)


@pytest.mark.parametrize(
    ("bucket", "prefixes"),
    [
        ("disk-imgs", [""]),
        ("disk-imgs", ["flat/", "nested/", "mixed/", "deep/", "uni/", "missing/"]),
        ("disk-imgs", ["edge", "mixed/a", "nested/b/"]),
        ("gen-imgs", [""]),
        ("gen-imgs", ["flat/", "p003/", "p01", "nothing/"]),
        ("empty-imgs", [""]),
    ],
)
@pytest.mark.parametrize(("concurrency", "page_size"), [(1, 1000), (3, 9), (8, 25)])
def test_parallel_lists_the_same_objects_as_sequential(
    server: LocalOssServer, bucket: str, prefixes: list[str], concurrency: int, page_size: int
) -> None:
    expected = sequential(server, bucket, prefixes)
    lister = make(server, bucket, concurrency=concurrency, page_size=page_size, min_split_keys=1)
    assert sorted(parallel(lister, prefixes)) == sorted(expected)
    assert lister.keys_listed == len(expected)
    assert not listing_threads()


@pytest.mark.parametrize(("bucket", "prefixes"), [("disk-imgs", [""]), ("gen-imgs", [""]), ("gen-imgs", ["flat/", "p01"])])
@pytest.mark.parametrize(("concurrency", "page_size"), [(4, 9), (16, 40)])
def test_short_and_empty_truncated_pages_lose_no_key(
    server: LocalOssServer, bucket: str, prefixes: list[str], concurrency: int, page_size: int
) -> None:
    """OSS may answer fewer keys than max-keys, even none, with IsTruncated true. Ranges once ended at
    the first short page, and an empty discovery page broke the fan-out."""
    expected = sequential(server, bucket, prefixes)
    server.faults.set(short_pages_rate=0.3, short_pages_seed=concurrency)
    try:
        lister = make(server, bucket, concurrency=concurrency, page_size=page_size, min_split_keys=1)
        assert sorted(parallel(lister, prefixes)) == sorted(expected)
        assert sequential(server, bucket, prefixes) == expected
        assert server.faults.short_pages_sent and server.faults.empty_pages_sent
    finally:
        server.faults.reset()


def test_keys_directly_under_a_prefix_are_listed_once_with_its_folders(server: LocalOssServer) -> None:
    lister = make(server, "disk-imgs", concurrency=4, page_size=2, min_split_keys=1)
    listed = sorted(obj.key for obj in parallel(lister, ["mixed/"]))
    assert listed == sorted(k for k in DISK_KEYS if k.startswith("mixed/"))


class KeySplitter:
    """Split points taken from the bucket's own keys: exactly at keys, just after them (key + NUL),
    and between them, so that keys sit on the edges of ranges."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = sorted(keys)
        self.used: list[str] = []

    def __call__(self, page: list[str], hi: str | None, ahead: int, min_keys: int, pieces: int) -> list[str]:
        import bisect

        i = bisect.bisect_right(self.keys, page[-1])
        candidates = [self.keys[i + 1] if i + 1 < len(self.keys) else None, self.keys[i + 3] + "\x00" if i + 3 < len(self.keys) else None]
        candidates.append(self.keys[i + 5][:-1] if i + 5 < len(self.keys) else None)  # between keys
        points: list[str] = []
        for point in candidates:
            if point is not None and point > (points[-1] if points else page[-1]) and (hi is None or point < hi):
                points.append(point)
        self.used += points
        return points[:pieces]


@pytest.mark.parametrize("bucket", ["disk-imgs", "gen-imgs"])
def test_ranges_split_exactly_at_keys_lose_and_repeat_nothing(server: LocalOssServer, bucket: str) -> None:
    expected = sequential(server, bucket, [""])
    splitter = KeySplitter([obj.key for obj in expected])
    lister = make(server, bucket, concurrency=6, page_size=12, min_split_keys=1, split_points=splitter)
    assert sorted(parallel(lister, [""])) == sorted(expected)
    assert lister.ranges_split > 10 and set(splitter.used) & {obj.key for obj in expected}


class FlakyBucket:
    """Delegates to a real oss2 Bucket; listing calls whose number is in ``fail_on`` answer 503 once.

    Thread-safe: the parallel lister calls it from several workers.
    """

    def __init__(self, bucket: oss2.Bucket, fail_on: set[int] | None = None, fail_from: int | None = None) -> None:
        self._bucket = bucket
        self._fail_on = fail_on or set()
        self._fail_from = fail_from
        self._lock = threading.Lock()
        self.calls: list[dict] = []
        self.failed: list[dict] = []
        self.bucket_name = bucket.bucket_name

    def list_objects_v2(self, **kwargs):
        with self._lock:
            self.calls.append(kwargs)
            number = len(self.calls)
            fail = number in self._fail_on or (self._fail_from is not None and number >= self._fail_from)
            if fail:
                self.failed.append(kwargs)
        if fail:
            raise oss2.exceptions.ServerError(503, {}, b"", {"Code": "SlowDown", "Message": "Please reduce your request rate."})
        return self._bucket.list_objects_v2(**kwargs)


@pytest.mark.parametrize("fail_on", [{1}, {2}, {5}, {9, 10}, {17}])
def test_a_page_failing_mid_fan_out_is_retried(server: LocalOssServer, fail_on: set[int]) -> None:
    expected = sequential(server, "disk-imgs", [""])
    conn = connection(server)
    flaky = FlakyBucket(conn.bucket("disk-imgs", kind=LeanListingBucket), fail_on=fail_on)
    lister = ParallelLister(OssLister(conn, flaky, page_size=20, retry=NO_SLEEP), concurrency=4, min_split_keys=1)  # type: ignore[arg-type]
    assert sorted(parallel(lister, [""])) == sorted(expected)
    assert flaky.failed  # the failure happened...
    for failed in flaky.failed:  # ...and the very same request was made again
        assert sum(call == failed for call in flaky.calls) >= 2
    assert len(flaky.calls) == lister.pages_listed + len(flaky.failed)


def test_the_first_error_reaches_the_consumer_and_stops_every_worker(server: LocalOssServer) -> None:
    conn = connection(server)
    flaky = FlakyBucket(conn.bucket("gen-imgs", kind=LeanListingBucket), fail_from=6)
    lister = ParallelLister(OssLister(conn, flaky, page_size=10, retry=NO_SLEEP), concurrency=4, min_split_keys=1)  # type: ignore[arg-type]
    with pytest.raises(TransientSourceError, match="503 SlowDown"):
        for _ in lister.iter_objects([""]):
            pass
    assert not listing_threads()


def test_a_consumer_stopping_early_leaves_no_thread_behind(server: LocalOssServer) -> None:
    lister = make(server, "gen-imgs", concurrency=8, page_size=10, pages_in_flight=1, min_split_keys=1)
    pages = lister.iter_objects([""])
    first = next(pages)
    assert first and listing_threads()
    pages.close()
    assert not listing_threads()
    # ... and the same on an exception raised in the consumer
    with pytest.raises(RuntimeError, match="consumer broke"):
        for _ in lister.iter_objects([""]):
            raise RuntimeError("consumer broke")
    assert not listing_threads()


def test_pages_in_flight_are_bounded(server: LocalOssServer) -> None:
    concurrency, in_flight, taken = 4, 2, 3
    lister = make(server, "gen-imgs", concurrency=concurrency, page_size=10, pages_in_flight=in_flight, min_split_keys=10**9)
    pages = lister.iter_objects(["flat/"])  # one flat folder, never split: every request yields a page
    for _ in range(taken):
        next(pages)
    time.sleep(0.3)  # let workers run ahead if they could; the bound must hold at any moment
    assert lister.pages_listed <= taken + in_flight + concurrency
    pages.close()
    assert not listing_threads()


def test_progress_is_logged_at_a_steady_interval() -> None:
    now = [0.0]

    def clock() -> float:
        now[0] += 4.0  # every reading is 4 s later: a line every third page at a 10 s interval
        return now[0]

    source = SourceConfig(oss_conn_id="c", bucket="bkt", prefixes=["p/"], extensions=["jpg"])
    builder = CatalogBuilder(source, IdRule(kind="filename_digits"), CategoryRule(kind="path_segment", segment=1))
    progress = ListingProgress("demo ds=20260101", builder.counts, interval_s=10.0, clock=clock)
    pages = [[ListedObject(f"p/{j % 3}/{j}.jpg", 5), ListedObject(f"p/x/{j}.txt", 5)] for j in range(12)]
    with Records("pipeline.oss.progress") as records:
        batches = list(builder.batches(progress.track(pages)))
    assert sum(b.num_rows for b in batches) == 12
    lines = records.messages
    steady = [line for line in lines if "done" not in line]
    assert len(steady) == progress.lines >= 3
    assert "keys listed" in steady[0] and "rows kept" in steady[0] and "skipped" in steady[0] and "keys/s" in steady[0]
    assert lines[-1].startswith("listing demo ds=20260101 done: 24 keys listed, 12 rows kept, 12 skipped")


def test_load_partition_logs_listing_progress(demo_stack) -> None:
    from pipeline.stages import load_partition, open_lister

    _, _, config = demo_stack
    assert isinstance(open_lister(config), ParallelLister)  # list_concurrency defaults to 16
    with Records("pipeline.oss.progress") as records:
        result = load_partition(config, "20261120", dry_run=True)
    done = records.messages
    assert done and f"{result.counts['listed']} keys listed, {result.counts['kept']} rows kept" in done[-1]


def test_open_lister_sizes_the_connection_pool_to_the_concurrency(demo_stack) -> None:
    from pipeline.stages import open_lister

    _, _, config = demo_stack
    one = config.model_copy(update={"source": config.source.model_copy(update={"list_concurrency": 1})})
    assert type(open_lister(one)) is OssLister
    many = config.model_copy(update={"source": config.source.model_copy(update={"list_concurrency": 24})})
    lister = open_lister(many, page_size=100)
    assert isinstance(lister, ParallelLister) and lister.concurrency == 24
    adapter = lister._lister._bucket.session.session.get_adapter("http://")  # noqa: SLF001 - the shared session
    assert adapter._pool_maxsize == 24  # noqa: SLF001


# -- the lean ListObjectsV2 parse ---------------------------------------------------------------------


@pytest.mark.parametrize("delimiter", ["", "/"])
@pytest.mark.parametrize("bucket_name", ["disk-imgs", "gen-imgs"])
def test_lean_parse_reads_pages_exactly_like_oss2(server: LocalOssServer, bucket_name: str, delimiter: str) -> None:
    conn = connection(server)
    plain, lean = conn.bucket(bucket_name), conn.bucket(bucket_name, kind=LeanListingBucket)
    token, pages, size = "", 0, 2 if delimiter else 101
    while True:
        a = plain.list_objects_v2(delimiter=delimiter, continuation_token=token, max_keys=size)
        b = lean.list_objects_v2(delimiter=delimiter, continuation_token=token, max_keys=size)
        assert listed(a.object_list) == list(b.object_list) and all(type(o) is ListedObject for o in b.object_list)
        assert (a.prefix_list, a.is_truncated, a.next_continuation_token) == (b.prefix_list, b.is_truncated, b.next_continuation_token)
        pages += 1
        if not a.is_truncated:
            break
        token = a.next_continuation_token
    assert pages > 3


class _Response:
    status, headers, request_id = 200, {}, "test"


def listed(items: list) -> list[tuple]:
    """oss2's items or ours (the lean parse hands oss2's on when it falls back) as plain tuples."""
    return [tuple(o) if type(o) is ListedObject else (o.key, o.size, o.storage_class, o.restore_info or "", o.etag or None)
            for o in items]


def _entry(key: str, after_size: str = "", after_owner: str = "", etag: str = "<ETag>\"X\"</ETag>") -> bytes:
    return (
        f"<Contents><Key>{key}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>{etag}"
        f"<Type>Normal</Type><Size>7</Size>{after_size}<Owner><ID>o</ID><DisplayName>o</DisplayName></Owner>"
        f"{after_owner}</Contents>"
    ).encode()


def _page(*entries: bytes) -> bytes:
    return b"<ListBucketResult><EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>" + b"".join(entries) + b"</ListBucketResult>"


RESTORED_INFO = 'ongoing-request="false", expiry-date="Sat, 05 Dec 2026 07:38:08 GMT"'
ARCHIVE_PAGE = _page(
    _entry("a.jpg", "<StorageClass>Standard</StorageClass>"),
    _entry("b.jpg", "<StorageClass>Archive</StorageClass><RestoreInfo>ongoing-request=&quot;true&quot;</RestoreInfo>"),
    _entry("c.jpg", f"<StorageClass>ColdArchive</StorageClass><RestoreInfo>{RESTORED_INFO}</RestoreInfo>"),
    _entry("d.jpg", "<StorageClass>DeepColdArchive</StorageClass>"),
    _entry("e.jpg", "<StorageClass>IA</StorageClass>"),
)


@pytest.mark.parametrize(
    "body",
    [
        # Not URL-encoded, with an entity in the key: oss2's own parser takes over.
        b'<?xml version="1.0"?><ListBucketResult><IsTruncated>false</IsTruncated>'
        b"<Contents><Key>a&amp;b.jpg</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>\"X\"</ETag>"
        b"<Type>Normal</Type><Size>5</Size><StorageClass>Standard</StorageClass></Contents></ListBucketResult>",
        # Pretty-printed, URL-encoded, with a common prefix and a token.
        b'<?xml version="1.0"?>\n<ListBucketResult>\n  <EncodingType>url</EncodingType>\n  <IsTruncated>true</IsTruncated>\n'
        b"  <NextContinuationToken>t%2Bk</NextContinuationToken>\n  <Contents>\n    <Key>%E7%8C%AB/a%20b.jpg</Key>\n"
        b"    <LastModified>2026-01-01T00:00:00.000Z</LastModified>\n    <ETag>\"X\"</ETag>\n    <Type>Normal</Type>\n"
        b"    <Size>12</Size>\n    <StorageClass>Standard</StorageClass>\n  </Contents>\n"
        b"  <CommonPrefixes>\n    <Prefix>d%2F/</Prefix>\n  </CommonPrefixes>\n</ListBucketResult>",
        # An empty page that is still truncated (legal on OSS): it must keep its token.
        b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult><Name>b</Name><Prefix>p%2F</Prefix><MaxKeys>9</MaxKeys>'
        b"<Delimiter>%2F</Delimiter><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>"
        b"<NextContinuationToken>YWZ0ZXI6cC8w</NextContinuationToken><KeyCount>0</KeyCount></ListBucketResult>",
        # Storage classes and RestoreInfo where the local server writes them (right after StorageClass),
        # quotes escaped or not: the lean parse reads them (see the test after this one).
        ARCHIVE_PAGE,
        # An element between Size and StorageClass (OSS lists TransitionTime for objects a lifecycle rule moved).
        _page(_entry("t.jpg", "<TransitionTime>2024-04-23T07:21:42.000Z</TransitionTime><StorageClass>ColdArchive</StorageClass>")),
        # RestoreInfo after Owner, or StorageClass after Owner: another order, so oss2's parser reads them.
        _page(
            _entry("f.jpg", "<StorageClass>Archive</StorageClass>", f"<RestoreInfo>{RESTORED_INFO}</RestoreInfo>"),
            _entry("g.jpg", "<StorageClass>Archive</StorageClass>"),
        ),
        _page(_entry("h.jpg", "", "<StorageClass>Archive</StorageClass>"), _entry("i.jpg", "", "<StorageClass>Standard</StorageClass>")),
        # ETags as S3 writes them (entities), multipart, lower case: read as oss2 reads them.
        _page(_entry("j.jpg", "<StorageClass>Standard</StorageClass>", etag="<ETag>&quot;5B3C1A2E&quot;</ETag>"),
              _entry("k.jpg", "<StorageClass>Standard</StorageClass>", etag='<ETag>"a1b2c3-2"</ETag>')),
        # Two ETags in one entry: oss2's parser decides.
        _page(_entry("l.jpg", "<StorageClass>Standard</StorageClass>", etag='<ETag>"A"</ETag><ETag>"B"</ETag>')),
        # CDATA: fallback.
        b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key><![CDATA[c.jpg]]></Key>"
        b"<LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>X</ETag><Type>Normal</Type><Size>1</Size>"
        b"<StorageClass>Standard</StorageClass></Contents></ListBucketResult>",
    ],
)
def test_lean_parse_agrees_with_oss2_on_unusual_documents(body: bytes) -> None:
    full, lean = ListObjectsV2Result(_Response()), ListObjectsV2Result(_Response())
    xml_utils.parse_list_objects_v2(full, body)
    parse_listing_page(lean, body)
    assert listed(full.object_list) == listed(lean.object_list)
    assert (full.prefix_list, full.is_truncated, full.next_continuation_token) == (
        lean.prefix_list,
        lean.is_truncated,
        lean.next_continuation_token,
    )


def test_the_lean_parse_reads_storage_classes_and_restore_state_itself() -> None:
    lean = ListObjectsV2Result(_Response())
    parse_listing_page(lean, ARCHIVE_PAGE)
    assert all(type(o) is ListedObject for o in lean.object_list)  # no fallback to oss2's parser
    assert [(o.storage_class, o.restore) for o in lean.object_list] == [
        ("Standard", ""), ("Archive", 'ongoing-request="true"'), ("ColdArchive", RESTORED_INFO), ("DeepColdArchive", ""), ("IA", "")
    ]
    moved = ListObjectsV2Result(_Response())
    parse_listing_page(moved, _page(_entry("t.jpg", "<TransitionTime>2024-04-23T07:21:42.000Z</TransitionTime><StorageClass>ColdArchive</StorageClass>")))
    assert moved.object_list == [ListedObject("t.jpg", 7, "ColdArchive", etag="X")]


def test_the_lean_parse_reads_the_etag_wherever_it_sits_before_size() -> None:
    """OSS lists the ETag between LastModified and Type; elsewhere before Size, or absent (None), the
    lean parse still reads it, with the quotes stripped (as oss2 strips them) and the case kept."""
    page = _page(
        _entry("a.jpg", "<StorageClass>Standard</StorageClass>", etag="<ETag>\"5b3c1A2E\"</ETag>"),
        _entry("b.jpg", "<StorageClass>Archive</StorageClass>", etag=""),
        (b"<Contents><Key>c.jpg</Key><ETag>&quot;C0FFEE&quot;</ETag><LastModified>2026-01-01T00:00:00.000Z"
         b"</LastModified><Size>7</Size><StorageClass>Standard</StorageClass></Contents>"),
        (b"<Contents><Key>d.jpg</Key><Size>7</Size><StorageClass>Archive</StorageClass>"
         b"<RestoreInfo>ongoing-request=&quot;true&quot;</RestoreInfo></Contents>"),
    )
    lean = ListObjectsV2Result(_Response())
    parse_listing_page(lean, page)
    assert all(type(o) is ListedObject for o in lean.object_list)  # no fallback to oss2's parser
    assert [(o.key, o.etag) for o in lean.object_list] == [("a.jpg", "5b3c1A2E"), ("b.jpg", None), ("c.jpg", "C0FFEE"),
                                                            ("d.jpg", None)]


# -- split points -------------------------------------------------------------------------------------


def test_guessed_split_points_lie_strictly_inside_the_rest() -> None:
    page = [f"flat/{i:09d}.jpg" for i in range(1000, 2000)]
    for hi in (None, "flat/000200000.jpg", "p000/", "flat/0000030"):
        for ahead in (8000, 64000):
            points = guess_split_points(page, hi, ahead, 2000, 5)
            assert points == sorted(points) and len(points) <= 5
            assert all(p > page[-1] and (hi is None or p < hi) for p in points)
    assert len(guess_split_points(page, None, 8000, 2000, 3)) == 3  # an open end is worth splitting
    assert guess_split_points(page, "flat/0000021", 8000, 2000, 3) == []  # ~100 keys left: not worth it
    assert guess_split_points(page[:1], None, 8000, 1, 3) == []


def test_key_range_start_after_resumes_at_a_split(server: LocalOssServer) -> None:
    # The seam the parallel lister stands on: a range that starts right after a split key.
    lister = OssLister.connect(connection(server), "gen-imgs", retry=NO_SLEEP)
    keys = [obj.key for page in lister.iter_pages(KeyRange("flat/", "flat/001599.jpg")) for obj in page]
    assert keys[0] == "flat/001600.jpg" and len(keys) == 2100 - 40


# Catalog rows of listed pages (one path for every page size, against a slow reference):
# tests/pipeline/oss/test_catalog_rules.py.
