"""Every inventory-route run checks the rule against what it selects (review of issue 13): a rule that
leaves objects out would give fresh, complete inventories without them, and no guard would notice."""

from __future__ import annotations

import pytest

from pipeline.errors import InventoryError
from pipeline.oss.inventory import check_inventory_rule
from pipeline.oss.inventory.cli import build_rule

OSS_ROLE = "acs:ram::1000000000000001:role/AliyunOSSRole"


@pytest.fixture
def rule_setup(demo_stack):
    from localcloud.demo import prepare_demo_inventory
    from pipeline.oss.client import OssConnection

    _, stack, config = demo_stack
    conn = OssConnection.from_extras("oss_local", stack.connections("AK")["oss_local"]["extra"])
    prepare_demo_inventory(stack, conn, config)  # the rule as `setup` writes it, and one run
    source = conn.bucket(config.source.bucket)
    yield conn, config, source
    replace_rule(source, build_rule(config, OSS_ROLE))  # as found, for other tests


def replace_rule(source, rule) -> None:
    source.delete_bucket_inventory_configuration(rule.inventory_id)  # a put of an existing id is refused
    source.put_bucket_inventory_configuration(rule)


def test_the_rule_setup_writes_passes_and_one_that_leaves_objects_out_does_not(rule_setup) -> None:
    import oss2.models as models

    conn, config, source = rule_setup
    inventory = config.source.inventory
    check_inventory_rule(conn, config.source.bucket, inventory, ["catalog/"])
    check_inventory_rule(conn, config.source.bucket, inventory, ["catalog/shoes/"])  # a narrower run
    # The config's prefixes grew past the rule's filter: the new prefix would contribute nothing.
    with pytest.raises(InventoryError, match=r"filter prefix 'catalog/' leaves out the selected prefixes \['more/'\]"):
        check_inventory_rule(conn, config.source.bucket, inventory, ["catalog/", "more/"])
    # Edited in the console: every version, and a size bound.
    rule = build_rule(config, OSS_ROLE)
    rule.included_object_versions = models.INVENTORY_INCLUDED_OBJECT_VERSIONS_ALL
    rule.inventory_filter = models.InventoryFilter(prefix="catalog/", lower_size_bound=1024)
    replace_rule(source, rule)
    with pytest.raises(InventoryError) as refused:
        check_inventory_rule(conn, config.source.bucket, inventory, ["catalog/"])
    assert "lists All versions, not Current only" in str(refused.value)
    assert "filters by lower_size_bound" in str(refused.value) and "would silently miss objects" in str(refused.value)


def test_a_missing_rule_says_how_to_create_it(rule_setup) -> None:
    conn, config, source = rule_setup
    other = config.source.inventory.model_copy(update={"id": "never-set-up"})
    with pytest.raises(InventoryError, match="does not exist: create it with `python -m pipeline.oss.inventory setup"):
        check_inventory_rule(conn, config.source.bucket, other, ["catalog/"])
