"""The local OpenSearch server, driven only through the real SDKs (searchengine20211025, ha3engine).

Why: the pipeline's rebuild and smoke-query code runs against this stand-in offline, so the stand-in
must answer the SDKs exactly as they expect (response models populated, errors mapped to the SDK's
exceptions) and must behave like the service: asynchronous reindex, generations that move through
their statuses, an old index that serves until the new one switches in, pause switches, failures
with clear messages, state that survives a restart. Faults are injected through the knobs the
reliability work will use.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oss2
import pyarrow as pa
import pytest
from alibabacloud_ha3engine import client as ha3_client
from alibabacloud_ha3engine import models as ha3_models
from alibabacloud_searchengine20211025 import models as se_models
from alibabacloud_searchengine20211025.client import Client
from alibabacloud_tea_openapi import models as open_api_models
from alibabacloud_tea_openapi.exceptions import ClientException, ServerException, ThrottlingException
from PIL import Image
from Tea.exceptions import TeaException

from localcloud.acs3 import AcsCredential
from localcloud.demo_data import demo_objects
from localcloud.opensearch.engine import LocalEngine, TableSource
from localcloud.opensearch.schema import DEMO_SCHEMA, load_table_schema
from localcloud.opensearch.server import LocalOpenSearchServer
from localcloud.oss.server import Credential, LocalOssServer
from pipeline.opensearch.ha.grammar import build_ha_query
from pipeline.schema import CATALOG_SCHEMA
from pipeline.warehouse.local import LocalWarehouse

REPO = Path(__file__).resolve().parents[3]
OSS_AK, OSS_SK = "oss-ak", "oss-secret"
AK, SK = "LTAI-test", "test-secret"
QUERY_USER, QUERY_PASSWORD = "opensearch", "query-password"
IID = "ha-cn-local01"
TABLE = "images"
WAREHOUSE_TABLE = "image_catalog"
TIMEOUT = 20.0


@dataclass(frozen=True)
class Image_:
    id: int
    key: str
    data: bytes
    cate_id: int


@pytest.fixture(scope="module")
def oss(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalOssServer, list[Image_]]]:
    """A local OSS server whose bucket demo-images holds 24 demo pictures and 3 broken .jpg files."""
    root = tmp_path_factory.mktemp("oss")
    (root / "demo-images").mkdir()
    with LocalOssServer(root, [Credential(OSS_AK, OSS_SK)]) as server:
        bucket = oss2.Bucket(oss2.AuthV4(OSS_AK, OSS_SK), server.endpoint, "demo-images", region="cn-hangzhou")
        images = []
        for obj in demo_objects(per_category=6):
            name = obj.key.rsplit("/", 1)[1]
            stem = name.split(".")[0]
            if not obj.data or not stem.isdigit() or len(obj.data) > 100_000 or stem.startswith("9"):
                continue
            bucket.put_object(obj.key, obj.data)
            images.append(Image_(int(stem), obj.key, obj.data, int(stem) // 10000))
        for i in range(3):  # not images at all, under image names
            bucket.put_object(f"catalog/broken/{80001 + i}.jpg", b"this is not a JPEG " * (i + 1))
        yield server, images


@dataclass
class Stack:
    oss: LocalOssServer
    images: list[Image_]
    warehouse: LocalWarehouse
    state_dir: Path
    engine: LocalEngine
    server: LocalOpenSearchServer

    def client(self, secret: str = SK) -> Client:
        return Client(open_api_models.Config(access_key_id=AK, access_key_secret=secret, protocol="http",
                                             endpoint=self.server.endpoint, read_timeout=10000, connect_timeout=3000))

    def query_client(self, password: str = QUERY_PASSWORD) -> ha3_client.Client:
        return ha3_client.Client(ha3_models.Config(endpoint=self.server.endpoint, instance_id=IID, protocol="http",
                                                   access_user_name=QUERY_USER, access_pass_word=password))

    def write_partition(self, ds: str, images: list[Image_], extra: list[tuple[int, str, int]] = ()) -> None:
        rows = [(im.id, "/" + im.key, im.cate_id) for im in images] + list(extra)
        ids, paths, cates = zip(*rows)
        batch = pa.record_batch([pa.array(ids, pa.int64()), pa.array(paths, pa.string()), pa.array(cates, pa.int64()),
                                 pa.array([f"{i:032X}" for i in ids], pa.string())], schema=CATALOG_SCHEMA)
        self.warehouse.write_partition(ds, [batch])


def _make_server(oss_server: LocalOssServer, warehouse_root: Path, state_dir: Path,
                 schema: dict[str, Any] = DEMO_SCHEMA, **engine_kw: Any) -> LocalOpenSearchServer:
    source = TableSource(load_table_schema(schema, "test-schema"), warehouse_root, WAREHOUSE_TABLE,
                         oss_server.endpoint, OSS_AK, OSS_SK)
    engine = LocalEngine(state_dir, IID, {TABLE: source}, **engine_kw)
    return LocalOpenSearchServer(engine, [AcsCredential(AK, SK)], QUERY_USER, QUERY_PASSWORD).start()


@pytest.fixture()
def stack(oss: tuple[LocalOssServer, list[Image_]], tmp_path: Path) -> Iterator[Stack]:
    oss_server, images = oss
    warehouse = LocalWarehouse(tmp_path / "warehouse", WAREHOUSE_TABLE)
    warehouse.ensure_table()
    server = _make_server(oss_server, tmp_path / "warehouse", tmp_path / "state")
    try:
        yield Stack(oss_server, images, warehouse, tmp_path / "state", server.engine, server)
    finally:
        server.stop()


# --- helpers ----------------------------------------------------------------------------------------


def _poll(what: str, fn: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.03)


def _generation_ids(client: Client) -> list[int]:
    return [g.generation_id for g in client.list_table_generations(IID, TABLE).body.result]


def _reindex(client: Client, ds: str) -> int:
    """Reindex and return the new generation id (the API returns none: diff the generation list)."""
    before = set(_generation_ids(client))
    # dataTimeSec: now (the service replays pushed increments from there; it refuses one over 3 days old)
    response = client.reindex(IID, TABLE, se_models.ReindexRequest(partition=f"ds={ds}", data_time_sec=int(time.time())))
    assert response.status_code == 200 and response.body.result == {} and response.body.request_id
    new = _poll("a new generation", lambda: set(_generation_ids(client)) - before)
    (gen_id,) = new
    return gen_id


def _status(client: Client, gen_id: int) -> str:
    result = client.get_table_generation(IID, TABLE, str(gen_id)).body.result
    assert result.generation_id == gen_id
    return result.status


def _wait_final(client: Client, gen_id: int) -> str:
    """The generation's final status: ``ready`` only once its task has finished (switched in)."""

    def final() -> str | None:
        status = _status(client, gen_id)
        if status in ("failed", "stopped") or (status == "ready" and _task(client, gen_id).status == "success"):
            return status
        return None

    return _poll(f"generation {gen_id} to finish", final)


