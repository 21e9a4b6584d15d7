"""The ``short_pages_rate`` fault knob: legal short and empty pages that are still truncated, as OSS
and S3 may answer them, checked through the real oss2 client (its own parser, not ours).

Legal means: a page is a prefix of what a full page at the same place would hold, ``IsTruncated`` is
true, and its token / NextMarker resumes right after its last entry (an empty page's, where it began).
A second server over the same folder and generated bucket, with no faults, answers the full pages.
"""

from __future__ import annotations

from collections.abc import Iterator

import oss2
import pytest

from localcloud.oss.faults import OssFaults
from localcloud.oss.server import DIR_MARKER_NAME, Credential, GeneratedBucket, LocalOssServer

CREDENTIAL = Credential("LTAIshortpages", "short-pages-secret")
KEYS = (
    [f"flat/{i:03d}.jpg" for i in range(60)]
    + [f"tree/{a}/{i:02d}.png" for a in "abcdefgh" for i in range(6)]
    + ["tree/", "tree/a-1.jpg", "tree/a.jpg", "tree/z.jpg", "tree/\u732b/1.jpg", "top.jpg"]
)
GENERATED = GeneratedBucket("gen-short", prefixes=9, keys_per_prefix=7, flat_keys=40, digits=5)
MAX_KEYS = 6


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalOssServer, LocalOssServer]]:
    root = tmp_path_factory.mktemp("oss")
    for key in KEYS:
        path = root / "disk-short" / key
        path = path / DIR_MARKER_NAME if key.endswith("/") else path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    faulty = LocalOssServer(root, [CREDENTIAL], generated=[GENERATED], faults=OssFaults(short_pages_rate=0.5, short_pages_seed=3))
    plain = LocalOssServer(root, [CREDENTIAL], generated=[GENERATED])
    with faulty, plain:
        yield faulty, plain


def bucket(server: LocalOssServer, name: str) -> oss2.Bucket:
    return oss2.Bucket(oss2.AuthV4(CREDENTIAL.access_key_id, CREDENTIAL.access_key_secret), server.endpoint, name, region="cn-hangzhou")


def entries(result) -> list[str]:
    """A page's objects and common prefixes, in key order (how OSS counts them against max-keys)."""
    return sorted([obj.key for obj in result.object_list] + list(result.prefix_list))


def page(target: oss2.Bucket, v2: bool, prefix: str, delimiter: str, resume: str):
    if v2:
        return target.list_objects_v2(prefix, delimiter, continuation_token=resume, max_keys=MAX_KEYS)
    return target.list_objects(prefix, delimiter, marker=resume, max_keys=MAX_KEYS)


CASES = [
    ("disk-short", "", ""), ("disk-short", "", "/"), ("disk-short", "tree/", "/"), ("disk-short", "flat/0", ""),
    (GENERATED.name, "", ""), (GENERATED.name, "", "/"), (GENERATED.name, "p00", "/"), (GENERATED.name, "flat/", ""),
]


@pytest.mark.parametrize("v2", [True, False], ids=["v2", "v1"])
@pytest.mark.parametrize(("bucket_name", "prefix", "delimiter"), CASES)
def test_short_pages_are_truncated_prefixes_of_full_pages_that_resume_right_after_them(
    servers: tuple[LocalOssServer, LocalOssServer], bucket_name: str, v2: bool, prefix: str, delimiter: str
) -> None:
    faulty, plain = servers
    expected: list[str] = []
    resume = ""
    while True:  # the full listing, from the server without faults
        full = page(bucket(plain, bucket_name), v2, prefix, delimiter, resume)
        expected += entries(full)
        if not full.is_truncated:
            break
        resume = full.next_continuation_token if v2 else full.next_marker
    assert expected, "the case lists nothing"

    for seed in range(20):  # until a seed cuts at least one page of this (maybe one-page) listing
        faulty.faults.set(short_pages_rate=0.5, short_pages_seed=seed)
        listed: list[str] = []
        resume, short_pages = "", 0
        for _ in range(10 * len(expected) + 10):
            got = page(bucket(faulty, bucket_name), v2, prefix, delimiter, resume)
            full = page(bucket(plain, bucket_name), v2, prefix, delimiter, resume)  # the same place, no faults
            assert entries(got) == entries(full)[: len(entries(got))]
            if len(entries(got)) < len(entries(full)):
                short_pages += 1
                assert got.is_truncated
            listed += entries(got)
            if not got.is_truncated:
                break
            resume = got.next_continuation_token if v2 else got.next_marker
            assert resume, "a truncated page must say where to resume"
        else:
            pytest.fail("the listing did not end")
        assert listed == expected  # each page resumed right after the previous one: no gap, nothing twice
        if short_pages:
            return
    pytest.fail("no seed gave a short page")


def test_an_empty_page_resumes_where_it_began(servers: tuple[LocalOssServer, LocalOssServer]) -> None:
    faulty, plain = servers
    target = bucket(faulty, "disk-short")
    for start_after in ["", "flat/010.jpg", "top.jpg"]:
        full = bucket(plain, "disk-short").list_objects_v2("", "/", start_after=start_after, max_keys=MAX_KEYS)
        for seed in range(50):  # until a seed answers the first page empty
            faulty.faults.reset()
            faulty.faults.set(short_pages_rate=0.9, short_pages_seed=seed)
            result = target.list_objects_v2("", "/", start_after=start_after, max_keys=MAX_KEYS)
            if not entries(result):
                break
        else:
            pytest.fail("no seed gave an empty first page")
        empties = 0
        while not entries(result):
            assert result.is_truncated and result.next_continuation_token
            empties += 1
            result = target.list_objects_v2(
                "", "/", continuation_token=result.next_continuation_token, start_after=start_after, max_keys=MAX_KEYS
            )
        assert entries(result) == entries(full)[: len(entries(result))]  # resumed where the empty page began
        assert faulty.faults.empty_pages_sent == empties


def test_a_v1_page_without_a_marker_is_never_empty(servers: tuple[LocalOssServer, LocalOssServer]) -> None:
    """Its NextMarker would be empty: a v1 client could not tell where to resume."""
    faulty, _ = servers
    for seed in range(40):
        faulty.faults.set(short_pages_rate=0.99, short_pages_seed=seed)
        result = bucket(faulty, "disk-short").list_objects("", "", max_keys=MAX_KEYS)
        assert entries(result) and result.is_truncated and result.next_marker == entries(result)[-1]


def test_the_same_seed_gives_the_same_pages(servers: tuple[LocalOssServer, LocalOssServer]) -> None:
    faulty, _ = servers

    def lengths(seed: int) -> list[int]:
        faulty.faults.set(short_pages_rate=0.5, short_pages_seed=seed)  # also forgets earlier answers
        found, token = [], ""
        while True:
            result = bucket(faulty, GENERATED.name).list_objects_v2("", continuation_token=token, max_keys=MAX_KEYS)
            found.append(len(result.object_list))
            if not result.is_truncated:
                return found
            token = result.next_continuation_token

    assert lengths(5) == lengths(5)
    assert lengths(5) != lengths(6)


def test_the_rate_must_leave_room_for_full_pages() -> None:
    with pytest.raises(ValueError, match=r"short_pages_rate must be in \[0, 1\)"):
        OssFaults(short_pages_rate=1.0)
    with pytest.raises(ValueError, match="short_pages_rate"):
        OssFaults().set(short_pages_rate=-0.1)
