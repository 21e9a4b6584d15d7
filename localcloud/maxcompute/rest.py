"""The REST API's bodies, in the XML (with embedded JSON) that pyodps' models parse.

Shapes follow ``odps.models`` (table.py, partition.py, partitions.py, instance.py, project.py): a table
is ``<Table><Name/><Schema><![CDATA[{json}]]></Schema>...``, its partitions a paged ``<Partitions>``
list of ``<Partition><Column Name= Value=/>...``, an instance's result a ``<Instance><Tasks><Task>``
with the CSV pyodps' ``CsvRecordReader`` reads (``\\N`` for NULL, a header row).
"""

from __future__ import annotations

import csv
import email.utils
import io
import json
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from localcloud.maxcompute.external import ExternalTable, schema_json
from localcloud.maxcompute.instances import RESULT_ROW_LIMIT, Instance
from localcloud.maxcompute.store import PartitionMeta, TableMeta

OWNER = "ALIYUN$local@aliyun.com"


def rfc822(epoch: float | None) -> str:
    return email.utils.formatdate(epoch, usegmt=True) if epoch else ""


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _xml(body: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


def error_xml(code: str, message: str, request_id: str) -> bytes:
    return _xml(f"<Error><Code>{escape(code)}</Code><Message>{_cdata(message)}</Message>"
                f"<RequestId>{request_id}</RequestId><HostId>localhost</HostId></Error>")


def project_xml(name: str, created: float) -> bytes:
    return _xml(f"<Project><Name>{escape(name)}</Name><Type>managed</Type><Comment></Comment>"
                f"<State>AVAILABLE</State><Owner>{OWNER}</Owner><CreationTime>{rfc822(created)}</CreationTime>"
                f"<LastModifiedTime>{rfc822(created)}</LastModifiedTime><ProjectGroupName></ProjectGroupName>"
                "<Properties></Properties><ExtendedProperties></ExtendedProperties></Project>")


def _columns(columns: tuple) -> list[dict[str, Any]]:
    return [{"name": c.name, "type": c.type.lower(), "comment": c.comment, "isNullable": True, "label": ""}
            for c in columns]


def table_schema_json(meta: TableMeta, size: int) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "tableName": meta.name, "comment": meta.comment, "owner": OWNER,
        "createTime": int(meta.created), "lastModifiedTime": int(meta.last_modified),
        "lastDDLTime": int(meta.last_modified), "size": size, "isVirtualView": False,
        "isExternal": meta.external is not None, "columns": _columns(meta.columns), "partitionKeys": _columns(meta.partition_columns),
    }
    if meta.lifecycle is not None:
        schema["lifecycle"] = meta.lifecycle
    return schema


def table_xml_element(meta: TableMeta, size: int = 0) -> str:
    schema = json.dumps(table_schema_json(meta, size))
    return (f"<Table><Name>{escape(meta.name)}</Name><TableId>{meta.project}.{meta.name}</TableId>"
            f'<Schema format="json">{_cdata(schema)}</Schema><Owner>{OWNER}</Owner>'
            f"<CreationTime>{rfc822(meta.created)}</CreationTime>"
            f"<LastModifiedTime>{rfc822(meta.last_modified)}</LastModifiedTime>"
            f"<Type>{'EXTERNAL_TABLE' if meta.external is not None else 'MANAGED_TABLE'}</Type></Table>")


def table_xml(meta: TableMeta, size: int) -> bytes:
    return _xml(table_xml_element(meta, size))


def table_extended_xml(meta: TableMeta, size: int, file_num: int) -> bytes:
    extended = {"IsArchived": False, "PhysicalSize": size, "FileNum": file_num, "Reserved": "{}"}
    external = ExternalTable.from_json(meta.external)
    if external is not None:   # pyodps' Table.location, storage_handler, serde_properties
        extended.update(schema_json(external))
    return _xml(f"<Table><Name>{escape(meta.name)}</Name><Schema format=\"json\">{_cdata(json.dumps(extended))}"
                "</Schema></Table>")


