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
