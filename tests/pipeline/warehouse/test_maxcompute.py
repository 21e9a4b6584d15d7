"""MaxComputeWarehouse against a real, offline ``odps.ODPS`` entry.

pyodps is faked only where it would call the service: ``ODPS.exist_table``, ``ODPS.execute_sql``,
``ODPS.get_table`` and ``TableTunnel.create_upload_session``. The fake upload session hands out pyodps'
real ``BufferedArrowWriter`` (serialisation, casting, block flushing) with only the block PUT replaced,
and ``RestClient.request`` is booby-trapped so any other HTTP call fails the test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import odps
import pyarrow as pa
import pytest
import requests
from odps import ODPS
from odps import errors as odps_errors
from odps.models import Record, TableSchema
from odps.rest import RestClient
from odps.tunnel import TableTunnel
from odps.tunnel.errors import TunnelError
from odps.tunnel.io.writer import BufferedArrowWriter
from odps.types import PartitionSpec

from pipeline.errors import CatalogError, ConnectionConfigError, SchemaMismatchError, WarehouseError
from pipeline.schema import CATALOG_SCHEMA, PartitionStats
from pipeline.sql import load_sql
from pipeline.warehouse import Warehouse, open_warehouse
from pipeline.warehouse.maxcompute import MaxComputeWarehouse

DS = "20261123"
TABLE = "image_catalog"
PROJECT = "img_proj"
SECRET = "sk-very-secret-value"
CATALOG_ODPS_SCHEMA = TableSchema.from_lists(
    ["id", "source_image", "cate_id"], ["bigint", "string", "bigint"], ["ds"], ["string"]
)


# -- fakes at the service boundary ----------------------------------------------------------------


class RecordingArrowWriter(BufferedArrowWriter):
    """pyodps' own buffered writer; we only note what passed through it."""

    def __init__(self, service: FakeService, schema: TableSchema, upload_block: Any) -> None:
        # A tiny buffer so a few batches already produce several blocks, as 20 MiB would in production.
        super().__init__(schema, upload_block, buffer_size=2048)
        self._service = service

    def write(self, data: Any) -> None:
        self._service.events.append("write")
        self._service.written.append(data)
        super().write(data)


@dataclass
class FakeUploadSession:
    service: FakeService
    table: str
    partition_spec: str
    overwrite: bool
    create_partition: bool
    schema: TableSchema = CATALOG_ODPS_SCHEMA
    commits: list[list[int]] = field(default_factory=list)

    def open_arrow_writer(self, block_id: int | None = None, **_: Any) -> BufferedArrowWriter:
        assert block_id is None, "expected the buffered writer"

        def upload_block(block: int, data: bytes) -> None:  # stands in for the HTTP PUT of a block
            if self.service.fail_upload is not None:
                raise self.service.fail_upload
            self.service.events.append("upload")
            self.service.uploaded_blocks.append(block)

        return RecordingArrowWriter(self.service, self.schema, upload_block)

    def commit(self, blocks: list[int]) -> None:
        # The server refuses a commit whose block list differs from what it received.
        assert sorted(blocks) == sorted(self.service.uploaded_blocks)
        self.service.events.append("commit")
        self.commits.append(list(blocks))


@dataclass
class FakePartition:
    partition_spec: PartitionSpec


@dataclass
class FakeTable:
    table_schema: TableSchema
    partition_values: list[str]
    lifecycle: int = 30

    def iterate_partitions(self) -> Iterator[FakePartition]:
        return (FakePartition(PartitionSpec(f"ds={v}")) for v in self.partition_values)

    def exist_partition(self, spec: str) -> bool:
        return PartitionSpec(spec)["ds"] in self.partition_values


class FakeInstance:
    def __init__(self, records: list[Record]) -> None:
        self._records = records

    def open_reader(self, *args: Any, **kwargs: Any) -> FakeReader:
        return FakeReader(self._records)


class FakeReader:
    def __init__(self, records: list[Record]) -> None:
        self._records = records

    def __enter__(self) -> FakeReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __iter__(self) -> Iterator[Record]:
        return iter(self._records)


def records(names: list[str], types: list[str], rows: list[list[Any]]) -> list[Record]:
    schema = TableSchema.from_lists(names, types)
    return [Record(schema=schema, values=row) for row in rows]


