"""Bad input through the real clients: unusual keys are loaded exactly, wrong input is refused clearly.

The load runs ``load_partition`` with the real ``OssLister`` / ``ParallelLister`` (oss2 against the
local OSS server) into a ``LocalWarehouse``; rows are then read back from OSS by their
``source_image``, as the OpenSearch build does. Rows already proven elsewhere are listed in FAULTS.md.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import oss2
import pytest
from PIL import Image

from localcloud.oss.server import Credential, LocalOssServer
from pipeline.config import load_index_config
from pipeline.errors import SourceAccessError
from pipeline.oss.client import OssConnection, read_object
from pipeline.oss.pages import LeanListingBucket, OssLister
from pipeline.oss.parallel import ParallelLister
from pipeline.retry import RetryPolicy
from pipeline.stages import load_partition
from pipeline.warehouse.local import LocalWarehouse

REPO = Path(__file__).resolve().parents[2]
CREDENTIAL = Credential("LTAIbadinput", "bad-input-secret-789")
NO_SLEEP = RetryPolicy(attempts=3, sleep=lambda _s: None)
BUCKET = "odd-keys"


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="JPEG")
    return out.getvalue()


def _long_key(total_bytes: int) -> str:
    """catalog/hats/<five folders>/31001.jpg, exactly ``total_bytes`` UTF-8 bytes long (folders <= 255 bytes)."""
    head, tail = "catalog/hats/", "/31001.jpg"
    filler = total_bytes - len(head) - len(tail) - 4  # five folder names joined by four '/'
    sizes = [filler // 5] * 4 + [filler - 4 * (filler // 5)]
    key = head + "/".join(("é" if i == 0 else "L") * 1 + "L" * (size - (2 if i == 0 else 1)) for i, size in enumerate(sizes)) + tail
    assert len(key.encode("utf-8")) == total_bytes, len(key.encode("utf-8"))
    return key


JPEG = _jpeg()
LONGEST = _long_key(1023)  # the longest key OSS allows
#: key -> (bytes, expected row or None when skipped)
OBJECTS: dict[str, tuple[bytes, dict | None]] = {
    "catalog/shoes/图 片/10101.jpg": (JPEG, {"id": 10101, "cate_id": 1}),  # unicode and a space
    "catalog/shoes/a+b %41/10102.jpg": (JPEG, {"id": 10102, "cate_id": 1}),  # '+', '%' and a space
    "catalog/shoes/100% real+/10103.jpeg": (JPEG, {"id": 10103, "cate_id": 1}),
    "catalog/bags/UPPER/20101.JPG": (JPEG, {"id": 20101, "cate_id": 2}),  # uppercase extension: accepted
    "catalog/bags/UPPER/20102.JpEg": (JPEG, {"id": 20102, "cate_id": 2}),
    "catalog/bags/20103.jpg": (b"this is not a JPEG at all", {"id": 20103, "cate_id": 2}),  # kept by extension
    LONGEST: (JPEG, {"id": 31001, "cate_id": 3}),
    "catalog/watches/": (b"", None),  # folder markers: skipped and counted
    "catalog/watches/sub/": (b"", None),
    "catalog/watches/sub/40101.jpg": (JPEG, {"id": 40101, "cate_id": 4}),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOssServer]:
    with LocalOssServer(tmp_path_factory.mktemp("oss"), [CREDENTIAL]) as srv:
        bucket = connection(srv).bucket(BUCKET)
        bucket.create_bucket()
        for key, (data, _) in OBJECTS.items():
            bucket.put_object(key, data)
        yield srv


@pytest.fixture(scope="module")
def config():
    return load_index_config(REPO / "dags" / "indexes" / "demo.yaml")


@pytest.fixture
def warehouse(tmp_path: Path, config) -> LocalWarehouse:
    return LocalWarehouse(tmp_path, config.warehouse.table)


def connection(server: LocalOssServer) -> OssConnection:
    extra = {"access_key_id": CREDENTIAL.access_key_id, "access_key_secret": CREDENTIAL.access_key_secret,
             "region": "cn-hangzhou", "endpoint": server.endpoint}
    return OssConnection.from_extras("oss_bad_input", extra)


def lister(server: LocalOssServer, bucket: str = BUCKET, parallel: bool = False):
    conn = connection(server)
    sequential = OssLister(conn, conn.bucket(bucket, pool_size=4, kind=LeanListingBucket), page_size=3, retry=NO_SLEEP)
    return ParallelLister(sequential, concurrency=4, min_split_keys=4) if parallel else sequential


@pytest.mark.parametrize("parallel", [False, True], ids=["sequential", "parallel"])
def test_unusual_keys_are_loaded_exactly_and_read_back(
    server: LocalOssServer, config, warehouse: LocalWarehouse, parallel: bool
) -> None:
    result = load_partition(config, "20261220", lister=lister(server, parallel=parallel), warehouse=warehouse, publish=True)
    expected = sorted(
        ({**row, "source_image": "/" + key} for key, (_, row) in OBJECTS.items() if row is not None),
        key=lambda r: r["id"],
    )
    got = sorted(warehouse.read_partition("20261220").to_pylist(), key=lambda r: r["id"])
    assert [r["source_image"] for r in got] == [r["source_image"] for r in expected]
    # etag: the ETag the listing gave, without quotes: the MD5 of the bytes, as the local OSS lists it.
    assert got == [{"id": r["id"], "source_image": r["source_image"], "cate_id": r["cate_id"],
                    "etag": hashlib.md5(OBJECTS[r["source_image"][1:]][0]).hexdigest().upper()} for r in expected]
    assert result.counts["listed"] == len(OBJECTS)
    assert result.counts["skipped"]["folder_marker"] == 2 and result.counts["skipped_total"] == 2
    # Every row's source_image reads back the object it was listed from (what the index build does).
    conn = connection(server)
    bucket = conn.bucket(BUCKET)
    for row in got:
        key = row["source_image"][1:]
        assert read_object(conn, bucket, key, NO_SLEEP) == OBJECTS[key][0]


def test_a_key_over_1023_bytes_and_dot_dot_segments_are_refused_by_the_server(server: LocalOssServer) -> None:
    bucket = connection(server).bucket(BUCKET)
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.put_object(_long_key(1024), JPEG)
    assert (err.value.status, err.value.code) == (400, "InvalidObjectName")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.put_object("catalog/shoes/../../escape.jpg", JPEG)
    assert (err.value.status, err.value.code) == (400, "InvalidArgument")
    assert [o.key for o in oss2.ObjectIteratorV2(bucket, prefix="catalog/")] == sorted(OBJECTS, key=lambda k: k.encode())


def test_a_bucket_that_does_not_exist_names_bucket_and_connection_and_writes_nothing(
    server: LocalOssServer, config, warehouse: LocalWarehouse
) -> None:
    with pytest.raises(SourceAccessError) as err:
        load_partition(config, "20261221", lister=lister(server, "no-such-bucket"), warehouse=warehouse, publish=True)
    message = str(err.value)
    assert "bucket 'no-such-bucket'" in message and "connection 'oss_bad_input'" in message
    assert "does not exist; check the bucket name in the index config" in message
    assert CREDENTIAL.access_key_secret not in message
    assert "20261221" not in warehouse.partitions()
