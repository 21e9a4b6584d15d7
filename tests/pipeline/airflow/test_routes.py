"""Which route loads a run's partition (pipeline/airflow/routes.py), where no inventory is consulted;
the inventory cases run through the DAG in tests/dags/test_inventory_route.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.airflow.routes import choose_load_route
from pipeline.config import load_index_config
from pipeline.errors import ParamError

REPO = Path(__file__).resolve().parents[3]
CONFIG = load_index_config(REPO / "dags" / "indexes" / "demo.yaml")  # mode list, with an inventory section


def test_the_configured_list_route_needs_no_reason_and_a_params_choice_says_so() -> None:
    assert choose_load_route(CONFIG, "20261201", {}) == {"route": "list", "task_id": "load_partition", "reason": None}
    assert choose_load_route(CONFIG, "20261201", {"source_mode": "list"})["reason"] == "the source_mode Param asked to list"


def test_a_dry_run_lists_even_on_the_inventory_route() -> None:
    route = choose_load_route(CONFIG, "20261201", {"source_mode": "inventory", "dry_run": True})
    assert route["task_id"] == "load_partition" and route["reason"].startswith("dry run")


def test_the_inventory_route_without_an_inventory_section_is_a_param_error() -> None:
    bare = CONFIG.model_copy(update={"source": CONFIG.source.model_copy(update={"inventory": None})})
    with pytest.raises(ParamError, match="no source.inventory section"):
        choose_load_route(bare, "20261201", {"source_mode": "inventory"})


def test_a_run_asking_for_the_inventory_route_of_an_index_without_one_is_refused_at_start() -> None:
    from pipeline.airflow.params import resolve_run_partition

    bare = CONFIG.model_copy(update={"source": CONFIG.source.model_copy(update={"inventory": None})})
    with pytest.raises(ParamError, match="has no source.inventory section, so its DAG has no inventory route"):
        resolve_run_partition(bare, {"source_mode": "inventory", "partition_date": "2026-11-30"}, None, None)


class _XComs:
    """The narrowest seam: a task instance's xcom_pull over a dict (no run can keep a skipped task's
    stale XCom on demand, which is the case this guards)."""

    def __init__(self, values: dict) -> None:
        self.values = values

    def xcom_pull(self, task_ids: str, key: str = "return_value"):
        return self.values.get((task_ids, key))


def test_the_check_reads_the_load_of_the_route_chosen_never_a_stale_one() -> None:
    from pipeline.airflow.dag_factory import pulled_load

    stale, fresh = {"route": "list", "kept": 1}, {"route": "inventory", "kept": 2}
    cleared = _XComs({("choose_route", "route"): {"task_id": "load_from_inventory"},
                      ("load_partition", "return_value"): stale, ("load_from_inventory", "return_value"): fresh})
    assert pulled_load(cleared) == fresh
    assert pulled_load(_XComs({("load_partition", "return_value"): stale})) == stale  # no routes in the graph
