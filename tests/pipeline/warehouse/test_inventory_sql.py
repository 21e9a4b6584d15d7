"""The inventory route against the listing route: the same bucket gives the same partition and counts.

Why: ``source.mode: inventory`` derives the catalog from an OSS Bucket Inventory with SQL inside
MaxCompute (pipeline/warehouse/inventory_sql.py) instead of CatalogBuilder over a listing. An index must
not change when its mode does, so on each bucket below both routes run — the listing through the
pipeline's OssLister and CatalogBuilder, the inventory through the local OSS's inventory run, an external
table and MaxComputeWarehouse.load_inventory over pyodps — and their rows and skip counts must be
identical. The one difference by design (a restored archive object: a row by listing, archived by
inventory, which has no restore state) is asserted explicitly.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pytest
from odps import ODPS
from oss2.models import InventoryBucketDestination, InventoryConfiguration, InventoryDestination, InventorySchedule

from localcloud.demo_data import upload_demo_bucket
from localcloud.maxcompute.server import LocalMaxComputeServer
from localcloud.oss.server import Credential, LocalOssServer
from localcloud.ram import ServiceRoles, TokenAuthority
from pipeline.config import IndexConfig, load_index_config, parse_index_config
from pipeline.errors import CatalogError, WarehouseError
from pipeline.oss.catalog import ARCHIVE_CLASSES, CatalogBuilder, SkipReason, gather_pages, md5_key_id
from pipeline.oss.client import OssConnection
from pipeline.oss import pages
from pipeline.oss.pages import OssLister
from pipeline.schema import CATALOG_SCHEMA
from pipeline.warehouse import LocalWarehouse
from pipeline.warehouse import inventory_sql
from pipeline.warehouse.inventory_sql import compile_inventory, sql_string
from pipeline.warehouse.maxcompute import MaxComputeWarehouse
from tests.conftest import REPO

AK, SK, REGION, PROJECT = "LTAIinventorytest", "inventory-secret", "cn-hangzhou", "inv_proj"
ACCOUNT = "1000000000000001"
ODPS_ROLE = f"acs:ram::{ACCOUNT}:role/aliyunodpsdefaultrole"
INTERNAL = f"oss-{REGION}-internal.aliyuncs.com"
DEST = "inventory-dst"
DS = "20261201"
FIELDS = ["Size", "LastModifiedDate", "ETag", "StorageClass", "IsMultipartUploaded", "EncryptionStatus"]

# Keys that break naive decoding, quoting or byte/character arithmetic, under n/<category>/.
LONG = "n/long/" + "/".join(["l" * 230] * 3) + "/" + "é" * 120 + "1007.jpg"  # 948 bytes, 2-byte characters
NASTY = {
    "n/a b/1001.jpg": 50, "n/c+d/1002.jpg": 50, "n/x%2Fy/1003.png": 50, "n/100%/1004.jpg": 50,
    "n/日本/图片1005.jpg": 50, "n/emoji/😀🎉1006.webp": 50, LONG: 50, "n/noext/1008": 50,
    "n/folder/": 0, "n/zero/1009.jpg": 0,
    "n/size/1010.jpg": 9, "n/size/1011.jpg": 10, "n/size/1012.jpg": 100, "n/size/1013.jpg": 101,
    "n/big/9223372036854775807.jpg": 50, "n/big/9223372036854775808.jpg": 50,
    "n/big/00000000000000000000001.jpg": 50, "n/big/99999999999999999999999.jpg": 50, "n/big/000.jpg": 50,
    "n/case/1014.JPG": 50, "n/case/1015.JpEg": 50, "n/kelvin/1016.\u212atx": 50, "n/kelvin/1017.KTX": 50,
    "n/quote'/1018.jpg": 50, 'n/dq"/1019.jpg': 50, "n/back`tick/1020.jpg": 50, "n/semi;colon/1021.jpg": 50,
    "n/dash--x/1022.jpg": 50, "n/x/abc.jpg": 50, "n/x/\u0663.jpg": 50, "n/x/1.2.3.jpg": 50, "n/x/.jpg": 50,
    "n/7/1024.jpg": 50, "n/0042/1025.png": 50, "n/x.jpg": 50, "n/1026.jpg/": 0,
    "other/outside/1027.jpg": 50, "n/": 0, "na/not-under-n/1028.jpg": 50,
}
ARCHIVED = {"n/arch/1030.jpg": "Archive", "n/arch/1031.jpg": "ColdArchive", "n/arch/1032.png": "DeepColdArchive",
            "n/arch/1033.jpg": "IA"}
RESTORED = "n/arch/1034.jpg"  # Archive, restored: the one documented difference
NASTY_MAPPING = {"a b": 1, "c+d": 2, "x%2Fy": 3, "日本": 4, "quote'": 5, "back`tick": 6, "back\\slash": 19, "semi;colon": 7,
                 "dash--x": 8, "big": 9, "size": 10, "case": 11, "kelvin": 12, "emoji": 13, "long": 14,
                 "arch": 15, "x": 16, "": 17, "\\'; DROP TABLE x; --": 18}


# -- servers -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def authority() -> TokenAuthority:
    return TokenAuthority(secrets.token_bytes(32))


@pytest.fixture(scope="module")
def oss_server(tmp_path_factory, authority) -> Iterator[LocalOssServer]:
    root = tmp_path_factory.mktemp("oss")
    for name in (DEST, "nasty-keys"):
        (root / name).mkdir()
    with LocalOssServer(root, [Credential(AK, SK)], region=REGION, authority=authority,
                        restore_delay_s=0.2) as running:
        yield running


@pytest.fixture(scope="module")
def mc_server(tmp_path_factory, authority, oss_server) -> Iterator[LocalMaxComputeServer]:
    roles = ServiceRoles(authority, {ODPS_ROLE: 3600}, [])
    with LocalMaxComputeServer(tmp_path_factory.mktemp("maxcompute"), {AK: SK}, projects=[PROJECT], region=REGION,
                               authority=authority, assume_role=roles.assume,
                               oss_endpoints={INTERNAL: oss_server.endpoint}) as running:
        yield running


@pytest.fixture(scope="module")
def odps(mc_server) -> ODPS:
    return ODPS(AK, SK, project=PROJECT, endpoint=mc_server.endpoint, region_name=REGION, overwrite_global=False)


@pytest.fixture(scope="module")
def oss_conn(oss_server) -> OssConnection:
    return OssConnection.from_extras("oss_test", {"auth_type": "AK", "access_key_id": AK, "access_key_secret": SK,
                                                  "region": REGION, "endpoint": oss_server.endpoint})


def inventory_of(server: LocalOssServer, conn: OssConnection, bucket: str, inventory_id: str = "nightly",
                 fields: list[str] = FIELDS) -> tuple[str, str]:
    """Configure and run an inventory of ``bucket``; (the external table's LOCATION, the fileSchema)."""
    conn.bucket(bucket).put_bucket_inventory_configuration(InventoryConfiguration(
        inventory_id=inventory_id, is_enabled=True, inventory_schedule=InventorySchedule("Daily"),
        included_object_versions="Current", optional_fields=fields,
        inventory_destination=InventoryDestination(InventoryBucketDestination(
            account_id=ACCOUNT, role_arn=f"acs:ram::{ACCOUNT}:role/AliyunOSSRole", bucket=DEST,
            inventory_format="CSV", prefix=f"inv/{bucket}"))))
    manifest_key = server.run_inventory(bucket, inventory_id)
    manifest = json.loads(conn.bucket(DEST).get_object(manifest_key).read())
    data = manifest["files"][0]["key"].rsplit("/", 1)[0] + "/"  # one run only: data/ holds exactly its files
    return f"oss://{INTERNAL}/{DEST}/{data}", manifest["fileSchema"]


@pytest.fixture(scope="module")
def demo_bucket(oss_server, oss_conn) -> tuple[str, str, str]:
    upload_demo_bucket(oss_conn.bucket("demo-images"))
    oss_conn.bucket("demo-images").put_object("elsewhere/10001.jpg", b"x" * 10)  # outside catalog/
    return ("demo-images", *inventory_of(oss_server, oss_conn, "demo-images"))


@pytest.fixture(scope="module")
def nasty_bucket(oss_server, oss_conn) -> tuple[str, str, str]:
    bucket = oss_conn.bucket("nasty-keys")
    for key, size in NASTY.items():
        bucket.put_object(key, b"x" * size)
    for key, storage_class in {**ARCHIVED, RESTORED: "Archive"}.items():
        bucket.put_object(key, b"x" * 50, headers={"x-oss-storage-class": storage_class})
    bucket.restore_object(RESTORED)
    time.sleep(0.4)  # restore_delay_s: the restored copy is readable now
    assert 'ongoing-request="false"' in (bucket.head_object(RESTORED).resp.headers.get("x-oss-restore") or "")
    return ("nasty-keys", *inventory_of(oss_server, oss_conn, "nasty-keys"))


# -- the two routes ------------------------------------------------------------------------------------

def listing_route(conn: OssConnection, config: IndexConfig, prefixes: list[str] | None = None, *,
                  forget_restores: bool = False) -> tuple[list, dict]:
    """The pipeline's listing and CatalogBuilder; ``forget_restores``: as if no archive object were restored
    (what the inventory knows)."""
    lister = OssLister.connect(conn, config.source.bucket)
    builder = CatalogBuilder(config.source, config.id_rule, config.category_rule)
    pages = lister.iter_objects(prefixes or config.source.prefixes)
    if forget_restores:
        pages = ([obj._replace(restore="") for obj in page] for page in pages)
    batches = list(builder.batches(gather_pages(pages)))
    table = pa.Table.from_batches(batches, schema=CATALOG_SCHEMA)
    return sorted(table.to_pylist(), key=_row_order), builder.counts.as_dict()


def inventory_route(odps: ODPS, config: IndexConfig, location: str, file_schema: str,
                    prefixes: list[str] | None = None) -> tuple[list, dict]:
    wh = MaxComputeWarehouse(odps, f"catalog_{uuid.uuid4().hex[:8]}", 30)
    counts = wh.load_inventory(DS, location, file_schema, config.source, config.id_rule, config.category_rule,
                               ODPS_ROLE, prefixes)
    rows = wh.staging().read_partition(DS).to_pylist()
    assert not odps.exist_table(f"{wh.table}__inventory_{DS}")  # the external table is dropped
    return sorted(rows, key=_row_order), counts


def _row_order(row: dict) -> tuple:
    return row["source_image"], row["id"], row["cate_id"]


def variant(base: IndexConfig, **sections) -> IndexConfig:
    data = base.model_dump()
    for section, values in sections.items():
        data[section] = values if section in ("id_rule", "category_rule") else {**data[section], **values}
    return parse_index_config(data, "variant")


def demo_config() -> IndexConfig:
    return load_index_config(REPO / "dags" / "indexes" / "demo.yaml")


DEMO_VARIANTS = {
    "demo.yaml": {},
    "md5 id, segment -2, unmapped default": {
        "id_rule": {"kind": "md5"},
        "category_rule": {"kind": "path_segment", "segment": -2, "mapping": {"shoes": 1, "bags": 2, "hats": 3},
                          "unmapped": "default", "default_id": 0}},
    "default id regex, category regex with mapping": {
        "id_rule": {"kind": "filename_digits"},
        "category_rule": {"kind": "regex", "regex": r"^catalog/(?P<name>[a-z]+)/", "mapping":
                          {"shoes": 1, "bags": 2, "hats": 3, "watches": 4}, "unmapped": "skip"}},
    "category digits by regex, unmapped default": {
        "category_rule": {"kind": "regex", "regex": r"/(\d)\d*\.[^.]+$", "unmapped": "default", "default_id": 7}},
}

NASTY_BASE = {"source": {"bucket": "nasty-keys", "prefixes": ["n/"], "min_size_bytes": 10, "max_size_bytes": 100,
                         "extensions": ["jpg", "jpeg", "png", "webp", "ktx"]},
              "id_rule": {"kind": "filename_digits"},
              "category_rule": {"kind": "path_segment", "segment": 1, "mapping": NASTY_MAPPING, "unmapped": "skip"}}
NASTY_VARIANTS = {
    "digits, segment 1, tricky mapping names": {},
    "md5, segment -2, unmapped default": {
        "id_rule": {"kind": "md5"},
        "category_rule": {"kind": "path_segment", "segment": -2, "mapping": NASTY_MAPPING, "unmapped": "default",
                          "default_id": 9223372036854775807}},
    "named id group, category digits of the file name": {
        "id_rule": {"kind": "filename_digits", "regex": r"(?P<digits>\d+)(?:\.[^.]*)?$"},
        "category_rule": {"kind": "regex", "regex": r"/(\d+)\.[^.]+$", "unmapped": "skip"}},
    "segment past the end, unmapped default": {
        "category_rule": {"kind": "path_segment", "segment": 5, "unmapped": "default", "default_id": 3}},
    "segment -1024": {
        "category_rule": {"kind": "path_segment", "segment": -1024, "unmapped": "default", "default_id": 3}},
}


def assert_same(listing: tuple[list, dict], inventory: tuple[list, dict]) -> None:
    (list_rows, list_counts), (inv_rows, inv_counts) = listing, inventory
    assert inv_counts == list_counts
    assert inv_rows == list_rows  # every column, etag included: the listed ETag is the inventoried one
    assert all(row["etag"] for row in list_rows)  # the fileSchema has ETag: every row has one


# -- the equivalence -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(DEMO_VARIANTS))
def test_demo_bucket_gives_the_listing_routes_partition(name, odps, oss_conn, demo_bucket) -> None:
    _, location, file_schema = demo_bucket
    config = variant(demo_config(), **DEMO_VARIANTS[name])
    listing = listing_route(oss_conn, config)
    assert listing[1]["kept"] > 300 and listing[1]["skipped"]["archived"] == 1  # the demo's objects are there
    assert_same(listing, inventory_route(odps, config, location, file_schema))


def nasty_config(**sections) -> IndexConfig:
    base = variant(demo_config(), **NASTY_BASE)
    return variant(base, **sections)


@pytest.mark.parametrize("name", list(NASTY_VARIANTS))
def test_nasty_keys_give_the_listing_routes_partition_but_for_a_restored_archive(name, odps, oss_conn,
                                                                                 nasty_bucket) -> None:
    _, location, file_schema = nasty_bucket
    config = nasty_config(**NASTY_VARIANTS[name])
    inventory = inventory_route(odps, config, location, file_schema)
    assert_same(listing_route(oss_conn, config, forget_restores=True), inventory)
    # The one difference: the inventory has no restore state, so a restored Archive object is archived;
    # the listing route keeps it. Nothing else differs.
    rows, counts = listing_route(oss_conn, config)
    assert [row for row in rows if row not in inventory[0]] == [row for row in rows if row["source_image"] == "/" + RESTORED]
    assert len(rows) == len(inventory[0]) + 1
    assert counts["skipped"]["archived"] + 1 == inventory[1]["skipped"]["archived"]
    assert RESTORED not in counts["archived_examples"] and RESTORED in inventory[1]["archived_examples"]
    assert counts["listed"] == inventory[1]["listed"] == len([k for k in [*NASTY, *ARCHIVED, RESTORED] if k.startswith("n/")])


def test_etags_are_the_objects_as_listed_without_quotes(odps, oss_conn, demo_bucket) -> None:
    """The etag a row keeps is its object's: replacing an image's bytes changes it on both routes."""
    bucket, location, file_schema = demo_bucket
    rows, _ = listing_route(oss_conn, demo_config())
    by_path = {row["source_image"]: row["etag"] for row in rows}
    for path in list(by_path)[:3]:
        head = oss_conn.bucket(bucket).head_object(path[1:])
        assert by_path[path] == head.etag.strip('"')  # oss2 strips the quotes HEAD sends; the case is kept
    assert len(set(by_path.values())) > 1


def test_an_inventory_without_the_etag_field_gives_null_etags(odps, oss_server, oss_conn, demo_bucket,
                                                              caplog) -> None:
    bucket = demo_bucket[0]
    location, file_schema = inventory_of(oss_server, oss_conn, bucket, "no_etag",
                                         [field for field in FIELDS if field != "ETag"])
    assert "ETag" not in file_schema
    config = demo_config()
    rows, counts = listing_route(oss_conn, config)
    inventory = inventory_route(odps, config, location, file_schema)
    assert inventory[1] == counts and all(row["etag"] is None for row in inventory[0])
    assert inventory[0] == [{**row, "etag": None} for row in rows]  # nothing else differs
    assert "has no ETag field" in caplog.text and "add ETag to the inventory rule's fields" in caplog.text


@pytest.mark.parametrize(("listed", "kept"), [('"5B3C1A2E"', "5B3C1A2E"), ("5b3c1a2e", "5b3c1a2e"), ('""', None),
                                              ('"a1-2"', "a1-2"), ("", None), (None, None)])
def test_the_etag_expression_strips_the_quotes_and_keeps_the_case(odps, listed, kept) -> None:
    """What ``_etag`` in pipeline/oss/pages.py does to a listed ETag, in MaxCompute SQL."""
    value = "CAST(NULL AS STRING)" if listed is None else sql_string(listed)
    query = f"SELECT {inventory_sql.etag_expr(['Key', 'ETag'])} AS e FROM (SELECT {value} AS `etag`) t"
    with odps.execute_sql(query).open_reader() as reader:
        assert [r["e"] for r in reader] == [kept]
    assert pages._etag(listed or "") == kept


def test_nasty_keys_exercise_every_reason(oss_conn, nasty_bucket) -> None:
    rows, counts = listing_route(oss_conn, nasty_config())
    assert all(counts["skipped"][reason.value] for reason in SkipReason), counts["skipped"]
    images = {row["source_image"] for row in rows}
    assert {"/n/quote'/1018.jpg", "/n/back`tick/1020.jpg", "/n/日本/图片1005.jpg", "/" + LONG} <= images
    assert "/n/kelvin/1016.\u212atx" not in images and "/n/kelvin/1017.KTX" in images
    assert {row["id"] for row in rows} >= {9223372036854775807, 1, 0}


def test_a_runs_prefixes_narrow_the_selection(odps, oss_conn, nasty_bucket) -> None:
    _, location, file_schema = nasty_bucket
    config = nasty_config()
    prefixes = ["n/quote'/", "n/back`tick/", "n/a b/", "n/日本/", "n/100%/"]
    listing = listing_route(oss_conn, config, prefixes)
    assert (listing[1]["listed"], listing[1]["kept"]) == (5, 4)  # 100% is no mapped category
    assert_same(listing, inventory_route(odps, config, location, file_schema, prefixes))


def test_unmapped_fail_raises_after_staging_like_the_listing(odps, oss_conn, demo_bucket) -> None:
    _, location, file_schema = demo_bucket
    config = variant(demo_config(), category_rule={"kind": "path_segment", "segment": 1,
                                                   "mapping": {"shoes": 1, "bags": 2, "hats": 3, "watches": 4},
                                                   "unmapped": "fail"})
    with pytest.raises(CatalogError, match="catalog/misc/"):
        listing_route(oss_conn, config)
    with pytest.raises(CatalogError, match=r"'catalog/misc/90001.jpg' has category 'misc'.*5 objects"):
        inventory_route(odps, config, location, file_schema)


# -- the compiler alone --------------------------------------------------------------------------------

def test_reason_names_and_archive_classes_are_the_catalogs() -> None:
    assert inventory_sql.SKIP_REASONS == tuple(reason.value for reason in SkipReason)
    assert set(inventory_sql.ARCHIVE_CLASSES) == ARCHIVE_CLASSES


def test_md5_id_in_sql_is_md5_key_id(odps) -> None:
    keys = ["a", "catalog/shoes/10001.jpg", "日本/😀", "x" * 1000]
    select = " UNION ALL ".join(
        f"SELECT {sql_string(k)} AS k, " + inventory_sql._id_expr(demo_config().id_rule.model_copy(
            update={"kind": "md5"}))[1].replace("id_text", f"MD5({sql_string(k)})") + " AS id" for k in keys)
    with odps.execute_sql(select).open_reader() as reader:
        got = {r["k"]: r["id"] for r in reader}
    assert got == {k: md5_key_id(k) for k in keys}


@pytest.mark.parametrize("value", ["plain", "it's", "back\\slash", "\\'", "semi;colon -- x", "line\nbreak",
                                   "\\n not a newline", "%_", "日本😀", "\\"])
def test_string_literals_round_trip(odps, value) -> None:
    with odps.execute_sql(f"SELECT {sql_string(value)} AS v").open_reader() as reader:
        assert [r["v"] for r in reader] == [value]


def test_hash_ids_and_oversized_mappings_are_refused() -> None:
    config = demo_config()
    common = {"file_schema": "Bucket, Key, Size, StorageClass", "location": f"oss://{INTERNAL}/b/f/",
              "role_arn": ODPS_ROLE, "external_table": "ext", "staging_table": "stg", "ds": DS}
    with pytest.raises(ValueError, match="md5"):
        compile_inventory(config.source, config.id_rule.model_copy(update={"kind": "hash"}), config.category_rule,
                          **common)
    big = config.category_rule.model_copy(update={"mapping": {f"{i:0>300}": i for i in range(10_000)}})
    with pytest.raises(ValueError, match="2 MB"):
        compile_inventory(config.source, config.id_rule, big, **common)
    with pytest.raises(ValueError, match="StorageClass"):
        compile_inventory(config.source, config.id_rule, config.category_rule,
                          **{**common, "file_schema": "Bucket, Key, Size"})
    with pytest.raises(ValueError, match="location"):
        compile_inventory(config.source, config.id_rule, config.category_rule,
                          **{**common, "location": "oss://b/f/' OR 1=1"})


def test_the_fs_warehouse_refuses_inventories(tmp_path) -> None:
    config = demo_config()
    with pytest.raises(WarehouseError, match="maxcompute connection"):
        LocalWarehouse(tmp_path, "t", 1).load_inventory(DS, f"oss://{INTERNAL}/b/f/", "Bucket, Key, Size, StorageClass",
                                                        config.source, config.id_rule, config.category_rule, ODPS_ROLE)


def test_what_sql_cannot_express_is_a_terminal_config_error_before_any_statement(odps) -> None:
    from pipeline.errors import ConfigError

    config = demo_config()
    wh = MaxComputeWarehouse(odps, f"catalog_{uuid.uuid4().hex[:8]}", 30)
    with pytest.raises(ConfigError, match="cannot load .* kind 'hash'|md5") as refused:
        wh.load_inventory(DS, f"oss://{INTERNAL}/b/f/", "Bucket, Key, Size, StorageClass", config.source,
                          config.id_rule.model_copy(update={"kind": "hash"}), config.category_rule, ODPS_ROLE)
    assert refused.value.transient is False
    assert wh.table not in [t.name for t in odps.list_tables()]  # nothing was created
