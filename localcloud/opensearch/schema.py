"""The image table's schema, as OpenSearch Retrieval Engine Edition configures it, and its rules.

Why this module: the local OpenSearch stand-in must refuse every table definition the real service
refuses for vectorized image retrieval, with a message that names the field and the rule, so that a
schema mistake surfaces on a laptop instead of after a failed cloud rebuild. The rules are the
vendor guide's ("Best practices for vectorized image retrieval"); the shape is the guide's example
schema, plus an optional ``indexes`` list shaped like Havenask's ``indexs``::

    {
      "fields": [
        {"field_name": "id", "field_type": "INT64", "compress_type": "equal"},
        {"field_name": "source_image", "field_type": "STRING", "compress_type": "uniq",
         "user_defined_param": {"content_type": "oss", "oss_endpoint": "oss-cn-hangzhou-internal.aliyuncs.com",
                                "oss_bucket": "demo-images", "crop": "true", "oss_use_slr": "true", "uid": "..."}},
        {"field_name": "cate_id", "field_type": "INT64", "compress_type": "equal"},
        {"field_name": "vector", "field_type": "FLOAT", "multi_value": true,
         "user_defined_param": {"vector_model": "clip", "vector_modal": "image",
                                "vector_source_field": "source_image"}}
      ],
      "indexes": [
        {"index_name": "id", "index_type": "PRIMARYKEY64", "index_fields": "id"},
        {"index_name": "vector", "index_type": "CUSTOMIZED", "index_fields": "vector",
         "dimension": 512, "distance_type": "SquaredEuclidean"}
      ]
    }

``indexes`` may be left out, as in the vendor's example: the primary key is then the first field
(the guide lists it first) and the vector index is named after the vector field, CUSTOMIZED, 512-d.

``distance_type`` decides what a query's ``RANK`` (``proxima_score``) means: ``SquaredEuclidean``
(the default) scores a squared L2 distance between unit vectors, lower is better, so the vendor's
``sort=+RANK`` lists the best match first; ``InnerProduct`` scores the cosine, higher is better,
and ``sort=-RANK`` lists best first. The vendor's image examples all use ``+RANK``, hence the
default. [inferred: the guide does not name the CLIP index's distance type.]

The vendor's example has ``vector_source_field: "vector_source_image"`` while its image field is
``source_image``; the service needs the two to match, so that verbatim example is refused here with
a message pointing at the mismatch.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEMO_SCHEMA",
    "DIMENSION",
    "DISTANCE_TYPES",
    "FIELD_TYPES",
    "VECTOR_MODELS",
    "FieldSpec",
    "SchemaError",
    "TableSchema",
    "VectorIndexSpec",
    "load_table_schema",
    "load_table_schema_file",
]

DIMENSION: Final[int] = 512  # fixed by the service for image vectors
VECTOR_MODELS: Final[frozenset[str]] = frozenset({"clip", "clip_ecom"})
DISTANCE_TYPES: Final[frozenset[str]] = frozenset({"SquaredEuclidean", "InnerProduct"})
INTEGER_TYPES: Final[frozenset[str]] = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
FLOAT_TYPES: Final[frozenset[str]] = frozenset({"FLOAT", "DOUBLE"})
FIELD_TYPES: Final[frozenset[str]] = INTEGER_TYPES | FLOAT_TYPES | {"STRING", "TEXT"}
COMPRESS_TYPES: Final[frozenset[str]] = frozenset({"equal", "uniq", "uniq|equal", "equal|uniq"})
PRIMARY_KEY_INDEX_TYPES: Final[frozenset[str]] = frozenset({"PRIMARYKEY64", "PRIMARYKEY128"})

_FIELD_KEYS = frozenset({"field_name", "field_type", "compress_type", "multi_value", "user_defined_param"})
_INDEX_KEYS = frozenset({"index_name", "index_type", "index_fields", "dimension", "distance_type"})
_IMAGE_PARAMS_REQUIRED = ("content_type", "oss_endpoint", "oss_bucket", "crop", "oss_use_slr")


class SchemaError(ValueError):
    """A table schema the service would refuse. The message names the source, the field and the rule."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str
    compress_type: str | None = None
    multi_value: bool = False
    user_defined_param: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VectorIndexSpec:
    index_name: str
    vector_field: str
    index_type: str = "CUSTOMIZED"
    dimension: int = DIMENSION
    distance_type: str = "SquaredEuclidean"

    @property
    def higher_is_better(self) -> bool:
        """True when RANK is a similarity (InnerProduct), False when it is a distance."""
        return self.distance_type == "InnerProduct"