def _task(client: Client, gen_id: int) -> se_models.ListDataSourceTasksResponseBodyResult:
    tasks = client.list_data_source_tasks(IID).body.result
    return next(t for t in tasks if json.loads(t.extra_attribute)["generationId"] == gen_id)


def _nodes(task: se_models.ListDataSourceTasksResponseBodyResult) -> dict[str, str]:
    return {n.name: n.status for n in task.task_nodes}


def _search(stack: Stack, image: bytes, method: str = "GET", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("n", 10)
    query = build_ha_query(image, modal="image", formula="proxima_score(vector)", **kwargs)
    return _raw_search(stack, query, method)


def _raw_search(stack: Stack, query: str, method: str = "GET", password: str = QUERY_PASSWORD) -> dict[str, Any]:
    request = ha3_models.SearchRequestModel({}, ha3_models.SearchQuery(query=query))
    request.method = method
    return json.loads(stack.query_client(password).search(request).body)


def _ids(answer: dict[str, Any]) -> list[int]:
    assert answer["errors"] == [], answer["errors"]
    return [int(item["fields"]["id"]) for item in answer["result"]["items"]]


def _build(stack: Stack, ds: str, images: list[Image_]) -> int:
    stack.write_partition(ds, images)
    client = stack.client()
    gen_id = _reindex(client, ds)
    assert _wait_final(client, gen_id) == "ready"
    return gen_id


# --- management API --------------------------------------------------------------------------------


def test_management_calls_deserialise_into_the_sdk_models(stack: Stack) -> None:
    client = stack.client()
    instance = client.get_instance(IID).body.result
    assert instance.instance_id == IID and instance.status == "READY"
    assert instance.network.endpoint == stack.server.endpoint and instance.user_name == QUERY_USER
    tables = client.list_tables(IID, se_models.ListTablesRequest()).body.result
    assert [(t.name, t.status) for t in tables] == [(TABLE, "IN_USE")]
    table = client.get_table(IID, TABLE).body.result
    assert table.name == TABLE and table.status == "IN_USE" and table.primary_key == "id"
    assert table.field_schema == {"id": "INT64", "source_image": "STRING", "cate_id": "INT64", "vector": "FLOAT"}
    assert json.loads(table.raw_schema) == DEMO_SCHEMA
    (index,) = table.vector_index
    assert (index.index_name, index.vector_field, index.dimension, index.vector_index_type) == (
        "vector", "vector", "512", "CUSTOMIZED")
    assert table.data_process_config[0].params.src_field_config.oss_bucket == "demo-images"
    assert table.data_source.config.table == WAREHOUSE_TABLE and table.data_source.config.access_secret is None
    assert client.list_table_generations(IID, TABLE).body.result == []
    assert client.list_data_source_tasks(IID).body.result == []
    assert client.list_tasks(IID, se_models.ListTasksRequest(start=0, end=2**31)).body.result == []

    policies = client.list_pause_policys(IID).body.result
    assert set(policies) == {"general"} and policies["general"].pause_index is False
    client.modify_pause_policy(IID, se_models.ModifyPausePolicyRequest(
        body={"general": se_models.BodyValue(pause_index=True, pause_biz=True)}))
    flags = client.list_pause_policys(IID).body.result["general"]
    assert (flags.pause_index, flags.pause_biz, flags.pause_all) == (True, True, False)


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda c: c.get_instance("ha-cn-other"), 404, "instance.NotFound"),
        (lambda c: c.get_table(IID, "nope"), 404, "table.NotFound"),
        (lambda c: c.get_table_generation(IID, TABLE, "12345"), 404, "generation.NotFound"),
        (lambda c: c.force_switch(IID, "no-such-fsm"), 404, "task.NotFound"),
        (lambda c: c.reindex(IID, TABLE, se_models.ReindexRequest(partition="20261123")), 400, "InvalidParameter"),
        (lambda c: c.reindex(IID, TABLE, se_models.ReindexRequest()), 400, "InvalidParameter"),
        (lambda c: c.modify_pause_policy(IID, se_models.ModifyPausePolicyRequest(
            body={"cluster9": se_models.BodyValue(pause_index=True)})), 400, "InvalidParameter"),
    ],
    ids=["instance", "table", "generation", "fsm", "partition-spec", "no-partition", "pause-target"],
)
def test_management_errors_map_to_client_exceptions(stack: Stack, call: Callable[[Client], Any], status: int,
                                                    code: str) -> None:
    with pytest.raises(ClientException) as info:
        call(stack.client())
    assert (info.value.status_code, info.value.code) == (status, code)
    assert info.value.request_id