@dataclass
class FakeService:
    tables: dict[str, FakeTable] = field(default_factory=dict)
    sql: list[str] = field(default_factory=list)
    query_results: dict[str, list[Record]] = field(default_factory=dict)
    query_params: dict[str, dict[str, Any]] = field(default_factory=dict)  # beyond table and ds
    sessions: list[FakeUploadSession] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    written: list[Any] = field(default_factory=list)
    uploaded_blocks: list[int] = field(default_factory=list)
    fail_session: BaseException | None = None
    fail_upload: BaseException | None = None
    http_attempts: list[str] = field(default_factory=list)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeService]:
    svc = FakeService()
    # Per REFERENCE.md: without these, constructing ODPS makes two retried HTTP calls.
    monkeypatch.setenv("ODPS_LOGVIEW_HOST", "http://logview.invalid")
    # (not monkeypatch.setattr: pyodps' OptionsProxy refuses the undo)
    old_legacy_logview = odps.options.use_legacy_logview
    odps.options.use_legacy_logview = True

    def no_http(self: RestClient, url: str, method: str, **kwargs: Any) -> Any:
        svc.http_attempts.append(f"{method} {url}")
        raise AssertionError(f"unexpected HTTP call: {method} {url}")

    def exist_table(self: ODPS, name: str, project: str | None = None, schema: str | None = None) -> bool:
        return name in svc.tables

    def get_table(self: ODPS, name: str, project: str | None = None, schema: str | None = None) -> FakeTable:
        if name not in svc.tables:
            raise odps_errors.NoSuchTable(f"Table not found - '{PROJECT}.{name}'")
        return svc.tables[name]

    def execute_sql(self: ODPS, sql: str, *args: Any, **kwargs: Any) -> FakeInstance:
        svc.sql.append(sql)
        if sql.lstrip().startswith("--") and "CREATE TABLE IF NOT EXISTS" in sql:
            svc.tables[TABLE] = FakeTable(CATALOG_ODPS_SCHEMA, [])
            return FakeInstance([])
        for name, result in svc.query_results.items():
            if sql == load_sql(name, table=TABLE, ds=DS, **svc.query_params.get(name, {})):
                return FakeInstance(result)
        raise AssertionError(f"unexpected SQL: {sql}")

    def create_upload_session(
        self: TableTunnel,
        table: str,
        partition_spec: str | None = None,
        overwrite: bool = False,
        create_partition: bool = False,
        **kwargs: Any,
    ) -> FakeUploadSession:
        if svc.fail_session is not None:
            raise svc.fail_session
        session = FakeUploadSession(svc, table, partition_spec or "", overwrite, create_partition)
        svc.sessions.append(session)
        return session

    monkeypatch.setattr(RestClient, "request", no_http)
    monkeypatch.setattr(ODPS, "exist_table", exist_table)
    monkeypatch.setattr(ODPS, "get_table", get_table)
    monkeypatch.setattr(ODPS, "execute_sql", execute_sql)
    monkeypatch.setattr(TableTunnel, "create_upload_session", create_upload_session)
    yield svc
    odps.options.use_legacy_logview = old_legacy_logview
    assert svc.http_attempts == []


@pytest.fixture
def entry(service: FakeService) -> ODPS:
    start = time.monotonic()
    # overwrite_global=False: keep this test's fake credentials out of pyodps' global options.
    o = ODPS("test-ak", SECRET, project=PROJECT, endpoint="http://127.0.0.1:9/api", overwrite_global=False)
    assert time.monotonic() - start < 0.5, "ODPS() made network calls"
    return o


@pytest.fixture
def wh(entry: ODPS) -> MaxComputeWarehouse:
    return MaxComputeWarehouse(entry, TABLE, lifecycle_days=30)


def batch(ids: list[int], cate: int = 1) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {"id": ids, "source_image": [f"/img/{i}.png" for i in ids], "cate_id": [cate] * len(ids)},
        schema=CATALOG_SCHEMA,
    )


def many(n_batches: int, size: int = 100) -> Iterator[pa.RecordBatch]:
    for b in range(n_batches):
        yield batch(list(range(b * size, (b + 1) * size)))


# -- ensure_table ---------------------------------------------------------------------------------


def test_creates_missing_table_with_the_ddl(wh: MaxComputeWarehouse, service: FakeService) -> None:
    typed: Warehouse = wh  # satisfies the Protocol
    typed.ensure_table()
    assert service.sql == [load_sql("create_catalog_table", table=TABLE, lifecycle=30)]
    assert "LIFECYCLE 30;" in service.sql[0]


