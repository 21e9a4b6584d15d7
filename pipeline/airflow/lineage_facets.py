"""The OpenLineage objects for :mod:`pipeline.airflow.lineage`: imported only when the provider asks for
lineage (openlineage-python is not imported when the DAG is parsed).

Two custom facets, described by docs/lineage-facets.schema.json:

    imageIndex            run facet: {"index", "ds", "task", "details"}; every event of these tasks
    imageIndexPartition   dataset facet: {"column": "ds", "value": "<yyyymmdd>"}; the partition a
                          MaxCompute (or local) table dataset was read or written at

Written rows also go in the standard ``outputStatistics`` facet (``rowCount``).
"""

from __future__ import annotations

from typing import Any

import attr
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import DatasetFacet, RunFacet, output_statistics_output_dataset

from pipeline.airflow.lineage import DatasetRef, TaskLineage

SCHEMA_URL = "https://oss-image-index-pipeline.invalid/docs/lineage-facets.schema.json"
"""No public home yet: the schema ships in the repository as docs/lineage-facets.schema.json."""


@attr.define
class ImageIndexRunFacet(RunFacet):
    index: str
    ds: str | None
    task: str
    details: dict = attr.field(factory=dict)

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/ImageIndexRunFacet"


@attr.define
class ImageIndexPartitionDatasetFacet(DatasetFacet):
    column: str
    value: str

    @staticmethod
    def _get_schema() -> str:
        return f"{SCHEMA_URL}#/$defs/ImageIndexPartitionDatasetFacet"


def _facets(ref: DatasetRef) -> dict[str, Any]:
    return {"imageIndexPartition": ImageIndexPartitionDatasetFacet(column="ds", value=ref.ds)} if ref.ds else {}


def _input(ref: DatasetRef) -> InputDataset:
    return InputDataset(namespace=ref.namespace, name=ref.name, facets=_facets(ref))


def _output(ref: DatasetRef) -> OutputDataset:
    statistics = ({"outputStatistics": output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
        rowCount=ref.rows)} if ref.rows is not None else {})
    return OutputDataset(namespace=ref.namespace, name=ref.name, facets=_facets(ref), outputFacets=statistics)


def operator_lineage(described: TaskLineage, *, index: str, ds: str | None, task: str, details: dict) -> OperatorLineage:
    return OperatorLineage(
        inputs=[_input(ref) for ref in described.inputs],
        outputs=[_output(ref) for ref in described.outputs],
        run_facets={"imageIndex": ImageIndexRunFacet(index=index, ds=ds, task=task, details=details)},
    )
