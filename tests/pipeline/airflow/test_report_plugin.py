"""The report page without a browser: pages rendered from report files, which images it may show,
the thumbnail endpoint against the local OSS server, and Airflow's authentication in front of it."""

from __future__ import annotations

import html
import io
import json
import re
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from pipeline.airflow.plugin import app as plugin_app
from pipeline.airflow.plugin import images, pages, reports
from pipeline.config import load_index_config
from pipeline.report import build_report, write_report

REPO = Path(__file__).resolve().parents[3]
CONFIG = load_index_config(REPO / "dags" / "indexes" / "demo.yaml")


def _smoke(query_id: int, path: str, hits: list[int]) -> dict:
    return {"kind": "image", "id": query_id, "source_image": path, "rank": 1, "match": "id", "seconds": 0.02,
            "sampled": "new ids against ds=20261130", "top": [{"id": h, "score": 0.1 * n} for n, h in enumerate(hits)]}


def _facts(run_id: str, failed: list[dict] | None = None, states: dict | None = None) -> dict:
    return {"run": {"run_id": run_id, "run_type": "scheduled", "started_at": "2026-12-01T18:00:00+00:00"},
            "params": {"dry_run": False}, "tasks": states or {}, "failed_tasks": failed or []}


def success_report(run_id: str = "scheduled__2026-12-01T18:00:00+00:00", ds: str = "20261202", rows: int = 320) -> dict:
    stages = {
        "load_partition": {"listed": 336, "kept": rows, "skipped": {"not_image": 2, "too_large": 1}, "skipped_total": 16,
                           "pages": 6, "dry_run": False, "seconds": 1.8},
        "check_partition": {"stats": {"rows": rows, "distinct_ids": rows, "rows_per_category": {"1": 80}},
                            "id_changes": {"previous_ds": "20261201", "added": 7, "removed": 3}, "seconds": 1.0},
        "start_rebuild": {"started": True, "handle": {"generation_id": 17, "started_at": 100.0}, "seconds": 0.4},
        "wait_until_searchable": {"outcome": "ready", "at": 220.0, "figures": {"summary": f"{rows} of {rows} rows indexed"}},
        "smoke_query": [_smoke(30024, "/catalog/hats/30024.jpg", [30024, 10076, 20017])],
    }
    return build_report("demo", ds, stages, _facts(run_id))


def failed_report(run_id: str = "manual__2026-12-03T01:00:00+00:00", ds: str = "20261203") -> dict:
    failure = {"task_id": "check_partition", "error_type": "PartitionCheckError", "try_number": 1,
               "message": "[shrink] partition ds=20261203 has 100 rows, 69% fewer than ds=20261202 <script>alert(1)</script>"}
    facts = _facts(run_id, [failure], {"check_partition": {"state": "failed"}, "publish_partition": {"state": "upstream_failed"}})
    stages = {"load_partition": {"listed": 100, "kept": 100, "skipped": {}, "skipped_total": 0, "pages": 1, "dry_run": False}}
    return build_report("demo", ds, stages, facts)


@pytest.fixture
def report_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "reports"
    monkeypatch.setenv("PIPELINE_REPORT_DIR", str(folder))
    monkeypatch.setenv("PIPELINE_INDEX_CONFIG_DIR", str(REPO / "dags" / "indexes"))
    write_report("demo", "20261202", success_report())
    write_report("demo", "20261203", failed_report())
    return folder


class Allow:
    def __init__(self, *dag_ids: str) -> None:
        self.dag_ids = set(dag_ids)

    def readable(self, dag_ids: list[str]) -> set[str]:
        return self.dag_ids & set(dag_ids)


def client(allowed: Allow | None = None, rows: dict | None = None) -> TestClient:
    sub = plugin_app.create_app()
    if allowed is not None:
        sub.dependency_overrides[plugin_app.access] = lambda: allowed
    root = FastAPI()
    root.mount(plugin_app.URL_PREFIX, sub)
    return TestClient(root)


