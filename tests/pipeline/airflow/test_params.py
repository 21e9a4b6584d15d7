"""The DAG's Params: what the schema refuses when a run is triggered, what resolve_partition refuses when
it starts, and the values both accept. (Through dag.test(): tests/dags/test_fail_fast.py.)"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import pytest
from airflow.sdk.exceptions import ParamValidationError

from pipeline.airflow.params import check_partition_param, check_prefixes_param, index_params, resolve_run_partition
from pipeline.config import load_index_config
from pipeline.errors import ParamError

REPO = Path(__file__).resolve().parents[3]
CONFIG = load_index_config(REPO / "dags" / "indexes" / "demo.yaml")  # Asia/Shanghai, prefixes [catalog/]
NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)  # 14:00 on Dec 1 in Shanghai


@pytest.fixture(scope="module")
def dag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(REPO / "dags")).dags["image_index_demo"]


def at_trigger(dag, conf: dict) -> dict:
    """What Airflow runs when a run is triggered (REST API, UI form, CLI, dag.test): the scheduler-side
    DAG's ``create_dagrun`` does ``self.params.deep_merge(conf).validate()``."""
    from airflow.serialization.serialized_objects import DagSerialization

    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    return scheduler_dag.params.deep_merge(conf).validate()


def test_the_dag_takes_its_params_from_params_py(dag) -> None:
    assert set(dag.params.keys()) == set(index_params(CONFIG))
    assert {"partition_date", "allow_future_partition", "prefixes", "dry_run", "skip_rebuild", "force_rebuild",
            "override_guards", "source_mode", "rebuild_mode"} == set(dag.params.keys())
    defaults = at_trigger(dag, {})  # a scheduled run: every default is valid
    assert defaults["partition_date"] is None and defaults["prefixes"] is None
    assert defaults["allow_future_partition"] is False


@pytest.mark.parametrize("value", ["2026-11-30", "20261130", "2026-02-30", None])
def test_trigger_accepts_both_date_forms(dag, value) -> None:
    assert at_trigger(dag, {"partition_date": value})["partition_date"] == value


@pytest.mark.parametrize("value", ["2026-13-45", "2026-11-3", "26-11-30", "2026/11/30", "2026-1130", "yesterday", " 20261130"])
def test_trigger_refuses_a_malformed_date(dag, value) -> None:
    with pytest.raises(ParamValidationError, match=r"Invalid input for param partition_date: .* does not match"):
        at_trigger(dag, {"partition_date": value})


@pytest.mark.parametrize("value", [["catalog/bags/"], ["catalog/bags/", "catalog/hats/"], ["catalog/a..b/"], None])
def test_trigger_accepts_prefixes(dag, value) -> None:
    assert at_trigger(dag, {"prefixes": value})["prefixes"] == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (["/catalog/bags/"], "does not match"),           # leading slash
        (["catalog/../secret/"], "does not match"),       # '..' segment
        ([".."], "does not match"),
        (["catalog/bags/", "catalog/bags/"], "non-unique elements"),
        ([], "should be non-empty|is too short"),
        ("catalog/bags/", "is not of type"),               # a string, not a list
    ],
)
def test_trigger_refuses_malformed_prefixes(dag, value, why) -> None:
    with pytest.raises(ParamValidationError, match=rf"Invalid input for param prefixes: .*({why})"):
        at_trigger(dag, {"prefixes": value})


def test_the_sdk_side_params_refuse_the_same(dag) -> None:
    """The DagBag DAG's own ParamsDict (what a task sees) holds the same schema."""
    params = copy.deepcopy(dag.params)
    with pytest.raises(ParamValidationError, match="Invalid input for param partition_date"):
        params["partition_date"] = "2026-13-45"
    with pytest.raises(ParamValidationError, match="Invalid input for param prefixes"):
        params["prefixes"] = ["/catalog/"]
    params["partition_date"] = "20261130"
    assert params.validate()["partition_date"] == "20261130"


# -- run start: resolve_partition -------------------------------------------------------------------