def test_existing_table_with_catalog_schema_is_left_alone(wh: MaxComputeWarehouse, service: FakeService) -> None:
    service.tables[TABLE] = FakeTable(CATALOG_ODPS_SCHEMA, [])
    wh.ensure_table()
    assert service.sql == []


@pytest.mark.parametrize(
    ("schema", "shown"),
    [
        (TableSchema.from_lists(["id", "source_image", "cate_id"], ["bigint", "string", "string"], ["ds"], ["string"]),
         "('cate_id', 'STRING')"),
        (TableSchema.from_lists(["id", "source_image"], ["bigint", "string"], ["ds"], ["string"]),
         "[('id', 'BIGINT'), ('source_image', 'STRING')]"),
        (TableSchema.from_lists(["id", "source_image", "cate_id"], ["bigint", "string", "bigint"], ["pt"], ["string"]),
         "[('pt', 'STRING')]"),
        (TableSchema.from_lists(["id", "source_image", "cate_id"], ["bigint", "string", "bigint"]), "by []"),
    ],
)
def test_existing_table_with_other_schema_is_refused(
    wh: MaxComputeWarehouse, service: FakeService, schema: TableSchema, shown: str
) -> None:
    service.tables[TABLE] = FakeTable(schema, [])
    with pytest.raises(SchemaMismatchError) as err:
        wh.ensure_table()
    msg = str(err.value)
    assert f"{PROJECT}.{TABLE}" in msg and shown in msg
    assert "needs columns [('id', 'BIGINT'), ('source_image', 'STRING'), ('cate_id', 'BIGINT')]" in msg
    assert "partitioned by [('ds', 'STRING')]" in msg and "drop or rename" in msg
    assert service.sql == []


def test_service_error_during_ensure_table(wh: MaxComputeWarehouse, service: FakeService,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(self: ODPS, name: str, **_: Any) -> bool:
        raise odps_errors.NoPermission("ODPS-0420095: Access Denied")

    monkeypatch.setattr(ODPS, "exist_table", refused)
    with pytest.raises(WarehouseError, match=f"{PROJECT}.{TABLE}.*NoPermission") as err:
        wh.ensure_table()
    assert err.value.transient is False


# -- write_partition ------------------------------------------------------------------------------


def test_write_commits_once_after_all_batches(wh: MaxComputeWarehouse, service: FakeService) -> None:
    assert wh.write_partition(DS, many(5)) == 500

    (session,) = service.sessions
    assert (session.table, session.partition_spec) == (TABLE, "ds=20261123")
    assert session.overwrite is True and session.create_partition is True
    assert session.commits == [service.uploaded_blocks] and len(service.uploaded_blocks) >= 2
    assert service.events.count("write") == 5
    assert service.events[-1] == "commit" and service.events.count("commit") == 1
    assert sum(b.num_rows for b in service.written) == 500
    assert all(b.schema == CATALOG_SCHEMA for b in service.written)


def test_write_conforms_batches(wh: MaxComputeWarehouse, service: FakeService) -> None:
    narrow = pa.RecordBatch.from_pydict(
        {"source_image": ["/a.png"], "cate_id": pa.array([3], pa.int32()), "id": pa.array([9], pa.int32())}
    )
    assert wh.write_partition(DS, [narrow]) == 1
    assert service.written[0].to_pylist() == [{"id": 9, "source_image": "/a.png", "cate_id": 3}]


def test_empty_write_still_commits_the_overwrite(wh: MaxComputeWarehouse, service: FakeService) -> None:
    assert wh.write_partition(DS, iter(())) == 0
    (session,) = service.sessions
    assert session.overwrite is True and session.commits == [[]]


def test_source_failure_midway_commits_nothing(wh: MaxComputeWarehouse, service: FakeService) -> None:
    refusal = CatalogError("category 7 is not mapped")

    def failing() -> Iterator[pa.RecordBatch]:
        yield from many(3)
        raise refusal

    with pytest.raises(CatalogError) as err:
        wh.write_partition(DS, failing())
    assert err.value is refusal  # a PipelineError from the source propagates unchanged
    (session,) = service.sessions
    assert session.commits == [] and "commit" not in service.events
    assert service.uploaded_blocks, "blocks were uploaded, yet never committed"


def test_unexpected_source_failure_is_wrapped(wh: MaxComputeWarehouse, service: FakeService) -> None:
    def failing() -> Iterator[pa.RecordBatch]:
        yield batch([1])
        raise ZeroDivisionError("oops")

    with pytest.raises(WarehouseError, match="batch source raised ZeroDivisionError") as err:
        wh.write_partition(DS, failing())
    assert isinstance(err.value.__cause__, ZeroDivisionError)
    assert service.sessions[0].commits == []


def test_bad_batch_commits_nothing(wh: MaxComputeWarehouse, service: FakeService) -> None:
    bad = pa.RecordBatch.from_pydict({"id": [1], "source_image": ["/a"]})
    with pytest.raises(WarehouseError, match=r"missing \['cate_id'\]"):
        wh.write_partition(DS, [batch([1]), bad])
    assert service.sessions[0].commits == []


def _tunnel_error(status: int, code: str, message: str) -> Exception:
    """What pyodps raises for a tunnel answer with ``status`` (the status itself is dropped on the way)."""
    response = requests.Response()
    response.status_code = status
    response.headers["x-odps-request-id"] = "REQ"
    response._content = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return TunnelError.parse(response)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (odps_errors.NoSuchTable("Table not found"), False),
        (odps_errors.NoPermission("Access Denied"), False),
        (odps_errors.InternalServerError("Internal server error"), True),
        (requests.ConnectionError("connection reset"), True),
        # Tunnel errors as pyodps parses a 5xx / 4xx tunnel answer: a code, no HTTP status.
        (_tunnel_error(500, "InternalServerError", "Service internal error, please try again later"), True),
        (_tunnel_error(503, "FlowExceeded", "Your flow quota is exceeded"), True),
        (_tunnel_error(400, "InvalidPartitionSpec", "The specified partitionspec is not valid"), False),
    ],
)
def test_session_errors_are_mapped(wh: MaxComputeWarehouse, service: FakeService,
                                   error: BaseException, transient: bool) -> None:
    service.fail_session = error
    with pytest.raises(WarehouseError) as err:
        wh.write_partition(DS, many(1))
    msg = str(err.value)
    assert f"MaxCompute table {PROJECT}.{TABLE} partition ds={DS}" in msg and "nothing was committed" in msg
    assert err.value.transient is transient
    assert err.value.__cause__ is error
    assert SECRET not in msg


