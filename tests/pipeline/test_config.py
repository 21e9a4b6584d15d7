"""Index config validation: every bad field gets a message naming the file, the field and the value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.config import load_index_config, load_index_configs, parse_index_config
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

VALID = {
    "name": "shop",
    "timezone": "Asia/Shanghai",
    "source": {"oss_conn_id": "oss_x", "bucket": "my-bucket", "prefixes": ["a/", "b/"]},
    "id_rule": {"kind": "filename_digits"},
    "category_rule": {"kind": "path_segment", "segment": 0},
    "warehouse": {"conn_id": "mc", "table": "image_catalog"},
}


def with_change(path: str, value: object) -> dict:
    data = copy.deepcopy(VALID)
    *parents, leaf = path.split(".")
    node = data
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return data


_DELETE = object()


def test_valid_config_has_defaults() -> None:
    config = parse_index_config(VALID, "x.yaml")
    assert config.source.extensions == sorted(["jpg", "jpeg", "png", "webp", "bmp", "gif"])
    assert config.warehouse.lifecycle_days == 30
    assert config.category_rule.unmapped == "skip"


def test_extensions_are_normalised_case_insensitively() -> None:
    config = parse_index_config(with_change("source.extensions", ["JPG", ".Png", "jpg"]), "x.yaml")
    assert config.source.extensions == ["jpg", "png"]


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("name", "Bad Name", "name: String should match pattern"),
        ("timezone", "Mars/Olympus", "timezone: unknown time zone 'Mars/Olympus'"),
        ("schedule", "every night", "schedule: schedule 'every night' must be a 5-field cron"),
        ("start_date", "01.11.2026", "start_date: start_date '01.11.2026' must be YYYY-MM-DD"),
        ("source.bucket", "Bad_Bucket", "source.bucket: String should match pattern"),
        ("source.prefixes", [], "source.prefixes: List should have at least 1 item"),
        ("source.prefixes", ["/abs/"], "prefix '/abs/' must not start with '/'"),
        ("source.prefixes", ["a/../b/"], "must not contain '..' segments"),
        ("source.prefixes", ["a/", "a/b/"], "prefix 'a/b/' lies inside prefix 'a/'"),
        ("source.prefixes", ["a/", "a/"], "lies inside prefix 'a/'"),
        ("source.extensions", ["jp g"], "extension 'jp g' must be letters or digits"),
        ("source.max_size_bytes", 0, "source.max_size_bytes: Input should be greater than 0 (got 0)"),
        ("source.min_size_bytes", -1, "source.min_size_bytes: Input should be greater than or equal to 0 (got -1)"),
        ("source.oss_conn_id", _DELETE, "source.oss_conn_id: required field is missing"),
        ("source.colour", "blue", "source.colour: unknown field"),
        ("id_rule.kind", "uuid", "id_rule.kind: Input should be 'filename_digits', 'hash' or 'md5' (got 'uuid')"),
        ("id_rule.regex", "([0-9]+", "does not compile"),
        ("id_rule.regex", r"\d+", "needs one capture group"),
        ("category_rule.kind", "guess", "category_rule.kind: Input should be 'path_segment' or 'regex'"),
        ("category_rule.segment", _DELETE, "kind 'path_segment' needs 'segment'"),
        ("category_rule.unmapped", "ignore", "category_rule.unmapped: Input should be 'skip', 'default' or 'fail'"),
        ("category_rule.mapping", {}, "mapping is empty"),
        ("category_rule.mapping", {"shoes": -3}, "mapping['shoes'] = -3"),
        ("warehouse.table", "bad-table", "warehouse.table: String should match pattern"),
        ("warehouse.lifecycle_days", 0, "warehouse.lifecycle_days: Input should be greater than or equal to 1 (got 0)"),
        ("warehouse", _DELETE, "warehouse: required field is missing"),
    ],
)
def test_each_bad_field_is_named(path: str, value: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_index_config(with_change(path, value), "dags/indexes/shop.yaml")
    message = str(err.value)
    assert message.startswith("dags/indexes/shop.yaml: invalid index config")
    assert expected in message


def test_contradictory_rules_are_refused() -> None:
    data = with_change("category_rule", {"kind": "path_segment", "segment": 1, "regex": "(x)"})
    with pytest.raises(ConfigError, match="takes 'segment', not 'regex'"):
        parse_index_config(data, "x.yaml")
    data = with_change("category_rule", {"kind": "regex", "regex": "(x)", "unmapped": "skip", "default_id": 0})
    with pytest.raises(ConfigError, match="default_id is set but unmapped is 'skip'"):
        parse_index_config(data, "x.yaml")
    data = with_change("category_rule", {"kind": "regex", "regex": "(x)", "unmapped": "default"})
    with pytest.raises(ConfigError, match="unmapped: default needs 'default_id'"):
        parse_index_config(data, "x.yaml")
    data = with_change("source.min_size_bytes", 100)
    data["source"]["max_size_bytes"] = 10
    with pytest.raises(ConfigError, match=r"min_size_bytes \(100\) is larger than max_size_bytes \(10\)"):
        parse_index_config(data, "x.yaml")


def test_files_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml: cannot read index config"):
        load_index_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_index_config(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    with pytest.raises(ConfigError, match="scalar.yaml: the file must hold a mapping of fields, got str"):
        load_index_config(scalar)


def test_duplicate_index_names_are_refused(tmp_path: Path) -> None:
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text(yaml.safe_dump(VALID))
    with pytest.raises(ConfigError, match="b.yaml: name 'shop' is already used by .*a.yaml"):
        load_index_configs(tmp_path)


def test_shipped_configs_are_valid() -> None:
    configs = load_index_configs(REPO / "dags" / "indexes")
    assert [c.name for _, c in configs] == ["demo"]
    example = yaml.safe_load((REPO / "dags" / "indexes" / "products.yaml.example").read_text())
    assert parse_index_config(example, "products.yaml.example").id_rule.kind == "hash"
    notifications = parse_index_config(example, "products.yaml.example").notifications
    assert [(n.kind, n.on) for n in notifications] == [("slack", ["failure"]), ("dingtalk", ["refused_guard"])]


INVENTORY = {"bucket": "demo-inventory", "id": "nightly", "role_arn": "acs:ram::1000000000000001:role/aliyunodpsdefaultrole"}


def test_the_inventory_route_needs_its_section_and_a_hash_maxcompute_can_compute(tmp_path) -> None:
    from pipeline.config import parse_index_config

    base = {
        "name": "inv", "source": {"oss_conn_id": "o", "bucket": "demo-images", "prefixes": ["catalog/"], "mode": "inventory"},
        "id_rule": {"kind": "md5"}, "category_rule": {"kind": "path_segment", "segment": 1},
        "warehouse": {"conn_id": "w", "table": "t"},
    }
    with pytest.raises(ConfigError, match="mode 'inventory' needs an 'inventory' section"):
        parse_index_config(base)
    base["source"]["inventory"] = INVENTORY
    config = parse_index_config(base)
    assert config.source.inventory.work_prefix == "image-index-inventory/" and config.source.inventory.fallback == "fail"
    with pytest.raises(ConfigError, match="kind 'hash' \\(BLAKE2b\\) cannot be computed in MaxCompute SQL.*use kind 'md5'"):
        parse_index_config({**base, "id_rule": {"kind": "hash"}})
    with pytest.raises(ConfigError, match="must be a folder"):
        parse_index_config({**base, "source": {**base["source"], "inventory": {**INVENTORY, "prefix": "../x/"}}})


def test_notifications_are_optional_and_default_to_failures() -> None:
    assert parse_index_config(VALID, "x.yaml").notifications == []
    config = parse_index_config({**VALID, "notifications": [{"kind": "slack", "conn_id": "slack_images"}]}, "x.yaml")
    (slack,) = config.notifications
    assert (slack.kind, slack.conn_id, slack.on, slack.at_mobiles) == ("slack", "slack_images", ["failure"], [])


def test_notifications_read_from_yaml_with_an_unquoted_on_key(tmp_path: Path) -> None:
    """YAML 1.1 reads `on:` as the boolean true: the config takes it back as the field it names."""
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump(VALID) + """
notifications:
  - kind: slack
    conn_id: slack_images
    on: [failure, refused_guard]
  - kind: dingtalk
    conn_id: dingtalk_images
    on: [failure, success]
    at_mobiles: ["13800000000", "+86-13900000000"]