def test_the_async_sdk_methods_work_too(stack: Stack) -> None:
    """The pipeline's deferrable trigger polls with the SDK's *_async methods (aiohttp underneath)."""
    client = stack.client()
    stack.write_partition("20261123", stack.images[:2])

    async def calls() -> tuple[str, int, str]:
        await client.modify_pause_policy_async(IID, se_models.ModifyPausePolicyRequest(
            body={"general": se_models.BodyValue(pause_runtime=True)}))
        await client.reindex_async(IID, TABLE, se_models.ReindexRequest(partition="ds=20261123"))
        (generation,) = (await client.list_table_generations_async(IID, TABLE)).body.result
        status = (await client.get_table_generation_async(IID, TABLE, str(generation.generation_id))).body.result.status
        tasks = (await client.list_data_source_tasks_async(IID)).body.result
        try:
            await client.force_switch_async(IID, "no-such-fsm")  # a bodiless PUT
        except ClientException as exc:
            return status, len(tasks), exc.code
        return status, len(tasks), ""

    status, tasks, code = asyncio.run(calls())
    assert status in ("starting", "building", "ready") and tasks == 1 and code == "task.NotFound"
    assert client.list_pause_policys(IID).body.result["general"].pause_runtime is True


def test_wrong_secret_is_refused_with_signature_does_not_match(stack: Stack) -> None:
    with pytest.raises(ClientException) as info:
        stack.client(secret="not-the-secret").get_instance(IID)
    assert info.value.code == "SignatureDoesNotMatch" and info.value.status_code == 400


def test_http_faults_503_burst_and_throttling(stack: Stack) -> None:
    client = stack.client()
    stack.server.http_faults.unavailable_next = 2
    for _ in range(2):
        with pytest.raises(ServerException) as info:
            client.get_instance(IID)
        assert (info.value.status_code, info.value.code) == (503, "ServiceUnavailable")
    stack.server.http_faults.throttle_next = 1
    stack.server.http_faults.throttle_retry_after = 3
    with pytest.raises(ThrottlingException) as throttled:
        client.list_tables(IID, se_models.ListTablesRequest())
    assert throttled.value.retry_after == 3 and throttled.value.code == "Throttling"
    assert client.get_instance(IID).body.result.status == "READY"  # the bursts are over


# --- rebuilds ----------------------------------------------------------------------------------------


