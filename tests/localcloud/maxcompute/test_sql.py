"""The local MaxCompute's SQL engine over the real store: the project's SQL files, MaxCompute's
statements, built-ins and the rules the service enforces (errors worded and numbered as its own)."""

from __future__ import annotations

import datetime
import threading
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from localcloud.maxcompute.errors import (
    NO_SUCH_TABLE, NOT_SUPPORTED, PARSE_ERROR, RUNTIME_ERROR, SEMANTIC_ERROR, TABLE_EXISTS, SqlError,
)
from localcloud.maxcompute.sql import SqlEngine
from localcloud.maxcompute.store import MaxComputeStore
from tests.pipeline.warehouse.digest import reference_digest_sums

SQL_DIR = Path(__file__).resolve().parents[3] / "sql"
DAY1, DAY2 = "20261201", "20261202"
# Day 1: ids 1..5 (3 twice); day 2: ids 3..8 (7 three times), so 1, 2 left and 6, 7, 8 came.
DAY1_ROWS = [(1, 10), (2, 10), (3, 11), (3, 11), (4, 12), (5, 12)]
DAY2_ROWS = [(3, 11), (4, 12), (5, 12), (6, 13), (7, 13), (7, 13), (7, 14), (8, 14)]


class RecordingStore(MaxComputeStore):
    """The real store, noting what the engine asks of it (which partitions, how many batches)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.snapshots: list[tuple[str, dict | None]] = []
        self.batches_written: list[int] = []

    def parquet_files(self, project, table, spec=None):
        self.snapshots.append((table, dict(spec) if spec else None))
        return super().parquet_files(project, table, spec)

    def write(self, project, table, spec, data, *, overwrite, create_partition=False):
        counted: list[int] = []

        def counting():
            for item in data:
                counted.append(item.num_rows)
                yield item

        rows = super().write(project, table, spec, counting(), overwrite=overwrite,
                             create_partition=create_partition)
        self.batches_written.append(len(counted))
        return rows


@pytest.fixture
def store(tmp_path) -> RecordingStore:
    s = RecordingStore(tmp_path)
    s.create_project("p")
    return s


@pytest.fixture
def engine(store) -> SqlEngine:
    return SqlEngine(store)


def sql_file(name: str, **values) -> str:
    defaults = {"table": "catalog", "previous_table": "catalog", "source_table": "catalog__staging", "ds": DAY2,
                "previous_ds": DAY1, "limit": 100, "ids": "1, 3, 7", "lifecycle": 30, "after_id": "CAST(NULL AS BIGINT)"}
    return (SQL_DIR / f"{name}.sql").read_text().format(**{**defaults, **values})


def values(rows: list[tuple[int, int]]) -> str:
    return ", ".join(f"({i}, '/img/{i}.jpg', {c}, 'e{i}')" for i, c in rows)


def load_catalog(engine: SqlEngine) -> SqlEngine:
    engine.execute("p", sql_file("create_catalog_table"))
    for ds, rows in ((DAY1, DAY1_ROWS), (DAY2, DAY2_ROWS)):
        engine.execute("p", f"INSERT OVERWRITE TABLE catalog PARTITION (ds='{ds}') VALUES {values(rows)}")
    return engine


@pytest.fixture
def catalog(engine) -> SqlEngine:
    return load_catalog(engine)


def rows_of(engine: SqlEngine, sql: str, **kwargs) -> list[tuple]:
    result = engine.execute("p", sql, **kwargs)
    return [tuple(r.values()) for r in result.table.to_pylist()]


def fails(engine: SqlEngine, sql: str, **kwargs) -> SqlError:
    with pytest.raises(SqlError) as caught:
        engine.execute("p", sql, **kwargs)
    return caught.value


# -- the project's SQL files ---------------------------------------------------------------------------

EXPECTED = {
    "duplicate_ids": [(7, 3)],
    "id_changes": [(3, 2)],
    "partition_stats": [(8, 6, *reference_digest_sums(i for i, _ in DAY2_ROWS))],
    "rows_by_id": [(3, "/img/3.jpg", 11, "e3"), (7, "/img/7.jpg", 13, "e7"), (7, "/img/7.jpg", 13, "e7"),
                   (7, "/img/7.jpg", 14, "e7")],
    "rows_per_category": [(11, 1), (12, 2), (13, 3), (14, 2)],
    "sample_new_rows": [(6, "/img/6.jpg", 13, "e6"), (7, "/img/7.jpg", 13, "e7"), (7, "/img/7.jpg", 13, "e7"),
                        (7, "/img/7.jpg", 14, "e7"), (8, "/img/8.jpg", 14, "e8")],
    "sample_rows": [(3, "/img/3.jpg", 11, "e3"), (4, "/img/4.jpg", 12, "e4"), (5, "/img/5.jpg", 12, "e5")],
    # added, removed, changed, unchanged, previous_without_etag, duplicated_ids (7 now, 3 before), the first
    "row_changes": [(3, 2, 0, 3, 0, 2, 3)],
    # id, source_image, cate_id, etag, reason, copies, previous_copies
    "row_delta": [(1, None, None, None, "removed", None, 1), (2, None, None, None, "removed", None, 1),
                  (6, "/img/6.jpg", 13, "e6", "added", 1, None), (7, "/img/7.jpg", 13, "e7", "added", 3, None),
                  (8, "/img/8.jpg", 14, "e8", "added", 1, None)],
}


def test_every_project_sql_file_is_covered() -> None:
    # add_etag_column: tests/localcloud/maxcompute/test_add_columns.py runs it over pyodps.
    assert {p.stem for p in SQL_DIR.glob("*.sql")} == {*EXPECTED, "create_catalog_table", "publish_partition",
                                                       "add_etag_column"}


def test_publishing_replaces_the_partition_with_the_staged_rows_with_the_full_scan_guard_on(store) -> None:
    engine = SqlEngine(store, allow_full_scan=False)
    load_catalog(engine)
    engine.execute("p", sql_file("create_catalog_table", table="catalog__staging", lifecycle=1))
    engine.execute("p", f"INSERT OVERWRITE TABLE catalog__staging PARTITION (ds='{DAY2}') VALUES {values([(9, 15)])}")
    engine.execute("p", sql_file("publish_partition"))
    assert rows_of(engine, f"SELECT id, cate_id FROM catalog WHERE ds = '{DAY2}'") == [(9, 15)]
    assert rows_of(engine, f"SELECT COUNT(*) FROM catalog WHERE ds = '{DAY1}'") == [(len(DAY1_ROWS),)]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_project_sql_file_runs_unchanged_with_the_full_scan_guard_on(store, name) -> None:
    engine = SqlEngine(store, allow_full_scan=False)
    load_catalog(engine)
    limit = 3 if name == "sample_rows" else 100
    got = rows_of(engine, sql_file(name, limit=limit))
    assert sorted(got) == sorted(EXPECTED[name]) if name == "rows_by_id" else got == EXPECTED[name]


def test_the_catalog_ddl_creates_the_table_pyodps_will_describe(catalog, store) -> None:
    meta = store.get_table("p", "catalog")
    assert [(c.name, c.type) for c in meta.columns] == [("id", "BIGINT"), ("source_image", "STRING"),
                                                        ("cate_id", "BIGINT"), ("etag", "STRING")]
    assert meta.columns[0].comment == "primary key of the image document"
    assert [(c.name, c.type, c.comment) for c in meta.partition_columns] == [
        ("ds", "STRING", "partition date YYYYMMDD")]
    assert meta.lifecycle == 30 and meta.comment.startswith("image catalog")
    assert catalog.execute("p", sql_file("create_catalog_table")).summary == "OK"   # IF NOT EXISTS


# -- DDL -----------------------------------------------------------------------------------------------

def test_create_table_twice_without_if_not_exists_fails(catalog) -> None:
    error = fails(catalog, "CREATE TABLE catalog (id BIGINT)")
    assert error.code == TABLE_EXISTS and "already exists" in error.message


def test_drop_table(catalog, store) -> None:
    catalog.execute("p", "DROP TABLE Catalog")
    assert not store.table_exists("p", "catalog")
    assert catalog.execute("p", "DROP TABLE IF EXISTS catalog").summary == "OK"
    error = fails(catalog, "DROP TABLE catalog")
    assert error.code == NO_SUCH_TABLE and "p.catalog cannot be resolved" in error.message


def test_partition_ddl(catalog, store) -> None:
    catalog.execute("p", "ALTER TABLE catalog ADD IF NOT EXISTS PARTITION (ds='20261203')")
    catalog.execute("p", "ALTER TABLE catalog ADD IF NOT EXISTS PARTITION (ds='20261203')")
    assert fails(catalog, "ALTER TABLE catalog ADD PARTITION (ds='20261203')").code == TABLE_EXISTS
    catalog.execute("p", "ALTER TABLE catalog PARTITION (ds='20261203') RENAME TO PARTITION (ds='20261209')")
    catalog.execute("p", f"ALTER TABLE catalog DROP PARTITION (ds='{DAY1}')")
    catalog.execute("p", f"ALTER TABLE catalog DROP IF EXISTS PARTITION (ds='{DAY1}')")
    assert [p.spec_text for p in store.list_partitions("p", "catalog")] == [f"ds={DAY2}", "ds=20261209"]
    error = fails(catalog, "ALTER TABLE catalog ADD PARTITION (day='1')")
    assert error.code == SEMANTIC_ERROR and "does not match the partition columns (ds)" in error.message


def test_create_table_as_select_and_like(catalog, store) -> None:
    result = catalog.execute("p", f"CREATE TABLE ids LIFECYCLE 7 AS SELECT DISTINCT id, cate_id * 2 AS c2 "
                                  f"FROM catalog WHERE ds = '{DAY1}'")
    assert result.outputs == {"p.ids": 5}
    meta = store.get_table("p", "ids")
    assert [(c.name, c.type) for c in meta.columns] == [("id", "BIGINT"), ("c2", "BIGINT")]
    assert meta.lifecycle == 7
    catalog.execute("p", "CREATE TABLE catalog2 LIKE catalog")
    assert store.get_table("p", "catalog2").partition_columns == store.get_table("p", "catalog").partition_columns


# -- DML -----------------------------------------------------------------------------------------------

def test_insert_overwrite_replaces_and_insert_into_appends(catalog) -> None:
    count = f"SELECT COUNT(*) FROM catalog WHERE ds = '{DAY1}'"
    catalog.execute("p", f"INSERT INTO TABLE catalog PARTITION (ds='{DAY1}') VALUES (100, 'x', 1, 'e100')")
    assert rows_of(catalog, count) == [(7,)]
    result = catalog.execute("p", f"INSERT OVERWRITE TABLE catalog PARTITION (ds='{DAY1}') "
                                  f"SELECT id, source_image, cate_id, etag FROM catalog WHERE ds = '{DAY2}' AND id > 6")
    assert result.outputs == {f"p.catalog/ds={DAY1}": 4} and f"p.catalog/ds={DAY1}: 4" in result.summary
    assert rows_of(catalog, count) == [(4,)]


def test_insert_creates_the_partition_and_converts_like_maxcompute(catalog) -> None:
    catalog.execute("p", "INSERT INTO catalog PARTITION (ds='20261205') (id, cate_id) VALUES ('9', 3)")
    assert rows_of(catalog, "SELECT * FROM catalog WHERE ds = '20261205'") == [(9, None, 3, None, "20261205")]
    error = fails(catalog, "INSERT INTO catalog PARTITION (ds='1') VALUES (1.5, 'x', 1, 'e')")
    assert error.code == SEMANTIC_ERROR
    assert "incompatible type DOUBLE with destination column id, which has type BIGINT" in error.message
    error = fails(catalog, "INSERT INTO catalog PARTITION (ds='1') SELECT 1, 'x'")
    assert error.code == SEMANTIC_ERROR and "number of columns" in error.message
    assert "specify the partition" in fails(catalog, "INSERT INTO catalog SELECT 1, 'x', 2, 'e'").message
    assert fails(catalog, "INSERT INTO catalog PARTITION (ds='1') VALUES ('a', 'x', 1, 'e')").code == RUNTIME_ERROR


def test_dynamic_partition_insert_writes_one_partition_per_value(catalog, store) -> None:
    catalog.execute("p", "CREATE TABLE by_cate (id BIGINT) PARTITIONED BY (ds STRING, cate STRING)")
    result = catalog.execute("p", f"INSERT OVERWRITE TABLE by_cate PARTITION (ds='{DAY2}', cate) "
                                  f"SELECT id, cate_id FROM catalog WHERE ds = '{DAY2}'")
    assert result.outputs == {f"p.by_cate/ds={DAY2}/cate={c}": n for c, n in   # paths, as the summary
                              (("11", 1), ("12", 2), ("13", 3), ("14", 2))}
    assert [p.spec_text for p in store.list_partitions("p", "by_cate")] == [
        f"ds={DAY2},cate={c}" for c in ("11", "12", "13", "14")]


def test_insert_streams_batches_to_the_store(catalog, store) -> None:
    store.create_table("p", "big", catalog.store.get_table("p", "catalog").columns)
    n = 200_000
    store.write("p", "big", None, [pa.table({"id": pa.array(range(n), pa.int64()),
                                              "source_image": pa.array(["s"] * n),
                                              "cate_id": pa.array([1] * n, pa.int64()),
                                              "etag": pa.array(["e"] * n)})], overwrite=True)
    store.batches_written.clear()
    result = catalog.execute("p", f"INSERT OVERWRITE TABLE catalog PARTITION (ds='x') SELECT * FROM big")
    assert result.outputs == {"p.catalog/ds=x": n}
    assert store.batches_written[0] > 1


# -- queries -------------------------------------------------------------------------------------------

def test_query_features(catalog) -> None:
    assert rows_of(catalog, f"""
        WITH d1 AS (SELECT id, cate_id FROM catalog WHERE ds = '{DAY1}'),
             d2 AS (SELECT DISTINCT id FROM catalog WHERE ds = '{DAY2}')
        SELECT d1.cate_id, COUNT(DISTINCT d1.id) AS ids,
               SUM(CASE WHEN d2.id IS NULL THEN 1 ELSE 0 END) AS gone
        FROM d1 LEFT OUTER JOIN d2 ON d1.id = d2.id
        WHERE d1.cate_id IN (10, 11, 12)
        GROUP BY d1.cate_id HAVING COUNT(*) >= 2
        ORDER BY gone DESC, cate_id LIMIT 5""") == [(10, 2, 2), (11, 1, 0), (12, 2, 0)]
    assert rows_of(catalog, f"""
        SELECT a.id FROM catalog a JOIN (SELECT id FROM catalog WHERE ds = '{DAY2}' AND cate_id = 13) b
        ON a.id = b.id WHERE a.ds = '{DAY1}'""") == []
    assert rows_of(catalog, f"""
        SELECT id FROM catalog WHERE ds = '{DAY1}' AND id < 3
        UNION ALL SELECT id FROM catalog WHERE ds = '{DAY2}' AND id > 7""") in ([(1,), (2,), (8,)],
                                                                                [(8,), (1,), (2,)])


def test_identifiers_are_case_insensitive_and_may_be_qualified_and_backquoted(catalog) -> None:
    got = rows_of(catalog, f"SELECT `ID`, C.Cate_Id FROM p.`CATALOG` c WHERE DS = '{DAY1}' AND Id = 1")
    assert got == [(1, 10)]
    assert catalog.execute("p", "SELECT ID FROM CATALOG WHERE DS = '1'").columns[0].name == "id"


def test_other_projects_resolve_by_qualified_name(catalog, store) -> None:
    store.create_project("q")
    store.create_table("q", "t", store.get_table("p", "catalog").columns)
    assert rows_of(catalog, "SELECT COUNT(*) FROM q.t") == [(0,)]
    error = fails(catalog, "SELECT * FROM q.nope")
    assert error.code == NO_SUCH_TABLE and "table q.nope cannot be resolved" in error.message


def test_result_types_are_maxcompute_types(catalog, store) -> None:
    catalog.execute("p", "CREATE TABLE typed (d DECIMAL(10,2), t DATETIME, b BOOLEAN, f DOUBLE)")
    catalog.execute("p", "INSERT INTO typed VALUES (1.25BD, CAST('2026-12-01 10:11:12' AS DATETIME), true, 2)")
    result = catalog.execute("p", "SELECT d, t, b, f, SUM(1) AS s, AVG(f) AS a, 1.5 AS x, 'y' AS y, NULL AS z "
                                  "FROM typed GROUP BY d, t, b, f")
    assert [c.type for c in result.columns] == ["DECIMAL(10,2)", "DATETIME", "BOOLEAN", "DOUBLE", "BIGINT",
                                                "DOUBLE", "DOUBLE", "STRING", "STRING"]
    assert result.table.schema.field("t").type == pa.timestamp("ms")
    assert result.table.to_pylist() == [{"d": Decimal("1.25"), "t": datetime.datetime(2026, 12, 1, 10, 11, 12),
                                         "b": True, "f": 2.0, "s": 1, "a": 2.0, "x": 1.5, "y": "y", "z": None}]
    assert catalog.execute("p", "SELECT 1").columns[0].type == "BIGINT"
    assert catalog.execute("p", "SET odps.sql.type.system.odps2=true; SELECT 1").columns[0].type == "INT"


@pytest.mark.parametrize("expression, expected", [
    (r"regexp_extract('foo123bar', '([a-z]+)(\\d+)')", "foo"),          # default group 1
    (r"regexp_extract('foo123bar', '([a-z]+)(\\d+)', 2)", "123"),
    (r"regexp_extract('foo123bar', '([a-z]+)(\\d+)', 0)", "foo123"),
    (r"regexp_extract('foobar', '(\\d+)')", None),                     # no match: NULL, not ''
    (r"regexp_replace('a1b22c', '\\d+', '#')", "a#b#c"),               # every match by default
    (r"regexp_replace('a1b22c', '\\d+', '#', 1)", "a#b22c"),
    (r"regexp_replace('abcd', '(.)', '\\1 ')", "a b c d "),
    (r"regexp_instr('abc123', '\\d')", 4),
    ("split_part('a,b,c,d', ',', 2)", "b"),
    ("split_part('a,b,c,d', ',', 2, 3)", "b,c"),                       # with end: the parts joined
    ("split_part('a,b,c,d', ',', 3, 10)", "c,d"),
    ("split_part('a,b,c,d', ',', 5)", ""),
    ("split_part('abc', '', 1)", "abc"),
    ("url_decode('%E7%A4%BA%E4%BE%8B%20for+url_decode%3A%2F%2F+%28fdsf%29')", "示例 for url_decode:// (fdsf)"),
    ("url_encode('示例for url_encode:// (fdsf)')", "%E7%A4%BA%E4%BE%8Bfor+url_encode%3A%2F%2F+%28fdsf%29"),
    ("url_encode('a*b~c')", "a*b%7Ec"),
    ("md5('hello')", "5d41402abc4b2a76b9719d911017c592"),
    ("concat('a', 'b', 'c')", "abc"),
    ("concat('a', NULL)", None),
    ("concat_ws(',', 'a', 'b')", "a,b"),
    ("concat_ws(',', 'a', NULL)", None),
    ("substr('hello', 2, 3)", "ell"),
    ("substr('hello', -3, 2)", "ll"),
    ("substring('hello', 2)", "ello"),
    ("length('héllo')", 5),
    ("lower('AbC') || upper('AbC') || trim('  x  ')", "abcABCx"),
    ("instr('hello', 'l')", 3),
    ("instr('hello', 'z')", 0),
    ("instr('hello', 'l', 4)", 4),
    ("to_char(CAST('2026-12-01 10:11:12' AS DATETIME), 'yyyymmdd')", "20261201"),
    ("to_char(CAST('2026-12-01 10:11:12' AS DATETIME), 'yyyy-mm-dd hh:mi:ss')", "2026-12-01 10:11:12"),
    ("to_char(123)", "123"),
    ("CAST(-1.7 AS BIGINT)", -1),                                        # truncates, as Java does
    ("CAST('12' AS BIGINT) + 1", 13),
    ("CAST(12 AS STRING)", "12"),
    ("nvl(NULL, 'x')", "x"),
    ("coalesce(NULL, NULL, 2)", 2),
    ("if(1 > 2, 'y', 'n')", "n"),
    ("abs(-3)", 3),
    ("floor(2.7)", 2),
    ("round(2.567, 2)", 2.57),
    ("conv('255', 10, 16)", "FF"),
    ("conv('ff', 16, 10)", "255"),
    ("to_date('20261201', 'yyyymmdd')", datetime.datetime(2026, 12, 1)),
    ("dateadd(CAST('2026-01-31 00:00:00' AS DATETIME), 1, 'mm')", datetime.datetime(2026, 2, 28)),
    ("dateadd('2026-12-01 00:00:00', -1, 'dd')", datetime.datetime(2026, 11, 30)),
    ("datediff('2026-12-03 00:00:00', '2026-12-01 23:00:00', 'dd')", 2),
    ("datediff('2026-12-03 00:00:00', '2026-12-01 23:00:00', 'hh')", 25),
    ("getdate() IS NOT NULL", True),
    ("10 / 4", 2.5),
    ("CASE WHEN 2 IN (1, 2) THEN 'in' ELSE 'out' END", "in"),
])
def test_builtins_have_maxcompute_semantics(engine, expression, expected) -> None:
    assert rows_of(engine, f"SELECT {expression}") == [(expected,)]


def test_builtins_the_local_server_cannot_match_are_refused_by_name(engine) -> None:
    error = fails(engine, "SELECT hash('a')")
    assert error.code == NOT_SUPPORTED and "function HASH is not supported" in error.message
    assert "REGEXP_REPLACE with occurrence > 1" in fails(engine, "SELECT regexp_replace('a', 'a', 'b', 2)").message
    error = fails(engine, "SELECT regexp_extract('a', '(?=a)')")   # Java lookahead: RE2 has none
    assert error.code == RUNTIME_ERROR


# -- MaxCompute's rules --------------------------------------------------------------------------------

def test_order_by_needs_a_limit_unless_the_flag_says_otherwise(catalog) -> None:
    sql = f"SELECT id FROM catalog WHERE ds = '{DAY1}' ORDER BY id"
    error = fails(catalog, sql)
    assert error.code == SEMANTIC_ERROR
    assert error.message == ("[1,55] Semantic analysis exception - ORDER BY must be used with a LIMIT clause, "
                             "please set odps.sql.validate.orderby.limit=false to use it")
    assert fails(catalog, f"SELECT * FROM (SELECT id FROM catalog WHERE ds='1' ORDER BY id) t LIMIT 1").code == SEMANTIC_ERROR
    assert len(rows_of(catalog, f"SET odps.sql.validate.orderby.limit=false;\n{sql}")) == 6
    assert len(rows_of(catalog, sql, settings={"odps.sql.validate.orderby.limit": "false"})) == 6


def test_full_scan_of_a_partitioned_table_is_refused_when_the_project_says_so(store) -> None:
    engine = SqlEngine(store, allow_full_scan=False)
    load_catalog(engine)
    for sql in ("SELECT COUNT(*) FROM catalog",
                f"SELECT * FROM (SELECT id FROM catalog WHERE id > 1) t",
                f"SELECT a.id FROM catalog a JOIN catalog b ON a.id = b.id WHERE a.ds = '{DAY1}'",
                f"SELECT id FROM catalog WHERE ds = '{DAY1}' OR id = 1"):
        error = fails(engine, sql)
        assert error.code == SEMANTIC_ERROR, sql
        assert error.message.endswith("Semantic analysis exception - Table(p,catalog) is full scan with all "
                                      "partitions, please specify partition predicates."), sql
    assert fails(engine, "SELECT COUNT(*) FROM\n  catalog").message.startswith("[2,3] ")
    assert rows_of(engine, "SET odps.sql.allow.fullscan=true; SELECT COUNT(*) FROM catalog") == [(14,)]
    assert rows_of(engine, "SELECT COUNT(*) FROM catalog", settings={"odps.sql.allow.fullscan": "true"}) == [(14,)]
    assert rows_of(engine, f"SELECT COUNT(*) FROM (SELECT * FROM catalog) t WHERE t.ds = '{DAY2}'") == [(8,)]
    assert rows_of(engine, f"SELECT COUNT(*) FROM catalog a JOIN catalog b ON a.id = b.id AND b.ds = '{DAY2}' "
                           f"WHERE a.ds = '{DAY1}'") == [(4,)]


def test_partition_predicates_prune_what_is_read(catalog, store) -> None:
    catalog.execute("p", "INSERT INTO catalog PARTITION (ds='20261203') VALUES (1, 'x', 1, 'e1')")

    def read(sql: str) -> list[str]:
        return catalog.execute("p", sql).inputs

    assert read(f"SELECT * FROM catalog WHERE ds = '{DAY2}'") == [f"p.catalog/ds={DAY2}"]
    assert store.snapshots[-1] == ("catalog", {"ds": DAY2})   # only that partition's files are listed
    assert read(f"SELECT * FROM catalog WHERE ds >= '{DAY2}' AND id > 0") == [f"p.catalog/ds={DAY2}",
                                                                            "p.catalog/ds=20261203"]
    assert read(f"SELECT * FROM catalog WHERE ds IN ('{DAY1}', '20261203')") == [f"p.catalog/ds={DAY1}",
                                                                               "p.catalog/ds=20261203"]
    assert read("SELECT * FROM catalog WHERE substr(ds, 7, 2) = '03'") == ["p.catalog/ds=20261203"]
    assert read("SELECT * FROM catalog WHERE ds = 'nope'") == []
    assert len(read("SELECT * FROM catalog")) == 3


def test_pruning_never_changes_an_outer_join_result(catalog) -> None:
    # WHERE on the NULL-extended side of a LEFT JOIN must not prune it: pruning b to day 2 would turn
    # ids 1 and 2 (matched in day 1 only) into NULL-extended rows that `b.ds IS NULL` then keeps.
    sql = (f"SELECT COUNT(*) FROM catalog a LEFT JOIN catalog b ON a.id = b.id "
           f"WHERE a.ds = '{DAY1}' AND (b.ds = '{DAY2}' OR b.ds IS NULL)")
    result = catalog.execute("p", sql)
    assert result.table.to_pylist() == [{"_c0": 4}]   # 3, 3, 4, 5 match in day 2


def test_errors_are_numbered_and_placed_like_the_service(catalog) -> None:
    error = fails(catalog, "SELECT id FROM\n  catalog WHERE ds = '1' AND nope = 1")
    assert (error.code, error.message) == (SEMANTIC_ERROR, "[2,30] Semantic analysis exception - column nope cannot be resolved")
    error = fails(catalog, "SELECT * FROM missing")
    assert error.task_result == "ODPS-0130131:[1,15] Table not found - table p.missing cannot be resolved"
    error = fails(catalog, "SELECT id FROM catalog WHERE")
    assert error.code == PARSE_ERROR and error.message.startswith("[1,24] Parse exception - invalid token 'WHERE'")
    error = fails(catalog, "CREATE TABLE t (a BIGINT) STORED BY 'x' FOO")
    assert error.code == PARSE_ERROR and error.message.startswith("[1,") and "Parse exception" in error.message


@pytest.mark.parametrize("sql, what", [
    ("CREATE FUNCTION f AS 'x' USING 'y.jar'", "CREATE FUNCTION"),
    ("MERGE INTO catalog USING catalog b ON catalog.id = b.id WHEN MATCHED THEN DELETE", "MERGE"),
    ("UPDATE catalog SET id = 1 WHERE ds = '1'", "UPDATE"),
    ("DELETE FROM catalog WHERE ds = '1'", "DELETE"),
    ("CREATE VIEW v AS SELECT 1", "CREATE VIEW"),
    ("SHOW TABLES", "SHOW"),
])
def test_unsupported_statements_are_refused_by_name(catalog, sql, what) -> None:
    error = fails(catalog, sql)
    assert error.code == NOT_SUPPORTED and what in error.message


def test_a_task_runs_one_statement_unless_in_script_mode(catalog) -> None:
    script = "CREATE TABLE a (x BIGINT); INSERT INTO a VALUES (1); SELECT x FROM a"
    error = fails(catalog, script)
    assert error.code == PARSE_ERROR and "odps.sql.submit.mode=script" in error.message
    assert rows_of(catalog, f"SET odps.sql.submit.mode=script; {script};") == [(1,)]
    assert rows_of(catalog, "-- just a comment; with a semicolon\nSELECT 'a;b' AS s -- trailing\n;") == [("a;b",)]


def test_concurrent_executes_do_not_share_state(catalog) -> None:
    results: dict[int, object] = {}

    def worker(i: int) -> None:
        try:
            ds = DAY1 if i % 2 else DAY2
            results[i] = rows_of(catalog, f"SELECT COUNT(*) FROM catalog WHERE ds = '{ds}'")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [(6,)] if i % 2 else [(8,)] for i in range(12)}


def test_the_ddl_pyodps_generates_runs(engine, store) -> None:
    from odps.models import Table, TableSchema
    from odps.types import Column as OdpsColumn, Partition

    schema = TableSchema(columns=[OdpsColumn("id", "bigint", comment="it's the key"),
                                  OdpsColumn("name", "string")],
                         partitions=[Partition("ds", "string", comment="day")])
    engine.execute("p", Table.gen_create_table_sql("t", schema, comment="c", if_not_exists=True,
                                                   lifecycle=5, project="p"))
    meta = store.get_table("p", "t")
    assert (meta.columns[0].comment, meta.partition_columns[0].comment, meta.lifecycle) == ("it's the key", "day", 5)
    engine.execute("p", "ALTER TABLE p.`t` ADD IF NOT EXISTS PARTITION (ds='1')")
    engine.execute("p", "INSERT INTO p.t PARTITION (ds='1') VALUES (1, 'a')")
    engine.execute("p", "TRUNCATE TABLE p.`t` PARTITION (ds='1')")
    assert rows_of(engine, "SELECT COUNT(*) FROM t WHERE ds = '1'") == [(0,)]
    assert "needs a PARTITION" in fails(engine, "TRUNCATE TABLE t").message
    engine.execute("p", "ALTER TABLE p.`t` DROP IF EXISTS PARTITION (ds='1')")
    engine.execute("p", "DROP TABLE IF EXISTS p.`t`")
    assert not store.table_exists("p", "t")


def test_an_unknown_function_is_named_where_it_is_called(engine) -> None:
    error = fails(engine, "SELECT 1,\n  no_such_fn(2)")
    assert (error.code, error.message) == (SEMANTIC_ERROR, "[2,3] Semantic analysis exception - function "
                                                           "no_such_fn cannot be resolved")


def test_a_bigint_partition_column_is_typed_and_pruned_by_value(engine) -> None:
    engine.execute("p", "CREATE TABLE hourly (v STRING) PARTITIONED BY (hh BIGINT)")
    for hh in (1, 2, 10):
        engine.execute("p", f"INSERT INTO hourly PARTITION (hh={hh}) VALUES ('h{hh}')")
    result = engine.execute("p", "SELECT v, hh FROM hourly WHERE hh >= 2")
    assert [c.type for c in result.columns] == ["STRING", "BIGINT"]
    assert sorted(result.table.to_pylist(), key=lambda r: r["hh"]) == [{"v": "h2", "hh": 2}, {"v": "h10", "hh": 10}]
    assert result.inputs == ["p.hourly/hh=10", "p.hourly/hh=2"]   # compared as numbers, not as text