def test_upload_failure_commits_nothing(wh: MaxComputeWarehouse, service: FakeService) -> None:
    service.fail_upload = requests.ConnectionError("connection reset by peer")
    with pytest.raises(WarehouseError, match="connection reset") as err:
        wh.write_partition(DS, many(5))
    assert err.value.transient is True
    assert service.sessions[0].commits == []


def test_bad_ds_is_refused_before_any_call(wh: MaxComputeWarehouse, service: FakeService) -> None:
    with pytest.raises(ValueError):
        wh.write_partition("2026-11-23", many(1))
    assert service.sessions == []


# -- stats and partitions -------------------------------------------------------------------------


def test_partition_stats_from_query_results(wh: MaxComputeWarehouse, service: FakeService) -> None:
    service.tables[TABLE] = FakeTable(CATALOG_ODPS_SCHEMA, ["20261122", DS])
    service.query_results = {
        "partition_stats": records(["row_count", "distinct_ids"], ["bigint", "bigint"], [[10, 7]]),
        "rows_per_category": records(["cate_id", "row_count"], ["bigint", "bigint"], [[1, 6], [2, 4]]),
        "duplicate_ids": records(["id", "n"], ["bigint", "bigint"], [[5, 3], [8, 2]]),
    }
    stats = wh.partition_stats(DS)
    assert stats == PartitionStats(DS, rows=10, distinct_ids=7, rows_per_category={1: 6, 2: 4}, duplicate_ids=[5, 8])
    names = ("partition_stats", "rows_per_category", "duplicate_ids")
    assert service.sql == [load_sql(n, table=TABLE, ds=DS) for n in names]