def test_full_rebuild_then_image_to_image_search(stack: Stack) -> None:
    client = stack.client()
    images = stack.images[:20]
    stack.write_partition("20261123", images)
    gen_id = _reindex(client, "20261123")
    assert _status(client, gen_id) in ("starting", "building", "ready")
    assert _wait_final(client, gen_id) == "ready"

    task = _task(client, gen_id)
    assert task.status == "success" and task.type == "full" and task.name == TABLE and task.user == AK
    assert _nodes(task) == {"read_partition": "success", "fetch_and_vectorize": "success",
                            "build_index": "success", "switch": "success"}
    assert all(n.finish_date for n in task.task_nodes)
    assert any("20 of 20 images vectorized" in t.msg for t in task.tags)
    assert client.list_tasks(IID, se_models.ListTasksRequest(start=int(task.time), end=int(task.time))).body.result
    assert client.list_tasks(IID, se_models.ListTasksRequest(start=0, end=int(task.time) - 1)).body.result == []
    assert client.get_table(IID, TABLE).body.result.data_source.config.partition == "ds=20261123"
    meta = json.loads((stack.state_dir / IID / TABLE / "generations" / str(gen_id) / "meta.json").read_text())
    assert meta["docCount"] == 20 and meta["partition"] == "ds=20261123" and meta["vectorizer"]["name"]

    target = images[7]
    for method in ("GET", "POST"):
        answer = _search(stack, target.data, method, sort=["+RANK"])
        ids = _ids(answer)
        assert ids[0] == target.id
        top = answer["result"]["items"][0]
        assert top["fields"] == {"id": str(target.id), "source_image": "/" + target.key, "cate_id": str(target.cate_id)}
        assert float(top["sortExprValues"][0]) < 1e-3  # squared L2 distance to itself
        assert answer["result"]["totalHits"] == 10 and answer["result"]["numHits"] == 10

    best_first = _ids(_search(stack, target.data, sort=["+RANK"]))
    assert _ids(_search(stack, target.data)) == best_first  # no sort clause: best first
    assert _ids(_search(stack, target.data, sort=["-RANK"])) == best_first[::-1]
    page = _search(stack, target.data, sort=["+RANK"], start=3, hit=4)
    assert _ids(page) == best_first[3:7] and page["result"]["totalHits"] == 10
    filtered = _search(stack, target.data, n=20, filter=f"cate_id={target.cate_id}")
    assert set(_ids(filtered)) == {im.id for im in images if im.cate_id == target.cate_id}
    vendor = _search(stack, target.data, config_extra={"fetch_summary_type": "pk", "qrs_chain": "search"})
    assert vendor["result"]["items"][0]["fields"] == top["fields"]  # fetched by pk: the same summary
    by_cate = _search(stack, target.data, n=20, sort=["-cate_id", "+RANK"])
    cates = [int(item["sortExprValues"][0]) for item in by_cate["result"]["items"]]
    assert cates == sorted(cates, reverse=True)


def test_previous_generation_answers_until_the_switch_which_is_atomic(stack: Stack) -> None:
    client = stack.client()
    old, new = stack.images[:8], stack.images[:16]
    _build(stack, "20261122", old)
    probe = new[-1]  # only in the new partition
    assert _search(stack, probe.data, n=50)["result"]["totalHits"] == 8

    seen: list[int] = []
    stop = threading.Event()

    def keep_querying() -> None:
        while not stop.is_set():
            seen.append(_search(stack, probe.data, n=50)["result"]["totalHits"])

    stack.engine.faults.stall_next_build = True
    stack.write_partition("20261123", new)
    gen_id = _reindex(client, "20261123")
    _poll("the build to stall at build_index", lambda: _nodes(_task(client, gen_id))["build_index"] == "running")
    assert _status(client, gen_id) == "building"
    assert probe.id not in _ids(_search(stack, probe.data, n=50))  # still the old generation
    worker = threading.Thread(target=keep_querying)
    worker.start()
    try:
        _poll("a few queries during the build", lambda: len(seen) >= 3)
        stack.engine.release_stalled_builds()
        assert _wait_final(client, gen_id) == "ready"
        _poll("queries after the switch", lambda: seen and seen[-1] == 16)
    finally:
        stop.set()
        worker.join()
    assert set(seen) <= {8, 16}  # every answer came from one whole generation
    assert _ids(_search(stack, probe.data, n=50))[0] == probe.id


def test_too_many_undecodable_images_fail_the_build(stack: Stack) -> None:
    client = stack.client()
    live = _build(stack, "20261122", stack.images[:4])
    broken = [(80001 + i, f"/catalog/broken/{80001 + i}.jpg", 1) for i in range(3)]
    stack.write_partition("20261123", stack.images[:7], extra=broken)
    gen_id = _reindex(client, "20261123")
    assert _wait_final(client, gen_id) == "failed"
    task = _task(client, gen_id)
    assert task.status == "failed"
    assert _nodes(task) == {"read_partition": "success", "fetch_and_vectorize": "failed",
                            "build_index": "skipped", "switch": "skipped"}
    message = task.tags[-1].msg
    assert "7 of 10 images vectorized, 3 could not be fetched or decoded" in message
    assert "catalog/broken/80001.jpg" in message and "max_decode_failure_fraction" in message
    assert stack.engine.live_generation_id(TABLE) == live  # the old index still serves


def test_a_few_undecodable_images_are_skipped_and_reported(stack: Stack) -> None:
    client = stack.client()
    stack.write_partition("20261123", stack.images[:22], extra=[(80001, "/catalog/broken/80001.jpg", 1)])
    gen_id = _reindex(client, "20261123")
    assert _wait_final(client, gen_id) == "ready"  # 1 of 23 = 4.3 %, under the 5 % limit
    generation = stack.engine.get_generation(TABLE, gen_id)
    assert (generation["docCount"], generation["failures"]) == (22, 1)
    assert generation["failureExamples"][0]["pk"] == 80001
    tags = _task(client, gen_id).tags
    assert any(t.tag_level == "warn" and "1 could not be fetched or decoded" in t.msg for t in tags)


