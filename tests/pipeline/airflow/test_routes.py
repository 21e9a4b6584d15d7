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
