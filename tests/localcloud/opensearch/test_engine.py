"""The engine's bookkeeping and the search semantics, without HTTP (fast, synthetic vectors).

Why: the integration tests go through the SDKs with real images; these pin the rules that are easy
to get subtly wrong: what RANK means per distance type and which sign is best first, filter then
sort then page, summaries across a switch (docid vs pk), a text-capable vectorizer being used when one is plugged in,
generation ids that never repeat, and the accepted pause-policy bodies.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from localcloud.opensearch.engine import EngineError, EngineFaults, LocalEngine, TableSource
from localcloud.opensearch.schema import DEMO_SCHEMA, TableSchema, load_table_schema
from localcloud.opensearch.search import HaSearchError, LiveGeneration, search_generation
from pipeline.opensearch.ha.grammar import build_ha_query, parse_ha_query


class _AxisVectorizer:
    """Image bytes b"k" embed to the unit vector on axis k; text "k" too (a stand-in for CLIP)."""

    name = "axis"
    description = "test vectorizer"

    def embed_image(self, data: bytes) -> np.ndarray:
        return self._axis(int(data.decode()))

    def embed_text(self, text: str) -> np.ndarray:
        return self._axis(int(text))

    @staticmethod
    def _axis(k: int) -> np.ndarray:
        vec = np.zeros(512, np.float32)
        vec[k] = 1.0
        return vec


def _schema(distance: str = "SquaredEuclidean") -> TableSchema:
    data = copy.deepcopy(DEMO_SCHEMA)
    data["indexes"][1]["distance_type"] = distance
    return load_table_schema(data, "test")


def _live() -> LiveGeneration:
    """Six documents; doc i leans towards axis 0 with similarity falling as i grows."""
    vectors = np.zeros((6, 512), np.float32)
    for i in range(6):
        vectors[i, 0] = 1.0 - 0.1 * i
        vectors[i, 1 + i] = 0.1 * i + 0.05
    columns = {"id": [100 + i for i in range(6)], "source_image": [f"/img/{i}.jpg" for i in range(6)],
               "cate_id": [1, 2, 1, 2, 1, 2]}
    return LiveGeneration(7, vectors, columns)


def _run(query: str, distance: str = "SquaredEuclidean") -> dict[str, Any]:
    return search_generation(_schema(distance), _live(), parse_ha_query(query), _AxisVectorizer())


def _ids(answer: dict[str, Any]) -> list[int]:
    return [int(item["fields"]["id"]) for item in answer["result"]["items"]]


def _q(**kwargs: Any) -> str:
    kwargs.setdefault("n", 6)
    return build_ha_query(b"0", modal="image", **kwargs)


def test_squared_euclidean_rank_is_a_distance_and_plus_rank_is_best_first() -> None:
    answer = _run(_q(sort=["+RANK"]))
    assert _ids(answer) == [100, 101, 102, 103, 104, 105]
    scores = [float(item["sortExprValues"][0]) for item in answer["result"]["items"]]
    assert scores == sorted(scores) and scores[0] < 0.01
    assert _ids(_run(_q(sort=["-RANK"]))) == [105, 104, 103, 102, 101, 100]
    assert _ids(_run(_q())) == _ids(answer)


def test_inner_product_rank_is_a_similarity_and_minus_rank_is_best_first() -> None:
    answer = _run(_q(sort=["-RANK"]), "InnerProduct")
    assert _ids(answer) == [100, 101, 102, 103, 104, 105]
    assert float(answer["result"]["items"][0]["sortExprValues"][0]) > 0.99
    assert _ids(_run(_q(), "InnerProduct")) == _ids(answer)


def test_n_candidates_then_filter_then_sort_then_page() -> None:
    answer = _run(_q(n=4, filter="cate_id=2", sort=["+RANK"]))
    assert _ids(answer) == [101, 103] and answer["result"]["totalHits"] == 2  # 105 is not among the top 4
    answer = _run(_q(filter='in(cate_id, "1|2") AND id!=100', start=1, hit=2))
    assert _ids(answer) == [102, 103] and answer["result"]["totalHits"] == 5 and answer["result"]["numHits"] == 2
    ties = _run(_q(sort=["-cate_id"]))  # equal cate_id keeps the relevance order
    assert _ids(ties) == [101, 103, 105, 100, 102, 104]
    assert ties["result"]["items"][0]["sortExprValues"] == ["2"]


def test_summaries_are_the_stored_fields_however_they_are_fetched() -> None:
    full = {"id": "100", "source_image": "/img/0.jpg", "cate_id": "1"}
    for extra in ({}, {"fetch_summary_type": "pk"}, {"fetch_summary_type": "rawpk"}, {"fetch_summary_type": "docid"},
                  {"fetch_summary_type": "pk", "qrs_chain": "search"}):
        answer = _run(_q(config_extra=extra))
        assert answer["result"]["items"][0]["fields"] == full and answer["errors"] == []
    assert _run(_q(config_extra={"no_summary": "yes"}))["result"]["items"][0]["fields"] == {}
    with pytest.raises(HaSearchError) as info:
        _run(_q(config_extra={"qrs_chain": "no_such_chain"}))
    assert info.value.code == 10005 and info.value.to_error_dict()["message"].startswith("ERROR_QRS_NOT_FOUND_CHAIN")


def test_a_switch_between_the_phases_loses_docid_summaries_but_not_pk_ones() -> None:
    """Docids belong to one generation; the primary key survives a switch (why the vendor sends pk)."""
    old = _live()
    reordered = {name: list(reversed(values)) for name, values in old.columns.items()}  # same docs, other docids
    new = LiveGeneration(8, old.vectors[::-1].copy(), reordered)
    schema, vectorizer = _schema(), _AxisVectorizer()
    by_docid = search_generation(schema, old, parse_ha_query(_q()), vectorizer, summary_from=new)
    assert all(item["fields"] == {} for item in by_docid["result"]["items"])
    ((error),) = by_docid["errors"]
    assert error["code"] == 10010 and "fetched by docid from generation 8, which replaced generation 7" in error["message"]
    by_pk = search_generation(schema, old, parse_ha_query(_q(config_extra={"fetch_summary_type": "pk"})), vectorizer,
                              summary_from=new)
    assert _ids(by_pk) == [100, 101, 102, 103, 104, 105] and by_pk["errors"] == []
    assert by_pk["result"]["items"][0]["fields"]["source_image"] == "/img/0.jpg"


def test_a_text_capable_vectorizer_is_used_for_text_queries() -> None:
    answer = _run(build_ha_query("0", modal="text", n=2))
    assert _ids(answer) == [100, 101]


def test_no_generation_means_zero_hits_but_errors_still_apply() -> None:
    query = parse_ha_query(_q())
    answer = search_generation(_schema(), None, query, _AxisVectorizer())
    assert answer["result"]["totalHits"] == 0 and answer["errors"] == []
    with pytest.raises(HaSearchError) as info:
        search_generation(_schema(), None, parse_ha_query(_q(filter="color=1")), _AxisVectorizer())
    assert info.value.code == 2000 and info.value.to_error_dict()["message"].startswith("ERROR_ATTRIBUTE_NOT_EXIST")


def _engine(tmp_path: Path) -> LocalEngine:
    source = TableSource(_schema(), tmp_path / "warehouse", "catalog", "http://127.0.0.1:9", "ak", "sk")
    return LocalEngine(tmp_path / "state", "ha-cn-unit", {"images": source}, _AxisVectorizer())


def test_generation_ids_increase_even_when_the_clock_goes_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(tmp_path)
    engine.reindex("images", "ds=20261123")
    first = engine.list_generations("images")[0]["generationId"]
    # No warehouse here: the build fails at read_partition.
    assert engine.wait_for(lambda: engine.list_generations("images")[0]["status"] == "failed", 10)
    engine.close()
    monkeypatch.setattr(time, "time", lambda: 1_000_000.0)  # 1970: far behind the last id
    again = _engine(tmp_path)
    again.reindex("images", "ds=20261123")
    assert again.list_generations("images")[-1]["generationId"] == first + 1
    again.close()


def test_pause_policy_bodies(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    engine.modify_pause_policy({"body": {"general": {"pauseIndex": True, "pauseBiz": None}}})
    engine.modify_pause_policy({"body": {"pauseRuntime": True}})
    engine.modify_pause_policy({"pauseAll": True})
    assert engine.pause_policies() == {"general": {"pauseAll": True, "pauseIndex": True, "pauseIndexBatch": False,
                                                   "pauseBiz": False, "pauseRuntime": True}}
    for bad in ({"body": {"general": {"pauseIndex": "yes"}}}, {"body": {"general": {"pauseEverything": True}}}, {}):
        with pytest.raises(EngineError) as info:
            engine.modify_pause_policy(bad)
        assert info.value.code == "InvalidParameter"
    engine.close()
    assert _engine(tmp_path).pause_policies()["general"]["pauseAll"] is True  # persisted


def test_fault_knobs_are_one_shot() -> None:
    faults = EngineFaults(fail_next_build="boom", stall_next_build=True)
    assert faults.take("fail_next_build") == "boom" and faults.take("fail_next_build") is None
    assert faults.take("stall_next_build") is True and faults.take("stall_next_build") is False