def _raw_generation(client: Client, gen_id: int) -> dict:
    """GetTableGeneration's whole answer, as the SDK sends the call but before its model drops fields."""
    from alibabacloud_tea_openapi import utils_models
    from darabonba.runtime import RuntimeOptions

    params = utils_models.Params(
        action="GetTableGeneration", version="2021-10-25", protocol="HTTPS",
        pathname=f"/openapi/ha3/instances/{IID}/tables/{TABLE}/index_versions/{gen_id}",
        method="GET", auth_type="AK", style="ROA", req_body_type="json", body_type="json",
    )
    return client.call_api(params, utils_models.OpenApiRequest(headers={}), RuntimeOptions())["body"]["result"]


def test_get_table_generation_answers_the_documented_fields_and_the_builds_figures(stack: Stack) -> None:
    """The documented result is generationId and status (all the SDK's model keeps); the local server adds
    what the build counted, and with report_build_figures off answers exactly the documented fields."""
    client = stack.client()
    stack.write_partition("20261123", stack.images[:22], extra=[(80001, "/catalog/broken/80001.jpg", 1)])
    gen_id = _reindex(client, "20261123")
    assert _wait_final(client, gen_id) == "ready"
    raw = _raw_generation(client, gen_id)
    assert set(raw) == {"generationId", "status", "rows", "docCount", "failures", "failureExamples"}
    assert (raw["status"], raw["rows"], raw["docCount"], raw["failures"]) == ("ready", 23, 22, 1)
    (example,) = raw["failureExamples"]
    assert example["pk"] == 80001 and example["image"] == "/catalog/broken/80001.jpg"
    assert example["reason"].startswith("decode failed")
    assert client.get_table_generation(IID, TABLE, str(gen_id)).body.result.to_map() == {
        "generationId": gen_id, "status": "ready"}  # the SDK's model: the documented fields only
    stack.server.report_build_figures = False
    assert _raw_generation(client, gen_id) == {"generationId": gen_id, "status": "ready"}


def test_a_missing_object_counts_as_a_failure(stack: Stack) -> None:
    client = stack.client()
    stack.write_partition("20261123", stack.images[:2], extra=[(80009, "/catalog/none/80009.jpg", 1)])
    gen_id = _reindex(client, "20261123")
    assert _wait_final(client, gen_id) == "failed"
    assert "NoSuchKey" in _task(client, gen_id).tags[-1].msg


def test_missing_partition_fails_the_generation_with_a_clear_message(stack: Stack) -> None:
    client = stack.client()
    gen_id = _reindex(client, "20990101")
    assert _wait_final(client, gen_id) == "failed"
    task = _task(client, gen_id)
    assert _nodes(task)["read_partition"] == "failed"
    assert "partition ds=20990101" in task.tags[-1].msg and "does not exist" in task.tags[-1].msg
    assert "does not exist" in stack.engine.get_generation(TABLE, gen_id)["message"]


def test_fail_next_build_fault(stack: Stack) -> None:
    client = stack.client()
    stack.engine.faults.fail_next_build = "disk quota exceeded"
    stack.write_partition("20261123", stack.images[:3])
    gen_id = _reindex(client, "20261123")
    assert _wait_final(client, gen_id) == "failed"
    assert "disk quota exceeded" in _task(client, gen_id).tags[-1].msg
    assert _nodes(_task(client, gen_id))["build_index"] == "failed"
    assert stack.engine.faults.fail_next_build is None  # one-shot
    assert _wait_final(client, _reindex(client, "20261123")) == "ready"


def test_stop_next_generation_fault(stack: Stack) -> None:
    client = stack.client()
    stack.engine.faults.stop_next_generation = True
    stack.write_partition("20261123", stack.images[:3])
    gen_id = _reindex(client, "20261123")
    assert _wait_final(client, gen_id) == "stopped"
    task = _task(client, gen_id)
    assert task.status == "stopped" and _nodes(task)["switch"] == "stopped"
    assert stack.engine.live_generation_id(TABLE) is None


def test_stalled_build_makes_no_progress_until_released(stack: Stack) -> None:
    client = stack.client()
    stack.engine.faults.stall_next_build = True
    stack.write_partition("20261123", stack.images[:3])
    gen_id = _reindex(client, "20261123")
    _poll("the stall", lambda: _nodes(_task(client, gen_id))["build_index"] == "running")
    snapshot = [(n.name, n.status, n.finish_date) for n in _task(client, gen_id).task_nodes]
    for _ in range(5):  # polls see no change while stalled
        assert [(n.name, n.status, n.finish_date) for n in _task(client, gen_id).task_nodes] == snapshot
        assert _status(client, gen_id) == "building"
    with pytest.raises(ClientException) as info:  # one build per table at a time
        client.reindex(IID, TABLE, se_models.ReindexRequest(partition="ds=20261123"))
    assert (info.value.status_code, info.value.code) == (409, "OperationDenied.BuildInProgress")
    stack.engine.release_stalled_builds()
    assert _wait_final(client, gen_id) == "ready"


