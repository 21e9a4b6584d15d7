"""The image table schema: the demo schema loads, and every documented constraint is enforced.

Why: a schema the real service refuses must be refused locally too, with the field and the rule in
the message, so mistakes show up before a cloud rebuild. The vendor's own example schema has a
vector_source_field that names no field; these tests pin that we refuse it and accept the fix.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from localcloud.opensearch.schema import (
    DEMO_SCHEMA,
    SchemaError,
    TableSchema,
    load_table_schema,
    load_table_schema_file,
)

# The "Example schema" of the vendor guide (vectorized image retrieval), verbatim.
VENDOR_EXAMPLE: dict[str, Any] = json.loads(
    """
{"fields": [
  {
    "field_name": "id",
    "field_type": "INT64",
    "compress_type": "equal"
  },
  {
    "user_defined_param": {
      "oss_endpoint": "oss-cn-hangzhou-internal.aliyuncs.com",
      "oss_bucket": "/opensearch",
      "crop": "true",
      "content_type": "oss",
      "oss_use_slr": "true",
      "uid": "xxx"
    },
    "field_name": "source_image",
    "field_type": "STRING",
    "compress_type": "uniq"
  },
  {
    "field_name": "cate_id",
    "field_type": "INT64",
    "compress_type": "equal"
  },
  {
    "user_defined_param": {
      "vector_model": "clip",
      "vector_modal": "image",
      "vector_source_field": "vector_source_image"
    },
    "field_name": "vector",
    "field_type": "FLOAT",
    "multi_value": true
  }
]}
"""
)


def _demo() -> dict[str, Any]:
    return copy.deepcopy(DEMO_SCHEMA)


def _field(schema: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in schema["fields"] if f["field_name"] == name)


def test_demo_schema_loads_with_its_parts() -> None:
    schema = load_table_schema(DEMO_SCHEMA, "demo")
    assert isinstance(schema, TableSchema)
    assert schema.primary_key == "id"
    assert schema.image_field == "source_image"
    assert schema.oss_bucket == "demo-images"
    assert schema.vector_field == "vector"
    assert schema.vector_model == "clip"
    assert [f.name for f in schema.attribute_fields] == ["cate_id"]
    assert schema.field("cate_id") is not None and schema.field("cate_id").type == "INT64"
    assert schema.vector_index.index_name == "vector"
    assert schema.vector_index.index_type == "CUSTOMIZED"
    assert schema.vector_index.dimension == 512
    assert schema.vector_index.distance_type == "SquaredEuclidean"
    assert not schema.vector_index.higher_is_better
    assert schema.to_dict() == DEMO_SCHEMA


def test_vendor_example_verbatim_is_refused_for_its_vector_source_field_mismatch() -> None:
    with pytest.raises(SchemaError) as info:
        load_table_schema(VENDOR_EXAMPLE, "vendor-example")
    message = str(info.value)
    assert "vendor-example" in message
    assert "vector field 'vector'" in message
    assert "'vector_source_image'" in message and "source_image" in message
    assert "names no field" in message


def test_vendor_example_with_matching_names_is_accepted() -> None:
    fixed = copy.deepcopy(VENDOR_EXAMPLE)
    _field(fixed, "vector")["user_defined_param"]["vector_source_field"] = "source_image"
    schema = load_table_schema(fixed, "vendor-example-fixed")
    assert schema.image_field == "source_image"
    assert schema.oss_bucket == "opensearch"  # the example's leading "/" is stripped
    assert schema.primary_key == "id"  # no indexes section: the first field
    assert schema.vector_index.index_name == "vector"
    assert schema.vector_index.index_type == "CUSTOMIZED" and schema.vector_index.dimension == 512


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """A mutation: 'field.key' or 'field.user_defined_param.key' or 'indexes.N.key'; value None deletes."""

    def apply(schema: dict[str, Any]) -> None:
        head, *rest = path.split(".")
        if head == "indexes":
            target = schema["indexes"][int(rest[0])]
            rest = rest[1:]
        else:
            target = _field(schema, head)
        for part in rest[:-1]:
            target = target[part]
        if value is None:
            del target[rest[-1]]
        else:
            target[rest[-1]] = value

    return apply


VIOLATIONS: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    ("vector index type", _set("indexes.1.index_type", "PROXIMA"), ["index 'vector'", "must be CUSTOMIZED"]),
    ("dimension", _set("indexes.1.dimension", 256), ["index 'vector'", "fixed at 512"]),
    ("distance type", _set("indexes.1.distance_type", "Cosine"), ["index 'vector'", "distance_type"]),
    ("image field type", _set("source_image.field_type", "INT64"), ["image field 'source_image'", "must be STRING"]),
    ("content_type", _set("source_image.user_defined_param.content_type", "http"),
     ["image field 'source_image'", 'content_type must be "oss"']),
    ("crop as a boolean", _set("source_image.user_defined_param.crop", True),
     ["image field 'source_image'", 'crop must be the string "true"']),
    ("oss_use_slr false", _set("source_image.user_defined_param.oss_use_slr", "false"),
     ["image field 'source_image'", 'oss_use_slr must be the string "true"']),
    ("oss_bucket missing", _set("source_image.user_defined_param.oss_bucket", None),
     ["image field 'source_image'", "oss_bucket"]),
    ("oss_endpoint missing", _set("source_image.user_defined_param.oss_endpoint", None),
     ["image field 'source_image'", "oss_endpoint"]),
    ("vector type", _set("vector.field_type", "DOUBLE"), ["vector field 'vector'", "must be FLOAT"]),
    ("vector single-valued", _set("vector.multi_value", False), ["vector field 'vector'", "multi_value: true"]),
    ("vector model", _set("vector.user_defined_param.vector_model", "resnet"),
     ["vector field 'vector'", "vector_model must be one of ['clip', 'clip_ecom']"]),
    ("vector modal", _set("vector.user_defined_param.vector_modal", "text"),
     ["vector field 'vector'", 'vector_modal must be "image"']),
    ("vector source field", _set("vector.user_defined_param.vector_source_field", "cate_id"),
     ["image field 'cate_id'", "must be STRING"]),
    ("vector source missing", _set("vector.user_defined_param.vector_source_field", "nope"),
     ["vector field 'vector'", "'nope' names no field"]),
    ("primary key type", _set("id.field_type", "DOUBLE"), ["primary key 'id'", "INT64 or STRING"]),
    ("primary key absent", _set("indexes.0.index_fields", "nope"), ["primary key 'nope'", "names no field"]),
    ("field type", _set("cate_id.field_type", "BIGINT"), ["field 'cate_id'", "field_type must be one of"]),
]


@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in VIOLATIONS], ids=[n for n, _, _ in VIOLATIONS])
def test_each_documented_constraint_is_enforced(mutate: Callable[[dict[str, Any]], None], expected: list[str]) -> None:
    schema = _demo()
    mutate(schema)
    with pytest.raises(SchemaError) as info:
        load_table_schema(schema, "t.json")
    message = str(info.value)
    assert message.startswith("t.json: ")
    for part in expected:
        assert part in message, message


def test_field_names_must_be_unique() -> None:
    schema = _demo()
    schema["fields"].append({"field_name": "cate_id", "field_type": "INT32"})
    with pytest.raises(SchemaError, match=r"field 'cate_id': field names must be unique"):
        load_table_schema(schema, "t.json")


def test_a_primary_key_index_is_required_when_indexes_are_given() -> None:
    schema = _demo()
    schema["indexes"] = schema["indexes"][1:]
    with pytest.raises(SchemaError, match="primary-key index"):
        load_table_schema(schema, "t.json")


def test_string_primary_key_and_inner_product_are_accepted() -> None:
    schema = _demo()
    _field(schema, "id")["field_type"] = "STRING"
    schema["indexes"][1]["distance_type"] = "InnerProduct"
    loaded = load_table_schema(schema, "t.json")
    assert loaded.field("id").type == "STRING"
    assert loaded.vector_index.higher_is_better


def test_schema_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "schema.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(SchemaError, match="schema.json: not valid JSON"):
        load_table_schema_file(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(DEMO_SCHEMA), encoding="utf-8")
    assert load_table_schema_file(good).source == str(good)
