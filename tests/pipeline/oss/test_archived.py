"""Archived images, end to end through oss2 against the local OSS server.

Objects in Archive, ColdArchive and DeepColdArchive cannot be read until restored, neither by us nor by
OpenSearch: a row for one would break the index build. The listing carries each object's storage class
and restore state, the catalog skips the frozen ones as ``archived`` (counted, with examples), and a
read of one fails at once saying the object is archived and what to do, not that credentials failed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import oss2
import pyarrow as pa
import pytest

from localcloud.oss.server import Credential, LocalOssServer
from pipeline.config import load_index_config
from pipeline.errors import ArchivedObjectError
from pipeline.oss.catalog import ListedObject
from pipeline.oss.client import OssConnection, read_object
from pipeline.oss.pages import KeyRange, LeanListingBucket, OssLister
from pipeline.oss.parallel import ParallelLister
from pipeline.report import summarize
from pipeline.retry import RetryPolicy
from pipeline.stages import load_partition
from pipeline.warehouse.local import LocalWarehouse

REPO = Path(__file__).resolve().parents[3]
CREDENTIAL = Credential("LTAIarchived", "archived-secret")
NO_SLEEP = RetryPolicy(attempts=4, sleep=lambda _s: None)
RESTORE_DELAY_S = 0.2
# key -> storage class; "+restored" / "+restoring": a RestoreObject was sent (and finished, or not).
OBJECTS = {
    "catalog/shoes/10001.jpg": "Standard",
    "catalog/shoes/10002.jpg": "IA",
    "catalog/shoes/10003.jpg": "Archive",
    "catalog/bags/20001.jpg": "ColdArchive",
    "catalog/bags/20002.jpg": "DeepColdArchive",
    "catalog/hats/30001.jpg": "Archive+restored",
    "catalog/hats/30002.jpg": "ColdArchive+restored",
    "catalog/watches/40001.jpg": "Archive+restoring",
    "catalog/watches/40002.txt": "Archive",  # not an image: skipped as not_image first
    **{f"catalog/watches/{40100 + i}.jpg": "Standard" for i in range(70)},  # a page big enough to vectorise
}
READABLE = sorted(k for k, c in OBJECTS.items() if k.endswith(".jpg") and (c in ("Standard", "IA") or c.endswith("+restored")))
FROZEN = ["catalog/bags/20001.jpg", "catalog/bags/20002.jpg", "catalog/shoes/10003.jpg", "catalog/watches/40001.jpg"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOssServer]:
    with LocalOssServer(tmp_path_factory.mktemp("oss"), [CREDENTIAL], restore_delay_s=RESTORE_DELAY_S) as srv:
        bucket = connection(srv).bucket("demo-images")
        bucket.create_bucket()
        for key, spec in OBJECTS.items():
            storage_class, _, restore = spec.partition("+")
            bucket.put_object(key, b"\xff\xd8" + key.encode(), headers={"x-oss-storage-class": storage_class})
            if restore == "restored":
                bucket.restore_object(key)
        time.sleep(RESTORE_DELAY_S + 0.1)
        srv.restore_delay_s = 3600.0  # the restore that must still be running when the tests list
        for key, spec in OBJECTS.items():
            if spec.endswith("+restoring"):
                bucket.restore_object(key)
        yield srv


def connection(server: LocalOssServer) -> OssConnection:
    extra = {"access_key_id": CREDENTIAL.access_key_id, "access_key_secret": CREDENTIAL.access_key_secret,
             "region": "cn-hangzhou", "endpoint": server.endpoint}
    return OssConnection.from_extras("oss_archived", extra)


def listers(server: LocalOssServer) -> dict:
    conn = connection(server)
    sequential = OssLister(conn, conn.bucket("demo-images", pool_size=4, kind=LeanListingBucket), page_size=7, retry=NO_SLEEP)
    return {"sequential": sequential, "parallel": ParallelLister(sequential, concurrency=4, min_split_keys=1)}


def test_the_listing_carries_storage_class_and_restore_state(server: LocalOssServer) -> None:
    lister = OssLister.connect(connection(server), "demo-images", retry=NO_SLEEP)
    listed = {obj.key: obj for page in lister.iter_pages(KeyRange("catalog/")) for obj in page}
    assert all(type(obj) is ListedObject for obj in listed.values())  # the lean parse read them itself
    assert listed["catalog/shoes/10002.jpg"].storage_class == "IA"
    assert (listed["catalog/bags/20002.jpg"].storage_class, listed["catalog/bags/20002.jpg"].restore) == ("DeepColdArchive", "")
    assert listed["catalog/watches/40001.jpg"].restore == 'ongoing-request="true"'
    assert listed["catalog/hats/30001.jpg"].restore.startswith('ongoing-request="false", expiry-date="')
    # ... exactly as oss2's own parser reads the same listing
    plain = connection(server).bucket("demo-images").list_objects_v2(prefix="catalog/", max_keys=1000)
    assert {o.key: (o.storage_class, o.restore_info or "") for o in plain.object_list} == {
        k: (o.storage_class, o.restore) for k, o in listed.items()
    }


@pytest.mark.parametrize("mode", ["sequential", "parallel"])
def test_frozen_archived_images_are_skipped_and_restored_ones_are_rows(
    server: LocalOssServer, tmp_path: Path, mode: str
) -> None:
    config = load_index_config(REPO / "dags" / "indexes" / "demo.yaml")
    warehouse = LocalWarehouse(tmp_path, config.warehouse.table)
    result = load_partition(config, "20261120", lister=listers(server)[mode], warehouse=warehouse, publish=True)
    table: pa.Table = warehouse.read_partition("20261120")
    assert sorted(row["source_image"] for row in table.to_pylist()) == ["/" + key for key in READABLE]
    assert result.rows_written == len(READABLE)
    assert result.counts["skipped"]["archived"] == 4 and result.counts["skipped"]["not_image"] == 1
    assert result.counts["archived_by_class"] == {"Archive": 2, "ColdArchive": 1, "DeepColdArchive": 1}
    assert result.counts["archived_examples"] == FROZEN
    line = next(line for line in summarize({"load": result.as_dict()}).splitlines() if "archived, not restored" in line)
    assert "catalog/bags/20001.jpg" in line and "restore them" in line


def test_reading_a_frozen_object_says_it_is_archived_and_what_to_do(server: LocalOssServer) -> None:
    """The smoke query reads sampled images with read_object: a frozen one used to be reported as
    refused credentials (InvalidObjectState is a 403)."""
    conn = connection(server)
    bucket = conn.bucket("demo-images")
    before = server.faults.requests
    with pytest.raises(ArchivedObjectError) as err:
        read_object(conn, bucket, "catalog/shoes/10003.jpg", retry=NO_SLEEP)
    message = str(err.value)
    assert server.faults.requests == before + 1  # terminal: not retried
    assert "reading 'catalog/shoes/10003.jpg'" in message and "connection 'oss_archived'" in message
    assert "archive storage class" in message and "not restored" in message and "InvalidObjectState" in message
    assert "restore it" in message and "convert it to Standard or IA" in message
    assert "credentials" not in message
    assert read_object(conn, bucket, "catalog/hats/30001.jpg", retry=NO_SLEEP).startswith(b"\xff\xd8")  # restored: readable
    with pytest.raises(oss2.exceptions.ServerError, match="InvalidObjectState"):
        bucket.get_object("catalog/watches/40001.jpg")  # still restoring
