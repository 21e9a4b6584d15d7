"""pipeline.sql: the loader validates every value it splices in, and the stats SQL runs on DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipeline.sql import SQL_DIR_ENV, load_sql, sql_dir
from tests.pipeline.warehouse.digest import reference_digest_sums

STATS_QUERIES = ("partition_stats", "rows_per_category", "duplicate_ids")


def test_default_dir_is_the_repo_sql_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SQL_DIR_ENV, raising=False)
    assert sql_dir() == Path(__file__).resolve().parents[2] / "sql"
    for name in ("create_catalog_table", *STATS_QUERIES):
        assert (sql_dir() / f"{name}.sql").is_file()


def test_ddl_is_filled_in() -> None:
    ddl = load_sql("create_catalog_table", table="image_catalog", lifecycle=30)
    assert "CREATE TABLE IF NOT EXISTS image_catalog (" in ddl
    assert "LIFECYCLE 30;" in ddl
    assert "PARTITIONED BY (ds STRING COMMENT 'partition date YYYYMMDD')" in ddl
    assert "source_image STRING COMMENT 'OSS path of the image, / + key," in ddl
    assert "etag STRING COMMENT 'ETag of the image object without quotes" in ddl
    assert "{" not in ddl


def _column_lines(sql: str) -> list[str]:
    return [line.strip().rstrip(",") for line in sql.splitlines() if line.startswith("    ")]


def test_the_etag_column_is_added_to_old_tables_exactly_as_new_tables_declare_it() -> None:
    """A table created before the column existed must end up as a new one: same name, type and comment,
    after the other columns (ADD COLUMNS appends)."""
    ddl = _column_lines(load_sql("create_catalog_table", table="t", lifecycle=1))
    alter = load_sql("add_etag_column", table="image_catalog")
    assert alter.strip().splitlines()[-3:] == ["ALTER TABLE image_catalog ADD COLUMNS (", f"    {ddl[-1]}", ");"]
    assert ddl[-1].startswith("etag STRING COMMENT '") and [line.split()[0] for line in ddl] == [
        "id", "source_image", "cate_id", "etag"]


@pytest.mark.parametrize("name", ["publish_partition", "sample_rows", "rows_by_id", "sample_new_rows"])
def test_sql_that_copies_or_returns_rows_names_every_catalog_column(name: str) -> None:
    from pipeline.schema import CATALOG_SCHEMA

    sql = load_sql(name, table="t", source_table="s", ds="20261123", previous_ds="20261122", limit=5, ids=[1])
    select = sql.split("SELECT", 1)[1].split("FROM", 1)[0]
    assert [column.strip().split(".")[-1] for column in select.split(",")] == CATALOG_SCHEMA.names


@pytest.mark.parametrize("name", STATS_QUERIES)
def test_stats_queries_filter_one_partition(name: str) -> None:
    sql = load_sql(name, table="image_catalog", ds="20261123")
    assert "FROM image_catalog" in sql and "WHERE ds = '20261123'" in sql
    if "ORDER BY" in sql:  # MaxCompute refuses ORDER BY without LIMIT
        assert "LIMIT" in sql.split("ORDER BY", 1)[1]


@pytest.mark.parametrize(
    "params",
    [
        {"table": "t; DROP TABLE x", "ds": "20261123"},
        {"table": "proj.table", "ds": "20261123"},
        {"table": "1abc", "ds": "20261123"},
        {"table": "a" * 129, "ds": "20261123"},
        {"table": "t", "ds": "2026-11-23"},
        {"table": "t", "ds": "20261123' OR '1'='1"},
        {"table": "t", "ds": 20261123},
        {"table": "t", "ds": "20261123", "ids": ["1); DROP TABLE x; --"], "limit": 1},
        {"table": "t", "ds": "20261123", "ids": [], "limit": 1},
        {"table": "t", "ds": "20261123", "ids": [True], "limit": 1},
        {"table": "t", "ds": "20261123", "ids": list(range(1001)), "limit": 1},
    ],
)
def test_bad_values_are_refused(params: dict) -> None:
    with pytest.raises(ValueError):
        load_sql("partition_stats", **params)


@pytest.mark.parametrize("lifecycle", [0, -1, True, "30", 1.5])
def test_bad_lifecycle_is_refused(lifecycle: object) -> None:
    with pytest.raises(ValueError, match="lifecycle"):
        load_sql("create_catalog_table", table="t", lifecycle=lifecycle)


def test_missing_and_unknown_parameters() -> None:
    with pytest.raises(ValueError, match=r"\['ds'\]"):
        load_sql("partition_stats", table="t")
    with pytest.raises(TypeError, match="unknown"):
        load_sql("partition_stats", table="t", ds="20261123", where="1=1")
    with pytest.raises(ValueError, match="bare name"):
        load_sql("../etc/passwd")


def test_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "q.sql").write_text("SELECT * FROM {table} WHERE ds = '{ds}' AND x = '{ds}'")
    monkeypatch.setenv(SQL_DIR_ENV, str(tmp_path))
    assert load_sql("q", table="t", ds="20260101") == "SELECT * FROM t WHERE ds = '20260101' AND x = '20260101'"
    with pytest.raises(FileNotFoundError, match=SQL_DIR_ENV):
        load_sql("partition_stats", table="t", ds="20260101")


def test_stats_queries_run_on_duckdb() -> None:
    """The very files MaxCompute runs also run on DuckDB (the local warehouse relies on it)."""
    from pipeline.warehouse.local import MAXCOMPUTE_BUILTINS

    con = duckdb.connect(":memory:")
    try:
        con.execute(MAXCOMPUTE_BUILTINS)  # CONV, the one MaxCompute built-in the files use that DuckDB lacks
        con.execute(
            "CREATE TABLE image_catalog AS SELECT * FROM (VALUES "
            "(1, '/a.png', 10, '20261123'), (2, '/b.png', 10, '20261123'), (2, '/b2.png', 11, '20261123'), "
            "(3, '/c.png', 11, '20261123'), (3, '/c.png', 11, '20261123'), (3, '/c.png', 11, '20261123'), "
            "(9, '/z.png', 99, '20261122')) AS t(id, source_image, cate_id, ds)"
        )
        q = {n: load_sql(n, table="image_catalog", ds="20261123") for n in STATS_QUERIES}
        assert con.execute(q["partition_stats"]).fetchall() == [(6, 3, *reference_digest_sums([1, 2, 3]))]
        assert con.execute(q["rows_per_category"]).fetchall() == [(10, 2), (11, 4)]
        assert con.execute(q["duplicate_ids"]).fetchall() == [(3, 3), (2, 2)]
    finally:
        con.close()


@pytest.mark.parametrize(("after_id", "text"), [(None, "CAST(NULL AS BIGINT)"), (0, "0"), (-5, "-5"),
                                                (2**63 - 1, "9223372036854775807")])
def test_a_delta_page_starts_after_an_id_or_at_the_smallest(after_id, text: str) -> None:
    sql = load_sql("row_delta", table="t", previous_table="p", ds="20261123", previous_ds="20261122",
                   after_id=after_id, limit=10)
    assert sql.count(f"({text} IS NULL OR id > {text})") == 2 and "LIMIT 10;" in sql  # on both sides


@pytest.mark.parametrize("after_id", [True, "1", 1.0, 2**63, -2**63, [1]])
def test_a_bad_resume_point_is_refused(after_id: object) -> None:
    with pytest.raises(ValueError, match="after_id"):
        load_sql("row_delta", table="t", previous_table="p", ds="20261123", previous_ds="20261122",
                 after_id=after_id, limit=10)