def tables_xml(tables: list[TableMeta], marker: str, max_items: int) -> bytes:
    items = "".join(table_xml_element(t) for t in tables)
    return _xml(f"<Tables><Marker>{escape(marker)}</Marker><MaxItems>{max_items}</MaxItems>{items}</Tables>")


def _partition_element(p: PartitionMeta) -> str:
    columns = "".join(f"<Column Name={quoteattr(k)} Value={quoteattr(v)}/>" for k, v in p.spec)
    return (f"<Partition>{columns}<CreationTime>{int(p.created)}</CreationTime>"
            f"<LastDDLTime>{int(p.last_modified)}</LastDDLTime><LastModifiedTime>{int(p.last_modified)}</LastModifiedTime>"
            f"<PartitionSize>{p.size}</PartitionSize><PartitionRecordCount>{p.record_num}</PartitionRecordCount></Partition>")


def partitions_xml(partitions: list[PartitionMeta], marker: str, max_items: int) -> bytes:
    items = "".join(_partition_element(p) for p in partitions)
    return _xml(f"<Partitions><Marker>{escape(marker)}</Marker><MaxItems>{max_items}</MaxItems>{items}</Partitions>")


def partition_xml(p: PartitionMeta) -> bytes:
    meta = {"createTime": int(p.created), "lastDDLTime": int(p.last_modified), "lastModifiedTime": int(p.last_modified),
            "partitionSize": p.size, "partitionRecordNum": p.record_num}
    columns = "".join(f"<Column Name={quoteattr(k)} Value={quoteattr(v)}/>" for k, v in p.spec)
    return _xml(f"<Partition>{columns}<Schema format=\"json\">{_cdata(json.dumps(meta))}</Schema></Partition>")


def instance_status_xml(instance: Instance) -> bytes:
    return _xml(f"<Instance><Status>{instance.status}</Status></Instance>")


def instance_headers(instance: Instance) -> dict[str, str]:
    return {"x-odps-owner": instance.owner, "x-odps-start-time": rfc822(instance.start),
            "x-odps-end-time": rfc822(instance.end) if instance.end else ""}


def task_status_xml(instance: Instance) -> bytes:
    end = f"<EndTime>{rfc822(instance.end)}</EndTime>" if instance.end else ""
    return _xml(f'<Instance><Status>{instance.status}</Status><Tasks><Task Type="SQL">'
                f"<Name>{escape(instance.job.task_name)}</Name><StartTime>{rfc822(instance.start)}</StartTime>{end}"
                f"<Status>{instance.task_status}</Status></Task></Tasks></Instance>")


def task_result_xml(instance: Instance) -> bytes:
    """The task's result: the error text of a failed task, the CSV of a SELECT (at most
    :data:`RESULT_ROW_LIMIT` rows, marked TRUNCATED beyond), the summary of anything else."""
    descriptor = ""
    if instance.error is not None:
        text = instance.error.task_result
    elif not instance.done.is_set():
        text = ""
    elif instance.result is not None and instance.result.table is not None:
        text, truncated = result_csv(instance.result)
        descriptor = json.dumps({
            "IsSelect": True, "SelectResultStatus": "TRUNCATED" if truncated else "OK",
            "Schema": {"Columns": [{"Name": c.name, "Type": c.type.lower()} for c in instance.result.columns]},
        })
        descriptor = f"<ResultDescriptor>{_cdata(descriptor)}</ResultDescriptor>"
    else:
        text = instance.result.summary if instance.result is not None else ""
    status = {"SUCCESS": "Success", "FAILED": "Failed"}.get(instance.task_status, instance.task_status.title())
    return _xml(f'<Instance><Tasks><Task Type="SQL"><Name>{escape(instance.job.task_name)}</Name>'
                f'<Result Transform="false" Format="text">{_cdata(text)}</Result>{descriptor}'
                f"<Status>{status}</Status></Task></Tasks></Instance>")


def result_csv(result: Any) -> tuple[str, bool]:
    table = result.table
    truncated = table.num_rows > RESULT_ROW_LIMIT
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in result.columns])
    for row in table.slice(0, RESULT_ROW_LIMIT).to_pylist():
        writer.writerow([_csv_value(v) for v in row.values()])
    return out.getvalue(), truncated


def _csv_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)