@pytest.fixture
def catalog_rows(monkeypatch: pytest.MonkeyPatch) -> dict:
    """The index's catalog rows the page resolves hit ids with: id -> source_image (no warehouse)."""
    rows: dict[int, str] = {}
    monkeypatch.setattr(images, "_rows_by_id", lambda config, ds, ids: [
        {"id": i, "source_image": rows[i], "cate_id": 1} for i in ids if i in rows])
    return rows


def _run_link(page: str, ds: str) -> str:
    return html.unescape(re.search(rf'<tr class="run" data-ds="{ds}">.*?href="([^"]+)"', page).group(1))


def test_the_index_page_charts_and_lists_the_runs_newest_first(report_dir: Path) -> None:
    write_report("demo", "20261202", success_report())  # a rerun of the same run: one row, not two
    page = client(Allow("image_index_demo")).get("/image-index/indexes/demo").text
    assert re.findall(r'<tr class="run" data-ds="(\d+)"', page) == ["20261203", "20261202"]
    assert "<svg" in page and page.count('data-series="rows"') == 1 and 'data-series="build_minutes"' in page
    # figures as numbers in the table: rows 320, added 7, removed 3, 2 build minutes (120 s until live)
    row = re.search(r'data-ds="20261202">(.*?)</tr>', page).group(1)
    assert [c for c in re.findall(r'class="num">([^<]*)<', row)] == ["320", "7", "3", "2.0"]
    assert "<b>check_partition</b>" in re.search(r'data-ds="20261203">(.*?)</tr>', page).group(1)


def test_a_failed_run_shows_the_failing_task_and_its_message_escaped(report_dir: Path) -> None:
    http = client(Allow("image_index_demo"))
    run = http.get(_run_link(http.get("/image-index/indexes/demo").text, "20261203"))
    assert run.status_code == 200
    page = run.text
    assert re.search(r'failed at <b id="failed-task">check_partition</b>', page)
    assert "PartitionCheckError: [shrink] partition ds=20261203 has 100 rows" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Not run (an upstream task failed): publish_partition" in page
    assert "None: the run did not reach the smoke query." in page
    assert "script-src" not in run.headers["content-security-policy"] and "default-src 'none'" in run.headers["content-security-policy"]


def test_the_run_page_shows_the_query_and_its_hits_as_signed_thumbnails(report_dir: Path, catalog_rows: dict) -> None:
    catalog_rows.update({10076: "/catalog/shoes/10076.jpg", 20017: "/../../etc/passwd.jpg"})  # a hostile row
    http = client(Allow("image_index_demo"))
    page = http.get(_run_link(http.get("/image-index/indexes/demo").text, "20261202")).text
    assert 'id="ids-added">+7<' in page and 'id="ids-removed">-3<' in page
    figures = re.findall(r'<figure class="hit( self)?" data-rank="(\d)" data-id="(\d+)">(.*?)</figure>', page)
    assert [(rank, hit) for _, rank, hit, _ in figures] == [("1", "30024"), ("2", "10076"), ("3", "20017")]
    assert figures[0][0] == " self"  # the query's own id
    srcs = [html.unescape(s) for s in re.findall(r'<img class="thumb" src="([^"]+)"', page)]
    keys = [re.search(r"key=([^&]+)", s).group(1) for s in srcs]
    assert keys == ["catalog%2Fhats%2F30024.jpg", "catalog%2Fhats%2F30024.jpg", "catalog%2Fshoes%2F10076.jpg"]
    assert '<div class="noimg">no image</div>' in figures[2][3]  # the hostile path: no link at all
    assert all(images.signed("demo", k.replace("%2F", "/"), re.search(r"sig=(\w+)", s).group(1)) for k, s in zip(keys, srcs))


@pytest.mark.parametrize("path", [
    "/etc/passwd", "catalog/../secrets/a.jpg", "catalog/./a.jpg", "catalog//a.jpg", "../catalog/a.jpg",
    "catalog\\..\\a.jpg", "catalog/a.jpg\x00.png", "catalog/a\n.jpg", "other/a.jpg", "catalog/a.txt", "catalog/jpg",
    "catalog/" + "a" * 1100 + ".jpg", "", None, 42,
])
def test_only_image_keys_under_the_index_prefixes_are_allowed(path) -> None:
    with pytest.raises(images.KeyRefused):
        images.image_key(CONFIG, path)


