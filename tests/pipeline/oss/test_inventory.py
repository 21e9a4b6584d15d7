"""Finding, verifying and staging OSS Bucket Inventory runs, through oss2 against the local OSS server,
whose rules are created by the setup CLI and whose runs it writes on demand (with fault knobs)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import oss2
import pytest
import yaml

from localcloud.oss.server import Credential, LocalOssServer
from pipeline.config import IndexConfig, load_index_config
from pipeline.errors import InventoryError, InventoryIncompleteError, InventoryStaleError, SourceError
from pipeline.oss.client import OssConnection
from pipeline.oss.inventory import (
    COPY_PART_BYTES,
    InventoryFile,
    InventoryRun,
    find_inventory,
    list_runs,
    stage_inventory_files,
)
from pipeline.oss.inventory import cli, runs, staging
from pipeline.retry import RetryPolicy

CREDENTIAL = Credential("LTAItestkey", "test-secret-123")
ACCOUNT = "1000000000000001"
OSS_ROLE = f"acs:ram::{ACCOUNT}:role/AliyunOSSRole"
NO_SLEEP = RetryPolicy(attempts=3, sleep=lambda _s: None)
# The partition 2026-12-01 in Asia/Shanghai ends at 2026-11-30T16:00Z... of the next day: 2026-12-01T16:00Z.
NOT_AFTER = datetime(2026, 12, 1, 16, 0, tzinfo=timezone.utc)
NOW = NOT_AFTER + timedelta(hours=10)
BASE = "inventories/imgs/nightly/"


@pytest.fixture
def server(tmp_path: Path):
    root = tmp_path / "oss"
    for folder, count in (("catalog/shoes", 5), ("catalog/bags", 4), ("other", 3)):
        (root / "imgs" / folder).mkdir(parents=True)
        for i in range(count):
            (root / "imgs" / folder / f"{i}.jpg").write_bytes(b"x" * (i + 1))
    (root / "inv-dest").mkdir()
    with LocalOssServer(root, [CREDENTIAL], account_id=ACCOUNT) as srv:
        yield srv


@pytest.fixture
def conn(server: LocalOssServer, monkeypatch: pytest.MonkeyPatch) -> OssConnection:
    extra = {"auth_type": "AK", "access_key_id": CREDENTIAL.access_key_id,
             "access_key_secret": CREDENTIAL.access_key_secret, "region": "cn-hangzhou", "endpoint": server.endpoint}
    monkeypatch.setenv("AIRFLOW_CONN_OSS_TEST", json.dumps({"conn_type": "oss", "extra": extra}))
    return OssConnection.from_extras("oss_test", extra)


def write_config(tmp_path: Path, **inventory) -> Path:
    data = {
        "name": "inv", "timezone": "Asia/Shanghai",
        "source": {"oss_conn_id": "oss_test", "bucket": "imgs", "prefixes": ["catalog/shoes/", "catalog/bags/"],
                   "mode": "inventory",
                   "inventory": {"bucket": "inv-dest", "prefix": "inventories/", "id": "nightly",
                                 "role_arn": f"acs:ram::{ACCOUNT}:role/aliyunodpsdefaultrole", **inventory}},
        "id_rule": {"kind": "md5"}, "category_rule": {"kind": "path_segment", "segment": 1},
        "warehouse": {"conn_id": "w", "table": "t"},
    }
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def config(tmp_path: Path, conn: OssConnection) -> IndexConfig:
    path = write_config(tmp_path)
    assert cli.main(["setup", "--config", str(path), "--oss-role-arn", OSS_ROLE]) == 0
    return load_index_config(path)


def find(conn: OssConnection, config: IndexConfig, not_after: datetime = NOT_AFTER) -> InventoryRun:
    return find_inventory(conn.bucket("inv-dest"), "imgs", config.source.inventory, not_after, NOW,
                          conn=conn, retry=NO_SLEEP)


def manifest(conn: OssConnection, key: str) -> dict:
    return json.loads(conn.bucket("inv-dest").get_object(key).read())


def test_setup_creates_a_rule_that_runs_follow_and_is_idempotent(tmp_path: Path, conn, capsys) -> None:
    path = write_config(tmp_path)
    assert cli.main(["setup", "--config", str(path), "--oss-role-arn", OSS_ROLE]) == 0
    rule = conn.bucket("imgs").get_bucket_inventory_configuration("nightly")
    dest = rule.inventory_destination.bucket_destination
    assert (dest.bucket, dest.prefix, dest.role_arn, dest.account_id) == ("inv-dest", "inventories", OSS_ROLE, ACCOUNT)
    assert rule.inventory_filter.prefix == "catalog/"  # the longest common prefix of source.prefixes
    assert sorted(rule.optional_fields) == ["ETag", "LastModifiedDate", "Size", "StorageClass"]

    assert cli.main(["setup", "--config", str(path), "--oss-role-arn", OSS_ROLE]) == 0
    assert "already set up" in capsys.readouterr().out
    other = f"acs:ram::{ACCOUNT}:role/OtherRole"
    assert cli.main(["setup", "--config", str(path), "--oss-role-arn", other]) == 1
    assert "exists but differs: role" in capsys.readouterr().err
    assert cli.main(["setup", "--config", str(path), "--oss-role-arn", other, "--replace"]) == 0
    assert conn.bucket("imgs").get_bucket_inventory_configuration("nightly").inventory_destination.bucket_destination.role_arn == other


def test_the_newest_complete_run_at_or_before_the_end_of_the_day_is_chosen(server, conn, config) -> None:
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=48))
    key = server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=20), rows_per_file=5)
    server.run_inventory("imgs", "nightly", NOT_AFTER + timedelta(minutes=1))  # after the partition's day

    run = find(conn, config)

    assert run.manifest_key == key == BASE + "2026-11-30T20-00Z/manifest.json"
    assert run.created == NOT_AFTER - timedelta(hours=20) == run.creation_timestamp
    assert run.name == "2026-11-30T20-00Z" and run.source_bucket == "imgs" and run.destination_bucket == "inv-dest"
    assert run.file_schema == ["Bucket", "Key", "Size", "LastModifiedDate", "ETag", "StorageClass"]
    listed = manifest(conn, key)["files"]
    assert run.files == [InventoryFile(f["key"], f["size"], f["MD5checksum"]) for f in listed]
    assert len(run.files) == 2  # the 9 objects under the filter prefix catalog/ (not other/), 5 rows a file


def test_a_run_without_manifest_is_skipped_while_the_previous_one_is_fresh(server, conn, config) -> None:
    older = server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=30))
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=4), fault="no_manifest")  # no folder yet
    newer = server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=2))
    conn.bucket("inv-dest").delete_object(newer.replace("manifest.json", "manifest.checksum"))  # being written
    assert find(conn, config).manifest_key == older

    with pytest.raises(InventoryStaleError) as info:
        find(conn, config, not_after=NOT_AFTER + timedelta(hours=20))
    message = str(info.value)
    assert "the newest inventory run 2026-12-01T14-00Z of inventory rule 'nightly'" in message
    assert "is not complete (manifest.json and manifest.checksum, written last, are not both there)" in message
    assert "OSS may still be writing it (it started 12 h ago)" in message
    assert "the run before it, 2026-11-30T10-00Z, is 50 h old" in message and "fallback: list" in message
    # Still being written, started under a day ago: a later try may find it complete, so it is retried
    # (transient), unlike a run that is simply too old.
    from pipeline.errors import InventoryNotReadyError

    assert isinstance(info.value, InventoryNotReadyError) and info.value.transient is True


def test_a_stale_run_is_refused_saying_how_old_and_what_to_do(server, conn, config) -> None:
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=56))
    with pytest.raises(InventoryStaleError) as info:
        find(conn, config)
    message = str(info.value)
    assert "the newest inventory 2026-11-29T08-00Z of inventory rule 'nightly' of bucket 'imgs'" in message
    assert "is 56 h old at 2026-12-01T16:00Z" in message and "(max_age_hours 48)" in message
    assert "python -m pipeline.oss.inventory show" in message and "fallback: list" in message
    assert info.value.transient is False  # too old stays too old: the run fails at once
    assert find(conn, config.model_copy(update={"source": config.source.model_copy(update={
        "inventory": config.source.inventory.model_copy(update={"max_age_hours": 60})})})).name == "2026-11-29T08-00Z"


def test_no_run_at_all_says_the_rule_may_not_exist(conn, config) -> None:
    with pytest.raises(InventoryStaleError, match="has no run at or before 2026-12-01T16:00Z.*setup"):
        find(conn, config)


@pytest.mark.parametrize("fault", ["missing_file", "size_mismatch", "md5_mismatch"])
def test_a_file_that_disagrees_with_the_manifest_is_named(server, conn, config, fault: str) -> None:
    key = server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=3), rows_per_file=4, fault=fault)
    damaged = manifest(conn, key)["files"][-1]["key"]
    expected = {"missing_file": "which does not exist", "size_mismatch": "bytes, the manifest says",
                "md5_mismatch": "the manifest's MD5checksum is"}[fault]
    with pytest.raises(InventoryIncompleteError) as info:
        find(conn, config)
    assert damaged in str(info.value) and expected in str(info.value)


def test_a_checksum_that_is_not_the_manifests_md5_is_refused(server, conn, config) -> None:
    key = server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=3))
    dest = conn.bucket("inv-dest")
    dest.put_object(key.replace("manifest.json", "manifest.checksum"), b"0" * 32)
    with pytest.raises(InventoryIncompleteError, match="manifest.checksum holds '0{32}' but manifest.json's MD5"):
        find(conn, config)
    # Upper-case hex, with a newline, is the same checksum.
    digest = hashlib.md5(dest.get_object(key).read()).hexdigest().upper() + "\n"
    dest.put_object(key.replace("manifest.json", "manifest.checksum"), digest.encode())
    assert find(conn, config).manifest_key == key


def test_a_rule_without_storage_class_is_refused_naming_the_missing_fields(server, conn, config) -> None:
    source = conn.bucket("imgs")
    rule = cli.build_rule(config, OSS_ROLE)
    rule.optional_fields = ["Size"]
    source.delete_bucket_inventory_configuration("nightly")
    source.put_bucket_inventory_configuration(rule)
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=3))
    with pytest.raises(InventoryError, match="fileSchema Bucket, Key, Size lacks StorageClass"):
        find(conn, config)


def test_run_folders_are_listed_over_every_page(server, conn, config, monkeypatch) -> None:
    monkeypatch.setattr(runs, "LIST_PAGE_SIZE", 2)
    for hours in range(30, 0, -4):  # 8 runs, 4 h apart: 4+ pages with data/
        server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=hours))
    found = list_runs(conn.bucket("inv-dest"), "imgs", config.source.inventory, conn=conn)
    assert [r.name for r in found] == [(NOT_AFTER - timedelta(hours=h)).strftime("%Y-%m-%dT%H-%MZ") for h in range(30, 0, -4)]
    assert find(conn, config).name == "2026-12-01T14-00Z"


def test_staging_copies_exactly_the_runs_files_and_removes_a_previous_attempts(server, conn, config) -> None:
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=30), rows_per_file=2)
    run = find(conn, config, not_after=NOT_AFTER - timedelta(hours=1))
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=3), rows_per_file=4)
    newest = find(conn, config)
    dest = conn.bucket("inv-dest")
    folder = "image-index-inventory/inv/20261201/"
    dest.put_object(folder + "leftover/from-a-killed-attempt.csv.gz", b"junk")
    stage_inventory_files(dest, run, folder, conn=conn, retry=NO_SLEEP)  # another run's files, staged before

    staged = stage_inventory_files(dest, newest, folder, conn=conn, retry=NO_SLEEP)

    assert staged == [folder + f.key.rsplit("/", 1)[1] for f in newest.files]
    listed = sorted(obj.key for obj in oss2.ObjectIterator(dest, prefix=folder))
    assert listed == sorted(staged)
    for file, key in zip(newest.files, staged):
        assert hashlib.md5(dest.get_object(key).read()).hexdigest() == file.md5
    assert stage_inventory_files(dest, newest, folder, conn=conn, retry=NO_SLEEP) == staged  # a rerun converges
    assert sorted(obj.key for obj in oss2.ObjectIterator(dest, prefix=folder)) == sorted(staged)
    # The inventory's own files are untouched.
    assert all(dest.object_exists(f.key) for f in run.files + newest.files)


def test_staging_refuses_an_overlapping_folder_and_huge_files_before_changing_anything(server, conn, config) -> None:
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=3))
    run = find(conn, config)
    dest = conn.bucket("inv-dest")
    for folder in (BASE + "data/", "inventories/", "work"):
        with pytest.raises(InventoryError, match="outside the inventory's 'inventories/imgs/nightly/'"):
            stage_inventory_files(dest, run, folder, conn=conn, retry=NO_SLEEP)
    dest.put_object("work/old.csv.gz", b"old")
    size = COPY_PART_BYTES * staging.MAX_PARTS + 1
    huge = with_file(run, InventoryFile(BASE + "data/huge.csv.gz", size, "0" * 32))
    with pytest.raises(InventoryError, match="more than a multipart copy copies .10000 parts"):
        stage_inventory_files(dest, huge, "work/", conn=conn, retry=NO_SLEEP)
    assert dest.object_exists("work/old.csv.gz")


def with_file(run: InventoryRun, file: InventoryFile) -> InventoryRun:
    return InventoryRun(run.source_bucket, run.destination_bucket, run.manifest_key, run.created, run.file_schema,
                        [*run.files, file])


PART = 100 * 1024  # the smallest part OSS takes


def test_files_over_the_copy_limit_are_copied_in_parts_and_checked_by_size(server, conn, config, monkeypatch) -> None:
    monkeypatch.setattr(staging, "MAX_COPY_BYTES", PART)
    monkeypatch.setattr(staging, "COPY_PART_BYTES", PART)
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=3))
    dest = conn.bucket("inv-dest")
    body = hashlib.sha256(b"seed").digest() * (2 * PART // 32 + 10)  # 2 full parts and a short last one
    dest.put_object(BASE + "data/big.csv.gz", body)
    run = with_file(find(conn, config), InventoryFile(BASE + "data/big.csv.gz", len(body), hashlib.md5(body).hexdigest()))

    staged = stage_inventory_files(dest, run, "work/", conn=conn, retry=NO_SLEEP)

    assert staged[-1] == "work/big.csv.gz"
    assert dest.get_object("work/big.csv.gz").read() == body
    assert dest.head_object("work/big.csv.gz").etag.endswith("-3")  # a multipart ETag: not an MD5
    assert all(hashlib.md5(dest.get_object(k).read()).hexdigest() == f.md5 for k, f in zip(staged, run.files))
    assert not any((Path(server.root) / ".oss-multipart").glob("*"))  # the upload completed: no parts kept
    assert stage_inventory_files(dest, run, "work/", conn=conn, retry=NO_SLEEP) == staged  # a rerun converges


def test_a_failed_multipart_copy_is_aborted_and_a_changed_file_is_named(server, conn, config, monkeypatch) -> None:
    monkeypatch.setattr(staging, "MAX_COPY_BYTES", PART)
    monkeypatch.setattr(staging, "COPY_PART_BYTES", PART)
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=3))
    dest = conn.bucket("inv-dest")
    body = b"z" * (PART + 1)
    dest.put_object(BASE + "data/big.csv.gz", body)
    run = find(conn, config)
    changed = with_file(run, InventoryFile(BASE + "data/big.csv.gz", len(body) + 1, "0" * 32))
    with pytest.raises(InventoryIncompleteError, match="the file changed since it was checked"):
        stage_inventory_files(dest, changed, "work/", conn=conn, retry=NO_SLEEP)

    class FailingComplete(oss2.Bucket):
        def complete_multipart_upload(self, *args, **kwargs):
            raise oss2.exceptions.ServerError(400, {}, b"", {"Code": "InvalidPart", "Message": "no"})

    failing = FailingComplete(dest.auth, dest.endpoint, dest.bucket_name, region="cn-hangzhou")
    good = with_file(run, InventoryFile(BASE + "data/big.csv.gz", len(body), hashlib.md5(body).hexdigest()))
    with pytest.raises(SourceError, match="InvalidPart"):
        stage_inventory_files(failing, good, "work/", conn=conn, retry=NO_SLEEP)
    assert not any((Path(server.root) / ".oss-multipart").glob("*"))  # aborted: no parts kept
    assert not dest.object_exists("work/big.csv.gz")
    stage_inventory_files(dest, good, "work/", conn=conn, retry=NO_SLEEP)  # a rerun starts the file over
    assert dest.get_object("work/big.csv.gz").read() == body


def test_show_prints_runs_and_whether_the_partitions_run_is_usable(server, conn, config, tmp_path, capsys) -> None:
    server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=30))
    newer = server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=2))
    conn.bucket("inv-dest").delete_object(newer.replace("manifest.json", "manifest.checksum"))
    path = str(tmp_path / "inv.yaml")
    assert cli.main(["show", "--config", path, "--not-after", "2026-12-01T16:00Z"]) == 0
    out = capsys.readouterr().out
    assert "rule 'nightly' on bucket 'imgs': enabled True" in out
    assert "2026-12-01T14-00Z  incomplete  fresh" in out and "2026-11-30T10-00Z  complete    fresh" in out
    assert "usable: 2026-11-30T10-00Z, 1 file(s)" in out
    assert cli.main(["show", "--config", path, "--not-after", "2026-12-03T16:00Z"]) == 1
    out = capsys.readouterr().out
    assert "not usable: the newest inventory 2026-12-01T14-00Z of inventory rule 'nightly'" in out and "is 50 h old" in out


class FlakyHead(oss2.Bucket):
    """Every first HEAD of a key fails with a 503 SlowDown, as a throttled OSS answers."""

    seen: set[str] = set()

    def head_object(self, key, *args, **kwargs):
        if key not in self.seen:
            self.seen.add(key)
            raise oss2.exceptions.ServerError(503, {}, b"", {"Code": "SlowDown", "Message": "Please reduce your request rate."})
        return super().head_object(key, *args, **kwargs)


def test_a_throttled_head_is_retried_and_no_connection_is_needed_for_messages(server, conn, config) -> None:
    key = server.run_inventory("imgs", "nightly", NOT_AFTER - timedelta(hours=3), rows_per_file=4)
    FlakyHead.seen = set()
    run = find_inventory(conn.bucket("inv-dest", kind=FlakyHead), "imgs", config.source.inventory, NOT_AFTER, NOW,
                         retry=NO_SLEEP)
    assert run.manifest_key == key and FlakyHead.seen == {f.key for f in run.files}
