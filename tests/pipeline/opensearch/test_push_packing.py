"""Packing documents into request bodies within the byte limit, and pacing them within the rate.

Pure logic with a fake clock (no server can show a sleep's length faster); the requests themselves go
through the SDK against the local server in test_push.py."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import DeltaError
from pipeline.opensearch.push import ByteRate, Change, RequestPacker, add_document


def row(pk: int, path_len: int = 20) -> dict:
    return {"id": pk, "source_image": "/catalog/" + "é" * path_len + f"/{pk}.jpg", "cate_id": pk % 4 + 1}


def pack(changes: list[Change], limit: int) -> list:
    packer, requests = RequestPacker(limit), []
    for change in changes:
        full = packer.add(change, change.encode("id"))
        if full:
            requests.append(full)
    last = packer.flush()
    return requests + ([last] if last else [])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 300)), min_size=1, max_size=80), st.integers(800, 5000))
def test_every_body_is_within_the_limit_in_order_and_sized_as_the_sdk_sends_it(docs: list, limit: int) -> None:
    changes = [Change("add", i, row(i, n)) if is_add else Change("delete", i) for i, (is_add, n) in enumerate(docs)]
    requests = pack(changes, limit)
    sent = []
    for request in requests:
        body = request.body()
        assert len(body.encode()) == request.size <= limit
        # What alibabacloud_tea_util's to_jsonstring makes of the same list, byte for byte.
        documents = json.loads(body)
        assert json.dumps(documents, ensure_ascii=False, separators=(",", ":")) == body
        sent += [d["fields"]["id"] for d in documents]
        assert request.last_pk == documents[-1]["fields"]["id"]
    assert sent == [c.pk for c in changes]
    # Packed tight: no request would have taken the next request's first document.
    for first, second in zip(requests, requests[1:]):
        assert first.size + 1 + len(second.parts[0]) > limit


def test_a_document_that_can_never_fit_is_refused_with_its_id() -> None:
    big = Change("add", 7, row(7, 2000))
    with pytest.raises(DeltaError, match="document 7 is .* bytes encoded"):
        RequestPacker(1024).add(big, add_document(big.row))


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_never_exceeds_its_bytes_in_any_second() -> None:
    clock = FakeClock()
    rate = ByteRate(1000, clock.time, clock.sleep)
    sends = []
    for _ in range(12):
        rate.acquire(300)
        sends.append(clock.now)
    for i, at in enumerate(sends):
        in_window = [t for t in sends[: i + 1] if at - t < 1.0]
        assert len(in_window) * 300 <= 1000
    assert sends[-1] == pytest.approx(3.0, abs=0.01)  # 3 per second: 12 sends end at t=3
    assert rate.waited_s == pytest.approx(sum(clock.slept))
