"""The report page end to end: a demo run on the local stack, Airflow's API server serving the plugin,
a real login, and Debian's chromium (headless) looking at the pages.

The run goes through ``dag.test()`` in-process; only the API server runs as Airflow runs it (``airflow
api-server``: the plugin's app, the UI and the auth manager's login; no scheduler is needed to look at
reports). The screenshots are kept as test artifacts in ``$PIPELINE_TEST_ARTIFACTS`` (default
``.local/artifacts/``, ignored by git): ``report-index.png`` and ``report-page.png``.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.browser import Chromium, chromium_or_skip
from tests.dags.processes import free_port, stop_tree, wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
# Older than every other DAG test's partition, and rebuilt with force_rebuild: the tests after this one
# still see their own partitions as the newest (a newer one here would stop their rebuilds).
PARTITION = "2026-11-21"


def artifacts() -> Path:
    return Path(os.environ.get("PIPELINE_TEST_ARTIFACTS") or REPO / ".local" / "artifacts")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _get(url: str, cookie: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers={"Cookie": f"_token={cookie}"} if cookie else {})
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=30) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


@pytest.fixture
def reported_run(airflow_db, demo_stack) -> dict:
    """A demo run that rebuilt the index and ran its smoke queries: its report."""
    from airflow.dag_processing.dagbag import DagBag

    from pipeline.report import run_file_name

    dag = DagBag(dag_folder=str(REPO / "dags")).dags["image_index_demo"]
    for task in dag.tasks:
        task.retries = 0
    run = dag.test(logical_date=None, run_conf={"partition_date": PARTITION, "force_rebuild": True})
    ds = PARTITION.replace("-", "")
    report = json.loads((Path(os.environ["PIPELINE_REPORT_DIR"]) / "demo" / ds / run_file_name(run.run_id)).read_text())
    assert report["outcome"] == "success" and len(report["smoke_queries"]) == 2, report.get("outcome_reason")
    return report


@pytest.fixture
def api_server(reported_run, tmp_path: Path):
    """``airflow api-server`` on the session's Airflow home, with the repository's plugins folder and
    the simple auth manager (as ``airflow standalone`` has it) knowing one viewer; yields (url, password)."""
    port = free_port()
    password = secrets.token_urlsafe(12)
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"viewer": password}))
    env = {
        # The session's AIRFLOW_HOME, DAGs folder (the index configs) and PIPELINE_REPORT_DIR, the stack's connections.
        **os.environ,
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    log = open(tmp_path / "api-server.log", "w")
    server = subprocess.Popen([airflow, "api-server", "--apps", "core", "--workers", "1", "--host", "127.0.0.1",
                               "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the API server", lambda: server.poll() is not None or _up(url), 90, every_s=0.5)
        assert server.poll() is None, (tmp_path / "api-server.log").read_text()[-3000:]
        yield url, password
    finally:
        stop_tree(server)
        log.close()


def _up(url: str) -> bool:
    try:
        return _get(f"{url}/api/v2/monitor/health")[0] == 200
    except OSError:  # not listening yet
        return False


def _login(url: str, password: str) -> str:
    """A token as the UI's login form gets it (POST /auth/token), for requests outside the browser."""
    body = json.dumps({"username": "viewer", "password": password}).encode()
    request = urllib.request.Request(f"{url}/auth/token", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.load(answer)["access_token"]


def test_the_report_page_shows_the_run_with_its_thumbnails_in_a_headless_browser(reported_run, api_server) -> None:
    url, password = api_server
    started = time.monotonic()
    ds = reported_run["ds"]

    # Airflow does not authenticate plugin apps: this one does, through Airflow's auth manager.
    status, headers, _ = _get(f"{url}/image-index/")
    assert status == 303 and headers["location"].startswith("/auth/login?next=")
    thumb_path = "/image-index/indexes/demo/thumbnail?" + "key=catalog%2Fhats%2F1.jpg&sig=0"
    assert _get(url + thumb_path)[0] == 401

    with Chromium(chromium_or_skip()) as browser:
        # The plugin page sends the browser to the login page, which sends it back once logged in.
        browser.open(f"{url}/image-index/")
        assert browser.poll("document.querySelector('input[name=username]') !== null"), browser.evaluate("location.href")
        browser.fill("input[name=username]", "viewer")
        browser.fill("input[name=password]", password)
        browser.evaluate("document.querySelector('button[type=submit]').click()")
        assert browser.poll("location.pathname === '/image-index/' && document.querySelector('#indexes') !== null"), \
            browser.evaluate("location.href + ' ' + document.body.innerText.slice(0, 500)")
        assert browser.evaluate("document.querySelector('#indexes a').textContent") == "demo"

        browser.open(f"{url}/image-index/indexes/demo")
        row = browser.evaluate(f"document.querySelector('tr.run[data-ds=\"{ds}\"]').innerText")
        assert "success" in row and "320" in row
        assert browser.evaluate("document.querySelectorAll('#runs-chart circle[data-series=rows]').length") >= 1
        browser.screenshot(artifacts() / "report-index.png")

        run_link = browser.evaluate(f"document.querySelector('tr.run[data-ds=\"{ds}\"] a').getAttribute('href')")
        browser.open(url + run_link)
        loaded = browser.loaded_images()
        text = browser.evaluate("document.body.innerText")
        assert "success" in text and f"ds={ds}" in text and "320 of 320 rows indexed" in text
        thumbs = [image for image in loaded if "/thumbnail?" in image["src"]]
        # Two image queries, each with its query image and its five hits, all resolved to an image.
        assert len(thumbs) == 12 and len(loaded) == 12, loaded
        assert all(image["width"] > 0 for image in thumbs), [i for i in thumbs if not i["width"]]
        ranks = browser.evaluate("[...document.querySelectorAll('.smoke b.rank')].map(b => b.textContent)")
        assert ranks == ["1", "1"]
        first = reported_run["smoke_queries"][0]
        assert browser.evaluate(f"document.querySelector('figure.hit.self').dataset.id") == str(first["id"])
        shot = browser.screenshot(artifacts() / "report-page.png")
        # The Airflow UI links the page in its navigation and shows it in a frame of its own.
        browser.open(f"{url}/plugin/image-index-reports")
        framed = browser.poll("document.querySelector('iframe') && document.querySelector('iframe').getAttribute('src')", 30)
        assert framed and framed.rstrip("/").endswith("/image-index"), framed
        browser.screenshot(artifacts() / "report-in-airflow.png")
        token = browser.send("Network.getCookies", urls=[url])["cookies"]
        token = next(c["value"] for c in token if c["name"] == "_token")

    # The thumbnail endpoint answers a JPEG, with caching headers, for the logged-in browser's cookie.
    status, headers, body = _get(url + html.unescape(thumbs[0]["src"]), cookie=token)
    assert status == 200 and headers["content-type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    assert headers["cache-control"].startswith("private, max-age=") and headers["etag"]
    # ... and nothing for a key the page did not sign, even under the index's prefix.
    key = quote(first["source_image"].lstrip("/"), safe="")
    assert _get(f"{url}/image-index/indexes/demo/thumbnail?key={key}&sig={'0' * 32}", cookie=token)[0] == 403
    assert _get(f"{url}/image-index/", cookie=_login(url, password))[0] == 200
    assert shot.stat().st_size > 20_000
    assert time.monotonic() - started < 60