def test_a_report_path_must_be_one_runs_jsonl_names(report_dir: Path) -> None:
    http = client(Allow("image_index_demo"))
    secret = report_dir / "demo" / "secret.json"
    secret.write_text(json.dumps({"outcome": "success"}))
    for report in ("secret.json", "../demo/secret.json", "/etc/passwd", "20261202/../secret.json"):
        assert http.get("/image-index/indexes/demo/run", params={"report": report}).status_code == 404
    # ... and one it names that leaves the index's folder is refused too
    with (report_dir / "demo" / "runs.jsonl").open("a") as fh:
        fh.write(json.dumps({"run_id": "x", "ds": "1", "report": "../../outside.json"}) + "\n" + "{torn line\n")
    (report_dir / "outside.json").write_text("{}")
    assert http.get("/image-index/indexes/demo/run", params={"report": "../../outside.json"}).status_code == 404
    assert http.get("/image-index/indexes/demo").status_code == 200  # the torn line is skipped


def test_a_report_of_another_shape_is_refused_with_a_message_not_a_crash(report_dir: Path) -> None:
    path = write_report("demo", "20261204", failed_report("manual__broken", "20261204"))
    broken = json.loads(path.read_text())
    broken.update(load=["not", "a", "dict"], smoke_queries={"not": "a list"}, tasks=[1, 2])  # edited by hand
    path.write_text(json.dumps(broken))
    http = client(Allow("image_index_demo"))
    got = http.get(_run_link(http.get("/image-index/indexes/demo").text, "20261204"))
    assert got.status_code == 500 and "cannot be shown: AttributeError" in got.text
    assert http.get("/image-index/indexes/demo").status_code == 200


def test_an_index_is_shown_only_to_who_may_read_its_dag(report_dir: Path) -> None:
    http = client(Allow())  # authenticated, but not allowed to read image_index_demo
    assert "No index whose DAG you may read." in http.get("/image-index/").text
    assert http.get("/image-index/indexes/demo").status_code == 403
    key = "catalog/hats/30024.jpg"
    assert http.get("/image-index/indexes/demo/thumbnail", params={"key": key, "sig": images.sign("demo", key)}).status_code == 403
    assert client(Allow("image_index_demo")).get("/image-index/indexes/nope").status_code == 404


# --- thumbnails through the index's OSS connection, against the local OSS server -------------------