""")
    slack, dingtalk = load_index_config(path).notifications
    assert (slack.kind, slack.on) == ("slack", ["failure", "refused_guard"])
    assert (dingtalk.on, dingtalk.at_mobiles) == (["failure", "success"], ["13800000000", "+86-13900000000"])


@pytest.mark.parametrize(("notifications", "expected"), [
    ([{"kind": "teams", "conn_id": "t"}], "notifications[0].kind: Input should be 'slack' or 'dingtalk' (got 'teams')"),
    ([{"kind": "slack"}], "notifications[0].conn_id: required field is missing"),
    ([{"kind": "slack", "conn_id": ""}], "notifications[0].conn_id: String should have at least 1 character"),
    ([{"kind": "slack", "conn_id": "s", "on": []}], "notifications[0].on: List should have at least 1 item"),
    ([{"kind": "slack", "conn_id": "s", "on": ["failed"]}],
     "notifications[0].on[0]: Input should be 'failure', 'refused_guard' or 'success' (got 'failed')"),
    ([{"kind": "slack", "conn_id": "s", "on": [True]}], "notifications[0].on[0]: Input should be 'failure'"),
    ([{"kind": "slack", "conn_id": "s", "on": ["failure", "failure"]}], "names an event twice"),
    ([{"kind": "slack", "conn_id": "s", "at_mobiles": ["13800000000"]}],
     "at_mobiles is for kind 'dingtalk' (a DingTalk robot's @-mentions), not 'slack'"),
    ([{"kind": "dingtalk", "conn_id": "d", "at_mobiles": ["138 0000 0000"]}],
     "notifications[0].at_mobiles[0]: String should match pattern"),
    ([{"kind": "dingtalk", "conn_id": "d", "at_mobiles": ["13800000000"] * 2}], "names a number twice"),
    ([{"kind": "dingtalk", "conn_id": "d", "at_mobiles": [str(13800000000 + i) for i in range(21)]}],
     "List should have at most 20 items"),
    ([{"kind": "slack", "conn_id": "s", "channel": "#ops"}], "notifications[0].channel: unknown field"),
    ([{"kind": "slack", "conn_id": "s"}, {"kind": "slack", "conn_id": "s", "on": ["success"]}],
     "notifications: slack connection 's' is listed twice (every run would post to it twice)"),
    ([{"kind": "slack", "conn_id": f"s{i}"} for i in range(11)], "notifications: List should have at most 10 items"),
    ({"kind": "slack", "conn_id": "s"}, "notifications: Input should be a valid list"),
])
def test_each_bad_notification_is_named(notifications: object, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_index_config({**VALID, "notifications": notifications}, "x.yaml")
    assert expected in str(err.value)


def test_a_refused_guard_fails_the_run_unless_the_index_asks_for_approval() -> None:
    guards = parse_index_config(VALID, "x.yaml").guards
    assert (guards.on_refusal, guards.approval_timeout_hours, guards.approvers) == ("fail", 24, [])
    ask = parse_index_config({**VALID, "guards": {"on_refusal": "ask", "approval_timeout_hours": 4,
                                                  "approvers": ["alice", "7"]}}, "x.yaml").guards
    assert (ask.on_refusal, ask.approval_timeout_hours, ask.approvers) == ("ask", 4, ["alice", "7"])


@pytest.mark.parametrize(
    ("guards", "expected"),
    [
        ({"on_refusal": "approve"}, "guards.on_refusal: Input should be 'fail' or 'ask'"),
        ({"on_refusal": "ask", "approval_timeout_hours": 0}, "guards.approval_timeout_hours: Input should be greater than 0"),
        ({"on_refusal": "ask", "approval_timeout_hours": 169}, "less than or equal to 168"),
        ({"on_refusal": "ask", "approval_timeout_hours": "24"}, "guards.approval_timeout_hours: Input should be a valid number"),
        ({"on_refusal": "ask", "approvers": [""]}, "guards.approvers[0]: String should have at least 1 character"),
        ({"on_refusal": "ask", "approvers": ["a", "a"]}, "approvers ['a', 'a'] names a user twice"),
        ({"approvers": ["alice"]}, "approvers apply only with on_refusal: ask (on_refusal is fail)"),
        ({"on_refusal": "fail", "approval_timeout_hours": 4}, "approval_timeout_hours apply only with on_refusal: ask"),
        ({"on_refusal": "ask", "approver": ["alice"]}, "guards.approver: unknown field"),
    ],
)
def test_each_bad_approval_setting_is_named(guards: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_index_config({**VALID, "guards": guards}, "x.yaml")
    assert "x.yaml: invalid index config" in str(err.value) and expected in str(err.value), str(err.value)
