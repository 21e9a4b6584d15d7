"""The management API's answers that describe the engine's state: GetInstance, GetTable, GetTableGeneration.

Why a module of its own: these are the shapes the searchengine SDK's response models read (camelCase
names, documented fields, and what this server adds beyond them); :mod:`localcloud.opensearch.server`
routes requests to them.
"""

from __future__ import annotations

import json
import os
from typing import Any

from localcloud.opensearch.engine import LocalEngine

__all__ = ["BUILD_FIGURES", "describe_generation", "describe_instance", "describe_table"]


def describe_table(engine: LocalEngine, table: str) -> dict[str, Any]:
    """GetTable's result, camelCase as GetTableResponseBodyResult.from_map reads it (no secrets)."""
    source = engine.source(table)
    schema = source.schema
    last = engine.latest_ready(table)
    image = schema.field(schema.image_field)
    return {
        "name": table,
        "status": "IN_USE",
        "primaryKey": schema.primary_key,
        "partitionCount": 1,
        "dataProcessorCount": 2,
        "fieldSchema": {f.name: f.type for f in schema.fields},
        "rawSchema": json.dumps(schema.to_dict(), sort_keys=True),
        "vectorIndex": [{
            "indexName": schema.vector_index.index_name, "vectorField": schema.vector_field,
            "dimension": str(schema.vector_index.dimension), "distanceType": schema.vector_index.distance_type,
            "vectorIndexType": schema.vector_index.index_type,
        }],
        "dataSource": {
            "type": "odps", "autoBuildIndex": table in engine.auto_build_index,
            "config": {"project": source.project, "table": source.warehouse_table,
                       "partition": last["partition"] if last else ""},
        },
        "dataProcessConfig": [{
            "srcField": schema.image_field, "dstField": schema.vector_field, "operator": "vectorize",
            "params": {"vectorModal": "image", "vectorModel": schema.vector_model, "srcFieldConfig": {
                "ossBucket": schema.oss_bucket, "ossEndpoint": schema.oss_endpoint,
                "uid": str(image.user_defined_param.get("uid", "")) if image else "",
            }},
        }],
    }


# What a build counted, beyond GetTableGeneration's documented result (generationId, status). The cloud
# documents no such figures (nor do the SDK's models carry them): these names are the local server's.
BUILD_FIGURES = ("rows", "docCount", "failures", "failureExamples")


def describe_generation(engine: LocalEngine, table: str, generation_id: str, figures: bool = True) -> dict[str, Any]:
    """GetTableGeneration's result: the documented ``generationId`` and ``status`` and, with ``figures``,
    what the build counted once it has (``rows`` read from the partition, ``docCount`` indexed,
    ``failures`` left out and up to 5 ``failureExamples`` {pk, image, reason}). Without ``figures`` the
    answer is exactly the documented one. The engine's own bookkeeping (partition, fsmId, message,
    times) is not in the answer: the documented result does not carry it."""
    record = engine.get_generation(table, generation_id)
    answer = {"generationId": record["generationId"], "status": record["status"]}
    if figures:
        answer.update({k: record[k] for k in BUILD_FIGURES if k in record})
    return answer


def describe_instance(engine: LocalEngine, endpoint: str, user_name: str) -> dict[str, Any]:
    """GetInstance's result."""
    resource = {"category": "local", "cpu": os.cpu_count() or 1, "disk": 0, "mem": 0, "nodeCount": 1}
    return {
        "instanceId": engine.instance_id, "status": "READY", "edition": "engine",
        "description": "local stand-in for OpenSearch Retrieval Engine Edition (localcloud)",
        "createTime": engine.created, "updateTime": engine.created, "expiredTime": "",
        "chargeType": "POSTPAY", "commodityCode": "opensearch_local", "inDebt": False, "lockMode": "Unlock",
        "resourceGroupId": "", "userName": user_name, "version": "local-1", "bsVersion": "local-1",
        "zoneCount": 1, "noQrs": False, "newMode": True, "tags": [],
        "network": {"endpoint": endpoint, "publicEndpoint": "", "vpcId": "", "vSwitchId": "", "allow": ""},
        "spec": {"qrsResource": dict(resource), "searchResource": dict(resource)},
    }