def test_new_rows_and_rows_by_id_from_query_results(wh: MaxComputeWarehouse, service: FakeService) -> None:
    columns, types = ["id", "source_image", "cate_id"], ["bigint", "string", "bigint"]
    service.query_results = {
        "sample_new_rows": records(columns, types, [[5, "/a/5.jpg", 1]]),
        "rows_by_id": records(columns, types, [[7, "/a/7.jpg", 2]]),
    }
    service.query_params = {"sample_new_rows": {"previous_ds": "20261122", "limit": 10},
                            "rows_by_id": {"ids": [7, 9], "limit": 20}}
    assert wh.sample_new_rows(DS, "20261122", 10) == [{"id": 5, "source_image": "/a/5.jpg", "cate_id": 1}]
    assert wh.rows_by_id(DS, [9, 7, 7]) == [{"id": 7, "source_image": "/a/7.jpg", "cate_id": 2}]
    assert len(service.sql) == 2


def test_partition_stats_of_missing_partition(wh: MaxComputeWarehouse, service: FakeService) -> None:
    service.tables[TABLE] = FakeTable(CATALOG_ODPS_SCHEMA, ["20261122"])
    with pytest.raises(WarehouseError, match=f"{PROJECT}.{TABLE} partition ds={DS} does not exist"):
        wh.partition_stats(DS)
    assert service.sql == []


def test_partition_stats_query_failure(wh: MaxComputeWarehouse, service: FakeService) -> None:
    service.tables[TABLE] = FakeTable(CATALOG_ODPS_SCHEMA, [DS])  # no query results: execute_sql fails

    def failing_sql(self: ODPS, sql: str, *a: Any, **k: Any) -> Any:
        raise odps_errors.ODPSError("ODPS-0130071: Semantic analysis exception")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ODPS, "execute_sql", failing_sql)
        with pytest.raises(WarehouseError, match=f"stats queries on MaxCompute table {PROJECT}.{TABLE} partition"):
            wh.partition_stats(DS)


def test_partitions_sorted(wh: MaxComputeWarehouse, service: FakeService) -> None:
    service.tables[TABLE] = FakeTable(CATALOG_ODPS_SCHEMA, ["20261123", "20261101", "20261122"])
    assert wh.partitions() == ["20261101", "20261122", "20261123"]


def test_partitions_of_missing_table(wh: MaxComputeWarehouse) -> None:
    with pytest.raises(WarehouseError, match="listing partitions of MaxCompute table"):
        wh.partitions()


# -- from_airflow and open_warehouse --------------------------------------------------------------


def mc_conn(**extra: str) -> str:
    base = {"access_key_id": "AKID-test", "access_key_secret": SECRET, "project": PROJECT,
            "endpoint": "http://127.0.0.1:9/api"}
    base.update(extra)
    return json.dumps({"conn_type": "maxcompute", "extra": {k: v for k, v in base.items() if v}})


def test_from_airflow_builds_the_entry_from_the_connection(service: FakeService,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_TEST", mc_conn())
    import airflow.providers.alibaba.cloud.hooks.maxcompute  # noqa: F401 - time the call, not the import

    start = time.monotonic()
    wh = MaxComputeWarehouse.from_airflow("mc_test", TABLE, 14)
    assert time.monotonic() - start < 1.0, "building the ODPS entry made network calls"
    assert (wh.project, wh.table, wh.lifecycle_days) == (PROJECT, TABLE, 14)
    assert wh._odps.endpoint == "http://127.0.0.1:9/api"
    request = requests.Request("GET", "http://127.0.0.1:9/api/projects/p").prepare()
    wh._odps.account.sign_request(request, wh._odps.endpoint)  # keys come from the provider when signing
    assert request.headers["Authorization"].startswith("ODPS AKID-test:")
    assert "authorization-sts-token" not in request.headers


def test_open_warehouse_dispatches_maxcompute(service: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_TEST", mc_conn())
    wh = open_warehouse("mc_test", TABLE, 30)
    assert isinstance(wh, MaxComputeWarehouse) and wh.project == PROJECT


@pytest.mark.parametrize("missing", ["access_key_id", "access_key_secret", "project", "endpoint"])
def test_incomplete_connection(service: FakeService, monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_TEST", mc_conn(**{missing: ""}))
    with pytest.raises(ConnectionConfigError) as err:
        MaxComputeWarehouse.from_airflow("mc_test", TABLE, 30)
    msg = str(err.value)
    assert "'mc_test'" in msg and missing in msg
    assert SECRET not in msg and "AKID-test" not in msg


def test_undefined_connection(service: FakeService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MC_NOPE", raising=False)
    with pytest.raises(ConnectionConfigError, match="'mc_nope' is not defined"):
        MaxComputeWarehouse.from_airflow("mc_nope", TABLE, 30)
