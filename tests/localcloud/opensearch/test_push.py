"""The push API of the local OpenSearch server, driven through the real alibabacloud-ha3engine client.

Why: the pipeline's push path will be written against this stand-in, so the stand-in must refuse what
the cloud refuses (or more), with the status and code the contract in server.py names, apply nothing of
a refused request, answer OK only for what it has received (and say nothing more: "OK" is not
"applied"), and make pushed documents findable by primary key and by image. The fault knobs are the
ways a real push path goes wrong: dropped after OK, applied late, throttled.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from alibabacloud_ha3engine import client as ha3_client
from alibabacloud_ha3engine import models as ha3_models
from Tea.exceptions import TeaException

from localcloud.demo import apply_faults
from localcloud.opensearch.config import server_from_config
from pipeline.opensearch.ha.grammar import build_pk_lookup_query
from tests.localcloud.opensearch.test_server import (  # noqa: F401 - oss and stack are fixtures
    IID,
    OSS_AK,
    OSS_SK,
    QUERY_PASSWORD,
    QUERY_USER,
    REPO,
    TABLE,
    WAREHOUSE_TABLE,
    Image_,
    Stack,
    _build,
    _ids,
    _raw_search,
    _search,
    oss,
    stack,
)

DATA_SOURCE = f"{IID}_{TABLE}"
MB = 1024 * 1024


def _client(stack: Stack, password: str = QUERY_PASSWORD) -> ha3_client.Client:
    return ha3_client.Client(ha3_models.Config(endpoint=stack.server.endpoint, protocol="http",
                                               access_user_name=QUERY_USER, access_pass_word=password))


def _push(stack: Stack, docs: Any, data_source: str = DATA_SOURCE, key: str = "id",
          password: str = QUERY_PASSWORD) -> dict[str, Any]:
    request = ha3_models.PushDocumentsRequestModel({}, docs)
    return json.loads(_client(stack, password).push_documents(data_source, key, request).body)


def _refusal(call: Any) -> tuple[int, int, str, dict[str, Any]]:
    """(HTTP status, error code, message, body) of a push the server refused."""
    with pytest.raises(TeaException) as info:
        call()
    body = info.value.data["errors"]
    assert body["status"] == "FAIL" and uuid.UUID(body["request_id"]), body
    (error,) = body["errors"]
    return int(info.value.code), error["code"], error["message"], body


def _add(image: Image_, pk: int | None = None, cate_id: int = 7) -> dict[str, Any]:
    return {"cmd": "add", "fields": {"id": image.id if pk is None else pk, "source_image": "/" + image.key,
                                     "cate_id": cate_id}}


def _lookup(stack: Stack, *pks: int) -> dict[int, dict[str, str]]:
    answer = _raw_search(stack, build_pk_lookup_query("id", list(pks), "general"))
    assert answer["errors"] == [], answer
    return {int(item["fields"]["id"]): item["fields"] for item in answer["result"]["items"]}


def _applied(stack: Stack) -> None:
    assert stack.engine.wait_for_pushes(TABLE, 20.0), stack.engine.push_status(TABLE)


def _nothing_kept(stack: Stack) -> None:
    status = stack.engine.push_status(TABLE)
    assert (status["received"], status["lastSeq"], status["logEntries"]) == (0, 0, 0), status


# --- documents become searchable ------------------------------------------------------------------


def test_pushed_adds_and_deletes_become_searchable_by_key_and_by_image(stack: Stack) -> None:
    base, new = stack.images[:6], stack.images[6:8]
    _build(stack, "20261123", base)
    gone = base[2]
    answer = _push(stack, [_add(new[0]), _add(new[1], cate_id=8), {"cmd": "delete", "fields": {"id": gone.id}}])
    assert answer["status"] == "OK" and answer["errors"] == [] and uuid.UUID(answer["request_id"])
    _applied(stack)

    found = _lookup(stack, new[0].id, new[1].id, gone.id, base[0].id, 99999)
    assert set(found) == {new[0].id, new[1].id, base[0].id}  # the deleted and the unknown key are not there
    assert found[new[1].id] == {"id": str(new[1].id), "source_image": "/" + new[1].key, "cate_id": "8"}
    for image in new:
        assert _ids(_search(stack, image.data, sort=["+RANK"]))[0] == image.id
    assert gone.id not in _ids(_search(stack, gone.data, n=50))
    assert _search(stack, base[0].data, n=50)["result"]["totalHits"] == 7  # 6 - 1 + 2
    status = stack.engine.push_status(TABLE)
    assert (status["received"], status["applied"], status["pending"], status["failed"]) == (3, 3, 0, 0)
    assert (status["layerDocuments"], status["layerTombstones"]) == (2, 1)
    assert stack.engine.vectorized_images(TABLE) == {"build": 6, "push": 2, "replay": 0}

    _push(stack, [{"cmd": "delete", "fields": {"id": gone.id}}, _add(new[0])])  # again: nothing changes
    _applied(stack)
    assert set(_lookup(stack, new[0].id, gone.id)) == {new[0].id}
    assert _search(stack, base[0].data, n=50)["result"]["totalHits"] == 7


def test_a_replaced_image_under_the_same_key_is_found_by_the_new_image(stack: Stack) -> None:
    base = stack.images[:5]
    _build(stack, "20261123", base)
    target, replacement = base[1], stack.images[9]
    _push(stack, [_add(replacement, pk=target.id, cate_id=42)])
    _applied(stack)
    top = _search(stack, replacement.data, sort=["+RANK"])["result"]["items"][0]
    assert top["fields"] == {"id": str(target.id), "source_image": "/" + replacement.key, "cate_id": "42"}
    assert float(top["sortExprValues"][0]) < 1e-3
    hits = _search(stack, target.data, n=10, sort=["+RANK"])["result"]["items"]
    assert all(h["fields"]["source_image"] != "/" + target.key for h in hits)  # the old document is gone ...
    assert float(hits[0]["sortExprValues"][0]) > 1e-3  # ... and so is its vector: nothing matches the old image
    assert [h["fields"]["id"] for h in hits].count(str(target.id)) == 1
    assert _lookup(stack, target.id)[target.id]["source_image"] == "/" + replacement.key


def test_an_image_that_cannot_be_read_leaves_its_push_out_and_is_reported(stack: Stack) -> None:
    base = stack.images[:3]
    _build(stack, "20261123", base)
    broken = {"cmd": "add", "fields": {"id": base[0].id, "source_image": "/catalog/broken/80001.jpg", "cate_id": 1}}
    missing = {"cmd": "add", "fields": {"id": 555, "source_image": "/catalog/nowhere.jpg", "cate_id": 1}}
    assert _push(stack, [broken, missing, _add(stack.images[4])])["status"] == "OK"  # received, not applied
    _applied(stack)
    found = _lookup(stack, base[0].id, 555, stack.images[4].id)
    assert found[base[0].id]["source_image"] == "/" + base[0].key  # the document there stays as it was
    assert 555 not in found and stack.images[4].id in found
    status = stack.engine.push_status(TABLE)
    assert (status["applied"], status["failed"]) == (1, 2)
    reasons = {f["pk"]: f["reason"] for f in stack.engine.push_failures(TABLE)}
    assert reasons[555].startswith("NoSuchKey") and reasons[base[0].id].startswith("decode failed")
    assert status["failureExamples"][-1]["pk"] == 555


def test_pushes_to_a_table_never_built_answer_from_the_layer_alone(stack: Stack) -> None:
    image = stack.images[3]
    _push(stack, [_add(image)])
    _applied(stack)
    assert set(_lookup(stack, image.id)) == {image.id}
    assert _ids(_search(stack, image.data)) == [image.id]
    assert stack.engine.live_generation_id(TABLE) is None


# --- refusals -------------------------------------------------------------------------------------


def _big(n: int) -> str:
    return "/" + "x" * n


@pytest.mark.parametrize(
    ("kwargs", "status", "code", "fragment"),
    [
        ({"password": "wrong"}, 401, 4003, "Basic"),
        ({"data_source": TABLE}, 404, 3012, f"{IID}_<table>, e.g. {IID}_{TABLE}"),
        ({"data_source": f"ha-cn-other_{TABLE}"}, 404, 3012, "resource not found"),
        ({"data_source": f"{IID}_nosuch"}, 404, 3012, "resource not found"),
        ({"key": "cate_id"}, 400, 3011, "'id'"),
        ({"docs": []}, 400, 3001, "1 or more documents"),
        ({"docs": None}, 400, 3001, "body is empty"),
        ({"docs": "[{\"cmd\": \"add\""}, 400, 4007, "not UTF-8 JSON"),
        ({"docs": {"cmd": "add"}}, 400, 3001, "JSON array"),
        ({"docs": [{"cmd": "update", "fields": {"id": 1, "cate_id": 2}}]}, 400, 3002, "not supported"),
        ({"docs": [{"cmd": "ADD", "fields": {"id": 1}}]}, 400, 3002, "'add' or 'delete'"),
        ({"docs": [{"fields": {"id": 1}}]}, 400, 3002, "'add' or 'delete'"),
        ({"docs": [{"cmd": "delete", "fields": {}}]}, 400, 3003, "missing"),
        ({"docs": [{"cmd": "delete", "fields": {"id": "12"}}]}, 400, 3003, "integer (INT64)"),
        ({"docs": [{"cmd": "delete", "fields": {"id": True}}]}, 400, 3003, "integer"),
        ({"docs": [{"cmd": "delete", "fields": {"id": 2**63}}]}, 400, 3003, "integer"),
        ({"docs": [{"cmd": "add", "fields": {"id": 1, "source_image": "/a.jpg", "cate_id": 1, "color": "red"}}]},
         400, 3004, "unknown field(s) ['color']"),
        ({"docs": [{"cmd": "add", "fields": {"id": 1, "source_image": "/a.jpg"}}]}, 400, 3004, "missing field(s) ['cate_id']"),
        ({"docs": [{"cmd": "add", "fields": {"id": 1, "source_image": "/a.jpg", "cate_id": 1, "vector": [0.5]}}]},
         400, 3004, "filled by the service"),
        ({"docs": [{"cmd": "add", "fields": {"id": 1, "source_image": "/a.jpg", "cate_id": "1"}}]}, 400, 3004, "INT64"),
        ({"docs": [{"cmd": "add", "fields": {"id": 1, "source_image": None, "cate_id": 1}}]}, 400, 3004, "null"),
        ({"docs": [{"cmd": "add", "fields": {"id": 1, "source_image": 5, "cate_id": 1}}]}, 400, 3004, "STRING"),
        ({"docs": [{"cmd": "add", "fields": {"id": 1, "source_image": _big(MB), "cate_id": 1}}]}, 400, 3005, "1 MB"),
        ({"docs": [["add", {"id": 1}]]}, 400, 3006, "JSON object"),
        ({"docs": [{"cmd": "delete", "fields": {"id": 1}, "options": {}}]}, 400, 3006, "unknown key(s) ['options']"),
        ({"docs": [{"cmd": "delete", "fields": {"id": 1}, "timestamp": "now"}]}, 400, 3006, "timestamp"),
        ({"docs": [{"cmd": "delete", "fields": [1]}]}, 400, 3006, "fields must be a JSON object"),
    ],
    ids=["auth", "bare-table", "other-instance", "unknown-table", "pk-header", "empty-array", "no-body", "not-json",
         "object", "update", "upper-case", "no-cmd", "pk-missing", "pk-string", "pk-bool", "pk-range", "unknown-field",
         "missing-field", "vector-field", "wrong-type", "null", "string-type", "field-over-1mb", "not-object",
         "unknown-key", "timestamp", "fields-list"],
)
def test_each_refusal_has_its_status_and_code_and_keeps_nothing(stack: Stack, kwargs: dict[str, Any], status: int,
                                                                 code: int, fragment: str) -> None:
    docs = kwargs.pop("docs", [{"cmd": "delete", "fields": {"id": 1}}])
    got = _refusal(lambda: _push(stack, docs, **kwargs))
    assert got[:2] == (status, code), got
    assert fragment in got[2], got[2]
    _nothing_kept(stack)


def test_one_bad_document_refuses_the_whole_request(stack: Stack) -> None:
    good = _add(stack.images[0])
    status, code, message, _ = _refusal(lambda: _push(stack, [good, good, {"cmd": "add", "fields": {"id": 5}}]))
    assert (status, code) == (400, 3004) and message.startswith("document 2:")
    _nothing_kept(stack)
    assert _lookup(stack, stack.images[0].id) == {}
    assert _push(stack, [{"cmd": "delete", "fields": {"id": 1}, "timestamp": 1764000000000}])["status"] == "OK"


def test_a_string_primary_key_must_be_a_string(oss, tmp_path) -> None:  # noqa: F811 - the fixture
    from tests.localcloud.opensearch.test_server import _make_server
    from localcloud.opensearch.schema import DEMO_SCHEMA

    schema = json.loads(json.dumps(DEMO_SCHEMA))
    schema["fields"][0]["field_type"] = "STRING"
    server = _make_server(oss[0], tmp_path / "warehouse", tmp_path / "state", schema)
    try:
        string_stack = SimpleNamespace(server=server)
        status, code, message, _ = _refusal(lambda: _push(string_stack, [{"cmd": "delete", "fields": {"id": 12}}]))
        assert (status, code) == (400, 3003) and "non-empty string (STRING)" in message
        assert _push(string_stack, [{"cmd": "delete", "fields": {"id": "sku-12"}}])["status"] == "OK"
    finally:
        server.stop()


def _raw(stack: Stack, method: str = "POST", body: bytes = b"[]", headers: dict[str, str] | None = None,
         path: str = f"/update/{DATA_SOURCE}/actions/bulk") -> requests.Response:
    sent = {"Authorization": "Basic " + base64.b64encode(f"{QUERY_USER}:{QUERY_PASSWORD}".encode()).decode(),
            "X-Opensearch-Swift-PK-Field": "id", "Content-Type": "application/json", **(headers or {})}
    return requests.request(method, stack.server.url + path, data=body, headers={k: v for k, v in sent.items() if v},
                            timeout=10)


def test_what_the_sdk_cannot_send_is_refused_too(stack: Stack) -> None:
    checks = [
        (_raw(stack, headers={"X-Opensearch-Swift-PK-Field": ""}), 400, 3011, "is missing"),
        (_raw(stack, body=b"\xff\xfe[]"), 400, 4007, "UTF-8"),
        (_raw(stack, body=b'[{"cmd": "delete", "cmd": "add", "fields": {"id": 1}}]'), 400, 4007, "twice"),
        (_raw(stack, body=b'[{"cmd": "add", "fields": {"id": 1, "source_image": "/a", "cate_id": NaN}}]'), 400, 4007,
         "NaN"),
        (_raw(stack, method="GET"), 405, 3017, "POST"),
        (_raw(stack, path="/update/x/y"), 404, 3012, "resource not found"),
        (_raw(stack, body=iter([b'[{"cmd": "delete", "fields": {"id": 1}}]'])), 411, 3016, "Content-Length"),
    ]
    for response, status, code, fragment in checks:
        assert response.status_code == status, response.text
        (error,) = response.json()["errors"]
        assert error["code"] == code and fragment in error["message"], error
    _nothing_kept(stack)


def _declare_only(stack: Stack, length: int, password: str = QUERY_PASSWORD) -> tuple[int, dict[str, Any]]:
    """Send only the headers of a push declaring ``length`` body bytes; the answer must come anyway."""
    host, port = stack.server.endpoint.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.putrequest("POST", f"/update/{DATA_SOURCE}/actions/bulk")
        auth = base64.b64encode(f"{QUERY_USER}:{password}".encode()).decode()
        for name, value in (("Authorization", f"Basic {auth}"), ("X-Opensearch-Swift-PK-Field", "id"),
                            ("Content-Type", "application/json"), ("Content-Length", str(length))):
            conn.putheader(name, value)
        conn.endheaders()  # and no body at all
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_the_2_mb_limit_is_exact_and_checked_before_the_body_is_read(stack: Stack) -> None:
    def body_of(size: int) -> list[dict[str, Any]]:
        """Two deletes whose (known, unused) image fields pad the SDK's JSON body to exactly ``size`` bytes."""
        docs = [{"cmd": "delete", "fields": {"id": 1, "source_image": ""}},
                {"cmd": "delete", "fields": {"id": 2, "source_image": ""}}]
        empty = len(json.dumps(docs, ensure_ascii=False, separators=(",", ":")).encode())
        docs[0]["fields"]["source_image"] = "a" * ((size - empty) // 2)
        docs[1]["fields"]["source_image"] = "a" * (size - empty - (size - empty) // 2)
        assert len(json.dumps(docs, ensure_ascii=False, separators=(",", ":")).encode()) == size
        return docs

    assert _push(stack, body_of(2 * MB))["status"] == "OK"
    status, code, message, _ = _refusal(lambda: _push(stack, body_of(2 * MB + 1)))
    assert (status, code) == (413, 3015) and f"the body is {2 * MB + 1} bytes; at most 2 MB" in message
    assert stack.engine.push_status(TABLE)["received"] == 2  # only the first request's two documents

    for declared in (50 * MB, 100 * MB):  # under and over the whole server's 64 MiB cap: the same answer
        status, body = _declare_only(stack, declared)  # no body is ever sent: the answer cannot wait for it
        assert (status, body["status"], body["errors"][0]["code"]) == (413, "FAIL", 3015), body
        assert f"the body is {declared} bytes" in body["errors"][0]["message"]
    status, body = _declare_only(stack, 10, password="wrong")  # unauthenticated: refused before the body too
    assert (status, body["errors"][0]["code"]) == (401, 4003)


# --- rate and fault knobs -------------------------------------------------------------------------


def test_the_rate_limit_answers_429_and_a_client_that_backs_off_gets_through(stack: Stack) -> None:
    doc = [{"cmd": "delete", "fields": {"id": 1, "source_image": "p" * 900}}]
    size = len(json.dumps(doc, separators=(",", ":")).encode())  # the SDK's body, byte for byte
    stack.server.engine.configure_pushes(max_bytes_per_s=2 * size + 10)  # two fit; then any document is too much
    for _ in range(2):
        assert _push(stack, doc)["status"] == "OK"
    status, code, message, _ = _refusal(lambda: _push(stack, [{"cmd": "delete", "fields": {"id": 2,
                                                                                          "source_image": "p" * 900}}]))
    assert (status, code) == (429, 3013) and message.startswith("push rate exceeds app quota")
    assert stack.engine.push_status(TABLE)["received"] == 2 and stack.engine.push_status(TABLE)["throttled"] == 1

    delay, attempts = 0.1, 0
    while True:  # what the pipeline's client must do: back off and retry
        attempts += 1
        try:
            assert _push(stack, [_add(stack.images[0])])["status"] == "OK"
            break
        except TeaException as exc:
            assert exc.code == 429 and attempts < 20
            time.sleep(delay)
            delay = min(2 * delay, 1.0)
    assert attempts > 1
    _applied(stack)
    assert set(_lookup(stack, stack.images[0].id)) == {stack.images[0].id}


def test_drop_next_pushes_answers_ok_but_nothing_is_ever_applied(stack: Stack) -> None:
    dropped, later = stack.images[0], stack.images[1]
    stack.engine.faults.drop_next_pushes = 1
    assert _push(stack, [_add(dropped)])["status"] == "OK"
    assert _push(stack, [_add(later)])["status"] == "OK"
    _applied(stack)
    assert set(_lookup(stack, dropped.id, later.id)) == {later.id}  # the later one is in: the first never will be
    status = stack.engine.push_status(TABLE)
    assert (status["dropped"], status["received"], status["lastSeq"]) == (1, 1, 1)


def test_push_apply_delay_applies_late(stack: Stack) -> None:
    image = stack.images[2]
    stack.engine.faults.push_apply_delay_s = 1.2
    sent = time.monotonic()
    assert _push(stack, [_add(image)])["status"] == "OK"
    assert _lookup(stack, image.id) == {} and stack.engine.push_status(TABLE)["pending"] == 1
    while not _lookup(stack, image.id):
        assert time.monotonic() - sent < 10
        time.sleep(0.05)
    assert time.monotonic() - sent >= 1.2


def test_throttle_next_pushes_refuses_before_the_body_is_read(stack: Stack) -> None:
    stack.engine.faults.throttle_next_pushes = 2
    status, body = _declare_only(stack, 1000)  # headers only: answered without the body
    assert (status, body["errors"][0]["code"]) == (429, 3013)
    assert _refusal(lambda: _push(stack, [_add(stack.images[0])]))[:2] == (429, 3013)
    _nothing_kept(stack)
    assert _push(stack, [_add(stack.images[0])])["status"] == "OK"
    assert stack.engine.faults.throttle_next_pushes == 0


# --- primary-key lookups --------------------------------------------------------------------------


def test_primary_key_lookups_honour_config_and_refuse_other_indexes(stack: Stack) -> None:
    base = stack.images[:6]
    _build(stack, "20261123", base)
    keys = [im.id for im in base]
    everything = _raw_search(stack, build_pk_lookup_query("id", [*keys, keys[0], 12345], "general"))
    assert [int(i["fields"]["id"]) for i in everything["result"]["items"]] == keys  # term order, each once
    assert everything["result"]["totalHits"] == 6 and everything["result"]["items"][0]["sortExprValues"] == []
    page = _raw_search(stack, "config=start:2,hit:3,format:json&&query=" + " OR ".join(f"id:'{k}'" for k in keys))
    assert [int(i["fields"]["id"]) for i in page["result"]["items"]] == keys[2:5] and page["result"]["numHits"] == 3
    no_summary = _raw_search(stack, f"config=no_summary:yes&&query=id:'{keys[0]}'")
    assert no_summary["result"]["items"] == [{"fields": {}, "sortExprValues": []}]
    filtered = _raw_search(stack, f"query=id:'{keys[0]}' OR id:'{keys[5]}'&&filter=cate_id={base[5].cate_id}")
    assert [int(i["fields"]["id"]) for i in filtered["result"]["items"]] == [
        im.id for im in (base[0], base[5]) if im.cate_id == base[5].cate_id]
    for query, code, fragment in [
        (f"query=cate_id:'{keys[0]}'", 1013, "index 'cate_id' does not exist"),
        ("query=image_index:'1' OR image_index:'2'", 1013, "primary-key index 'id'"),
        ("query=id:'abc'", 1051, "not an integer"),
        ("query=id:'1' AND id:'2'", 1051, "' OR '"),
    ]:
        (error,) = _raw_search(stack, query)["errors"]
        assert error["code"] == code and fragment in error["message"], error


# --- plumbing -------------------------------------------------------------------------------------


def test_limits_and_knobs_reach_the_server_from_config_and_the_demo_flag(oss, tmp_path) -> None:  # noqa: F811
    config = {
        "instance_id": IID, "state_dir": "state", "query_user": QUERY_USER, "query_password": QUERY_PASSWORD,
        "credentials": [{"access_key_id": "ak", "access_key_secret": "sk"}],
        "tables": {TABLE: {"warehouse": {"root": "warehouse", "table": WAREHOUSE_TABLE},
                           "oss": {"endpoint": oss[0].endpoint, "access_key_id": OSS_AK, "access_key_secret": OSS_SK}}},
        "push_max_bytes_per_s": 12345, "push_retention_s": 600,
        "faults": {"drop_next_pushes": 2, "push_apply_delay_s": 0.5, "throttle_next_pushes": 1},
    }
    server = server_from_config(config, tmp_path)
    try:
        engine = server.engine
        assert (engine.push_max_bytes_per_s, engine.push_retention_s) == (12345, 600.0)
        assert (engine.faults.drop_next_pushes, engine.faults.push_apply_delay_s, engine.faults.throttle_next_pushes) \
            == (2, 0.5, 1)
        fake_stack = SimpleNamespace(oss=oss[0], opensearch=server, maxcompute=None)
        apply_faults(fake_stack, ["opensearch.drop_next_pushes=3", "opensearch.push_apply_delay_s=1.5",
                                  "opensearch.throttle_next_pushes=4"])
        assert (engine.faults.drop_next_pushes, engine.faults.push_apply_delay_s, engine.faults.throttle_next_pushes) \
            == (3, 1.5, 4)
        with pytest.raises(ValueError, match="push_max_bytes_per_s"):
            engine.configure_pushes(max_bytes_per_s=0)
        with pytest.raises(ValueError, match="push_retention_s"):
            engine.configure_pushes(retention_s=-1)
    finally:
        server.stop()


def test_the_cli_flags_reach_the_running_server(oss, tmp_path) -> None:  # noqa: F811 - the fixture
    config = {
        "instance_id": IID, "state_dir": "state", "query_user": QUERY_USER, "query_password": QUERY_PASSWORD,
        "credentials": [{"access_key_id": "ak", "access_key_secret": "sk"}],
        "tables": {TABLE: {"warehouse": {"root": "warehouse", "table": WAREHOUSE_TABLE},
                           "oss": {"endpoint": oss[0].endpoint, "access_key_id": OSS_AK, "access_key_secret": OSS_SK}}},
    }
    (tmp_path / "server.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "localcloud.opensearch", "--config", str(tmp_path / "server.json"),
         "--throttle-next-pushes", "1", "--push-max-bytes-per-s", "200"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = ""
        while "listening on" not in line:
            line = process.stderr.readline()
            assert line, "the server exited before listening"
        running = SimpleNamespace(server=SimpleNamespace(endpoint=line.split("listening on ", 1)[1].split()[0]))
        small = [{"cmd": "delete", "fields": {"id": 1}}]
        assert _refusal(lambda: _push(running, small))[:2] == (429, 3013)  # --throttle-next-pushes 1
        assert _push(running, small)["status"] == "OK"
        big = [{"cmd": "delete", "fields": {"id": 1, "source_image": "x" * 300}}]
        status, code, message, _ = _refusal(lambda: _push(running, big))  # over --push-max-bytes-per-s 200
        assert (status, code) == (429, 3013) and "at most 200 bytes" in message
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=10)[1]
    assert process.returncode == 0, output