@dataclass(frozen=True)
class TableSchema:
    """A validated image table schema. Build it with :func:`load_table_schema`."""

    source: str
    fields: tuple[FieldSpec, ...]
    primary_key: str
    image_field: str
    oss_bucket: str  # leading "/" stripped
    oss_endpoint: str  # as configured (the cloud endpoint; the local server uses its own)
    vector_field: str
    vector_model: str
    vector_index: VectorIndexSpec
    raw: Mapping[str, Any] = field(repr=False, compare=False, default_factory=dict)

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)

    @property
    def attribute_fields(self) -> tuple[FieldSpec, ...]:
        """Fields other than the primary key, the image field and the vector (e.g. cate_id)."""
        skip = {self.primary_key, self.image_field, self.vector_field}
        return tuple(f for f in self.fields if f.name not in skip)

    @property
    def stored_fields(self) -> tuple[FieldSpec, ...]:
        """Every field a document carries apart from the vector: pk, image path, attributes."""
        return tuple(f for f in self.fields if f.name != self.vector_field)

    @property
    def primary_key_index(self) -> str:
        """The primary-key index's name (its ``PRIMARYKEY64`` entry in ``indexes``; without ``indexes``, the
        primary key field's name): the index a primary-key term query names."""
        for item in self.raw.get("indexes") or ():
            if isinstance(item, Mapping) and item.get("index_type") in PRIMARY_KEY_INDEX_TYPES:
                return str(item["index_name"])
        return self.primary_key

    def to_dict(self) -> dict[str, Any]:
        """The schema as loaded (a deep copy), e.g. for GetTable's rawSchema."""
        return copy.deepcopy(dict(self.raw))


def _fail(source: str, where: str, rule: str) -> SchemaError:
    return SchemaError(f"{source}: {where}: {rule}")


def _parse_field(source: str, position: int, raw: object) -> FieldSpec:
    where = f"fields[{position}]"
    if not isinstance(raw, Mapping):
        raise _fail(source, where, f"each field must be a JSON object, got {type(raw).__name__}")
    name = raw.get("field_name")
    if not isinstance(name, str) or not name.strip():
        raise _fail(source, where, "field_name is required and must be a non-empty string")
    where = f"field {name!r}"
    unknown = sorted(set(raw) - _FIELD_KEYS)
    if unknown:
        raise _fail(source, where, f"unknown key(s) {unknown}; allowed: {sorted(_FIELD_KEYS)}")
    ftype = raw.get("field_type")
    if not isinstance(ftype, str) or ftype not in FIELD_TYPES:
        raise _fail(source, where, f"field_type must be one of {sorted(FIELD_TYPES)}, got {ftype!r}")
    compress = raw.get("compress_type")
    if compress is not None and compress not in COMPRESS_TYPES:
        raise _fail(source, where, f"compress_type must be one of {sorted(COMPRESS_TYPES)}, got {compress!r}")
    multi = raw.get("multi_value", False)
    if not isinstance(multi, bool):
        raise _fail(source, where, f"multi_value must be true or false (JSON boolean), got {multi!r}")
    params = raw.get("user_defined_param", {})
    if not isinstance(params, Mapping):
        raise _fail(source, where, f"user_defined_param must be a JSON object, got {type(params).__name__}")
    return FieldSpec(name, ftype, compress, multi, dict(params))


def _check_image_field(source: str, spec: FieldSpec) -> tuple[str, str]:
    """The rules for an OSS image field; returns (bucket, endpoint)."""
    where = f"image field {spec.name!r}"
    if spec.type != "STRING":
        raise _fail(source, where, f"an image field must be STRING (an OSS path), got {spec.type}")
    if spec.multi_value:
        raise _fail(source, where, "an image field holds one OSS path: multi_value must be false")
    params = spec.user_defined_param
    missing = [key for key in _IMAGE_PARAMS_REQUIRED if key not in params]
    if missing:
        raise _fail(source, where, f"user_defined_param lacks {missing} (required: {list(_IMAGE_PARAMS_REQUIRED)})")
    if params["content_type"] != "oss":
        raise _fail(source, where, f'user_defined_param.content_type must be "oss", got {params["content_type"]!r}')
    for key in ("crop", "oss_use_slr"):
        if params[key] != "true":
            raise _fail(
                source, where, f'user_defined_param.{key} must be the string "true", got {params[key]!r}'
            )
    bucket = params["oss_bucket"]
    if not isinstance(bucket, str) or not bucket.lstrip("/"):
        raise _fail(source, where, f"user_defined_param.oss_bucket must name a bucket, got {bucket!r}")
    endpoint = params["oss_endpoint"]
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise _fail(source, where, f"user_defined_param.oss_endpoint must be a non-empty string, got {endpoint!r}")
    return bucket.lstrip("/"), endpoint


