"""The assets' names and URIs (pipeline/assets.py) and the config's ``assets`` section: computed from the
config alone, in the form Airflow keeps, refused with a message naming the field otherwise."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.assets import check_asset_uri, index_asset_ids
from pipeline.config import load_index_configs, parse_index_config
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
VALID = {
    "name": "shop",
    "source": {"oss_conn_id": "oss_x", "bucket": "my-bucket", "prefixes": ["a/"]},
    "id_rule": {"kind": "filename_digits"},
    "category_rule": {"kind": "path_segment", "segment": 0},
    "warehouse": {"conn_id": "mc_prod", "table": "image_catalog"},
    "opensearch": {"conn_id": "os_prod", "table": "images"},
}


def config(**changes):
    data = copy.deepcopy(VALID)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return parse_index_config(data, "shop.yaml")


def test_defaults_name_the_connection_and_the_table() -> None:
    ids = index_asset_ids(config())
    assert (ids.catalog.name, ids.catalog.uri) == ("image_index.shop.catalog", "warehouse://mc_prod/image_catalog")
    assert (ids.live.name, ids.live.uri) == ("image_index.shop.live", "opensearch://os_prod/images")


def test_without_an_opensearch_section_only_the_catalog() -> None:
    assert index_asset_ids(config(opensearch=None)).live is None


def test_a_connection_id_is_quoted_into_the_authority() -> None:
    ids = index_asset_ids(config(warehouse={"conn_id": "team/mc:prod#1", "table": "t"}))
    assert ids.catalog.uri == "warehouse://team%2Fmc%3Aprod%231/t"
    check_asset_uri(ids.catalog.uri)


def test_overrides_name_the_project_and_the_instance() -> None:
    ids = index_asset_ids(config(assets={"warehouse_uri": "maxcompute://my_project/image_catalog",
                                         "index_uri": "opensearch://ha-cn-zvp2iv9a401/images"}))
    assert ids.catalog.uri == "maxcompute://my_project/image_catalog"
    assert ids.live.uri == "opensearch://ha-cn-zvp2iv9a401/images"


@pytest.mark.parametrize("uri, says", [
    ("airflow://x/y", "reserves the scheme 'airflow'"),
    ("MaxCompute://p/t", "lower-case scheme"),
    ("maxcompute://p/t/", "trailing '/'"),
    ("maxcompute://p", "<scheme>://<authority>/<path>"),
    ("maxcompute://p//t", "no empty path segment"),
    ("maxcompute://user:secret@p/t", "no user"),
    ("maxcompute://p/t?x=1", "query"),
    ("maxcompute://p/t#frag", "fragment"),
    ("maxcompute://p/t ble", "without spaces"),
    ("maxcompute://p/täble", "printable ASCII"),
    ("maxcompute://p/" + "t" * 1000, "at most 1000 characters"),
])
def test_a_uri_airflow_would_refuse_or_change_is_refused_naming_the_field(uri: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config(assets={"warehouse_uri": uri})
    assert "assets.warehouse_uri" in str(caught.value) and says in str(caught.value)


def test_an_index_uri_needs_an_index_and_differs_from_the_catalog() -> None:
    with pytest.raises(ConfigError, match="no opensearch section"):
        config(opensearch=None, assets={"index_uri": "opensearch://i/t"})
    with pytest.raises(ConfigError, match="same URI"):
        config(assets={"warehouse_uri": "x://a/b", "index_uri": "x://a/b"})
    with pytest.raises(ConfigError, match="unknown field"):
        config(assets={"catalog_uri": "x://a/b"})


def test_two_indexes_may_not_produce_the_same_asset(tmp_path: Path) -> None:
    for name in ("one", "two"):
        data = {**copy.deepcopy(VALID), "name": name}
        data["opensearch"] = {"conn_id": "os_prod", "table": f"images_{name}"}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"two.yaml: asset URI 'warehouse://mc_prod/image_catalog' is already produced by .*one.yaml"):
        load_index_configs(tmp_path)


def test_the_airflow_assets_are_these_names_and_uris_unchanged() -> None:
    from airflow.sdk import Asset

    from pipeline.airflow.assets import index_assets

    assets = index_assets(config(assets={"warehouse_uri": "maxcompute://my_project/image_catalog"}))
    assert assets.catalog == Asset(name="image_index.shop.catalog", uri="maxcompute://my_project/image_catalog")
    assert assets.live == Asset(name="image_index.shop.live", uri="opensearch://os_prod/images")
    for shipped in load_index_configs(REPO / "dags" / "indexes"):  # the demo's: what example_downstream names
        assert index_assets(shipped[1]).catalog.uri == index_asset_ids(shipped[1]).catalog.uri


# What the tasks pass in: XCom-shaped dicts (check_partition's result, choose_rebuild's decision, the
# start_rebuild, wait, push and verify results). The delta path end to end is tests/dags/test_assets.py.
CHECKED = {"stats": {"rows": 320, "distinct_ids": 318}, "snapshot_at": 1796000000.5, "live_ds": "20261130",
           "id_changes": {"previous_ds": "20261129", "added": 7, "removed": 2}, "row_changes": None}


def test_the_catalog_event_says_which_partition_and_how_it_changed() -> None:
    from pipeline.airflow.assets import catalog_event_extra

    extra = catalog_event_extra(config(), "20261201", CHECKED, {"table": "MaxCompute table p.t"}, {"route": "inventory"})
    assert extra == {"index": "shop", "ds": "20261201", "table": "MaxCompute table p.t", "rows": 320,
                     "distinct_ids": 318, "previous_ds": "20261129", "added": 7, "removed": 2,
                     "route": "inventory", "snapshot_at": 1796000000.5}
    first = catalog_event_extra(config(), "20261201", {**CHECKED, "id_changes": None}, {}, None)
    assert (first["previous_ds"], first["added"], first["removed"], first["route"]) == (None, None, None, None)


def test_the_live_event_of_a_full_rebuild_names_the_generation_that_went_live() -> None:
    from pipeline.airflow.assets import live_event_extra

    started = {"started": True, "handle": {"generation_id": 17, "instance_id": "ha-cn-x"}}
    checked = {**CHECKED, "row_changes": {"previous_ds": "20261130", "added": 5, "removed": 1, "changed": 3}}
    extra = live_event_extra(config(), "20261201", checked, {"mode": "full", "reason": "rebuild.mode is full"},
                             started, {"outcome": "ready"}, None, None)
    assert extra == {"index": "shop", "ds": "20261201", "mode": "full", "reason": "rebuild.mode is full",
                     "rows": 320, "distinct_ids": 318, "generation_id": 17, "instance_id": "ha-cn-x",
                     "pushed": None, "previous_ds": "20261130", "added": 5, "removed": 1, "changed": 3}
    # Without the changes against the live partition: the guards' baseline, and no generation unless the wait saw it ready
    extra = live_event_extra(config(), "20261201", CHECKED, {"mode": "full"}, started, None, None, None)
    assert (extra["previous_ds"], extra["added"], extra["removed"], extra["changed"]) == ("20261129", 7, 2, None)
    assert extra["generation_id"] is None


def test_the_live_event_of_a_delta_names_what_was_pushed_and_verified() -> None:
    from pipeline.airflow.assets import live_event_extra

    pushed = {"requests": 2, "adds": 8, "deletes": 1, "bytes": 4096, "retried_requests": 0, "after_pk": 99}
    verified = {"added": 5, "changed": 3, "deleted": 1, "samples": {}}
    extra = live_event_extra(config(), "20261201", CHECKED, {"mode": "delta", "reason": "auto: 9 of 320"},
                             None, None, pushed, verified)
    assert extra["mode"] == "delta" and extra["generation_id"] is None and extra["instance_id"] is None
    assert (extra["previous_ds"], extra["added"], extra["changed"], extra["removed"]) == ("20261130", 5, 3, 1)
    assert extra["pushed"] == {"requests": 2, "adds": 8, "deletes": 1, "bytes": 4096, "retried_requests": 0}