def test_pause_index_holds_a_finished_build_until_force_switch(stack: Stack) -> None:
    client = stack.client()
    old = _build(stack, "20261122", stack.images[:4])
    client.modify_pause_policy(IID, se_models.ModifyPausePolicyRequest(
        body={"general": se_models.BodyValue(pause_index=True)}))
    stack.write_partition("20261123", stack.images[:9])
    gen_id = _reindex(client, "20261123")
    task = _poll("the task to wait for the switch", lambda: (t := _task(client, gen_id)).status == "waiting" and t)
    assert _nodes(task) == {"read_partition": "success", "fetch_and_vectorize": "success",
                            "build_index": "success", "switch": "waiting"}
    assert any("pauseIndex is on" in t.msg and task.fsm_id in t.msg for t in task.tags)
    assert _status(client, gen_id) == "ready"  # built, but not switched in: ready alone is not live
    assert stack.engine.live_generation_id(TABLE) == old
    assert _search(stack, stack.images[0].data, n=50)["result"]["totalHits"] == 4

    client.force_switch(IID, task.fsm_id)
    assert _wait_final(client, gen_id) == "ready"
    assert _search(stack, stack.images[0].data, n=50)["result"]["totalHits"] == 9
    assert _task(client, gen_id).status == "success"
    with pytest.raises(ClientException) as info:
        client.force_switch(IID, task.fsm_id)
    assert (info.value.status_code, info.value.code) == (409, "OperationDenied.TaskStatus")


def test_lifting_the_pause_switches_the_waiting_build(stack: Stack) -> None:
    client = stack.client()
    client.modify_pause_policy(IID, se_models.ModifyPausePolicyRequest(
        body={"general": se_models.BodyValue(pause_all=True)}))
    stack.write_partition("20261123", stack.images[:3])
    gen_id = _reindex(client, "20261123")
    _poll("the wait", lambda: _task(client, gen_id).status == "waiting")
    assert _status(client, gen_id) == "ready"
    client.modify_pause_policy(IID, se_models.ModifyPausePolicyRequest(
        body={"general": se_models.BodyValue(pause_all=False)}))
    assert _wait_final(client, gen_id) == "ready"
    assert stack.engine.live_generation_id(TABLE) == gen_id


def test_a_generation_is_ready_before_it_is_switched_in_and_may_never_be(stack: Stack) -> None:
    """``ready`` is not live: the held switch leaves the task running and the old generation answering."""
    client = stack.client()
    old = _build(stack, "20261122", stack.images[:4])
    stack.engine.faults.hold_switch_next_build = True
    stack.write_partition("20261123", stack.images[:9])
    gen_id = _reindex(client, "20261123")
    _poll("the generation to be built", lambda: _status(client, gen_id) == "ready")
    task = _poll("the switch to hang", lambda: (t := _task(client, gen_id)) and any(
        "has not received the switch target" in tag.msg for tag in t.tags) and t)
    assert task.status == "running" and _nodes(task)["switch"] == "running"
    for _ in range(5):  # nothing moves on its own
        time.sleep(0.05)
        assert (_task(client, gen_id).status, _status(client, gen_id)) == ("running", "ready")
    assert stack.engine.live_generation_id(TABLE) == old
    assert _search(stack, stack.images[0].data, n=50)["result"]["totalHits"] == 4  # the old index answers
    with pytest.raises(ClientException) as info:  # built but not switched in: still this table's build
        client.reindex(IID, TABLE, se_models.ReindexRequest(partition="ds=20261123"))
    assert (info.value.status_code, info.value.code) == (409, "OperationDenied.BuildInProgress")
    assert f"generation {gen_id}" in info.value.message and "task running" in info.value.message

    client.force_switch(IID, task.fsm_id)  # the documented remedy
    assert _wait_final(client, gen_id) == "ready"
    assert _search(stack, stack.images[0].data, n=50)["result"]["totalHits"] == 9
    assert "(forced)" in _task(client, gen_id).tags[-1].msg


def test_a_new_generation_may_be_registered_after_the_reindex_answered(stack: Stack) -> None:
    client = stack.client()
    stack.engine.faults.register_delay_s = 0.6
    stack.write_partition("20261123", stack.images[:3])
    before = _generation_ids(client)
    client.reindex(IID, TABLE, se_models.ReindexRequest(partition="ds=20261123"))
    assert _generation_ids(client) == before and client.list_data_source_tasks(IID).body.result == []
    with pytest.raises(ClientException) as info:  # not listed yet, but building: a second build is refused
        client.reindex(IID, TABLE, se_models.ReindexRequest(partition="ds=20261123"))
    assert info.value.code == "OperationDenied.BuildInProgress"
    (gen_id,) = _poll("the generation to be registered", lambda: set(_generation_ids(client)) - set(before))
    assert "visibleAt" not in stack.engine.get_generation(TABLE, gen_id)
    assert _wait_final(client, gen_id) == "ready"


