"""MaxComputeWarehouse through pyodps on the wire, against the local MaxCompute server.

Every call below goes over HTTP to :class:`localcloud.maxcompute.server.LocalMaxComputeServer`, signed
and verified; failures come from the server's fault knobs. One case keeps a fake, at the narrowest
seam: a permission refusal (``NoPermission``), which the local server cannot produce (it has no ACLs).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import pyarrow as pa
import pytest
import requests
from odps import ODPS
from odps import errors as odps_errors
from odps.tunnel.errors import TunnelError
from odps.tunnel.retry import ExponentialWaitRetryPolicy

from localcloud.maxcompute.server import LocalMaxComputeServer
from pipeline.errors import CatalogError, ConnectionConfigError, SchemaMismatchError, WarehouseError
from pipeline.schema import CATALOG_SCHEMA, PartitionStats
from pipeline.warehouse import Warehouse, open_warehouse
from pipeline.warehouse.maxcompute import MaxComputeWarehouse, _warehouse_error
from tests.pipeline.warehouse.digest import reference_id_digest

DS, PREVIOUS = "20261123", "20261122"
PROJECT, REGION = "img_proj", "cn-hangzhou"
ACCESS_KEY_ID, SECRET = "LTAIwarehousetest", "sk-very-secret-value"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LocalMaxComputeServer]:
    with LocalMaxComputeServer(tmp_path_factory.mktemp("mc"), {ACCESS_KEY_ID: SECRET}, projects=[PROJECT],
                               region=REGION) as running:
        yield running


@pytest.fixture
def entry(server: LocalMaxComputeServer) -> ODPS:
    server.faults.reset()
    server.tunnel.faults.reset()
    return ODPS(ACCESS_KEY_ID, SECRET, project=PROJECT, endpoint=server.endpoint, region_name=REGION,
                overwrite_global=False)


@pytest.fixture
def wh(entry: ODPS) -> MaxComputeWarehouse:
    """A fresh table per test (the server lives for the module)."""
    return MaxComputeWarehouse(entry, f"image_catalog_{uuid.uuid4().hex[:8]}", lifecycle_days=30)


def batch(ids: list[int], cate: int = 1) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {"id": ids, "source_image": [f"/img/{i}.png" for i in ids], "cate_id": [cate] * len(ids),
         "etag": [f"{i:032X}" for i in ids]},
        schema=CATALOG_SCHEMA,
    )


def many(n_batches: int, size: int = 100) -> Iterator[pa.RecordBatch]:
    for b in range(n_batches):
        yield batch(list(range(b * size, (b + 1) * size)))


def stored_ids(wh: MaxComputeWarehouse, ds: str) -> list[int]:
    return sorted(wh.read_partition(ds).column("id").to_pylist())


# -- ensure_table ---------------------------------------------------------------------------------


def test_creates_missing_table_with_the_ddl_and_leaves_it_alone_after(wh: MaxComputeWarehouse) -> None:
    typed: Warehouse = wh  # satisfies the Protocol
    typed.ensure_table()
    table = wh._odps.get_table(wh.table)
    assert table.lifecycle == 30 and "written by the oss-image-index pipeline" in table.comment
    assert [c.comment for c in table.table_schema.simple_columns][0] == "primary key of the image document"
    wh.ensure_table()  # exists with the catalog schema: nothing to do


@pytest.mark.parametrize(
    ("ddl", "shown"),
    [
        ("(id BIGINT, source_image STRING, cate_id STRING) PARTITIONED BY (ds STRING)", "('cate_id', 'STRING')"),
        ("(id BIGINT, source_image STRING) PARTITIONED BY (ds STRING)", "[('id', 'BIGINT'), ('source_image', 'STRING')]"),
        ("(id BIGINT, source_image STRING, cate_id BIGINT) PARTITIONED BY (pt STRING)", "[('pt', 'STRING')]"),
        ("(id BIGINT, source_image STRING, cate_id BIGINT)", "by []"),
    ],
)
def test_existing_table_with_other_schema_is_refused(wh: MaxComputeWarehouse, ddl: str, shown: str) -> None:
    wh._odps.execute_sql(f"CREATE TABLE {wh.table} {ddl} LIFECYCLE 3")
    with pytest.raises(SchemaMismatchError) as err:
        wh.ensure_table()
    msg = str(err.value)
    assert f"{PROJECT}.{wh.table}" in msg and shown in msg
    assert "needs columns [('id', 'BIGINT'), ('source_image', 'STRING'), ('cate_id', 'BIGINT'), ('etag', 'STRING')]" in msg
    assert "partitioned by [('ds', 'STRING')]" in msg and "drop or rename" in msg


def test_a_refused_permission_is_terminal(wh: MaxComputeWarehouse, monkeypatch: pytest.MonkeyPatch) -> None:
    # Fake: the local server has no ACLs, so it cannot refuse a permission; faked at exist_table.
    def refused(self: ODPS, name: str, **_: object) -> bool:
        raise odps_errors.NoPermission("ODPS-0420095: Access Denied")

    monkeypatch.setattr(ODPS, "exist_table", refused)
    with pytest.raises(WarehouseError, match=f"{PROJECT}.{wh.table}.*NoPermission") as err:
        wh.ensure_table()
    assert err.value.transient is False


def test_a_wrong_key_is_a_terminal_error(server: LocalMaxComputeServer) -> None:
    wrong = ODPS(ACCESS_KEY_ID, "not-the-secret", project=PROJECT, endpoint=server.endpoint, region_name=REGION,
                 overwrite_global=False)
    with pytest.raises(WarehouseError, match="SignatureNotMatch") as err:
        MaxComputeWarehouse(wrong, "anything", 30).ensure_table()
    assert err.value.transient is False and "not-the-secret" not in str(err.value)


# -- write_partition ------------------------------------------------------------------------------


def test_write_replaces_the_partition_in_one_commit(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    assert wh.write_partition(DS, many(5)) == 500
    assert stored_ids(wh, DS) == list(range(500))
    assert wh.write_partition(DS, [batch([7, 8])]) == 2  # overwrite: the old 500 rows are gone
    assert stored_ids(wh, DS) == [7, 8]
    assert wh.partitions() == [DS]


def test_write_conforms_batches(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    narrow = pa.RecordBatch.from_pydict(
        {"source_image": ["/a.png"], "cate_id": pa.array([3], pa.int32()), "id": pa.array([9], pa.int32()),
         "etag": pa.array([None], pa.null())}
    )
    assert wh.write_partition(DS, [narrow]) == 1
    assert wh.rows_by_id(DS, [9]) == [{"id": 9, "source_image": "/a.png", "cate_id": 3, "etag": None}]


def test_empty_write_still_replaces_the_partition(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    wh.write_partition(DS, many(1))
    assert wh.write_partition(DS, iter(())) == 0
    assert wh.partitions() == [DS] and stored_ids(wh, DS) == []


def test_source_failure_midway_commits_nothing(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    wh.write_partition(DS, [batch([1, 2])])
    refusal = CatalogError("category 7 is not mapped")

    def failing() -> Iterator[pa.RecordBatch]:
        yield from many(3)
        raise refusal

    with pytest.raises(CatalogError) as err:
        wh.write_partition(DS, failing())
    assert err.value is refusal  # a PipelineError from the source propagates unchanged
    with pytest.raises(WarehouseError, match="batch source raised ZeroDivisionError"):
        wh.write_partition(DS, (1 / 0 for _ in [0]))
    bad = pa.RecordBatch.from_pydict({"id": [1], "source_image": ["/a"]})
    with pytest.raises(WarehouseError, match=r"missing \['cate_id', 'etag'\]"):
        wh.write_partition(DS, [batch([5]), bad])
    assert stored_ids(wh, DS) == [1, 2]  # the old partition keeps serving


def test_a_new_partition_that_fails_never_appears(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()

    def failing() -> Iterator[pa.RecordBatch]:
        yield batch([1])
        raise CatalogError("stop")

    with pytest.raises(CatalogError):
        wh.write_partition(DS, failing())
    assert wh.partitions() == []


def test_bad_ds_is_refused_before_any_call(wh: MaxComputeWarehouse) -> None:
    with pytest.raises(ValueError):
        wh.write_partition("2026-11-23", many(1))


def _tunnel_error(status: int, code: str, message: str) -> TunnelError:
    """The exception pyodps raises for a tunnel answer (its status is dropped on the way)."""
    response = requests.Response()
    response.status_code = status
    response.headers["x-odps-request-id"] = "REQ"
    response._content = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return TunnelError.parse(response)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (odps_errors.NoSuchTable("Table not found"), False),
        (odps_errors.InternalServerError("Internal server error"), True),
        (requests.ConnectionError("connection reset"), True),
        # codes whose documented advice is "try again later"; the local server answers the first and last
        (_tunnel_error(500, "InternalServerError", "Service internal error, please try again later"), True),
        (_tunnel_error(503, "FlowExceeded", "Your flow quota is exceeded"), True),
        (_tunnel_error(400, "InvalidPartitionSpec", "The specified partitionspec is not valid"), False),
    ],
)
def test_error_classification(error: BaseException, transient: bool) -> None:
    # Not a fake service: the exceptions pyodps raises, classified by the warehouse's policy.
    assert _warehouse_error("writing", error).transient is transient


def test_a_tunnel_refusal_is_terminal_and_names_the_partition(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    wh._odps.execute_sql(f"DROP TABLE {wh.table}")  # the table vanishes between ensure and write
    with pytest.raises(WarehouseError, match=f"{PROJECT}.{wh.table} partition ds={DS}.*nothing was committed") as err:
        wh.write_partition(DS, many(1))
    assert err.value.transient is False and SECRET not in str(err.value)


# -- faults of the server ---------------------------------------------------------------------------


def test_a_commit_that_fails_once_is_retried_by_pyodps_and_lands_once(wh: MaxComputeWarehouse, server) -> None:
    wh.ensure_table()
    server.tunnel.faults.fail_next_commit = 1
    assert wh.write_partition(DS, many(3)) == 300
    assert stored_ids(wh, DS) == list(range(300))


def test_a_commit_that_keeps_failing_publishes_nothing(wh: MaxComputeWarehouse, server,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # pyodps backs off 1+2+...+64 s over 7 retries of a tunnel 5xx; the test shortens the waits only.
    monkeypatch.setattr(ExponentialWaitRetryPolicy, "get_retry_wait_time", lambda self, attempt: 0.01)
    wh.ensure_table()
    wh.write_partition(DS, [batch([1, 2])])
    server.tunnel.faults.fail_next_commit = 20
    try:
        with pytest.raises(WarehouseError, match="nothing was committed") as err:
            wh.write_partition(DS, many(3))
    finally:
        server.tunnel.faults.fail_next_commit = 0
    assert err.value.transient is True
    assert stored_ids(wh, DS) == [1, 2]
    assert wh.write_partition(DS, many(3)) == 300  # the retry the task makes succeeds


def test_a_reset_block_upload_is_retried_by_pyodps(wh: MaxComputeWarehouse, server) -> None:
    wh.ensure_table()
    server.tunnel.faults.reset_next_block_put = 1
    assert wh.write_partition(DS, many(3)) == 300
    assert stored_ids(wh, DS) == list(range(300))


def test_blocks_that_keep_failing_fail_cleanly(wh: MaxComputeWarehouse, server) -> None:
    wh.ensure_table()
    wh.write_partition(DS, [batch([1])])
    server.tunnel.faults.reset_next_block_put = 50
    try:
        with pytest.raises(WarehouseError, match="nothing was committed") as err:
            wh.write_partition(DS, many(3))
    finally:
        server.tunnel.faults.reset_next_block_put = 0
    assert err.value.transient is True
    assert stored_ids(wh, DS) == [1]


@pytest.mark.parametrize("status", [502, 503])
def test_a_burst_of_gateway_errors_is_absorbed(wh: MaxComputeWarehouse, server, status: int) -> None:
    wh.ensure_table()
    wh.write_partition(DS, [batch([1])])
    server.faults.error_status, server.faults.error_burst = status, 2
    assert wh.partitions() == [DS]  # pyodps retries GETs on 502/503/504


def test_internal_errors_and_throttling_are_transient(wh: MaxComputeWarehouse, server) -> None:
    wh.ensure_table()
    wh.write_partition(DS, [batch([1])])
    server.faults.error_burst = 1  # 500: pyodps does not retry; the pipeline's retry policy does
    with pytest.raises(WarehouseError) as err:
        wh.partitions()
    assert err.value.transient is True
    server.faults.throttle_burst = 1
    with pytest.raises(WarehouseError, match="QPSExceeded") as err:
        wh.partitions()
    assert err.value.transient is True
    assert wh.partitions() == [DS]


def test_slow_sql_is_waited_for(wh: MaxComputeWarehouse, server) -> None:
    wh.ensure_table()
    wh.write_partition(DS, [batch([1, 2, 2])])
    server.faults.sql_delay_s = 1.5
    started = time.monotonic()
    stats = wh.partition_stats(DS)
    assert time.monotonic() - started >= 1.5 * 3  # three queries, each slow
    assert stats == PartitionStats(DS, rows=3, distinct_ids=2, rows_per_category={1: 3}, duplicate_ids=[2],
                                   id_digest=reference_id_digest([1, 2]))


# -- stats and partitions -------------------------------------------------------------------------


def test_stats_samples_and_changes_from_the_sql_files(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    wh.write_partition(PREVIOUS, [batch([1, 2, 3], cate=1)])
    wh.write_partition(DS, [batch([2, 3, 4], cate=1), batch([4, 5], cate=2)])
    assert wh.partition_stats(DS) == PartitionStats(DS, rows=5, distinct_ids=4, rows_per_category={1: 3, 2: 2},
                                                    duplicate_ids=[4], id_digest=reference_id_digest([2, 3, 4, 5]))
    wh.write_partition("20261102", [])  # an empty partition has a digest too: the empty set's
    assert wh.partition_stats("20261102").id_digest == reference_id_digest([])
    changes = wh.id_changes(DS, PREVIOUS)
    assert (changes.added, changes.removed) == (2, 1)
    assert [r["id"] for r in wh.sample_rows(DS, 2)] == [2, 3]
    assert [r["id"] for r in wh.sample_new_rows(DS, PREVIOUS, 10)] == [4, 4, 5]
    assert wh.rows_by_id(DS, [5, 9, 5]) == [{"id": 5, "source_image": "/img/5.png", "cate_id": 2, "etag": f"{5:032X}"}]
    assert wh.rows_by_id(DS, []) == []


def test_partition_stats_of_missing_partition(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    wh.write_partition(PREVIOUS, [batch([1])])
    with pytest.raises(WarehouseError, match=f"{PROJECT}.{wh.table} partition ds={DS} does not exist"):
        wh.partition_stats(DS)


def test_partitions_sorted(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    for ds in ("20261123", "20261101", "20261122"):
        wh.write_partition(ds, [batch([1])])
    assert wh.partitions() == ["20261101", "20261122", "20261123"]


def test_partitions_of_missing_table(wh: MaxComputeWarehouse) -> None:
    with pytest.raises(WarehouseError, match="listing partitions of MaxCompute table") as err:
        wh.partitions()
    assert err.value.transient is False


# -- from_airflow and open_warehouse --------------------------------------------------------------


def mc_conn(endpoint: str = "http://127.0.0.1:9/api", **extra: str) -> str:
    base = {"access_key_id": ACCESS_KEY_ID, "access_key_secret": SECRET, "project": PROJECT, "endpoint": endpoint}
    base.update(extra)
    return json.dumps({"conn_type": "maxcompute", "extra": {k: v for k, v in base.items() if v}})


def test_from_airflow_builds_the_entry_without_calling_the_service(monkeypatch: pytest.MonkeyPatch) -> None:
    # Port 9 (discard) refuses connections: any call to the service would raise here.
    monkeypatch.setenv("AIRFLOW_CONN_MC_TEST", mc_conn())
    wh = MaxComputeWarehouse.from_airflow("mc_test", "image_catalog", 14)
    assert (wh.project, wh.table, wh.lifecycle_days) == (PROJECT, "image_catalog", 14)
    request = requests.Request("GET", "http://127.0.0.1:9/api/projects/p").prepare()
    wh._odps.account.sign_request(request, wh._odps.endpoint)  # keys come from the provider when signing
    assert request.headers["Authorization"].startswith(f"ODPS {ACCESS_KEY_ID}:")
    assert "authorization-sts-token" not in request.headers


def test_from_airflow_with_a_region_writes_through_the_server(server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_TEST", mc_conn(server.endpoint, region=REGION))
    wh = open_warehouse("mc_test", f"image_catalog_{uuid.uuid4().hex[:8]}", 30)
    assert isinstance(wh, MaxComputeWarehouse) and wh.project == PROJECT
    wh.ensure_table()
    assert wh.write_partition(DS, many(2)) == 200
    assert "MaxCompute table" in wh.location and server.endpoint in wh.location


@pytest.mark.parametrize("missing", ["access_key_id", "access_key_secret", "project", "endpoint"])
def test_incomplete_connection(monkeypatch: pytest.MonkeyPatch, missing: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_MC_TEST", mc_conn(**{missing: ""}))
    with pytest.raises(ConnectionConfigError) as err:
        MaxComputeWarehouse.from_airflow("mc_test", "image_catalog", 30)
    msg = str(err.value)
    assert "'mc_test'" in msg and missing in msg
    assert SECRET not in msg and ACCESS_KEY_ID not in msg


def test_undefined_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MC_NOPE", raising=False)
    with pytest.raises(ConnectionConfigError, match="'mc_nope' is not defined"):
        MaxComputeWarehouse.from_airflow("mc_nope", "image_catalog", 30)


# -- write, audit, publish ------------------------------------------------------------------------


def test_a_staged_partition_is_published_in_one_statement(wh: MaxComputeWarehouse) -> None:
    wh.ensure_table()
    wh.write_partition(DS, [batch([1, 2, 3])])
    staging = wh.staging()
    staging.ensure_table()
    assert wh._odps.get_table(staging.table).lifecycle == 1  # MaxCompute reclaims what a killed run left
    staging.write_partition(DS, [batch([2, 3, 4, 5])])
    changes = staging.id_changes(DS, DS, previous=wh)
    assert (changes.added, changes.removed) == (2, 1)
    assert stored_ids(wh, DS) == [1, 2, 3]
    wh.publish(DS, staging)
    assert stored_ids(wh, DS) == [2, 3, 4, 5] and staging.partitions() == []
    wh.drop_partition(DS)
    wh.drop_partition(DS)  # gone already: nothing to do
    assert wh.partitions() == []


def test_a_failed_publish_leaves_the_published_partition(wh: MaxComputeWarehouse, server) -> None:
    wh.ensure_table()
    wh.write_partition(DS, [batch([1])])
    staging = wh.staging()
    staging.ensure_table()
    staging.write_partition(DS, [batch([7, 8])])
    server.faults.error_burst = 1  # the INSERT OVERWRITE's submission answers 500
    with pytest.raises(WarehouseError, match="the published partition is unchanged") as err:
        wh.publish(DS, staging)
    assert err.value.transient is True
    assert stored_ids(wh, DS) == [1] and staging.partitions() == [DS]
