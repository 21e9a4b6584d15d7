"""Property: whatever the bucket, page size and share of short pages, both listers list every key
exactly once (nothing missing, nothing twice).

Random folder buckets (nested prefixes, odd and non-ASCII characters, folder markers, many keys under
one prefix) are written straight to disk under one local OSS server per module, then listed through
oss2 by ``OssLister`` and by ``ParallelLister`` at several concurrencies, while the server answers a
random share of pages short or empty yet truncated (``short_pages_rate``), as OSS may. The truth is
the set of keys written. One example takes well under a second; the whole test 10-20 s.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from localcloud.oss.server import DIR_MARKER_NAME, Credential, LocalOssServer
from pipeline.oss.client import OssConnection
from pipeline.oss.pages import LeanListingBucket, OssLister
from pipeline.oss.parallel import ParallelLister
from pipeline.retry import RetryPolicy

CREDENTIAL = Credential("LTAIproperty", "property-secret")
NO_SLEEP = RetryPolicy(attempts=2, sleep=lambda _s: None)
CONCURRENCIES = (2, 5, 16)
# URL-special, XML-special, sorting-edge ('-' < '.' < '/' < '0'), non-ASCII, private-use and astral characters.
ODD = " +%&<>'\"#?=!~-._,;()[]{}@$^`|é猫\u3000\ue000\U0001f600"
SEGMENT = st.text(alphabet=st.sampled_from("abcxyz019" + ODD), min_size=1, max_size=6).filter(
    lambda s: s not in (".", "..") and not s.startswith(".oss-")
)
KEY = st.lists(SEGMENT, min_size=1, max_size=4).map("/".join)


@st.composite
def buckets(draw: st.DrawFn) -> list[str]:
    """Keys of a bucket the folder store can hold: no key is also a folder of another key."""
    keys = set(draw(st.lists(KEY, max_size=40)))
    keys |= {key.rpartition("/")[0] + "/" for key in draw(st.lists(st.sampled_from(sorted(keys)), max_size=3))} if keys else set()
    keys.discard("/")
    folder = draw(st.lists(SEGMENT, max_size=2).map(lambda parts: "".join(p + "/" for p in parts)))
    many = draw(st.integers(0, 150))  # many keys under one prefix: what splits a range
    names = draw(st.sampled_from(["{:05d}.jpg", "{}", "x{:03d}\u732b", "{:x}+.png"]))
    keys |= {folder + names.format(i) for i in range(many)}
    # The folder store keeps a key as a file: it cannot also be a folder holding other keys.
    return sorted(k for k in keys if k.endswith("/") or not any(o.startswith(k + "/") for o in keys))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOssServer]:
    with LocalOssServer(tmp_path_factory.mktemp("oss"), [CREDENTIAL]) as srv:
        yield srv


def write_bucket(root: Path, name: str, keys: list[str]) -> None:
    for key in keys:
        path = root / name / key
        path = path / DIR_MARKER_NAME if key.endswith("/") else path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    (root / name).mkdir(exist_ok=True)


def lister(server: LocalOssServer, bucket: str, page_size: int, concurrency: int = 1) -> OssLister:
    extra = {"access_key_id": CREDENTIAL.access_key_id, "access_key_secret": CREDENTIAL.access_key_secret,
             "region": "cn-hangzhou", "endpoint": server.endpoint}
    conn = OssConnection.from_extras("oss_property", extra)
    return OssLister(conn, conn.bucket(bucket, pool_size=concurrency, kind=LeanListingBucket), page_size=page_size, retry=NO_SLEEP)


_names = (f"prop-{n:05d}" for n in itertools.count())


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    keys=buckets(),
    rate=st.sampled_from([0.0, 0.2, 0.5, 0.8]),
    seed=st.integers(0, 2**16),
    page_size=st.one_of(st.integers(1, 12), st.sampled_from([50, 1000])),
    min_split_keys=st.sampled_from([1, 2000]),
    cut=st.integers(0, 8),
)
def test_both_listers_list_every_key_exactly_once(
    server: LocalOssServer, keys: list[str], rate: float, seed: int, page_size: int, min_split_keys: int, cut: int
) -> None:
    name = next(_names)
    root = Path(server.root)
    write_bucket(root, name, keys)
    # The whole bucket, or the keys under a prefix cut from one of them (a folder or a partial name).
    prefix = keys[seed % len(keys)][:cut] if keys and cut else ""
    truth = [k for k in keys if k.startswith(prefix)]
    server.faults.reset()
    server.faults.set(short_pages_rate=rate, short_pages_seed=seed)
    try:
        listed = [obj.key for page in lister(server, name, page_size).iter_objects([prefix]) for obj in page]
        assert listed == truth  # sequential: in key order too
        for concurrency in CONCURRENCIES:
            parallel = ParallelLister(lister(server, name, page_size, concurrency), concurrency=concurrency, min_split_keys=min_split_keys)
            listed = [obj.key for page in parallel.iter_objects([prefix]) for obj in page]
            assert len(listed) == len(set(listed)), f"listed twice with {concurrency} workers"
            assert sorted(listed) == truth, f"keys missing with {concurrency} workers"
    finally:
        server.faults.reset()
        shutil.rmtree(root / name)