def test_a_lost_reindex_answer_still_starts_the_build(stack: Stack) -> None:
    """To the client a failure after sending; to the service, work done: the build runs."""
    client = stack.client()
    stack.server.http_faults.lose_reindex_answer_next = 1
    stack.write_partition("20261123", stack.images[:3])
    before = set(_generation_ids(client))
    with pytest.raises(TeaException) as info:
        client.reindex(IID, TABLE, se_models.ReindexRequest(partition="ds=20261123"))
    assert "Remote end closed connection without response" in str(info.value)
    (gen_id,) = _poll("the build the lost call started", lambda: set(_generation_ids(client)) - before)
    assert _wait_final(client, gen_id) == "ready"
    assert stack.server.http_faults.lose_reindex_answer_next == 0


def test_get_table_reports_automatic_index_rebuild(stack: Stack) -> None:
    client = stack.client()
    assert client.get_table(IID, TABLE).body.result.data_source.auto_build_index is False
    stack.engine.auto_build_index.add(TABLE)
    assert client.get_table(IID, TABLE).body.result.data_source.auto_build_index is True


def test_state_survives_a_restart_and_interrupted_builds_fail(stack: Stack, tmp_path: Path) -> None:
    client = stack.client()
    live = _build(stack, "20261123", stack.images[:6])
    stack.engine.faults.stall_next_build = True
    stalled = _reindex(client, "20261123")
    _poll("the stall", lambda: _nodes(_task(client, stalled))["build_index"] == "running")
    stack.server.stop()

    restarted = _make_server(stack.oss, tmp_path / "warehouse", stack.state_dir)
    stack.server, stack.engine = restarted, restarted.engine  # the fixture stops this one
    client = stack.client()
    assert _generation_ids(client) == [live, stalled]
    assert _status(client, live) == "ready" and _status(client, stalled) == "failed"
    assert "interrupted by a server restart" in stack.engine.get_generation(TABLE, stalled)["message"]
    assert _task(client, stalled).status == "failed"
    held = restarted.engine  # a switch that had not happened when the server stopped ends failed, too
    held.faults.hold_switch_next_build = True
    unswitched = _reindex(client, "20261123")
    _poll("the held switch", lambda: _status(client, unswitched) == "ready")
    stack.server.stop()
    restarted = _make_server(stack.oss, tmp_path / "warehouse", stack.state_dir)
    stack.server, stack.engine = restarted, restarted.engine
    client = stack.client()
    assert _status(client, unswitched) == "ready" and _task(client, unswitched).status == "failed"
    assert stack.engine.live_generation_id(TABLE) == live
    assert _ids(_search(stack, stack.images[2].data))[0] == stack.images[2].id
    assert _wait_final(client, _reindex(client, "20261123")) == "ready"  # and it builds again


def test_inner_product_tables_score_similarity_best_first_with_minus_rank(oss: tuple[LocalOssServer, list[Image_]],
                                                                          tmp_path: Path) -> None:
    schema = json.loads(json.dumps(DEMO_SCHEMA))
    schema["indexes"][1]["distance_type"] = "InnerProduct"
    warehouse = LocalWarehouse(tmp_path / "warehouse", WAREHOUSE_TABLE)
    warehouse.ensure_table()
    server = _make_server(oss[0], tmp_path / "warehouse", tmp_path / "state", schema)
    try:
        stack = Stack(oss[0], oss[1], warehouse, tmp_path / "state", server.engine, server)
        _build(stack, "20261123", stack.images[:10])
        target = stack.images[4]
        answer = _search(stack, target.data, sort=["-RANK"])
        assert _ids(answer)[0] == target.id and float(answer["result"]["items"][0]["sortExprValues"][0]) > 0.999
        assert _ids(_search(stack, target.data)) == _ids(answer)
    finally:
        server.stop()


# --- the query API ---------------------------------------------------------------------------------

TEXT_QUERY = "config=start:0,hit:10,format:json&&query=vector:'motorcycle helmet&modal=text&n=10&search_params={}'" \
             "&&kvpairs=formula:proxima_score(vector)&&sort=+RANK&&cluster=general"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", 1050),
        ("config=hit:abc&&query=vector:'aGk=&modal=image&n=1'", 2023),
        ("query=vector:'abc&modal=image&n=1", 1051),
        ("query=vector:'!!!!&modal=image&n=1'", 1051),
        ("query=vector:'aGVsbG8gd29ybGQ=&modal=image&n=1'", 1051),  # valid Base64, not an image
        ("query=vector:'aGk=&modal=image&n=1'&&cluster=nosuch", 1001),
        ("query=image_index:'aGk=&modal=image&n=1'", 1013),
        ("query=vector:'aGk=&modal=image&n=1'&&filter=color=1", 2000),
        ("query=vector:'aGk=&modal=image&n=1'&&filter=cate_id=\"red\"", 2001),
        ("query=vector:'aGk=&modal=image&n=1'&&sort=-price", 2000),
        ("query=vector:'aGk=&modal=image&n=1'&&kvpairs=formula:bm25(title)", 2100),
        ("query=vector:'aGk=&modal=image&n=1'&&aggregate=group_key:cate_id", 1056),
        (TEXT_QUERY, 3500),
        ("config=qrs_chain:nosuch&&query=vector:'aGk=&modal=image&n=1'", 10005),
    ],
    ids=["empty", "config", "unclosed", "base64", "not-image", "cluster", "index", "filter-field", "filter-type",
         "sort-field", "formula", "aggregate", "text", "qrs-chain"],
)
def test_bad_queries_answer_ha_errors_not_crashes(stack: Stack, query: str, code: int) -> None:
    # An empty query makes the SDK's POST take its SQL branch (/query?type=sql): GET only for that one.
    for method in ("GET", "POST") if query else ("GET",):
        answer = _raw_search(stack, query, method)
        assert [e["code"] for e in answer["errors"]] == [code], answer
        assert answer["result"]["items"] == [] and answer["result"]["totalHits"] == 0