def test_a_date_up_to_today_in_the_index_time_zone_is_accepted() -> None:
    assert check_partition_param("2026-12-01", "Asia/Shanghai", allow_future=False, now=NOW) == "20261201"
    assert check_partition_param("20261130", "Asia/Shanghai", allow_future=False, now=NOW) == "20261130"
    # 22:00 UTC on Nov 30 is already Dec 1 in Shanghai, but not in Los Angeles.
    late = datetime(2026, 11, 30, 22, 0, tzinfo=UTC)
    assert check_partition_param("2026-12-01", "Asia/Shanghai", allow_future=False, now=late) == "20261201"
    with pytest.raises(ParamError, match=r"after today \(20261130 in America/Los_Angeles\)"):
        check_partition_param("2026-12-01", "America/Los_Angeles", allow_future=False, now=late)


def test_a_future_date_needs_allow_future_partition() -> None:
    with pytest.raises(
        ParamError,
        match=r"partition_date '2026-12-02' \(ds=20261202\) is after today \(20261201 in Asia/Shanghai\).*"
        r"Pass a date up to today, or set the allow_future_partition Param to true",
    ):
        check_partition_param("2026-12-02", "Asia/Shanghai", allow_future=False, now=NOW)
    assert check_partition_param("2026-12-02", "Asia/Shanghai", allow_future=True, now=NOW) == "20261202"


def test_a_date_not_in_the_calendar_is_refused_saying_what_to_pass() -> None:
    with pytest.raises(ParamError, match=r"'2026-02-30' is not a calendar date: pass a real date as YYYY-MM-DD or YYYYMMDD"):
        check_partition_param("2026-02-30", "UTC", allow_future=True, now=NOW)


def test_prefixes_within_the_configured_ones_are_accepted() -> None:
    assert check_prefixes_param(CONFIG.source, None) is None
    assert check_prefixes_param(CONFIG.source, ["catalog/"]) == ["catalog/"]
    assert check_prefixes_param(CONFIG.source, ["catalog/bags/", "catalog/hats/"]) == ["catalog/bags/", "catalog/hats/"]


@pytest.mark.parametrize(
    ("prefixes", "message"),
    [
        (["elsewhere/"], r"prefix 'elsewhere/' is not within the configured prefixes \['catalog/'\] of bucket "
                         r"'demo-images': pass prefixes under them, or set source.allow_param_prefixes_outside: true"),
        (["catalog"], r"prefix 'catalog' is not within"),  # would also list catalog-old/...
        (["catalog/bags/", "catalog/"], r"prefix 'catalog/bags/' lies inside prefix 'catalog/'"),
        (["/catalog/"], r"must not start with '/'"),
        (["catalog/../x/"], r"must not contain '..' segments"),
        ([], r"non-empty list"),
    ],
)
def test_prefixes_refused_at_run_start_name_the_offender(prefixes, message) -> None:
    with pytest.raises(ParamError, match=message):
        check_prefixes_param(CONFIG.source, prefixes)


def test_the_config_may_allow_prefixes_outside() -> None:
    source = CONFIG.source.model_copy(update={"allow_param_prefixes_outside": True})
    assert check_prefixes_param(source, ["elsewhere/", "catalog/bags/"]) == ["elsewhere/", "catalog/bags/"]
    with pytest.raises(ParamError, match="lies inside"):  # the config's rules still hold
        check_prefixes_param(source, ["elsewhere/", "elsewhere/x/"])
    assert "any prefix of the bucket" in index_params(CONFIG.model_copy(update={"source": source}))["prefixes"].description


def test_resolve_run_partition() -> None:
    moment = datetime(2026, 11, 23, 18, 30, tzinfo=UTC)  # 02:30 on Nov 24 in Shanghai
    assert resolve_run_partition(CONFIG, {}, moment, moment, now=NOW) == "20261124"
    assert resolve_run_partition(CONFIG, {"partition_date": "2026-11-01"}, None, moment, now=NOW) == "20261101"
    # Only the Param is bounded by today: a logical date comes from the scheduler (or a test).
    later = datetime(2027, 1, 1, tzinfo=UTC)
    assert resolve_run_partition(CONFIG, {}, later, later, now=NOW) == "20270101"
    with pytest.raises(ParamError, match="not within"):  # prefixes are checked first, whatever the date
        resolve_run_partition(CONFIG, {"prefixes": ["x/"]}, moment, moment, now=NOW)
    with pytest.raises(ParamError, match="pass the partition_date Param"):
        resolve_run_partition(CONFIG, {}, None, None, now=NOW)