def _check_vector_field(source: str, spec: FieldSpec, by_name: Mapping[str, FieldSpec]) -> tuple[str, str]:
    """The rules for the vector field; returns (model, source image field name). The image field's
    own rules (STRING, OSS parameters) are :func:`_check_image_field`'s."""
    where = f"vector field {spec.name!r}"
    if spec.type != "FLOAT":
        raise _fail(source, where, f"the vector field must be FLOAT, got {spec.type}")
    if spec.multi_value is not True:
        raise _fail(source, where, "the vector field must have multi_value: true")
    params = spec.user_defined_param
    model = params.get("vector_model")
    if model not in VECTOR_MODELS:
        raise _fail(
            source, where, f"user_defined_param.vector_model must be one of {sorted(VECTOR_MODELS)}, got {model!r}"
        )
    if params.get("vector_modal") != "image":
        modal = params.get("vector_modal")
        raise _fail(source, where, f'user_defined_param.vector_modal must be "image", got {modal!r}')
    src = params.get("vector_source_field")
    if not isinstance(src, str) or not src:
        raise _fail(source, where, "user_defined_param.vector_source_field must name the image field")
    target = by_name.get(src)
    if target is None:
        strings = [f.name for f in by_name.values() if f.type == "STRING"]
        raise _fail(
            source,
            where,
            f"user_defined_param.vector_source_field {src!r} names no field of this schema; it must be the "
            f"name of the STRING image field (STRING fields here: {strings}). The vendor guide's example "
            'says "vector_source_image" but names its image field "source_image": use the same name in both.',
        )
    return str(model), src


def _index_fields(source: str, where: str, value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, list) and all(isinstance(v, Mapping) and isinstance(v.get("field_name"), str) for v in value):
        return [str(v["field_name"]) for v in value]
    raise _fail(source, where, f"index_fields must be a field name or a list of them, got {value!r}")


def _parse_indexes(
    source: str, raw: object, fields: list[FieldSpec], vector_field: str
) -> tuple[str, VectorIndexSpec]:
    if raw is None:  # the vendor's example: no index section
        return fields[0].name, VectorIndexSpec(index_name=vector_field, vector_field=vector_field)
    if not isinstance(raw, list):
        raise _fail(source, "indexes", f"must be a list of index objects, got {type(raw).__name__}")
    pk: str | None = None
    vector: VectorIndexSpec | None = None
    names: set[str] = set()
    for position, item in enumerate(raw):
        where = f"indexes[{position}]"
        if not isinstance(item, Mapping):
            raise _fail(source, where, "each index must be a JSON object")
        name = item.get("index_name")
        if not isinstance(name, str) or not name:
            raise _fail(source, where, "index_name is required")
        where = f"index {name!r}"
        if name in names:
            raise _fail(source, where, "index names must be unique")
        names.add(name)
        unknown = sorted(set(item) - _INDEX_KEYS)
        if unknown:
            raise _fail(source, where, f"unknown key(s) {unknown}; allowed: {sorted(_INDEX_KEYS)}")
        itype = item.get("index_type")
        targets = _index_fields(source, where, item.get("index_fields"))
        if itype in PRIMARY_KEY_INDEX_TYPES:
            if pk is not None:
                raise _fail(source, where, f"only one primary-key index is allowed (already: {pk!r})")
            if len(targets) != 1:
                raise _fail(source, where, "a primary-key index covers exactly one field")
            pk = targets[0]
            continue
        if vector_field not in targets:
            raise _fail(
                source, where, f"index_type {itype!r} is not supported here: an image table has a primary-key "
                f"index and one CUSTOMIZED vector index on {vector_field!r}"
            )
        if itype != "CUSTOMIZED":
            raise _fail(source, where, f"the vector index type must be CUSTOMIZED, got {itype!r}")
        if vector is not None:
            raise _fail(source, where, f"only one vector index is allowed (already: {vector.index_name!r})")
        dimension = item.get("dimension", DIMENSION)
        if isinstance(dimension, bool) or str(dimension).strip() != str(DIMENSION):
            raise _fail(source, where, f"dimension is fixed at {DIMENSION} for image vectors, got {dimension!r}")
        distance = item.get("distance_type", "SquaredEuclidean")
        if distance not in DISTANCE_TYPES:
            raise _fail(source, where, f"distance_type must be one of {sorted(DISTANCE_TYPES)}, got {distance!r}")
        vector = VectorIndexSpec(index_name=name, vector_field=vector_field, distance_type=str(distance))
    if pk is None:
        raise _fail(source, "indexes", "a primary-key index (index_type PRIMARYKEY64) is required")
    if vector is None:
        raise _fail(source, "indexes", f"a CUSTOMIZED vector index on {vector_field!r} is required")
    return pk, vector


