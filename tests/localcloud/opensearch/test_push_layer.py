"""The realtime layer and the push log on their own (no HTTP, synthetic vectors: fast).

Why: the integration tests push through the SDK and wait for real images; these pin what is easy to get
subtly wrong underneath: a replaced document must hide its old vector, a delete must hide it from
vector queries *and* primary-key lookups, an older view must not change when a newer one is made from
it (queries in flight keep a consistent state), applying twice must change nothing, a 20,000-document
generation must not be copied per push, and the log must keep order, numbering and acknowledged
entries across a reopen, a torn last line and pruning.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localcloud.opensearch.pushlog import PushLog
from localcloud.opensearch.realtime import Change, LayeredGeneration, apply_changes
from localcloud.opensearch.schema import DEMO_SCHEMA, load_table_schema
from localcloud.opensearch.search import LiveGeneration, search_generation
from pipeline.opensearch.ha.grammar import build_ha_query, build_pk_lookup_query, parse_ha_query

SCHEMA = load_table_schema(DEMO_SCHEMA, "test")


def _axis(k: int, lean: float = 0.0) -> np.ndarray:
    vec = np.zeros(512, np.float32)
    vec[k] = 1.0
    vec[511] = lean
    return vec / np.linalg.norm(vec)


class _AxisVectorizer:
    name, description = "axis", "image bytes b'k' embed to axis k"

    def embed_image(self, data: bytes) -> np.ndarray:
        return _axis(int(data.decode()))

    def embed_text(self, text: str) -> np.ndarray:
        raise NotImplementedError


def _base() -> LiveGeneration:
    """Documents 100..105 on axes 0..5."""
    vectors = np.stack([_axis(i) for i in range(6)])
    return LiveGeneration(7, vectors, {"id": [100 + i for i in range(6)],
                                       "source_image": [f"/img/{i}.jpg" for i in range(6)], "cate_id": [1] * 6})


def _add(seq: int, pk: int, axis: int, image: str = "") -> Change:
    return Change(seq, pk, {"id": pk, "source_image": image or f"/pushed/{pk}.jpg", "cate_id": 9}, _axis(axis))


def _top(view: Any, axis: int, k: int = 3) -> list[int]:
    rows, _scores = view.top_k(_axis(axis), k)
    return [view.fields(int(r))["id"] for r in rows]


def test_adds_replaces_and_deletes_over_the_generation() -> None:
    base = _base()
    view = apply_changes(base, [_add(1, 200, 10), _add(2, 101, 20), Change(3, 102)], "id")
    assert isinstance(view, LayeredGeneration) and view.generation_id == 7
    assert view.size == 6 and view.pushed_documents == 2 and view.tombstones == 1
    assert _top(view, 10)[0] == 200  # a new document
    assert _top(view, 20)[0] == 101  # replaced: found by its new vector ...
    rows, _ = view.top_k(_axis(1), 6)
    assert _top(view, 1)[0] != 101 and 1 not in rows.tolist()  # ... not by its old one: that row is hidden
    assert sorted(_top(view, 1, k=10)) == [100, 101, 103, 104, 105, 200]  # every document once
    assert 102 not in _top(view, 2, k=6) and view.row_of("id", 102) is None  # deleted: gone both ways
    assert view.fields(view.row_of("id", 101))["source_image"] == "/pushed/101.jpg"  # type: ignore[arg-type]
    assert view.fields(view.row_of("id", 103))["source_image"] == "/img/3.jpg"  # type: ignore[arg-type]
    assert view.row_of("id", 999) is None


def test_an_older_view_does_not_change_and_applying_twice_changes_nothing() -> None:
    first = apply_changes(_base(), [_add(1, 200, 10)], "id")
    second = apply_changes(first, [_add(2, 200, 30), Change(3, 100)], "id")
    assert _top(first, 10)[0] == 200 and first.row_of("id", 100) == 0 and first.size == 7  # type: ignore[union-attr]
    assert _top(second, 30)[0] == 200 and _top(second, 10)[0] != 200 and second.size == 6  # type: ignore[union-attr]
    assert sorted(_top(second, 10, k=10)) == [101, 102, 103, 104, 105, 200]  # the replaced row is hidden
    third = apply_changes(first, [_add(4, 300, 40)], "id")  # a branch from the older view: its own rows
    assert _top(third, 40)[0] == 300 and third.row_of("id", 200) is not None  # type: ignore[union-attr]
    assert second.row_of("id", 300) is None and _top(second, 30)[0] == 200  # type: ignore[union-attr]
    again = apply_changes(second, [_add(2, 200, 30), Change(3, 100)], "id")
    assert again.size == second.size  # type: ignore[union-attr]
    assert sorted(again.columns["id"][r] for r in _rows(again)) == sorted(second.columns["id"][r] for r in _rows(second))  # type: ignore[union-attr]


def _rows(view: Any) -> list[int]:
    rows, _ = view.top_k(_axis(0), 1000)
    return [int(r) for r in rows]


def test_a_layer_over_no_generation_and_growth_past_its_first_store() -> None:
    view = apply_changes(None, [_add(i, 1000 + i, i % 500) for i in range(1, 301)], "id")
    assert view is not None and view.generation_id is None and view.size == 300
    assert all(view.row_of("id", 1000 + i) is not None for i in range(1, 301))
    assert _top(view, 7)[0] == 1007


def test_search_generation_answers_lookups_and_vector_queries_from_the_layer() -> None:
    view = apply_changes(_base(), [_add(1, 200, 10), Change(2, 101)], "id")
    lookup = search_generation(SCHEMA, view, parse_ha_query(build_pk_lookup_query("id", [200, 101, 100, 200])),
                               _AxisVectorizer())
    assert [item["fields"]["id"] for item in lookup["result"]["items"]] == ["200", "100"]
    assert lookup["result"]["items"][0] == {"fields": {"id": "200", "source_image": "/pushed/200.jpg", "cate_id": "9"},
                                            "sortExprValues": []}
    page = search_generation(SCHEMA, view, parse_ha_query(
        "config=start:1,hit:1&&query=id:'100' OR id:'102' OR id:'103'"), _AxisVectorizer())
    assert page["result"]["totalHits"] == 3 and [i["fields"]["id"] for i in page["result"]["items"]] == ["102"]
    found = search_generation(SCHEMA, view, parse_ha_query(build_ha_query(b"10", modal="image", n=3)), _AxisVectorizer())
    assert found["result"]["items"][0]["fields"]["id"] == "200"


def test_a_big_generation_is_shared_not_copied_per_push() -> None:
    rng = np.random.default_rng(5)
    n = 20_000
    vectors = rng.standard_normal((n, 512)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    base = LiveGeneration(1, vectors, {"id": list(range(n)), "source_image": [""] * n, "cate_id": [0] * n})
    view: Any = base
    started = time.perf_counter()
    for batch in range(100):  # 1,000 pushes: replacements of base documents and new ones
        view = apply_changes(view, [_add(batch * 10 + i, (batch * 10 + i) * 7 % (2 * n), (batch + i) % 500)
                                    for i in range(10)], "id")
    elapsed = time.perf_counter() - started
    assert view.base is base and view.base.vectors is vectors  # the generation itself is never copied
    assert view.size == n + sum(1 for k in {(b * 10 + i) * 7 % (2 * n) for b in range(100) for i in range(10)} if k >= n)
    assert elapsed < 5.0, f"applying 100 batches took {elapsed:.2f} s"
    query = vectors[12345]
    rows, _ = view.top_k(query, 5)
    replaced = {(b * 10 + i) * 7 % (2 * n) for b in range(100) for i in range(10)}
    assert (12345 in replaced) or int(rows[0]) == 12345


# --- the push log ---------------------------------------------------------------------------------------


def _docs(*pks: int) -> list[dict[str, Any]]:
    return [{"cmd": "add", "fields": {"id": pk}} for pk in pks]


def test_the_log_numbers_stamps_and_survives_a_reopen(tmp_path: Path) -> None:
    log = PushLog(tmp_path / "push")
    first = log.append(_docs(1, 2), 1_000)
    second = log.append(_docs(3), 900)  # a clock that went back: stamps never decrease
    assert [e["seq"] for e in first + second] == [1, 2, 3] and [e["ts"] for e in first + second] == [1000, 1000, 1000]
    log.append(_docs(4), 2_000)
    again = PushLog(tmp_path / "push")
    assert again.last_seq == 4 and len(again) == 4
    assert [e["fields"]["id"] for e in again.between(2, 3)] == [2, 3]
    assert again.first_seq_at_or_after(1_500) == 4 and again.first_seq_at_or_after(2_001) == 5
    assert [e["seq"] for e in again.between(1, 4, limit=2)] == [1, 2]


def test_a_torn_last_line_is_cut_off_and_numbering_goes_on(tmp_path: Path) -> None:
    log = PushLog(tmp_path / "push")
    log.append(_docs(1, 2), 1_000)
    with open(log.path, "ab") as fh:
        fh.write(b'{"seq": 3, "ts": 1000, "cmd": "add", "fie')  # the process died mid-write
    reopened = PushLog(tmp_path / "push")
    assert reopened.last_seq == 2 and reopened.path.read_bytes().endswith(b"}\n")
    assert [e["seq"] for e in reopened.append(_docs(3), 1_100)] == [3]
    assert [json.loads(line)["seq"] for line in reopened.path.read_text().splitlines()] == [1, 2, 3]


def test_pruning_keeps_what_is_needed_and_never_reuses_a_number(tmp_path: Path) -> None:
    log = PushLog(tmp_path / "push")
    for ts in (1_000, 2_000, 3_000, 4_000):
        log.append(_docs(ts), ts)
    assert log.prune(before_ms=3_500, keep_from_seq=2) == 1  # seq 2 and 3 are old but still needed
    assert log.first_seq == 2 and log.prune(before_ms=3_500, keep_from_seq=2) == 0
    assert log.prune(before_ms=10_000, keep_from_seq=4) == 2 and log.first_seq == 4
    assert log.prune(before_ms=10_000, keep_from_seq=99) == 1 and len(log) == 0 and log.first_seq == 5
    reopened = PushLog(tmp_path / "push")
    assert reopened.last_seq == 4 and len(reopened) == 0
    assert [e["seq"] for e in reopened.append(_docs(9), 5_000)] == [5]
    assert reopened.first_seq_at_or_after(0) == 5


@pytest.mark.parametrize("cut", [0, 1, 2])
def test_between_is_exact_after_pruning(tmp_path: Path, cut: int) -> None:
    log = PushLog(tmp_path / "push")
    for i in range(5):
        log.append(_docs(i), 1_000 * (i + 1))
    log.prune(before_ms=1_000 * cut + 1, keep_from_seq=99)
    assert [e["seq"] for e in log.between(1, 5)] == list(range(cut + 1, 6))
    assert [e["seq"] for e in log.between(cut + 2, cut + 3)] == [cut + 2, cut + 3]