def _jpeg(size=(400, 300), colour=(200, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="JPEG")
    return out.getvalue()


@pytest.fixture
def oss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from localcloud.oss.server import Credential, LocalOssServer
    from pipeline.oss.client import OssConnection

    credential = Credential("LTAIthumbs", "thumbs-secret")
    (tmp_path / "oss").mkdir()
    with LocalOssServer(tmp_path / "oss", [credential]) as server:
        extra = {"access_key_id": credential.access_key_id, "access_key_secret": credential.access_key_secret,
                 "region": "cn-hangzhou", "endpoint": server.endpoint}
        bucket = OssConnection.from_extras("oss_local", extra).bucket(CONFIG.source.bucket)
        bucket.create_bucket()
        bucket.put_object("catalog/hats/30024.jpg", _jpeg())
        bucket.put_object("catalog/hats/big.jpg", b"\xff\xd8" + b"0" * CONFIG.source.max_size_bytes)
        bucket.put_object("catalog/hats/text.jpg", b"not an image at all")
        bucket.put_object("secrets/key.jpg", _jpeg())
        monkeypatch.setenv("AIRFLOW_CONN_OSS_LOCAL", json.dumps({"conn_type": "oss", "extra": extra}))
        images._bucket.cache_clear()
        images._thumbs.clear()
        yield bucket
        images._bucket.cache_clear()
        images._thumbs.clear()


def _thumb(http: TestClient, key: str, sig: str | None = None, index: str = "demo", **headers):
    return http.get(f"/image-index/indexes/{index}/thumbnail", params={"key": key, "sig": sig or images.sign("demo", key)},
                    headers=headers)


def test_a_thumbnail_is_a_small_jpeg_read_through_the_index_connection_with_caching_headers(report_dir: Path, oss) -> None:
    http = client(Allow("image_index_demo"))
    got = _thumb(http, "catalog/hats/30024.jpg")
    assert got.status_code == 200 and got.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(got.content)).size == (240, 180)
    assert got.headers["cache-control"] == "private, max-age=3600" and got.headers["etag"]
    again = _thumb(http, "catalog/hats/30024.jpg", **{"If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and not again.content


def test_hostile_or_unsigned_keys_and_oversized_objects_are_refused(report_dir: Path, oss) -> None:
    http = client(Allow("image_index_demo"))
    assert _thumb(http, "catalog/hats/30024.jpg", sig="0" * 32).status_code == 403  # not signed by the page
    assert _thumb(http, "secrets/key.jpg", sig="0" * 32).status_code == 403
    # Signed (as if the page had been fooled into it), still outside the index's images: refused unread.
    for key in ("secrets/key.jpg", "catalog/../secrets/key.jpg", "/catalog/hats/../../secrets/key.jpg"):
        assert _thumb(http, key).status_code == 400, key
    assert _thumb(http, "catalog/hats/big.jpg").status_code == 413  # over source.max_size_bytes
    assert _thumb(http, "catalog/hats/text.jpg").status_code == 415
    assert _thumb(http, "catalog/hats/missing.jpg").status_code == 404


def test_the_bounded_read_refuses_before_reading_the_body(oss) -> None:
    from pipeline.errors import ObjectTooLargeError
    from pipeline.oss.client import OssConnection, read_object_limited

    conn = OssConnection.from_airflow("oss_local")
    data, etag = read_object_limited(conn, oss, "catalog/hats/30024.jpg", 100_000)
    assert data == _jpeg() and etag
    with pytest.raises(ObjectTooLargeError, match="over the limit of 1000"):
        read_object_limited(conn, oss, "catalog/hats/30024.jpg", 1000)


# --- Airflow's authentication in front of the app ----------------------------------------------------


@pytest.fixture
def simple_auth(airflow_db, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Airflow's simple auth manager, as `airflow standalone` runs it, with one viewer (tokens are checked
    against the metadata DB's revoked tokens)."""
    from airflow.api_fastapi import app as api_app

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", "viewer:viewer")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(tmp_path / "passwords.json"))
    manager = api_app.init_auth_manager()
    yield manager
    api_app.purge_cached_app()


def test_without_a_login_pages_go_to_the_login_page_and_thumbnails_answer_401(report_dir: Path, simple_auth) -> None:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    http = client()  # no override: Airflow's own authentication
    page = http.get("/image-index/indexes/demo", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/auth/login?next=") and "image-index%2Findexes%2Fdemo" in page.headers["location"]
    key = "catalog/hats/30024.jpg"
    assert _thumb(http, key).status_code == 401
    assert http.get("/image-index/", cookies={"_token": "not-a-jwt"}).status_code == 403

    token = simple_auth.generate_jwt(SimpleAuthManagerUser(username="viewer", role="viewer"))
    seen = http.get("/image-index/", cookies={"_token": token})  # the cookie the UI's login sets
    assert seen.status_code == 200 and 'href="/image-index/indexes/demo"' in seen.text
    assert http.get("/image-index/indexes/demo", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_the_plugin_registers_the_app_and_a_nav_view() -> None:
    from pipeline.airflow.plugin import ImageIndexReportPlugin

    (app,) = ImageIndexReportPlugin.fastapi_apps
    assert app["url_prefix"] == "/image-index" and app["app"].openapi_url is None
    (view,) = ImageIndexReportPlugin.external_views
    assert view["href"] == "/image-index/" and view["destination"] == "nav"
    assert pages.index_href("/x", "a/b") == "/x/indexes/a%2Fb"
    assert reports.config_dir()  # from PIPELINE_INDEX_CONFIG_DIR or [core] dags_folder