def load_table_schema(data: Mapping[str, Any], source: str = "<schema>") -> TableSchema:
    """Validate ``data`` (the schema JSON, parsed) and return a :class:`TableSchema`.

    Raises :class:`SchemaError` naming ``source``, the field and the rule for the first violation.
    """
    if not isinstance(data, Mapping):
        raise _fail(source, "schema", f"must be a JSON object with a 'fields' list, got {type(data).__name__}")
    unknown = sorted(set(data) - {"fields", "indexes"})
    if unknown:
        raise _fail(source, "schema", f"unknown key(s) {unknown}; allowed: fields, indexes")
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, list) or not raw_fields:
        raise _fail(source, "fields", "must be a non-empty list of field objects")
    fields = [_parse_field(source, i, f) for i, f in enumerate(raw_fields)]
    by_name: dict[str, FieldSpec] = {}
    for spec in fields:
        if spec.name in by_name:
            raise _fail(source, f"field {spec.name!r}", "field names must be unique; this one appears twice")
        by_name[spec.name] = spec

    vectors = [f for f in fields if {"vector_model", "vector_source_field"} & set(f.user_defined_param)]
    if len(vectors) != 1:
        names = [f.name for f in vectors]
        raise _fail(
            source, "fields", f"exactly one vector field (user_defined_param.vector_model) is required, found {names}"
        )
    vector_spec = vectors[0]
    model, image_name = _check_vector_field(source, vector_spec, by_name)
    image_spec = by_name[image_name]
    bucket, endpoint = _check_image_field(source, image_spec)
    others = [f.name for f in fields if f.user_defined_param.get("content_type") == "oss" and f.name != image_name]
    if others:
        raise _fail(source, f"field {others[0]!r}", "only one OSS image field is supported, the vector's source field")

    pk, vector_index = _parse_indexes(source, data.get("indexes"), fields, vector_spec.name)
    pk_spec = by_name.get(pk)
    if pk_spec is None:
        raise _fail(source, f"primary key {pk!r}", "names no field of this schema")
    if pk_spec.type not in ("INT64", "STRING") or pk_spec.multi_value:
        raise _fail(
            source, f"primary key {pk!r}", f"must be a single-value INT64 or STRING field, got "
            f"{pk_spec.type}{' (multi_value)' if pk_spec.multi_value else ''}"
        )
    if pk in (image_name, vector_spec.name):
        raise _fail(source, f"primary key {pk!r}", "cannot be the image field or the vector field")
    return TableSchema(
        source=source,
        fields=tuple(fields),
        primary_key=pk,
        image_field=image_name,
        oss_bucket=bucket,
        oss_endpoint=endpoint,
        vector_field=vector_spec.name,
        vector_model=model,
        vector_index=vector_index,
        raw=copy.deepcopy(dict(data)),
    )


def load_table_schema_file(path: str | Path) -> TableSchema:
    """Read a schema JSON file; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SchemaError(f"{path}: cannot read the schema file: {exc}") from exc
    except ValueError as exc:
        raise SchemaError(f"{path}: not valid JSON: {exc}") from exc
    return load_table_schema(data, str(path))


DEMO_SCHEMA: Final[dict[str, Any]] = {
    "fields": [
        {"field_name": "id", "field_type": "INT64", "compress_type": "equal"},
        {
            "field_name": "source_image",
            "field_type": "STRING",
            "compress_type": "uniq",
            "user_defined_param": {
                "content_type": "oss",
                "oss_endpoint": "oss-cn-hangzhou-internal.aliyuncs.com",
                "oss_bucket": "demo-images",
                "crop": "true",
                "oss_use_slr": "true",
                "uid": "local",
            },
        },
        {"field_name": "cate_id", "field_type": "INT64", "compress_type": "equal"},
        {
            "field_name": "vector",
            "field_type": "FLOAT",
            "multi_value": True,
            "user_defined_param": {
                "vector_model": "clip", "vector_modal": "image", "vector_source_field": "source_image"
            },
        },
    ],
    "indexes": [
        {"index_name": "id", "index_type": "PRIMARYKEY64", "index_fields": "id"},
        {
            "index_name": "vector",
            "index_type": "CUSTOMIZED",
            "index_fields": "vector",
            "dimension": DIMENSION,
            "distance_type": "SquaredEuclidean",
        },
    ],
}
"""The demo table: id (INT64 pk), source_image (OSS path in bucket demo-images), cate_id, vector (clip)."""