def test_text_queries_explain_that_a_clip_text_encoder_is_needed(stack: Stack) -> None:
    (error,) = _raw_search(stack, TEXT_QUERY)["errors"]
    assert error["message"].startswith("ERROR_ANALYZER_NOT_EXIST: modal=text is not available here")
    assert "CLIP" in error["message"] and "text encoder" in error["message"]


def test_an_empty_table_answers_zero_hits(stack: Stack) -> None:
    answer = _search(stack, stack.images[0].data)
    assert answer == {"result": {"searchtime": answer["result"]["searchtime"], "totalHits": 0, "numHits": 0,
                                 "coveredPercent": 100.0, "items": []}, "errors": []}


def test_wrong_or_missing_basic_auth_is_refused(stack: Stack) -> None:
    query = build_ha_query(stack.images[0].data, modal="image")
    with pytest.raises(TeaException) as info:
        _raw_search(stack, query, password="wrong")
    assert info.value.code == 401
    assert info.value.data["errors"]["errors"][0]["code"] == 4003
    import requests

    response = requests.get(f"{stack.server.url}/query", params={"query": query}, timeout=5)
    assert response.status_code == 401 and response.json()["errors"][0]["code"] == 4003


def test_sql_queries_are_refused_and_unknown_paths_are_json(stack: Stack) -> None:
    request = ha3_models.SearchRequestModel({}, ha3_models.SearchQuery(sql="SELECT * FROM images"))
    request.method = "POST"
    answer = json.loads(stack.query_client().search(request).body)
    assert answer["errors"][0]["code"] == 8000
    import requests

    response = requests.get(f"{stack.server.url}/nowhere", timeout=5)
    assert response.status_code == 404 and response.json()["errors"][0]["code"] == 404


def test_a_large_image_fits_in_a_get_request(stack: Stack) -> None:
    _build(stack, "20261123", stack.images[:3])
    rng = random.Random(3)
    image = Image.frombytes("RGB", (200, 200), rng.randbytes(200 * 200 * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    assert len(base64.b64encode(buffer.getvalue())) > 100_000  # longer than http.server's 64 KiB line limit
    assert len(_ids(_search(stack, buffer.getvalue(), "GET"))) == 3


# --- the command line ------------------------------------------------------------------------------


def test_cli_serves_from_a_config_file_with_secrets_from_the_environment(
    oss: tuple[LocalOssServer, list[Image_]], tmp_path: Path
) -> None:
    config = {
        "instance_id": IID,
        "state_dir": "state",
        "credentials": [{"access_key_id": AK, "access_key_secret_env": "TEST_OPENSEARCH_SECRET"}],
        "query_user": QUERY_USER,
        "query_password_env": "TEST_OPENSEARCH_QUERY_PASSWORD",
        "tables": {TABLE: {
            "schema": "demo",
            "warehouse": {"root": "warehouse", "table": WAREHOUSE_TABLE},
            "oss": {"endpoint": oss[0].endpoint, "access_key_id": OSS_AK, "access_key_secret_env": "TEST_OSS_SECRET"},
            "auto_build_index": True,
        }},
        "faults": {"phase_delay_s": 0.0, "register_delay_s": 0.0},
    }
    (tmp_path / "server.json").write_text(json.dumps(config))
    env = {**os.environ, "TEST_OPENSEARCH_SECRET": SK, "TEST_OPENSEARCH_QUERY_PASSWORD": QUERY_PASSWORD,
           "TEST_OSS_SECRET": OSS_SK, "PYTHONPATH": str(REPO)}
    pidfile = tmp_path / "server.pid"
    process = subprocess.Popen(
        [sys.executable, "-m", "localcloud.opensearch", "--config", str(tmp_path / "server.json"),
         "--pidfile", str(pidfile), "--stall-next-build", "--hold-switch-next-build"],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = ""
        while "listening on" not in line:
            line = process.stderr.readline()
            assert line, "the server exited before listening"
        endpoint = line.split("listening on ", 1)[1].split()[0]
        assert pidfile.read_text().strip() == str(process.pid)
        client = Client(open_api_models.Config(access_key_id=AK, access_key_secret=SK, protocol="http",
                                               endpoint=endpoint))
        assert client.get_instance(IID).body.result.status == "READY"
        assert client.get_table(IID, TABLE).body.result.data_source.auto_build_index is True
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=10)[1]
    assert process.returncode == 0, output
    assert not pidfile.exists()
    assert SK not in line + output and QUERY_PASSWORD not in line + output
