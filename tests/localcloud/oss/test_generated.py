"""The local OSS server's realism knobs: generated buckets (keys without files) and latency jitter.

A generated bucket must answer oss2 exactly as a folder bucket holding the same keys would, for every
listing parameter, so that benchmarks on millions of generated keys exercise the same code paths.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import oss2
import pytest

from localcloud.oss.server import Credential, GeneratedBucket, LocalOssServer
from tests.localcloud.cli import wait_for_endpoint

AK, SK = "gen-ak", "gen-secret"
REPO_ROOT = Path(__file__).resolve().parents[3]
SMALL = GeneratedBucket("gen-small", prefixes=4, keys_per_prefix=23, flat_keys=61, digits=4, prefix_format="d{:02d}/")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory):
    """One server with SMALL generated and the same keys as files in the folder bucket ``disk-small``."""
    root = tmp_path_factory.mktemp("gen")
    for key in SMALL.keys():
        path = root / "disk-small" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * SMALL.lookup(key)[1])  # type: ignore[index]
    huge = GeneratedBucket("gen-huge", prefixes=1000, keys_per_prefix=1_000_000, flat_keys=5_000_000_000, digits=12)
    with LocalOssServer(root, [Credential(AK, SK)], generated=[SMALL, huge], jitter_s=0.001, seed=7) as server:
        auth = oss2.AuthV4(AK, SK)
        yield (server, oss2.Bucket(auth, server.endpoint, "gen-small", region="cn-hangzhou"),
               oss2.Bucket(auth, server.endpoint, "disk-small", region="cn-hangzhou"))


def _page(result, v2: bool) -> tuple:
    token = result.next_continuation_token if v2 else result.next_marker
    return [(o.key, o.size) for o in result.object_list], result.prefix_list, result.is_truncated, token


@pytest.mark.parametrize("prefix", ["", "d", "d01/", "d01/00", "d01/0040", "d01/0040.jp", "d01/0040.jpgx", "flat/01", "zzz"])
@pytest.mark.parametrize("delimiter", ["", "/", "0"])
def test_generated_listing_equals_a_folder_with_the_same_keys(servers, prefix: str, delimiter: str) -> None:
    _, generated, disk = servers
    for after in ["", "d01/0040.jpg", "d02/", "d02", "d03/zz", "flat/0110", "e"]:
        for max_keys in (1, 4, 1000):
            kwargs = {"prefix": prefix, "delimiter": delimiter, "max_keys": max_keys}
            v2 = generated.list_objects_v2(start_after=after, **kwargs), disk.list_objects_v2(start_after=after, **kwargs)
            assert _page(v2[0], True) == _page(v2[1], True), (after, max_keys)
            v1 = generated.list_objects(marker=after, **kwargs), disk.list_objects(marker=after, **kwargs)
            assert _page(v1[0], False) == _page(v1[1], False), (after, max_keys)


def test_iterators_walk_the_whole_generated_bucket(servers) -> None:
    _, generated, disk = servers
    for delimiter in ("", "/"):
        walked = [(o.key, o.size) for o in oss2.ObjectIteratorV2(generated, delimiter=delimiter, max_keys=9)]
        assert walked == [(o.key, o.size) for o in oss2.ObjectIteratorV2(disk, delimiter=delimiter, max_keys=9)]
    assert [o.key for o in oss2.ObjectIterator(generated)] == list(SMALL.keys())
    assert SMALL.total_keys == 4 * 23 + 61 == len(list(SMALL.keys()))


def test_keys_are_numbered_uniquely_and_sized_deterministically() -> None:
    keys = list(SMALL.keys())
    assert keys[0] == "d00/0000.jpg" and keys[-1] == "flat/0152.jpg"
    numbers = [int(k.rsplit("/", 1)[1].split(".")[0]) for k in keys]
    assert len(set(numbers)) == len(numbers)
    sizes = [SMALL.lookup(k)[1] for k in keys]  # type: ignore[index]
    assert all(SMALL.min_size <= s <= SMALL.max_size for s in sizes) and len(set(sizes)) > 50
    assert sizes == [dataclasses.replace(SMALL).lookup(k)[1] for k in keys]  # type: ignore[index]


def test_a_page_of_a_billion_key_bucket_is_computed_not_enumerated(servers) -> None:
    server, _, _ = servers
    bucket = oss2.Bucket(oss2.AuthV4(AK, SK), server.endpoint, "gen-huge", region="cn-hangzhou")
    page = bucket.list_objects_v2(prefix="flat/", start_after="flat/003999999999.jpg", max_keys=1000)
    assert len(page.object_list) == 1000 and page.object_list[0].key == "flat/004000000000.jpg"
    top = bucket.list_objects_v2(delimiter="/", max_keys=1000)
    assert top.prefix_list[:2] == ["flat/", "p000/"] and top.is_truncated
    last = bucket.list_objects_v2(prefix="p999/", start_after="p999/000999999998.jpg")
    assert [o.key for o in last.object_list] == ["p999/000999999999.jpg"] and not last.is_truncated


def test_head_get_and_ranges_of_generated_objects(servers) -> None:
    _, generated, _ = servers
    number, size = SMALL.lookup("d02/0050.jpg")  # type: ignore[misc]
    head = generated.head_object("d02/0050.jpg")
    assert head.content_length == size and head.etag == SMALL.etag_of(number).strip('"')
    body = generated.get_object("d02/0050.jpg").read()
    assert len(body) == size and body == generated.get_object("d02/0050.jpg").read()
    assert generated.get_object("d02/0050.jpg", byte_range=(10, 19)).read() == body[10:20]
    with pytest.raises(oss2.exceptions.NoSuchKey):
        generated.get_object("d02/0050.png")
    with pytest.raises(oss2.exceptions.NoSuchKey):
        generated.head_object("d02/9999.jpg")


def test_generated_buckets_are_read_only(servers) -> None:
    _, generated, _ = servers
    with pytest.raises(oss2.exceptions.AccessDenied):
        generated.put_object("d00/new.jpg", b"data")
    with pytest.raises(oss2.exceptions.AccessDenied):
        generated.delete_object("d00/0000.jpg")
    assert generated.head_object("d00/0000.jpg").status == 200


def test_jitter_is_bounded_and_seeded(tmp_path: Path) -> None:
    def delays(seed: int) -> list[float]:
        with LocalOssServer(tmp_path, [Credential(AK, SK)], latency_s=0.05, jitter_s=0.02, seed=seed) as server:
            return [server._httpd.delay_s() for _ in range(50)]  # noqa: SLF001 - the knob's seam

    first = delays(3)
    assert all(0.05 <= d <= 0.07 for d in first) and len(set(first)) > 40
    assert first == delays(3) != delays(4)
    with pytest.raises(ValueError):
        LocalOssServer(tmp_path, [Credential(AK, SK)], jitter_s=-1)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("prefixes=3", "needs name="),
        ("name=ok-name,colour=red", "not one of name=value"),
        ("name=Bad_Name", "naming rules"),
        ("name=gen-x,prefixes=2,keys_per_prefix=60,digits=2", "cannot number"),
        ("name=gen-x,prefixes=2,prefix_format=p/,keys_per_prefix=1", "repeat"),
        ("name=gen-x,prefixes=2,prefix_format=p{}/,flat_prefix=p1/x/,flat_keys=1", "inside folder"),
    ],
)
def test_bad_generated_specs_are_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratedBucket.parse(spec)


def test_cli_serves_a_generated_bucket_with_latency(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOCAL_OSS_ACCESS_KEY_SECRET": SK}
    proc = subprocess.Popen(
        [sys.executable, "-m", "localcloud.oss", "--root", str(tmp_path), "--access-key-id", AK,
         "--latency-s", "0.001", "--jitter-s", "0.001", "--seed", "1",
         "--generated", "name=cli-gen,prefixes=3,keys_per_prefix=5,flat_keys=7"],
        cwd=REPO_ROOT,
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
    )
    try:
        endpoint, output = wait_for_endpoint(proc)
        bucket = oss2.Bucket(oss2.AuthV4(AK, SK), endpoint, "cli-gen", region="cn-hangzhou")
        assert len(list(oss2.ObjectIteratorV2(bucket))) == 3 * 5 + 7
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
