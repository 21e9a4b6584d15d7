"""OSS external tables through pyodps on the wire: gzip CSV files (the Bucket Inventory's shape) uploaded
to a local OSS with oss2, read by the local MaxCompute as the role the table names, over HTTP."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import secrets
from urllib.parse import quote, unquote_plus

import oss2
import pytest
from odps import ODPS
from odps.errors import ODPSError

from localcloud.maxcompute.server import LocalMaxComputeServer
from localcloud.oss.server import Credential, LocalOssServer
from localcloud.ram import ServiceRoles, TokenAuthority
from tests.localcloud.maxcompute.conftest import ACCESS_KEY_ID, ACCESS_KEY_SECRET, PROJECT, REGION

ACCOUNT = "1000000000000001"
ODPS_ROLE = f"acs:ram::{ACCOUNT}:role/aliyunodpsdefaultrole"     # trusts odps.aliyuncs.com
WORKER_ROLE = f"acs:ram::{ACCOUNT}:role/image-index"             # exists, but does not trust MaxCompute
INTERNAL = f"oss-{REGION}-internal.aliyuncs.com"
BUCKET = "inventory-dst"
INVENTORY = "dst/images/daily/data/"
COLUMNS = "src STRING, k STRING, size BIGINT, modified STRING, etag STRING, storage STRING, multipart STRING, encrypted STRING"
KEYS = [
    "p/a b.jpg",             # a space
    "p/c+d.jpg",             # a literal plus: the inventory writes %2B, URL_DECODE must not turn it into a space
    "p/x%2Fy.jpg",           # a percent sign in the key itself
    "cat/日本/图片.png",       # unicode
    "cat/emoji/😀🎉.webp",     # 4-byte UTF-8
    "deep/" + "k" * (1023 - len("deep/") - len(".jpg")) + ".jpg",   # OSS's longest key: 1023 bytes
    'q/with "quotes", and comma.jpg',
]


def inventory_line(key: str, size: int = 1234) -> str:
    """One Bucket Inventory row: every field quoted, the Key URL-encoded (UTF-8; '/' as %2F)."""
    fields = ["src-bucket", quote(key, safe=""), str(size), "2026-11-30T16:00:00.000Z",
              '"5B3C1A2E053D763E1B002CC607C5A0FE"', "Standard", "false", "false"]
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(fields)
    return out.getvalue()


@pytest.fixture(scope="module")
def authority() -> TokenAuthority:
    return TokenAuthority(secrets.token_bytes(32))


@pytest.fixture(scope="module")
def oss_server(tmp_path_factory, authority):
    root = tmp_path_factory.mktemp("oss")
    (root / BUCKET).mkdir()
    with LocalOssServer(root, [Credential(ACCESS_KEY_ID, ACCESS_KEY_SECRET)], region=REGION,
                        authority=authority) as running:
        yield running


@pytest.fixture(scope="module")
def bucket(oss_server) -> oss2.Bucket:
    return oss2.Bucket(oss2.AuthV4(ACCESS_KEY_ID, ACCESS_KEY_SECRET), oss_server.endpoint, BUCKET, region=REGION)


@pytest.fixture(scope="module")
def server(tmp_path_factory, authority, oss_server):
    roles = ServiceRoles(authority, {ODPS_ROLE: 3600}, [WORKER_ROLE])
    with LocalMaxComputeServer(tmp_path_factory.mktemp("maxcompute"), {ACCESS_KEY_ID: ACCESS_KEY_SECRET},
                               projects=[PROJECT], region=REGION, authority=authority, assume_role=roles.assume,
                               oss_endpoints={INTERNAL: oss_server.endpoint}) as running:
        yield running


@pytest.fixture
def odps(server) -> ODPS:
    return ODPS(ACCESS_KEY_ID, ACCESS_KEY_SECRET, project=PROJECT, endpoint=server.endpoint, region_name=REGION)


def ddl(name: str, prefix: str = INVENTORY, role: str = ODPS_ROLE, extra: str = "", location: str | None = None) -> str:
    return (f"CREATE EXTERNAL TABLE IF NOT EXISTS {name} ({COLUMNS}) STORED BY 'com.aliyun.odps.CsvStorageHandler' "
            f"WITH SERDEPROPERTIES ('odps.properties.rolearn'='{role}', 'odps.text.option.gzip.input.enabled'='true', "
            f"'odps.text.option.use.quote'='true'{extra}) "
            f"LOCATION '{location or f'oss://{INTERNAL}/{BUCKET}/{prefix}'}' LIFECYCLE 7")


def put_inventory(bucket: oss2.Bucket, prefix: str, keys: list[str], files: int = 2) -> None:
    for i in range(files):
        lines = "".join(inventory_line(k, n) for n, k in enumerate(keys) if n % files == i)
        bucket.put_object(f"{prefix}{i:04d}-0000-4000-8000-000000000000.csv.gz", gzip.compress(lines.encode()))


def rows(odps: ODPS, sql: str) -> list[list]:
    with odps.execute_sql(sql).open_reader() as reader:
        return [list(r.values) for r in reader]


@pytest.fixture(scope="module")
def inventory(bucket, server):
    put_inventory(bucket, INVENTORY, KEYS)
    bucket.put_object(INVENTORY + "later/0001.csv.gz", gzip.compress(inventory_line("sub/folder.jpg", 9).encode()))
    bucket.put_object(INVENTORY + "empty-folder/", b"")   # a folder marker: no rows
    return KEYS + ["sub/folder.jpg"]


def test_the_table_shows_in_pyodps_as_external(odps, inventory):
    odps.execute_sql(ddl("inv_meta"))
    table = odps.get_table("inv_meta")
    assert table.type == table.Type.EXTERNAL_TABLE
    assert [c.name for c in table.table_schema.columns] == ["src", "k", "size", "modified", "etag", "storage",
                                                            "multipart", "encrypted"]
    assert table.location == f"oss://{INTERNAL}/{BUCKET}/{INVENTORY}"
    assert table.storage_handler == "com.aliyun.odps.CsvStorageHandler"
    assert table.serde_properties["odps.properties.rolearn"] == ODPS_ROLE
    assert table.lifecycle == 7
    assert "STORED BY 'com.aliyun.odps.CsvStorageHandler'" in table.get_ddl()
    odps.execute_sql("DROP TABLE inv_meta")
    assert not odps.exist_table("inv_meta")


def test_select_reads_every_object_under_the_location_sub_folders_included(odps, inventory):
    odps.execute_sql(ddl("inv_all"))
    got = rows(odps, "SELECT URL_DECODE(k) AS key, size FROM inv_all")
    assert sorted(r[0] for r in got) == sorted(inventory)
    assert {r[0]: r[1] for r in got}["sub/folder.jpg"] == 9
    assert all(isinstance(r[1], int) for r in got)


def test_insert_overwrite_a_partition_derived_with_sql(odps, inventory):
    odps.execute_sql(ddl("inv_derive"))
    odps.execute_sql("CREATE TABLE IF NOT EXISTS catalog_staging (id STRING, source_image STRING, category STRING, "
                     "file_name STRING, bytes BIGINT) PARTITIONED BY (ds STRING)")
    odps.execute_sql(
        "INSERT OVERWRITE TABLE catalog_staging PARTITION (ds='20261201') "
        "SELECT MD5(URL_DECODE(k)), CONCAT('/', URL_DECODE(k)), SPLIT_PART(URL_DECODE(k), '/', 1), "
        "REGEXP_EXTRACT(URL_DECODE(k), '([^/]+)$', 1), size FROM inv_derive "
        "WHERE REGEXP_EXTRACT(URL_DECODE(k), '\\\\.(jpg|png|webp)$', 1) IS NOT NULL")
    got = {r[1]: r for r in rows(odps, "SELECT * FROM catalog_staging WHERE ds='20261201'")}
    assert set(got) == {"/" + k for k in inventory}
    emoji = got["/cat/emoji/😀🎉.webp"]
    assert emoji[0] == hashlib.md5("cat/emoji/😀🎉.webp".encode()).hexdigest()
    assert emoji[2:4] == ["cat", "😀🎉.webp"]
    assert got["/p/c+d.jpg"][3] == "c+d.jpg"            # %2B decodes to '+', never to a space
    assert got["/p/x%2Fy.jpg"][3] == "x%2Fy.jpg"        # %252F decodes once, to the key's own '%2F'
    assert len(next(k for k in got if k.startswith("/deep/")).encode()) == 1024


def test_url_decode_is_form_decoding():
    # What the inventory's encoding relies on: Java's URLDecoder, so '+' is a space and %2B a plus.
    assert unquote_plus(quote("c+d e", safe="")) == "c+d e"


def test_a_role_maxcompute_may_not_assume_fails_the_query(odps, inventory):
    odps.execute_sql(ddl("inv_worker_role", role=WORKER_ROLE))
    with pytest.raises(ODPSError, match="NoPermission"):
        odps.execute_sql("SELECT * FROM inv_worker_role")
    odps.execute_sql(ddl("inv_no_role", role=f"acs:ram::{ACCOUNT}:role/nobody"))
    with pytest.raises(ODPSError, match="EntityNotExist.Role"):
        odps.execute_sql("SELECT * FROM inv_no_role")


def test_a_corrupt_gzip_fails_the_query(odps, bucket):
    bucket.put_object("corrupt/0.csv.gz", b"\x1f\x8b\x08\x00not really gzip at all")
    odps.execute_sql(ddl("inv_corrupt", prefix="corrupt/"))
    with pytest.raises(ODPSError, match="ODPS-0123131"):
        odps.execute_sql("SELECT * FROM inv_corrupt")


def test_a_missing_bucket_fails_and_an_empty_folder_reads_nothing(odps):
    odps.execute_sql(ddl("inv_nobucket", location=f"oss://{INTERNAL}/no-such-bucket/x/"))
    with pytest.raises(ODPSError, match="NoSuchBucket"):
        odps.execute_sql("SELECT * FROM inv_nobucket")
    odps.execute_sql(ddl("inv_empty", prefix="nothing-here/"))
    assert rows(odps, "SELECT COUNT(*) FROM inv_empty") == [[0]]


def test_rows_are_parsed_as_the_csv_handler_does(odps, bucket):
    body = ('"h1","h2","h3"\n'                   # a header line, skipped
            '"a ""quoted"" word","line\nbreak","1"\n'
            '\n'                                 # a blank line, ignored
            '"","x","2"\n'                       # the default null indicator is the empty string
            '"NULL","y",""\n')
    bucket.put_object("parse/0.csv", body.encode())
    odps.execute_sql("CREATE EXTERNAL TABLE parse_t (a STRING, b STRING, n BIGINT) "
                     "STORED BY 'com.aliyun.odps.CsvStorageHandler' WITH SERDEPROPERTIES ("
                     f"'odps.properties.rolearn'='{ODPS_ROLE}', 'odps.text.option.use.quote'='true', "
                     "'odps.text.option.header.lines.count'='1') "
                     f"LOCATION 'oss://{INTERNAL}/{BUCKET}/parse/'")
    assert rows(odps, "SELECT a, b, n FROM parse_t") == [
        ['a "quoted" word', "line\nbreak", 1], [None, "x", 2], ["NULL", "y", None]]


def test_without_use_quote_a_quote_is_an_ordinary_character(odps, bucket):
    bucket.put_object("noquote/0.csv", b'"a","1"\n')
    odps.execute_sql("CREATE EXTERNAL TABLE noquote_t (a STRING, b STRING) "
                     "STORED BY 'com.aliyun.odps.CsvStorageHandler' WITH SERDEPROPERTIES ("
                     f"'odps.properties.rolearn'='{ODPS_ROLE}') LOCATION 'oss://{INTERNAL}/{BUCKET}/noquote/'")
    assert rows(odps, "SELECT a, b FROM noquote_t") == [['"a"', '"1"']]


def test_a_bad_row_fails_the_query(odps, bucket):
    bucket.put_object("badrow/0.csv", b'"a","1"\n"b"\n')
    bucket.put_object("badint/0.csv", b'"a","12x"\n')
    for name, folder in (("badrow_t", "badrow"), ("badint_t", "badint")):
        odps.execute_sql(f"CREATE EXTERNAL TABLE {name} (a STRING, n BIGINT) "
                         "STORED BY 'com.aliyun.odps.CsvStorageHandler' WITH SERDEPROPERTIES ("
                         f"'odps.properties.rolearn'='{ODPS_ROLE}', 'odps.text.option.use.quote'='true') "
                         f"LOCATION 'oss://{INTERNAL}/{BUCKET}/{folder}/'")
    with pytest.raises(ODPSError, match="SCHEMA MISMATCH"):
        odps.execute_sql("SELECT * FROM badrow_t")
    with pytest.raises(ODPSError, match="'12x' of column n .* not a valid BIGINT"):
        odps.execute_sql("SELECT * FROM badint_t")


def test_partitioned_external_tables_read_the_partition_folders(odps, bucket):
    bucket.put_object("parted/ds=20261201/0.csv", b"a,1\n")
    bucket.put_object("parted/ds=20261202/0.csv", b"b,2\nc,3\n")
    odps.execute_sql("CREATE EXTERNAL TABLE parted_t (a STRING, n BIGINT) PARTITIONED BY (ds STRING) "
                     "STORED BY 'com.aliyun.odps.CsvStorageHandler' WITH SERDEPROPERTIES ("
                     f"'odps.properties.rolearn'='{ODPS_ROLE}') LOCATION 'oss://{INTERNAL}/{BUCKET}/parted/'")
    odps.execute_sql("ALTER TABLE parted_t ADD PARTITION (ds='20261202')")
    assert rows(odps, "SELECT a, n FROM parted_t WHERE ds='20261202'") == [["b", 2], ["c", 3]]
    assert rows(odps, "SELECT a FROM parted_t WHERE ds='20261201'") == []   # never added


@pytest.mark.parametrize("clause, refused", [
    ("STORED BY 'com.example.MyHandler'", "storage handler 'com.example.MyHandler'"),
    ("STORED AS PARQUET", "STORED AS PARQUET"),
    ("ROW FORMAT SERDE 'org.apache.hadoop.hive.serde2.OpenCSVSerde' STORED AS TEXTFILE", "ROW FORMAT SERDE"),
    (f"STORED BY 'com.aliyun.odps.CsvStorageHandler' WITH SERDEPROPERTIES ('odps.properties.rolearn'='{ODPS_ROLE}',"
     " 'odps.text.option.smart.parse.level'='naive')", "'odps.text.option.smart.parse.level'"),
    (f"STORED BY 'com.aliyun.odps.CsvStorageHandler' WITH SERDEPROPERTIES ('odps.properties.rolearn'='{ODPS_ROLE}',"
     " 'odps.text.option.encoding'='GBK')", "odps.text.option.encoding=GBK"),
    ("STORED BY 'com.aliyun.odps.CsvStorageHandler'", "'odps.properties.rolearn' is required"),
])
def test_what_is_not_supported_is_refused_by_name(odps, clause, refused):
    with pytest.raises(ODPSError, match="ODPS-0130071") as error:
        odps.execute_sql(f"CREATE EXTERNAL TABLE refused_t (a STRING) {clause} LOCATION 'oss://{INTERNAL}/{BUCKET}/x/'")
    assert refused in str(error.value)


@pytest.mark.parametrize("location", ["http://b.oss-cn-hangzhou-internal.aliyuncs.com/d/", "oss://oss://x.com/b/d/",
                                      "oss://Bad_Bucket/d/"])
def test_a_location_that_is_no_oss_directory_is_refused(odps, location):
    with pytest.raises(ODPSError, match="invalid location"):
        odps.execute_sql(f"CREATE EXTERNAL TABLE badloc_t (a STRING) STORED BY 'com.aliyun.odps.CsvStorageHandler' "
                         f"WITH SERDEPROPERTIES ('odps.properties.rolearn'='{ODPS_ROLE}') LOCATION '{location}'")


def test_external_tables_are_read_only_locally(odps, inventory):
    odps.execute_sql(ddl("inv_ro"))
    with pytest.raises(ODPSError, match="writing to the external table"):
        odps.execute_sql("INSERT OVERWRITE TABLE inv_ro SELECT * FROM inv_ro")
    with pytest.raises(ODPSError, match="external table"):
        with odps.get_table("inv_ro").open_reader() as reader:
            list(reader)
