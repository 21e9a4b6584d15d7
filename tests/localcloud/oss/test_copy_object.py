"""ETags as content MD5s, and CopyObject, through the real oss2 client.

Why: the inventory route verifies copied inventory files by ETag against the manifest's MD5checksum,
and copies one run's data files into a run folder (a MaxCompute external table reads a folder), so
the local OSS must answer ETags and CopyObject as OSS does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import oss2
import pytest

from localcloud.oss.server import Credential, GeneratedBucket, LocalOssServer
from tests.localcloud.oss.clients import AK, SK, bucket_of



@pytest.fixture()
def server(tmp_path: Path):
    root = tmp_path / "root"
    for name in ("src-bucket", "dst-bucket"):
        (root / name).mkdir(parents=True)
    gen = GeneratedBucket("gen-bucket", prefixes=2, keys_per_prefix=5, min_size=10, max_size=100)
    with LocalOssServer(root, [Credential(AK, SK)], generated=[gen]) as srv:
        yield srv



def md5_etag(data: bytes) -> str:
    return hashlib.md5(data).hexdigest().upper()


def test_simple_put_etag_is_the_content_md5_everywhere(server: LocalOssServer) -> None:
    bucket = bucket_of(server, "src-bucket")
    body = b"the bytes of an image"
    put = bucket.put_object("a/b.jpg", body)
    assert put.etag == md5_etag(body)
    assert bucket.head_object("a/b.jpg").etag == md5_etag(body)
    assert bucket.get_object_meta("a/b.jpg").etag == md5_etag(body)
    [listed] = bucket.list_objects_v2(prefix="a/").object_list
    assert listed.etag == md5_etag(body)


def test_a_file_placed_or_changed_by_hand_answers_its_content_md5(server: LocalOssServer) -> None:
    bucket = bucket_of(server, "src-bucket")
    path = Path(server.root) / "src-bucket" / "hand.txt"
    path.write_bytes(b"first")
    assert bucket.head_object("hand.txt").etag == md5_etag(b"first")
    bucket.put_object("hand.txt", b"put")
    path.write_bytes(b"changed on disk")  # the recorded MD5 no longer matches size/mtime
    assert bucket.head_object("hand.txt").etag == md5_etag(b"changed on disk")
    assert bucket.list_objects_v2(prefix="hand").object_list[0].etag == md5_etag(b"changed on disk")


def test_copy_object_copies_bytes_and_etag(server: LocalOssServer) -> None:
    src, dst = bucket_of(server, "src-bucket"), bucket_of(server, "dst-bucket")
    body = os.urandom(300_000)
    put = src.put_object("data/a b+c%.csv.gz", body)
    copied = dst.copy_object("src-bucket", "data/a b+c%.csv.gz", "run/2026-01-02/a b+c%.csv.gz")
    assert copied.etag == put.etag == md5_etag(body)
    assert dst.get_object("run/2026-01-02/a b+c%.csv.gz").read() == body
    assert dst.head_object("run/2026-01-02/a b+c%.csv.gz").etag == put.etag
    # within one bucket, and onto itself (COPY directive: allowed, as OSS uses it to change metadata)
    src.copy_object("src-bucket", "data/a b+c%.csv.gz", "data/copy.csv.gz")
    src.copy_object("src-bucket", "data/copy.csv.gz", "data/copy.csv.gz")
    assert src.get_object("data/copy.csv.gz").read() == body


def test_copy_answers_copy_object_result_xml(server: LocalOssServer) -> None:
    src = bucket_of(server, "src-bucket")
    src.put_object("k", b"v")
    resp = src.copy_object("src-bucket", "k", "k2").resp
    text = resp.read().decode()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<CopyObjectResult><ETag>"')
    assert f'<ETag>"{md5_etag(b"v")}"</ETag><LastModified>' in text


def test_copy_from_a_generated_bucket(server: LocalOssServer) -> None:
    dst = bucket_of(server, "dst-bucket")
    gen = bucket_of(server, "gen-bucket")
    key = next(iter(gen.list_objects_v2(max_keys=1).object_list)).key
    copied = dst.copy_object("gen-bucket", key, "from-gen.jpg")
    body = gen.get_object(key).read()
    assert dst.get_object("from-gen.jpg").read() == body and copied.etag == md5_etag(body)
    with pytest.raises(oss2.exceptions.AccessDenied):
        gen.copy_object("dst-bucket", "from-gen.jpg", "into-generated.jpg")


def test_copy_errors(server: LocalOssServer) -> None:
    src, dst = bucket_of(server, "src-bucket"), bucket_of(server, "dst-bucket")
    src.put_object("k", b"v")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        dst.copy_object("src-bucket", "missing", "t")
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        dst.copy_object("no-such-bucket", "k", "t")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        dst.copy_object("src-bucket", "k", "t", headers={"x-oss-metadata-directive": "MOVE"})
    assert (err.value.status, err.value.code) == (400, "InvalidArgument")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        dst.copy_object("src-bucket", "k", "t", params={"versionId": "v1"})
    assert err.value.code == "InvalidArgument"
    src.put_object("frozen", b"ice", headers={"x-oss-storage-class": "Archive"})
    with pytest.raises(oss2.exceptions.ServerError) as err:
        dst.copy_object("src-bucket", "frozen", "t")
    assert (err.value.status, err.value.code) == (403, "InvalidObjectState")
    dst.put_object("exists", b"old")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        dst.copy_object("src-bucket", "k", "exists", headers={"x-oss-forbid-overwrite": "true"})
    assert (err.value.status, err.value.code) == (409, "FileAlreadyExists")
    assert dst.get_object("exists").read() == b"old"
    assert not dst.object_exists("t")


def test_copy_conditions(server: LocalOssServer) -> None:
    src, dst = bucket_of(server, "src-bucket"), bucket_of(server, "dst-bucket")
    etag = src.put_object("k", b"v").etag
    dst.copy_object("src-bucket", "k", "ok", headers={"x-oss-copy-source-if-match": f'"{etag}"'})
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        dst.copy_object("src-bucket", "k", "t", headers={"x-oss-copy-source-if-match": '"0000"'})
    with pytest.raises(oss2.exceptions.NotModified):
        dst.copy_object("src-bucket", "k", "t", headers={"x-oss-copy-source-if-none-match": f'"{etag}"'})
    with pytest.raises(oss2.exceptions.PreconditionFailed):
        dst.copy_object("src-bucket", "k", "t", headers={"x-oss-copy-source-if-unmodified-since": "Mon, 01 Jan 2001 00:00:00 GMT"})
    with pytest.raises(oss2.exceptions.NotModified):
        dst.copy_object("src-bucket", "k", "t", headers={"x-oss-copy-source-if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert not dst.object_exists("t")


def test_copy_of_more_than_1_gib_is_refused(server: LocalOssServer) -> None:
    path = Path(server.root) / "src-bucket" / "huge.bin"
    with open(path, "wb") as fh:
        fh.truncate(1024**3 + 1)  # sparse: no disk used
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket_of(server, "dst-bucket").copy_object("src-bucket", "huge.bin", "t")
    assert (err.value.status, err.value.code) == (400, "EntityTooLarge")
