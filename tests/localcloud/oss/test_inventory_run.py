"""Inventory runs of the local OSS server: manifest and gzip CSV files as OSS writes them, read with oss2.

Why: the inventory route trusts the manifest to say which data files make a run, verifies each by
ETag against MD5checksum, and decodes URL-encoded keys; every one of those steps is checked here the
way the pipeline will do it, with keys that break naive decoding, and with damaged runs.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote_plus

import oss2
import pytest
from oss2.models import (
    InventoryBucketDestination,
    InventoryConfiguration,
    InventoryDestination,
    InventoryFilter,
    InventorySchedule,
)

from localcloud.oss.inventory import encode_key
from localcloud.oss.server import Credential, GeneratedBucket, LocalOssServer
from tests.localcloud.oss.clients import AK, SK, bucket_of

REPO_ROOT = Path(__file__).resolve().parents[3]
ALL_FIELDS = ["Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded", "EncryptionStatus"]
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
LONG_KEY = "images/" + "/".join(["l" * 200] * 5) + "/" + "k" * (1023 - 7 - 5 * 201 - 4) + ".jpg"
TRICKY_KEYS = [
    "images/a b.jpg", "images/a+b.jpg", "images/100%.jpg", "images/%2F.jpg", "images/中文/图片.jpg",
    "images/emoji-😀.png", "images/tilde~star*.jpg", 'images/quote"comma,.jpg', "images/plain.jpg", LONG_KEY,
]
GEN = GeneratedBucket("gen-bucket", prefixes=3, keys_per_prefix=7, flat_keys=5, archive_every=4)



@pytest.fixture()
def server(tmp_path: Path):
    root = tmp_path / "root"
    for name in ("src-bucket", "dst-bucket"):
        (root / name).mkdir(parents=True)
    with LocalOssServer(root, [Credential(AK, SK)], generated=[GEN]) as srv:
        yield srv


def configure(bucket: oss2.Bucket, inventory_id: str = "nightly", fields=ALL_FIELDS, prefix: str | None = "images/",
              dest_prefix: str | None = "inventory", **filters) -> None:
    bucket.put_bucket_inventory_configuration(InventoryConfiguration(
        inventory_id=inventory_id, is_enabled=True, inventory_schedule=InventorySchedule("Daily"),
        included_object_versions="Current", inventory_filter=InventoryFilter(prefix=prefix, **filters),
        optional_fields=list(fields),
        inventory_destination=InventoryDestination(InventoryBucketDestination(
            account_id="1000000000000000", role_arn="acs:ram::1000000000000000:role/AliyunOSSRole",
            bucket="dst-bucket", inventory_format="CSV", prefix=dest_prefix))))


def read_run(dst: oss2.Bucket, manifest_key: str, check: bool = True) -> tuple[dict, list[list[str]]]:
    """What the pipeline will do: manifest, its checksum, each file checked by ETag, rows decoded."""
    raw = dst.get_object(manifest_key).read()
    checksum = dst.get_object(manifest_key.replace("manifest.json", "manifest.checksum")).read().decode()
    assert checksum == hashlib.md5(raw).hexdigest()
    manifest = json.loads(raw)
    rows: list[list[str]] = []
    for entry in manifest["files"]:
        head = dst.head_object(entry["key"])
        if check:
            assert head.etag.lower() == entry["MD5checksum"].lower()
            assert head.content_length == entry["size"]
        text = gzip.decompress(dst.get_object(entry["key"]).read()).decode("utf-8")
        rows += list(csv.reader(io.StringIO(text)))
    return manifest, rows


def test_folder_bucket_inventory_round_trips_every_key(server: LocalOssServer) -> None:
    src, dst = bucket_of(server, "src-bucket"), bucket_of(server, "dst-bucket")
    for i, key in enumerate(TRICKY_KEYS):
        src.put_object(key, b"x" * (i + 1), headers={"x-oss-storage-class": "IA"} if i == 3 else None)
    src.put_object("other/outside-the-prefix.jpg", b"no")
    configure(src)

    manifest_key = server.run_inventory("src-bucket", "nightly", AT, rows_per_file=4)

    assert manifest_key == "inventory/src-bucket/nightly/2026-01-02T03-04Z/manifest.json"
    manifest, rows = read_run(dst, manifest_key)
    assert manifest["sourceBucket"] == "src-bucket" and manifest["destinationBucket"] == "dst-bucket"
    assert manifest["fileFormat"] == "CSV" and manifest["creationTimestamp"] == str(int(AT.timestamp() * 1000))
    assert manifest["fileSchema"] == "Bucket, Key, " + ", ".join(ALL_FIELDS)
    keys = [f["key"] for f in manifest["files"]]
    uuid = re.fullmatch(r"inventory/src-bucket/nightly/data/([0-9a-f-]{36})\.csv\.gz", keys[0]).group(1)
    assert keys == [f"inventory/src-bucket/nightly/data/{uuid}{s}.csv.gz" for s in ("", "-1", "-2")]
    listed = {o.key: o for o in oss2.ObjectIteratorV2(src, prefix="images/")}
    assert [unquote_plus(r[1]) for r in rows] == sorted(listed)  # key order, every key, nothing else
    for bucket_name, key, size, modified, etag, storage_class, multipart, encrypted in rows:
        obj = listed[unquote_plus(key)]
        assert (bucket_name, int(size), etag, storage_class) == ("src-bucket", obj.size, obj.etag, obj.storage_class)
        assert modified == datetime.fromtimestamp(obj.last_modified, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        assert (multipart, encrypted) == ("false", "false")
    raw = gzip.decompress(dst.get_object(keys[0]).read()).decode()
    assert raw.startswith('"src-bucket","images%2F%252F.jpg","4",')  # every value quoted, '/' encoded


def test_key_encoding_is_form_encoding() -> None:
    assert encode_key("a b+c/d~e*f.jpg") == "a+b%2Bc%2Fd%7Ee*f.jpg"
    assert encode_key("图") == "%E5%9B%BE"
    for key in TRICKY_KEYS:
        assert unquote_plus(encode_key(key)) == key


def test_optional_fields_filters_and_no_destination_prefix(server: LocalOssServer) -> None:
    src, dst = bucket_of(server, "src-bucket"), bucket_of(server, "dst-bucket")
    for size in (1, 10, 100):
        src.put_object(f"images/{size}.bin", b"s" * size)
    configure(src, fields=["ETag", "Size"], dest_prefix=None, lower_size_bound=5, upper_size_bound=50)
    manifest_key = server.run_inventory("src-bucket", "nightly", AT)
    assert manifest_key == "src-bucket/nightly/2026-01-02T03-04Z/manifest.json"
    manifest, rows = read_run(dst, manifest_key)
    assert manifest["fileSchema"] == "Bucket, Key, Size, ETag"  # documented order, not the request's
    assert rows == [["src-bucket", "images%2F10.bin", "10", hashlib.md5(b"s" * 10).hexdigest().upper()]]


def test_generated_bucket_inventory_and_runs_share_data(server: LocalOssServer) -> None:
    gen, dst = bucket_of(server, "gen-bucket"), bucket_of(server, "dst-bucket")
    configure(gen, prefix=None)
    first = server.run_inventory("gen-bucket", "nightly", AT, rows_per_file=10)
    second = server.run_inventory("gen-bucket", "nightly", datetime(2026, 1, 3, tzinfo=timezone.utc), rows_per_file=26)
    m1, rows1 = read_run(dst, first)
    m2, rows2 = read_run(dst, second)
    assert [unquote_plus(r[1]) for r in rows1] == list(GEN.keys()) and rows1 == rows2
    assert len(m1["files"]) == 3 and len(m2["files"]) == 1  # 26 rows: 10+10+6, then exactly 26
    data = [o.key for o in oss2.ObjectIteratorV2(dst, prefix="inventory/gen-bucket/nightly/data/")]
    assert sorted(data) == sorted(f["key"] for f in m1["files"] + m2["files"])  # one shared data/ folder
    archived = [r for r in rows1 if r[5] != "Standard"]
    assert archived and {r[5] for r in archived} <= {"Archive", "ColdArchive", "DeepColdArchive"}


def test_an_empty_run_writes_one_empty_file(server: LocalOssServer) -> None:
    configure(bucket_of(server, "src-bucket"))
    manifest, rows = read_run(bucket_of(server, "dst-bucket"), server.run_inventory("src-bucket", "nightly", AT))
    assert len(manifest["files"]) == 1 and rows == []


def test_unknown_or_disabled_rules_are_refused(server: LocalOssServer) -> None:
    with pytest.raises(Exception, match="NoSuchInventory"):
        server.run_inventory("src-bucket", "nope")
    src = bucket_of(server, "src-bucket")
    configure(src)
    config = src.get_bucket_inventory_configuration("nightly")
    src.delete_bucket_inventory_configuration("nightly")
    config.is_enabled = False
    src.put_bucket_inventory_configuration(config)
    with pytest.raises(ValueError, match="disabled"):
        server.run_inventory("src-bucket", "nightly")


@pytest.mark.parametrize("fault", ["missing_file", "size_mismatch", "md5_mismatch"])
def test_damaged_runs_are_caught_by_the_manifest(server: LocalOssServer, fault: str) -> None:
    src, dst = bucket_of(server, "src-bucket"), bucket_of(server, "dst-bucket")
    for i in range(5):
        src.put_object(f"images/{i}.jpg", b"i")
    configure(src)
    manifest_key = server.run_inventory("src-bucket", "nightly", AT, rows_per_file=2, fault=fault)
    manifest = json.loads(dst.get_object(manifest_key).read())
    last = manifest["files"][-1]
    if fault == "missing_file":
        assert not dst.object_exists(last["key"])
        return
    head = dst.head_object(last["key"])
    assert head.etag.lower() != last["MD5checksum"]
    assert (head.content_length == last["size"]) == (fault == "md5_mismatch")
    assert head.etag == hashlib.md5(dst.get_object(last["key"]).read()).hexdigest().upper()


def test_a_run_without_its_manifest_yet(server: LocalOssServer) -> None:
    src, dst = bucket_of(server, "src-bucket"), bucket_of(server, "dst-bucket")
    src.put_object("images/a.jpg", b"a")
    configure(src)
    manifest_key = server.run_inventory("src-bucket", "nightly", AT, fault="no_manifest")
    assert not dst.object_exists(manifest_key)
    assert not dst.object_exists(manifest_key.replace("manifest.json", "manifest.checksum"))
    assert len(list(oss2.ObjectIteratorV2(dst, prefix="inventory/src-bucket/nightly/data/"))) == 1


def test_cli_inventory_run(server: LocalOssServer) -> None:
    src = bucket_of(server, "src-bucket")
    src.put_object("images/a b.jpg", b"a")
    configure(src)
    done = subprocess.run(
        [sys.executable, "-m", "localcloud.oss", "inventory", "run", "--root", server.root, "--bucket", "src-bucket",
         "--id", "nightly", "--at", "2026-01-02T03:04Z", "--rows-per-file", "5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "inventory/src-bucket/nightly/2026-01-02T03-04Z/manifest.json"
    _, rows = read_run(bucket_of(server, "dst-bucket"), done.stdout.strip())
    assert rows[0][1] == "images%2Fa+b.jpg"
    bad = subprocess.run(
        [sys.executable, "-m", "localcloud.oss", "inventory", "run", "--root", server.root, "--bucket", "src-bucket",
         "--id", "missing"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, env={"PYTHONPATH": str(REPO_ROOT)},
    )
    assert bad.returncode == 2 and "NoSuchInventory" in bad.stderr
