"""Put/Get/List/DeleteBucketInventory on the local OSS server, through the real oss2 client.

Why: the inventory route configures its rule with oss2; the stand-in must give back what oss2 sent,
refuse what OSS refuses, and keep rules across a restart, or the pipeline's setup code passes here
and fails on the first night in the cloud.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import oss2
import pytest
from oss2 import xml_utils
from oss2.models import (
    FIELD_ETAG,
    FIELD_SIZE,
    FIELD_STORAG_CLASS,
    INVENTORY_FORMAT_CSV,
    INVENTORY_FREQUENCY_DAILY,
    INVENTORY_INCLUDED_OBJECT_VERSIONS_CURRENT,
    InventoryBucketDestination,
    InventoryConfiguration,
    InventoryDestination,
    InventoryFilter,
    InventorySchedule,
    InventoryServerSideEncryptionKMS,
)

from localcloud.oss.inventory_config import InventoryRules, parse_rule
from localcloud.oss.server import Credential, GeneratedBucket, LocalOssServer
from tests.localcloud.oss.clients import AK, SK, bucket_of

ACCOUNT = "1000000000000000"
ROLE = f"acs:ram::{ACCOUNT}:role/AliyunOSSRole"



def make_server(root: Path) -> LocalOssServer:
    gen = GeneratedBucket("gen-bucket", prefixes=2, keys_per_prefix=5)
    return LocalOssServer(root, [Credential(AK, SK)], generated=[gen], account_id=ACCOUNT)


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    for name in ("src-bucket", "dst-bucket"):
        (root / name).mkdir(parents=True)
    return root


@pytest.fixture()
def server(root: Path):
    with make_server(root) as srv:
        yield srv


def rule(inventory_id: str = "nightly", *, dest: str = "dst-bucket", account: str = ACCOUNT, role: str = ROLE,
         fields=(FIELD_SIZE, FIELD_ETAG), fmt: str = INVENTORY_FORMAT_CSV, frequency: str = INVENTORY_FREQUENCY_DAILY,
         prefix: str | None = "images/", **filters) -> InventoryConfiguration:
    return InventoryConfiguration(
        inventory_id=inventory_id,
        is_enabled=True,
        inventory_schedule=InventorySchedule(frequency=frequency),
        included_object_versions=INVENTORY_INCLUDED_OBJECT_VERSIONS_CURRENT,
        inventory_filter=InventoryFilter(prefix=prefix, **filters),
        optional_fields=list(fields),
        inventory_destination=InventoryDestination(bucket_destination=InventoryBucketDestination(
            account_id=account, role_arn=role, bucket=dest, inventory_format=fmt, prefix="inventory")),
    )


def test_put_get_list_delete_round_trip(server: LocalOssServer) -> None:
    bucket = bucket_of(server, "src-bucket")
    sent = rule(lower_size_bound=1, upper_size_bound=10_000, storage_class="Standard,IA")
    sent.inventory_destination.bucket_destination.sse_kms_encryption = InventoryServerSideEncryptionKMS("key-1")
    assert bucket.put_bucket_inventory_configuration(sent).status == 200
    got = bucket.get_bucket_inventory_configuration("nightly")
    assert (got.inventory_id, got.is_enabled, got.included_object_versions) == ("nightly", True, "Current")
    assert got.inventory_schedule.frequency == "Daily"
    assert got.optional_fields == [FIELD_SIZE, FIELD_ETAG]
    assert got.inventory_filter.prefix == "images/"
    assert (got.inventory_filter.lower_size_bound, got.inventory_filter.upper_size_bound) == ("1", "10000")
    assert got.inventory_filter.storage_class == "Standard,IA"
    dest = got.inventory_destination.bucket_destination
    assert (dest.account_id, dest.role_arn, dest.bucket, dest.inventory_format, dest.prefix) == (
        ACCOUNT, ROLE, "dst-bucket", "CSV", "inventory")
    assert dest.sse_kms_encryption.key_id == "key-1"

    listed = bucket.list_bucket_inventory_configurations()
    assert [c.inventory_id for c in listed.inventory_configurations] == ["nightly"]
    assert listed.is_truncated is False

    assert bucket.delete_bucket_inventory_configuration("nightly").status == 204
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.get_bucket_inventory_configuration("nightly")
    assert (err.value.status, err.value.code) == (404, "NoSuchInventory")
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.delete_bucket_inventory_configuration("nightly")
    assert (err.value.status, err.value.code) == (404, "NoSuchInventory")


def test_rules_survive_a_restart_for_folder_and_generated_buckets(root: Path) -> None:
    with make_server(root) as server:
        bucket_of(server, "src-bucket").put_bucket_inventory_configuration(rule("a"))
        bucket_of(server, "gen-bucket").put_bucket_inventory_configuration(rule("b", prefix=None))
    with make_server(root) as server:
        assert bucket_of(server, "src-bucket").get_bucket_inventory_configuration("a").inventory_id == "a"
        assert bucket_of(server, "gen-bucket").get_bucket_inventory_configuration("b").inventory_filter is None
        # Rules live outside the buckets: they are no objects.
        assert bucket_of(server, "dst-bucket").list_objects_v2().object_list == []


def test_list_pages_by_100_with_a_continuation_token(server: LocalOssServer) -> None:
    bucket = bucket_of(server, "src-bucket")
    for i in range(150):
        bucket.put_bucket_inventory_configuration(rule(f"r{i:03d}"))
    first = bucket.list_bucket_inventory_configurations()
    assert len(first.inventory_configurations) == 100 and first.is_truncated
    second = bucket.list_bucket_inventory_configurations(first.next_continuation_token)
    assert len(second.inventory_configurations) == 50 and not second.is_truncated
    ids = [c.inventory_id for c in first.inventory_configurations + second.inventory_configurations]
    assert ids == [f"r{i:03d}" for i in range(150)]


@pytest.mark.parametrize(
    "config, status, code",
    [
        (rule(dest="no-such-bucket"), 404, "NoSuchBucket"),
        (rule(dest="gen-bucket"), 400, "InvalidArgument"),
        (rule(account="2000000000000000"), 400, "InvalidArgument"),
        (rule(role="acs:ram::2000000000000000:role/AliyunOSSRole"), 400, "InvalidArgument"),
        (rule(role="not-an-arn"), 400, "InvalidArgument"),
        (rule(fmt="TXT"), 400, "InvalidArgument"),
        (rule(frequency="Hourly"), 400, "InvalidArgument"),
        (rule(fields=("Size", "StartTime")), 400, "InvalidArgument"),
        (rule(storage_class="Standard,UNKNOW_TYPE"), 400, "InvalidArgument"),
        (rule(lower_size_bound=2048, upper_size_bound=1024), 400, "InvalidArgument"),
        (rule("-bad"), 400, "InvalidArgument"),
        (rule("has/slash"), 400, "InvalidArgument"),
        (rule("x" * 65), 400, "InvalidArgument"),
    ],
)
def test_put_refuses_what_oss_refuses(server: LocalOssServer, config, status: int, code: str) -> None:
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket_of(server, "src-bucket").put_bucket_inventory_configuration(config)
    assert (err.value.status, err.value.code) == (status, code)
    assert bucket_of(server, "src-bucket").list_bucket_inventory_configurations().inventory_configurations == []


def test_duplicate_ids_and_the_thousand_rule_limit(server: LocalOssServer) -> None:
    bucket = bucket_of(server, "src-bucket")
    bucket.put_bucket_inventory_configuration(rule("dup"))
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.put_bucket_inventory_configuration(rule("dup"))
    assert (err.value.status, err.value.code) == (409, "InventoryAlreadyExist")
    # Fill up to 1000 without 999 HTTP round trips, then the 1001st through oss2.
    rules = InventoryRules(server.root)
    one = parse_rule(xml_utils.to_put_inventory_configuration(rule("n")), "n", ACCOUNT)
    filled = rules.load("src-bucket") | {f"n{i}": dataclasses.replace(one, id=f"n{i}") for i in range(999)}
    rules._save("src-bucket", filled)  # noqa: SLF001 - what 999 Puts would leave behind
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.put_bucket_inventory_configuration(rule("one-too-many"))
    assert (err.value.status, err.value.code) == (400, "TooManyConfigurations")


def test_url_id_must_equal_body_id_and_bad_bodies_are_refused(server: LocalOssServer) -> None:
    bucket = bucket_of(server, "src-bucket")
    body = xml_utils.to_put_inventory_configuration(rule("report2"))
    for params, data, code in [
        ({"inventory": "", "inventoryId": "report1"}, body, "InvalidArgument"),
        ({"inventory": "", "inventoryId": "report1"}, b"<not-xml", "MalformedXML"),
        ({"inventory": "", "inventoryId": "report1"}, b"<Other/>", "MalformedXML"),
    ]:
        with pytest.raises(oss2.exceptions.ServerError) as err:
            bucket._Bucket__do_bucket("PUT", data=data, params=params)
        assert err.value.code == code


def test_get_of_an_unknown_bucket_answers_no_such_bucket(server: LocalOssServer) -> None:
    with pytest.raises(oss2.exceptions.NoSuchBucket):
        bucket_of(server, "nope-bucket").list_bucket_inventory_configurations()
