"""OSS faults survived: the local server's fault knobs against the real oss2 client and pipeline code.

Each test loads the demo bucket into a fresh partition with a fault switched on and checks that the
partition equals the fault-free one (same rows: nothing lost, nothing twice), sequentially and with
the parallel lister. Retries sleep through an injected no-op, so the tests take no wall-clock time
for backoff; they assert behaviour and counters, never timing.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import oss2
import pyarrow as pa
import pytest
import requests

from localcloud.demo_data import upload_demo_bucket
from localcloud.oss import cli as oss_cli
from localcloud.oss import faults as oss_faults
from localcloud.oss.faults import OssFaults, token_after
from localcloud.oss.server import Credential, LocalOssServer
from pipeline.config import load_index_config
from pipeline.errors import TransientSourceError
from pipeline.oss.client import OssConnection
from pipeline.oss.pages import KeyRange, LeanListingBucket, OssLister
from pipeline.oss.parallel import ParallelLister
from pipeline.retry import RetryPolicy
from pipeline.stages import load_partition
from pipeline.warehouse.local import LocalWarehouse
from tests.localcloud.cli import server_arguments

REPO = Path(__file__).resolve().parents[3]
CREDENTIAL = Credential("LTAIfaultkey", "fault-secret-456")
NO_SLEEP = RetryPolicy(attempts=4, sleep=lambda _s: None)
PAGE = 25  # the demo bucket's 343 objects in 14 pages, so faults land mid-listing
BASELINE_DS = "20261201"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalOssServer]:
    with LocalOssServer(tmp_path_factory.mktemp("oss"), [CREDENTIAL]) as srv:
        upload_demo_bucket(connection(srv).bucket("demo-images"))
        yield srv


@pytest.fixture(autouse=True)
def no_faults_left(server: LocalOssServer) -> Iterator[None]:
    server.faults.reset()
    yield
    server.faults.reset()


@pytest.fixture(scope="module")
def config():
    return load_index_config(REPO / "dags" / "indexes" / "demo.yaml")


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory, config) -> LocalWarehouse:
    return LocalWarehouse(tmp_path_factory.mktemp("warehouse"), config.warehouse.table)


@pytest.fixture(scope="module")
def baseline(server: LocalOssServer, config, warehouse: LocalWarehouse) -> dict:
    """The fault-free load: its rows and counts are what every faulty load must reproduce."""
    server.faults.reset()
    result = load_partition(config, BASELINE_DS, lister=lister(server), warehouse=warehouse, publish=True)
    assert result.rows_written == 320
    return {"rows": rows(warehouse, BASELINE_DS), "counts": result.counts, "lists": server.faults.list_requests}


def connection(server: LocalOssServer) -> OssConnection:
    extra = {"access_key_id": CREDENTIAL.access_key_id, "access_key_secret": CREDENTIAL.access_key_secret,
             "region": "cn-hangzhou", "endpoint": server.endpoint}
    return OssConnection.from_extras("oss_faults", extra)


def lister(server: LocalOssServer, *, parallel: bool = False, retry: RetryPolicy = NO_SLEEP):
    conn = connection(server)
    sequential = OssLister(conn, conn.bucket("demo-images", pool_size=4, kind=LeanListingBucket), page_size=PAGE, retry=retry)
    return ParallelLister(sequential, concurrency=4, min_split_keys=2 * PAGE) if parallel else sequential


def rows(warehouse: LocalWarehouse, ds: str) -> list[dict]:
    table: pa.Table = warehouse.read_partition(ds)
    return sorted(table.to_pylist(), key=lambda r: r["id"])


def assert_same_partition(warehouse: LocalWarehouse, ds: str, result, baseline: dict) -> None:
    got = rows(warehouse, ds)
    assert len({r["id"] for r in got}) == len(got)  # nothing twice
    assert got == baseline["rows"]  # nothing lost, nothing changed
    assert result.counts == baseline["counts"]  # the same objects listed and skipped, by reason


MODES = [pytest.param(False, id="sequential"), pytest.param(True, id="parallel")]


class BurstAfterTwoPages:
    """A lister that switches a ListObjects SlowDown burst on once listing is under way."""

    def __init__(self, source, faults, *, slow_down_next: int) -> None:
        self._source, self._faults, self._burst = source, faults, slow_down_next
        self.pages_listed = 0

    def iter_objects(self, prefixes):
        for n, page in enumerate(self._source.iter_objects(prefixes)):
            if n == 2:
                self._faults.set(slow_down_next=self._burst, slow_down_list_only=True)
            yield page
        self.pages_listed = self._source.pages_listed


@pytest.mark.parametrize("parallel", MODES)
def test_a_503_burst_mid_listing_is_retried_to_the_same_partition(
    server: LocalOssServer, config, warehouse: LocalWarehouse, baseline: dict, parallel: bool
) -> None:
    ds = "20261202" if parallel else "20261203"
    source = lister(server, parallel=parallel)
    faults = server.faults

    burst = BurstAfterTwoPages(source, faults, slow_down_next=3)
    result = load_partition(config, ds, lister=burst, warehouse=warehouse, publish=True)
    assert faults.slow_downs_sent == 3 and faults.slow_down_next == 0
    assert_same_partition(warehouse, ds, result, baseline)


@pytest.mark.parametrize("parallel", MODES)
def test_a_connection_reset_mid_response_is_retried_to_the_same_partition(
    server: LocalOssServer, config, warehouse: LocalWarehouse, baseline: dict, parallel: bool
) -> None:
    ds = "20261204" if parallel else "20261205"
    server.faults.set(reset_next=2)
    result = load_partition(config, ds, lister=lister(server, parallel=parallel), warehouse=warehouse, publish=True)
    assert server.faults.resets_sent == 2
    assert_same_partition(warehouse, ds, result, baseline)


def test_how_oss2_surfaces_a_reset_and_how_we_translate_it(server: LocalOssServer) -> None:
    """oss2 wraps errors of sending the request (RequestError), but a reset while it reads the body
    escapes as a bare ``requests`` exception; OssLister maps both to TransientSourceError."""
    bucket = connection(server).bucket("demo-images")
    server.faults.set(reset_next=1)
    with pytest.raises((requests.RequestException, oss2.exceptions.RequestError)):
        bucket.list_objects_v2(prefix="catalog/", max_keys=PAGE)
    assert len(bucket.list_objects_v2(prefix="catalog/", max_keys=PAGE).object_list) == PAGE  # next one is fine
    once = lister(server, retry=RetryPolicy(attempts=1, sleep=lambda _s: None))
    server.faults.set(reset_next=1)
    with pytest.raises(TransientSourceError, match=r"listing OSS: cannot reach bucket 'demo-images' .*connection 'oss_faults'"):
        list(once.iter_pages(KeyRange("catalog/")))


@pytest.mark.parametrize("parallel", MODES)
def test_slow_pages_change_nothing_but_time(
    server: LocalOssServer, config, warehouse: LocalWarehouse, baseline: dict, parallel: bool
) -> None:
    ds = "20261206" if parallel else "20261207"
    server.faults.set(list_delay_s=0.02)
    result = load_partition(config, ds, lister=lister(server, parallel=parallel), warehouse=warehouse, publish=True)
    assert server.faults.delayed_lists == server.faults.list_requests > 0
    assert server.faults.slow_downs_sent == server.faults.resets_sent == 0
    assert_same_partition(warehouse, ds, result, baseline)


@pytest.mark.parametrize("parallel", MODES)
def test_short_and_empty_truncated_pages_lose_no_key(
    server: LocalOssServer, config, warehouse: LocalWarehouse, baseline: dict, parallel: bool
) -> None:
    """OSS may answer fewer keys than max-keys, even none, and still have more: only IsTruncated says so.
    The parallel lister once ended a range at the first short page (keys silently missing)."""
    ds = "20261212" if parallel else "20261213"
    server.faults.set(short_pages_rate=0.4, short_pages_seed=9)
    result = load_partition(config, ds, lister=lister(server, parallel=parallel), warehouse=warehouse, publish=True)
    assert server.faults.short_pages_sent > 0 and server.faults.empty_pages_sent > 0
    assert result.rows_written == 320  # every image of the bucket: the truth
    assert_same_partition(warehouse, ds, result, baseline)


def test_a_page_failing_once_is_retried_from_its_own_token(
    server: LocalOssServer, config, warehouse: LocalWarehouse, baseline: dict
) -> None:
    keys = [obj.key for page in lister(server).iter_pages(KeyRange("catalog/")) for obj in page]
    token = token_after(keys[2 * PAGE - 1])  # the token of the third page
    server.faults.reset()
    server.faults.set(fail_tokens_once={token})
    result = load_partition(config, "20261208", lister=lister(server), warehouse=warehouse, publish=True)
    assert server.faults.failed_tokens == [token] and not server.faults.fail_tokens_once
    seen = list(server.faults.list_tokens)
    assert seen[:2] == ["", token_after(keys[PAGE - 1])]
    assert seen[2] == seen[3] == token  # the retry asked for the same page again, not the first one
    assert server.faults.list_requests == baseline["lists"] + 1  # one extra request, no page twice
    assert_same_partition(warehouse, "20261208", result, baseline)


def test_every_kth_list_request_failing_once_in_parallel(
    server: LocalOssServer, config, warehouse: LocalWarehouse, baseline: dict
) -> None:
    server.faults.set(fail_every_kth_list=3)
    # Workers interleave, so a retried page may draw another multiple of k: give it room enough that
    # four failures of one page in a row (about 1 in 81 per page) cannot fail the test.
    patient = RetryPolicy(attempts=12, sleep=lambda _s: None)
    result = load_partition(config, "20261209", lister=lister(server, parallel=True, retry=patient), warehouse=warehouse, publish=True)
    assert server.faults.kth_failures_sent == server.faults.list_requests // 3 > 0
    assert_same_partition(warehouse, "20261209", result, baseline)


@pytest.mark.parametrize("parallel", MODES)
def test_a_burst_longer_than_the_retry_budget_fails_and_keeps_the_previous_partition(
    server: LocalOssServer, config, warehouse: LocalWarehouse, baseline: dict, parallel: bool
) -> None:
    ds = "20261210" if parallel else "20261211"
    load_partition(config, ds, lister=lister(server), warehouse=warehouse, publish=True)  # the previous run of this ds
    before = rows(warehouse, ds)
    partitions = warehouse.partitions()
    source = lister(server, parallel=parallel)
    faults = server.faults

    burst = BurstAfterTwoPages(source, faults, slow_down_next=1000)
    with pytest.raises(TransientSourceError, match=r"listing OSS: bucket 'demo-images' .* answered 503 SlowDown"):
        load_partition(config, ds, lister=burst, warehouse=warehouse, publish=True)
    assert faults.slow_downs_sent >= NO_SLEEP.attempts
    assert rows(warehouse, ds) == before and warehouse.partitions() == partitions
    assert not list(warehouse.table_dir.rglob(f"ds={ds}/.*"))  # no half-written file left behind
    faults.reset()
    result = load_partition(config, ds, lister=lister(server, parallel=parallel), warehouse=warehouse, publish=True)  # no cleanup
    assert_same_partition(warehouse, ds, result, baseline)


def test_slow_down_burst_can_hit_every_request_or_list_requests_only(server: LocalOssServer) -> None:
    bucket = connection(server).bucket("demo-images")
    server.faults.set(slow_down_next=1, slow_down_list_only=True)
    assert bucket.get_object("catalog/shoes/10001.jpg").read()  # not a list request: untouched
    with pytest.raises(oss2.exceptions.ServerError) as err:
        bucket.list_objects_v2(prefix="catalog/", max_keys=1)
    assert (err.value.status, err.value.code) == (503, "SlowDown")
    server.faults.set(slow_down_next=1, slow_down_list_only=False)
    with pytest.raises(oss2.exceptions.ServerError, match="SlowDown"):
        bucket.get_object("catalog/shoes/10001.jpg")
    assert bucket.get_object("catalog/shoes/10001.jpg").read()
    assert server.faults.slow_downs_sent == 2


def test_knobs_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown OSS fault knob 'slow_down'"):
        OssFaults().set(slow_down=3)
    with pytest.raises(ValueError, match="reset_next must be >= 0"):
        OssFaults(reset_next=-1)
    faults = OssFaults(short_pages_rate=0.2)
    with pytest.raises(ValueError, match=r"short_pages_rate must be in \[0, 1\)"):
        faults.set(short_pages_rate=1.0, short_pages_seed=3)
    assert (faults.short_pages_rate, faults.short_pages_seed) == (0.2, 0)  # a refused change changes nothing


def test_cli_flags_set_the_knobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["--root", str(tmp_path), "--access-key-id", "ak", "--access-key-secret", "sk",
            "--fault-slow-down", "5", "--fault-slow-down-list-only", "--fault-reset", "2",
            "--fault-list-delay-s", "0.5", "--fault-fail-token", "Y2F0YWxvZy8=", "--fault-fail-every-kth-list", "7",
            "--fault-short-pages", "0.3", "--fault-short-pages-seed", "5"]
    captured = server_arguments(monkeypatch, oss_cli, argv)
    faults = captured["faults"]
    assert (faults.slow_down_next, faults.slow_down_list_only, faults.reset_next, faults.reset_list_only) == (5, True, 2, True)
    assert (faults.list_delay_s, faults.fail_tokens_once, faults.fail_every_kth_list) == (0.5, {"Y2F0YWxvZy8="}, 7)
    assert (faults.short_pages_rate, faults.short_pages_seed) == (0.3, 5)
    parser = argparse.ArgumentParser()
    oss_faults.add_cli_arguments(parser)
    assert oss_faults.from_cli_arguments(parser.parse_args([])) == OssFaults()  # all off by default


def test_the_dag_fails_at_load_and_leaves_partition_and_live_index_untouched(
    airflow_db, demo_stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the whole demo DAG: a SlowDown burst past the retry budget fails load_partition; the
    earlier partition of that date and the live index are untouched, and a rerun needs no cleanup."""
    import functools

    from airflow.dag_processing.dagbag import DagBag

    from pipeline.stages import open_index_warehouse

    _, stack, config = demo_stack
    for module in ("pipeline.oss.pages", "pipeline.oss.client"):
        monkeypatch.setattr(f"{module}.RetryPolicy", functools.partial(RetryPolicy, sleep=lambda _s: None))
    dag = DagBag(dag_folder=str(REPO / "dags")).dags["image_index_demo"]
    for task in dag.tasks:
        task.retries = 0
    ds = "20261015"  # older than every other partition in the session: never the newest one
    warehouse = open_index_warehouse(config)
    load_partition(config, ds, publish=True)
    before = rows(warehouse, ds)
    live = stack.opensearch.engine.live_generation_id("demo_images")

    stack.oss.faults.set(slow_down_next=10_000, slow_down_list_only=True)
    try:
        run = dag.test(logical_date=None, run_conf={"partition_date": "2026-10-15"})
        assert stack.oss.faults.slow_downs_sent > 0
    finally:
        stack.oss.faults.reset()
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "failed" and states["load_partition"] == "failed"
    assert states["check_partition"] == states["start_rebuild"] == "upstream_failed"
    assert rows(warehouse, ds) == before
    assert stack.opensearch.engine.live_generation_id("demo_images") == live

    rerun = dag.test(logical_date=None, run_conf={"partition_date": "2026-10-15", "skip_rebuild": True})
    assert rerun.state == "success"
    assert rows(warehouse, ds) == before
