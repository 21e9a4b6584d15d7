"""Multipart uploads and UploadPartCopy, through the real oss2 client.

Why: CopyObject copies at most 1 GB, and an inventory's data files can be larger; the inventory route
copies those with InitiateMultipartUpload + UploadPartCopy + CompleteMultipartUpload, so the local OSS
must answer them as OSS does, limits and errors included.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import oss2
import pytest
from oss2.models import PartInfo

from localcloud.oss.multipart import MIN_PART_BYTES, UPLOADS_DIR
from localcloud.oss.server import Credential, GeneratedBucket, LocalOssServer
from tests.localcloud.oss.clients import AK, SK, bucket_of

PART = MIN_PART_BYTES


@pytest.fixture()
def server(tmp_path: Path):
    root = tmp_path / "root"
    for name in ("src-bucket", "dst-bucket"):
        (root / name).mkdir(parents=True)
    gen = GeneratedBucket("gen-bucket", prefixes=1, keys_per_prefix=2, min_size=10, max_size=100)
    with LocalOssServer(root, [Credential(AK, SK)], generated=[gen]) as srv:
        yield srv



def uploads_on_disk(server: LocalOssServer) -> list[str]:
    folder = Path(server.root) / UPLOADS_DIR
    return sorted(os.listdir(folder)) if folder.is_dir() else []


def test_upload_part_copy_copies_a_large_source_in_parts(server: LocalOssServer) -> None:
    body = os.urandom(2 * PART + 123)
    bucket_of(server, "src-bucket").put_object("data/a b+c%.csv.gz", body)
    dst = bucket_of(server, "dst-bucket")
    upload_id = dst.init_multipart_upload("run/a.csv.gz").upload_id
    assert re.fullmatch(r"[0-9A-F]{32}", upload_id)
    parts = []
    for number, start in enumerate(range(0, len(body), PART), start=1):
        end = min(start + PART, len(body)) - 1
        result = dst.upload_part_copy("src-bucket", "data/a b+c%.csv.gz", (start, end), "run/a.csv.gz", upload_id, number)
        assert result.etag == hashlib.md5(body[start:end + 1]).hexdigest().upper()
        parts.append(PartInfo(number, result.etag))
    done = dst.complete_multipart_upload("run/a.csv.gz", upload_id, parts)
    assert dst.get_object("run/a.csv.gz").read() == body
    assert re.fullmatch(r"[0-9A-F]{32}-3", done.etag)
    assert dst.head_object("run/a.csv.gz").etag == done.etag  # the multipart form, not the content MD5
    assert dst.head_object("run/a.csv.gz").content_length == len(body)
    assert uploads_on_disk(server) == []  # parts removed on complete


def test_upload_part_with_a_body_and_a_copy_from_a_generated_bucket(server: LocalOssServer) -> None:
    dst = bucket_of(server, "dst-bucket")
    gen_key = bucket_of(server, "gen-bucket").list_objects_v2().object_list[0].key
    generated = bucket_of(server, "gen-bucket").get_object(gen_key).read()
    upload_id = dst.init_multipart_upload("mixed").upload_id
    first = os.urandom(PART)
    p1 = dst.upload_part("mixed", upload_id, 1, first)
    p2 = dst.upload_part_copy("gen-bucket", gen_key, None, "mixed", upload_id, 2)
    dst.complete_multipart_upload("mixed", upload_id, [PartInfo(1, p1.etag), PartInfo(2, p2.etag)])
    assert dst.get_object("mixed").read() == first + generated


def test_abort_discards_the_parts_and_the_upload(server: LocalOssServer) -> None:
    bucket_of(server, "src-bucket").put_object("k", b"x" * 10)
    dst = bucket_of(server, "dst-bucket")
    upload_id = dst.init_multipart_upload("t").upload_id
    dst.upload_part_copy("src-bucket", "k", (0, 9), "t", upload_id, 1)
    assert uploads_on_disk(server) == [upload_id]
    dst.abort_multipart_upload("t", upload_id)
    assert uploads_on_disk(server) == []
    assert not dst.object_exists("t")
    for call in (lambda: dst.abort_multipart_upload("t", upload_id),
                 lambda: dst.upload_part_copy("src-bucket", "k", (0, 9), "t", upload_id, 1),
                 lambda: dst.complete_multipart_upload("t", upload_id, [PartInfo(1, "0" * 32)])):
        with pytest.raises(oss2.exceptions.NoSuchUpload):
            call()


def test_unknown_or_foreign_upload_ids_answer_no_such_upload(server: LocalOssServer) -> None:
    dst = bucket_of(server, "dst-bucket")
    upload_id = dst.init_multipart_upload("t").upload_id
    for key, uid in (("t", "0" * 32), ("t", "../../src-bucket"), ("other", upload_id)):
        with pytest.raises(oss2.exceptions.NoSuchUpload):
            dst.upload_part(key, uid, 1, b"x")
    with pytest.raises(oss2.exceptions.NoSuchUpload):
        bucket_of(server, "src-bucket").upload_part("t", upload_id, 1, b"x")


def test_complete_checks_order_etags_and_part_sizes(server: LocalOssServer) -> None:
    dst = bucket_of(server, "dst-bucket")
    upload_id = dst.init_multipart_upload("t").upload_id
    small = dst.upload_part("t", upload_id, 1, b"s" * (PART - 1))
    last = dst.upload_part("t", upload_id, 2, b"l")
    parts = [PartInfo(1, small.etag), PartInfo(2, last.etag)]
    with pytest.raises(oss2.exceptions.ServerError) as err:  # oss2 sorts the parts: send the XML by hand
        _complete_raw(dst, "t", upload_id, [(2, last.etag), (1, small.etag)])
    assert (err.value.status, err.value.code) == (400, "InvalidPartOrder")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        dst.complete_multipart_upload("t", upload_id, [PartInfo(1, "0" * 32), PartInfo(2, last.etag)])
    assert (err.value.status, err.value.code) == (400, "InvalidPart")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        dst.complete_multipart_upload("t", upload_id, [PartInfo(1, small.etag), PartInfo(3, last.etag)])
    assert err.value.code == "InvalidPart"
    with pytest.raises(oss2.exceptions.ServerError) as err:
        dst.complete_multipart_upload("t", upload_id, parts)
    assert (err.value.status, err.value.code) == (400, "EntityTooSmall")
    dst.upload_part("t", upload_id, 1, b"s" * PART)  # a part uploaded again replaces the earlier one
    with pytest.raises(oss2.exceptions.ServerError) as err:  # the old ETag no longer matches
        dst.complete_multipart_upload("t", upload_id, parts)
    assert err.value.code == "InvalidPart"
    one = dst.upload_part("t", upload_id, 1, b"s" * PART)
    dst.complete_multipart_upload("t", upload_id, [PartInfo(1, one.etag), PartInfo(2, last.etag)])
    assert dst.get_object("t").read() == b"s" * PART + b"l"


def _complete_raw(bucket: oss2.Bucket, key: str, upload_id: str, parts: list[tuple[int, str]]) -> None:
    xml = "<CompleteMultipartUpload>" + "".join(
        f'<Part><PartNumber>{n}</PartNumber><ETag>"{e}"</ETag></Part>' for n, e in parts) + "</CompleteMultipartUpload>"
    resp = bucket._Bucket__do_object("POST", key, params={"uploadId": upload_id}, data=xml)
    resp.read()


def test_part_numbers_ranges_and_sources_are_checked(server: LocalOssServer) -> None:
    bucket_of(server, "src-bucket").put_object("k", b"0123456789")
    dst = bucket_of(server, "dst-bucket")
    upload_id = dst.init_multipart_upload("t").upload_id
    for number in (0, 10_001):
        with pytest.raises(oss2.exceptions.InvalidArgument):
            dst.upload_part_copy("src-bucket", "k", (0, 9), "t", upload_id, number)
    for byte_range in ((0, 10), (5, 4)):
        with pytest.raises(oss2.exceptions.ServerError) as err:
            dst.upload_part_copy("src-bucket", "k", byte_range, "t", upload_id, 1)
        assert err.value.code == "InvalidArgument"
    with pytest.raises(oss2.exceptions.NoSuchKey):
        dst.upload_part_copy("src-bucket", "missing", (0, 1), "t", upload_id, 1)
    with pytest.raises(oss2.exceptions.AccessDenied):
        bucket_of(server, "gen-bucket").init_multipart_upload("t")


def test_a_source_over_1_gib_is_copied_by_parts(server: LocalOssServer) -> None:
    path = Path(server.root) / "src-bucket" / "huge.bin"
    with open(path, "wb") as fh:
        fh.truncate(1024**3 + 1)  # sparse: no disk used
    dst = bucket_of(server, "dst-bucket")
    upload_id = dst.init_multipart_upload("t").upload_id
    part = dst.upload_part_copy("src-bucket", "huge.bin", (1024**3 - 1, 1024**3), "t", upload_id, 1)
    assert part.etag == hashlib.md5(b"\0\0").hexdigest().upper()
    dst.abort_multipart_upload("t", upload_id)
