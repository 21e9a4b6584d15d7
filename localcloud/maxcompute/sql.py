"""The local MaxCompute's SQL engine: MaxCompute SQL parsed by sqlglot (``dialect.py``), run by DuckDB
over the store's Parquet snapshots.

Every ``execute`` gets its own in-memory DuckDB connection (the server runs requests in threads and a
DuckDB connection is not to be shared across them); each table a query names becomes a temporary view
over just the partitions its predicates select, so a query over one day of a large table reads one day.

Scripts: leading ``SET k=v;`` statements override the task's settings, which override the project's
flags. One other statement runs; several run in order only with ``odps.sql.submit.mode=script`` (as on
the service, where a plain SQL task takes a single statement); the last one's result is returned.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp
from sqlglot.errors import OptimizeError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.pushdown_predicates import pushdown_predicates
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from localcloud.maxcompute.dialect import (
    DIALECT, ddl_type, duckdb_type, exact_spec, insertable, iter_partition_spec, odps_type_of_duckdb,
    parse_setting, parse_statement, partition_predicates, partition_value, position, split_script,
    translate,
)
from localcloud.maxcompute.errors import (
    NO_SUCH_PARTITION, NO_SUCH_TABLE, NOT_SUPPORTED, PARSE_ERROR, RUNTIME_ERROR, SEMANTIC_ERROR,
    TABLE_EXISTS, MaxComputeError, SqlError,
)
from localcloud.maxcompute.external import external_from_properties
from localcloud.maxcompute.external_read import ExternalReader, Scratch
from localcloud.maxcompute.store import MaxComputeStore, TableMeta, check_partition_value, stored_columns
from localcloud.maxcompute.types import MAX_CELL_BYTES, Column, arrow_type, oversized_cell

FULL_SCAN_FLAG = "odps.sql.allow.fullscan"
ORDER_BY_FLAG = "odps.sql.validate.orderby.limit"
SUBMIT_MODE_FLAG = "odps.sql.submit.mode"
ODPS2_FLAG = "odps.sql.type.system.odps2"
BATCH_ROWS = 65536
#: MaxCompute's limits on one job: partitions it may write (ODPS-0123031) and read (SQL limits).
MAX_OUTPUT_PARTITIONS = 10000
MAX_INPUT_PARTITIONS = 10000
#: The longest SQL text a task may carry ("SQL limits": 2 MB, SDK submissions included).
MAX_SQL_BYTES = 2 << 20


@dataclass
class SqlResult:
    columns: list[Column]        # result schema in MaxCompute types (SELECT); [] for DDL/DML
    table: pa.Table | None       # the rows of a SELECT, Arrow types per types.arrow_type
    summary: str                 # "OK" for DDL; the written partitions and record counts for DML
    inputs: list[str] = field(default_factory=list)        # what was read: "p.t/ds=1" (the summary's inputs)
    outputs: dict[str, int] = field(default_factory=dict)  # what was written: "p.t/ds=1" -> records


class SqlEngine:
    def __init__(self, store: MaxComputeStore, *, allow_full_scan: bool = True,
                 external: ExternalReader | None = None, scratch: Path | None = None) -> None:
        # allow_full_scan is the project's odps.sql.allow.fullscan. It defaults to true here so that ad-hoc
        # local use is not surprising; the server can pass False to match projects created with it off.
        # external reads OSS external tables (none: they cannot be read); scratch holds what a query
        # reads from them (the system's temporary folder by default), deleted when the query ends.
        self.store = store
        self.allow_full_scan = allow_full_scan
        self.external = external or ExternalReader(None, None, "cn-hangzhou")
        self.scratch = scratch

    def execute(self, project: str, sql: str, settings: Mapping[str, str] | None = None) -> SqlResult:
        if len(sql.encode()) > MAX_SQL_BYTES:
            raise SqlError(PARSE_ERROR, f"[1,1] Parse exception - the SQL is {len(sql.encode())} bytes; a "
                           f"statement may be at most {MAX_SQL_BYTES} bytes")
        flags = {FULL_SCAN_FLAG: str(self.allow_full_scan).lower()}
        flags.update({k.lower(): str(v) for k, v in (settings or {}).items()})
        body = []
        for statement in split_script(sql):
            setting = parse_setting(statement, sql)
            if setting:
                flags[setting[0].lower()] = setting[1]
            else:
                body.append(statement)
        if not body:
            return SqlResult([], None, "OK")
        if len(body) > 1 and flags.get(SUBMIT_MODE_FLAG, "").lower() != "script":
            second = body[1].tokens[0]
            raise SqlError(PARSE_ERROR, f"[{second.line},1] Parse exception - a SQL task runs one statement "
                           f"(found {len(body)}); set {SUBMIT_MODE_FLAG}=script to run a script")
        trees = [parse_statement(statement, sql) for statement in body]
        run = _Run(self.store, project.lower(), flags, self.external, self.scratch)
        try:
            results = [run.statement(tree) for tree in trees]
        except MaxComputeError as error:
            raise _as_sql_error(error) from None
        except duckdb.Error as error:
            raise _duckdb_error(error) from None
        finally:
            run.close()
        return results[-1]


def _flag(flags: Mapping[str, str], name: str, default: bool) -> bool:
    return flags.get(name, str(default)).strip().strip("'\"").lower() not in ("false", "0", "off")


def _as_sql_error(error: MaxComputeError) -> SqlError:
    if isinstance(error, SqlError):
        return error
    if error.status == 404:
        code = NO_SUCH_TABLE if error.message.startswith("Table not found") else NO_SUCH_PARTITION
        return SqlError(code, f"[1,1] {error.message}")
    code = TABLE_EXISTS if error.status == 409 else SEMANTIC_ERROR
    return SqlError(code, f"[1,1] Semantic analysis exception - {error.message}")


def _duckdb_error(error: duckdb.Error) -> SqlError:
    text = str(error).splitlines()[0]
    if isinstance(error, (duckdb.BinderException, duckdb.CatalogException)):
        return SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - {text}")
    return SqlError(RUNTIME_ERROR, f"Invalid argument - {text}")


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _sql_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class _Scan:
    meta: TableMeta
    node: exp.Table


class _Run:
    """One execute: its DuckDB connection, flags and the views it registered."""

    def __init__(self, store: MaxComputeStore, project: str, flags: dict[str, str],
                 external: ExternalReader, scratch: Path | None) -> None:
        self.store, self.project, self.flags = store, project, flags
        self.external, self.scratch = external, Scratch(scratch)
        self.con = duckdb.connect()
        self.names = itertools.count()
        self.inputs: list[str] = []

    def close(self) -> None:
        self.con.close()
        self.scratch.close()

    def statement(self, tree: exp.Expr) -> SqlResult:
        self.inputs = []
        if isinstance(tree, exp.Query):
            return self.select(tree)
        if isinstance(tree, exp.Insert):
            return self.insert(tree)
        if isinstance(tree, exp.Create):
            return self.create(tree)
        if isinstance(tree, exp.Drop) and tree.kind == "TABLE":
            for table in tree.args.get("tables") or [tree.this]:
                self.store.drop_table(self.table_project(table), table.name.lower(),
                                      if_exists=bool(tree.args.get("exists")))
            return SqlResult([], None, "OK")
        if isinstance(tree, exp.Alter) and tree.kind == "TABLE":
            return self.alter(tree)
        if isinstance(tree, exp.TruncateTable):   # pyodps's Table.truncate()
            for table in tree.expressions:
                self.truncate(self.meta(table), tree.args.get("partition"))
            return SqlResult([], None, "OK")
        if isinstance(tree, (exp.Update, exp.Delete, exp.Merge)):
            verb = type(tree).__name__.upper()
            target = tree.this.name if isinstance(tree.this, exp.Table) else "the target"
            raise SqlError(NOT_SUPPORTED, f"{position(tree)} Semantic analysis exception - {verb} is not "
                           f"supported: table {target} is not a transactional table")
        what = f"{tree.key.upper()} {tree.args.get('kind') or ''}".strip()
        if isinstance(tree, exp.Command):
            what = str(tree.this).upper()
        raise SqlError(NOT_SUPPORTED, f"{position(tree)} Semantic analysis exception - {what} statements "
                       "are not supported by the local MaxCompute server")

    def table_project(self, table: exp.Table) -> str:
        return table.db.lower() if table.db else self.project

    def meta(self, table: exp.Table) -> TableMeta:
        project = self.table_project(table)
        try:
            return self.store.get_table(project, table.name.lower())
        except MaxComputeError as error:
            if error.status != 404:
                raise
            raise SqlError(NO_SUCH_TABLE, f"{position(table)} Table not found - table "
                           f"{project}.{table.name.lower()} cannot be resolved") from None

    # -- queries -------------------------------------------------------------------------------------

    def prepare(self, query: exp.Query) -> str:
        """Check a query as MaxCompute would and return it as DuckDB SQL over registered views."""
        if _flag(self.flags, ORDER_BY_FLAG, True):
            for node in query.find_all(exp.Select, exp.SetOperation):
                if node.args.get("order") and not node.args.get("limit"):
                    raise SqlError(SEMANTIC_ERROR, f"{position(node.args['order'])} Semantic analysis "
                                   "exception - ORDER BY must be used with a LIMIT clause, please set "
                                   f"{ORDER_BY_FLAG}=false to use it")
        cte_names = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
        metas: dict[tuple[str, str], TableMeta] = {}
        for table in query.find_all(exp.Table):
            if not table.db and table.name.lower() in cte_names:
                continue
            meta = self.meta(table)
            metas[(meta.project, meta.name)] = meta
        for select in query.find_all(exp.Select):
            # MaxCompute names unnamed result columns _c0, _c1, ... by position.
            for i, item in enumerate(select.expressions):
                if not isinstance(item, (exp.Alias, exp.Column, exp.Star)):
                    item.replace(exp.alias_(item.copy(), f"_c{i}"))
        schema: dict[str, dict[str, dict[str, str]]] = {}
        for meta in metas.values():
            schema.setdefault(meta.project, {})[meta.name] = {
                c.name: c.type for c in (*meta.columns, *meta.partition_columns)}
        mapping = MappingSchema(schema, dialect=DIALECT)
        original = query.copy()
        try:
            query = qualify(query, schema=mapping, db=self.project, dialect=DIALECT)
        except OptimizeError as error:
            raise _unresolved(original, str(error)) from None
        try:   # so that a partition predicate written outside a subquery still prunes inside it
            query = pushdown_predicates(query.copy(), dialect=DIALECT)
        except Exception:   # noqa: BLE001 - an optimisation only; the query is still correct without it
            pass
        try:
            annotate_types(query, schema=mapping, dialect=DIALECT)
        except Exception:   # noqa: BLE001 - types only refine CAST semantics
            pass
        query = translate(query)
        for hint in list(query.find_all(exp.Hint)):   # MAPJOIN & co. steer MaxCompute's planner only
            hint.pop()
        scans = [_Scan(metas[(t.db.lower(), t.name.lower())], t) for t in query.find_all(exp.Table)
                 if t.db and (t.db.lower(), t.name.lower()) in metas]
        for scan in scans:
            view = self.register(scan)
            scan.node.replace(exp.Table(this=exp.to_identifier(view, quoted=True),
                                        alias=exp.TableAlias(this=exp.to_identifier(
                                            scan.node.alias_or_name, quoted=True))))
        return query.sql(dialect="duckdb")

    def register(self, scan: _Scan) -> str:
        """A view over the partitions of ``scan``'s table its predicates can match."""
        meta, name = scan.meta, f"__mc_src_{next(self.names)}"
        parts = self.partitions(scan)
        if meta.external is not None:   # read from OSS now, into this run's scratch folder
            parts = self.external.read_parts(meta, parts, self.scratch.path())
        if meta.is_partitioned and len(parts) > MAX_INPUT_PARTITIONS:
            raise SqlError(SEMANTIC_ERROR, f"{position(scan.node)} Semantic analysis exception - the query "
                           f"reads {len(parts)} partitions of {meta.project}.{meta.name}; at most "
                           f"{MAX_INPUT_PARTITIONS} may be read by one query")
        selects = []
        for spec, files in parts:
            self.inputs.append(_where(meta, spec))
            groups: dict[frozenset[str], list] = {}   # files written before ADD COLUMNS lack the new ones
            for f in files:
                groups.setdefault(stored_columns(str(f)), []).append(f)
            for stored, group in groups.items():
                items = [f"CAST({_sql_ident(c.name) if c.name in stored else 'NULL'} AS {duckdb_type(c.type)}) AS "
                         f"{_sql_ident(c.name)}" for c in meta.columns]
                items += [f"CAST({_sql_str(spec[c.name])} AS {duckdb_type(c.type)}) AS {_sql_ident(c.name)}"
                          for c in meta.partition_columns]
                paths = ", ".join(_sql_str(str(f)) for f in group)
                selects.append(f"SELECT {', '.join(items)} FROM read_parquet([{paths}])")
        if not selects:
            items = [f"CAST(NULL AS {duckdb_type(c.type)}) AS {_sql_ident(c.name)}"
                     for c in (*meta.columns, *meta.partition_columns)]
            selects.append(f"SELECT {', '.join(items)} WHERE false")
        self.con.execute(f"CREATE TEMP VIEW {_sql_ident(name)} AS {' UNION ALL '.join(selects)}")
        return name

    def partitions(self, scan: _Scan) -> list[tuple[dict[str, str], list]]:
        meta = scan.meta
        if not meta.is_partitioned:
            return self.store.parquet_files(meta.project, meta.name)
        prune, pinned = partition_predicates(scan.node, {c.name for c in meta.partition_columns})
        if not pinned and not _flag(self.flags, FULL_SCAN_FLAG, True):
            raise SqlError(SEMANTIC_ERROR, f"{position(scan.node)} Semantic analysis exception - "
                           f"Table({meta.project},{meta.name}) is full scan with all partitions, please "
                           "specify partition predicates.")
        exact = exact_spec(prune, meta.partition_columns)
        if exact is not None:   # the common `ds = '...'`: ask the store for that partition only
            try:
                return self.store.parquet_files(meta.project, meta.name, exact)
            except MaxComputeError as error:
                if error.status == 404:
                    return []
                raise
        parts = self.store.parquet_files(meta.project, meta.name)
        if not prune or not parts:
            return parts
        columns = {c.name: pa.array([spec[c.name] for spec, _ in parts], pa.string())
                   for c in meta.partition_columns}
        listing = f"__mc_parts_{next(self.names)}"
        self.con.register(listing, pa.table({"__i": list(range(len(parts))), **columns}))
        alias = scan.node.alias_or_name
        items = ", ".join(f"CAST({_sql_ident(c.name)} AS {duckdb_type(c.type)}) AS {_sql_ident(c.name)}"
                          for c in meta.partition_columns)
        where = " AND ".join(f"({c.sql(dialect='duckdb')})" for c in prune)
        try:
            keep = self.con.execute(f"SELECT __i FROM (SELECT __i, {items} FROM {listing}) AS "
                                    f"{_sql_ident(alias)} WHERE {where}").fetchall()
        except duckdb.Error:   # a predicate DuckDB cannot evaluate alone: read everything, filter later
            return parts
        finally:
            self.con.unregister(listing)
        return [parts[i] for (i,) in sorted(keep)]

    def run_query(self, query: exp.Query) -> tuple[str, list[str], list[str]]:
        """DuckDB SQL of the query (columns cast to what MaxCompute reports), names, MaxCompute types."""
        original = query.copy()
        sql = self.prepare(query)
        try:
            relation = self.con.sql(sql)
        except duckdb.CatalogException as error:   # a function neither MaxCompute nor DuckDB knows
            names = {f.name.lower(): f for f in original.find_all(exp.Anonymous)}
            unknown = next((n for n in names if f"name {n} does not exist" in str(error).lower()), None)
            if unknown is None:
                raise
            raise SqlError(SEMANTIC_ERROR, f"{position(names[unknown])} Semantic analysis exception - "
                           f"function {unknown} cannot be resolved") from None
        names = list(relation.columns)
        duck_types = [str(t) for t in relation.types]
        odps2 = _flag(self.flags, ODPS2_FLAG, False)
        odps_types = [odps_type_of_duckdb(t, odps2) for t in duck_types]
        positional = [f"__c{i}" for i in range(len(names))]
        items = [f"CAST({p} AS {duckdb_type(o)})" if duckdb_type(o) != d else p
                 for p, o, d in zip(positional, odps_types, duck_types)]
        return (f"SELECT {', '.join(items)} FROM ({sql}) AS __q({', '.join(positional)})",
                [n.lower() for n in names], odps_types)

    def select(self, query: exp.Query) -> SqlResult:
        sql, names, types = self.run_query(query)
        table = self.con.sql(sql).to_arrow_table()
        columns = [Column(n, t) for n, t in zip(names, types)]
        arrays = [pc.cast(table.column(i), arrow_type(t), safe=not pa.types.is_timestamp(arrow_type(t)))
                  for i, t in enumerate(types)]
        result = pa.Table.from_arrays(arrays, schema=pa.schema(
            [pa.field(c.name, arrow_type(c.type)) for c in columns]))
        return SqlResult(columns, result, "OK", inputs=self.inputs)

    # -- DML -----------------------------------------------------------------------------------------

    def insert(self, tree: exp.Insert) -> SqlResult:
        target = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
        meta = self.meta(target)
        overwrite = bool(tree.args.get("overwrite"))
        static, dynamic = self.insert_spec(meta, target.args.get("partition"))
        source = tree.expression
        if isinstance(source, exp.Values):
            width = len(source.expressions[0].expressions) if source.expressions else 0
            source = exp.select("*").from_(source.as_("__values", table=[f"_c{i}" for i in range(width)]))
        if not isinstance(source, exp.Query):
            raise SqlError(NOT_SUPPORTED, f"{position(tree)} Semantic analysis exception - INSERT of "
                           f"{source.key.upper()} is not supported by the local MaxCompute server")
        sql, _, types = self.run_query(source)
        targets = list(meta.columns)
        if isinstance(tree.this, exp.Schema):   # INSERT INTO t (a, c): the other columns get NULL
            listed = [i.name.lower() for i in tree.this.expressions]
            unknown = [n for n in listed if n not in {c.name for c in meta.columns}]
            if unknown:
                raise SqlError(SEMANTIC_ERROR, f"{position(tree.this)} Semantic analysis exception - "
                               f"column {unknown[0]} cannot be resolved in {meta.project}.{meta.name}")
            targets = [next(c for c in meta.columns if c.name == n) for n in listed]
        expected = [*targets, *dynamic]
        if len(types) != len(expected):
            raise SqlError(SEMANTIC_ERROR, f"{position(tree.expression)} Semantic analysis exception - "
                           f"the number of columns in {meta.project}.{meta.name} ({len(expected)}, "
                           f"including dynamic partition columns) does not match the query ({len(types)})")
        for i, (column, source_type) in enumerate(zip(expected, types)):
            if not insertable(source_type, column.type):
                raise SqlError(SEMANTIC_ERROR, f"{position(tree.expression)} Semantic analysis exception "
                               f"- column {i + 1} in source has incompatible type {source_type} with "
                               f"destination column {column.name}, which has type {column.type}")
        by_name = {c.name: f"CAST(__s{i} AS {duckdb_type(c.type)})" for i, c in enumerate(expected)}
        data = [f"{by_name.get(c.name, f'CAST(NULL AS {duckdb_type(c.type)})')} AS {_sql_ident(c.name)}"
                for c in meta.columns]
        keys = [f"CAST(__s{len(targets) + i} AS VARCHAR) AS {_sql_ident(c.name)}"
                for i, c in enumerate(dynamic)]
        shaped = (f"SELECT {', '.join(data + keys)} FROM ({sql}) AS "
                  f"__src({', '.join(f'__s{i}' for i in range(len(types)))})")
        outputs: dict[str, int] = {}
        if not dynamic:
            spec = static or None
            outputs[_where(meta, static)] = self.write(meta, spec, shaped, overwrite)
        else:
            self.con.execute(f"CREATE TEMP TABLE __mc_out AS {shaped}")
            names = [c.name for c in dynamic]
            groups = self.con.sql(f"SELECT DISTINCT {', '.join(map(_sql_ident, names))} FROM __mc_out "
                                  "ORDER BY ALL").fetchall()
            if len(groups) > MAX_OUTPUT_PARTITIONS:
                raise SqlError("ODPS-0123031", f"ODPS partition exception - a single instance cannot output "
                               f"data to more than {MAX_OUTPUT_PARTITIONS} partitions ({meta.project}."
                               f"{meta.name} would get {len(groups)})")
            for values in groups:
                if any(v is None or v == "" for v in values):
                    raise SqlError(RUNTIME_ERROR, f"Invalid argument - dynamic partition value of "
                                   f"{meta.project}.{meta.name} cannot be NULL or empty")
                for name, value in zip(names, values):
                    try:
                        check_partition_value(name, value)
                    except MaxComputeError as error:
                        raise SqlError("ODPS-0123031", "ODPS partition exception - invalid dynamic partition "
                                       f"value: {error.message}") from None
                spec = {**static, **dict(zip(names, values))}
                where = " AND ".join(f"{_sql_ident(n)} = {_sql_str(v)}" for n, v in zip(names, values))
                columns = ", ".join(_sql_ident(c.name) for c in meta.columns)
                outputs[_where(meta, spec)] = self.write(
                    meta, spec, f"SELECT {columns} FROM __mc_out WHERE {where}", overwrite)
            self.con.execute("DROP TABLE __mc_out")
        summary = "outputs:\n" + "".join(f"    {k}: {n}\n" for k, n in outputs.items())
        return SqlResult([], None, summary, inputs=self.inputs, outputs=outputs)

    def write(self, meta: TableMeta, spec: dict[str, str] | None, sql: str, overwrite: bool) -> int:
        schema = pa.schema([pa.field(c.name, c.arrow_type) for c in meta.columns])

        def batches() -> Iterator[pa.RecordBatch]:   # streamed: never the whole result in memory
            for batch in self.con.sql(sql).to_arrow_reader(BATCH_ROWS):
                arrays = [pc.cast(batch.column(i), f.type, safe=not pa.types.is_timestamp(f.type))
                          for i, f in enumerate(schema)]
                out = pa.RecordBatch.from_arrays(arrays, schema=schema)
                found = oversized_cell(out)
                if found is not None:
                    raise SqlError(RUNTIME_ERROR, f"Invalid argument - the value of column {found[0]} in "
                                   f"{meta.project}.{meta.name} is {found[2]} bytes, over the {MAX_CELL_BYTES} "
                                   "bytes a cell may hold")
                yield out

        return self.store.write(meta.project, meta.name, spec, batches(), overwrite=overwrite,
                                create_partition=True)

    def insert_spec(self, meta: TableMeta, partition: exp.Expr | None
                    ) -> tuple[dict[str, str], list[Column]]:
        """The static part of an INSERT's partition spec and the dynamic partition columns."""
        names = [c.name for c in meta.partition_columns]
        if partition is None:
            if meta.is_partitioned:
                raise SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - table "
                               f"{meta.project}.{meta.name} is partitioned, please specify the partition "
                               f"({', '.join(names)}) to insert into")
            return {}, []
        items = list(iter_partition_spec(partition))
        if [k for k, _ in items] != names:
            raise SqlError(SEMANTIC_ERROR, f"{position(partition)} Semantic analysis exception - partition "
                           f"spec ({', '.join(k for k, _ in items)}) does not match the partition columns "
                           f"({', '.join(names)}) of {meta.project}.{meta.name}")
        static = {k: partition_value(v) for k, v in items if v is not None}
        dynamic = [c for c, (_, v) in zip(meta.partition_columns, items) if v is None]
        if dynamic and any(v is not None for _, v in items[len(static):]):
            raise SqlError(SEMANTIC_ERROR, f"{position(partition)} Semantic analysis exception - a static "
                           "partition column cannot follow a dynamic one")
        return static, dynamic

    # -- DDL -----------------------------------------------------------------------------------------

    def create(self, tree: exp.Create) -> SqlResult:
        if tree.kind != "TABLE":
            raise SqlError(NOT_SUPPORTED, f"{position(tree)} Semantic analysis exception - CREATE "
                           f"{tree.kind} is not supported by the local MaxCompute server")
        schema = tree.this if isinstance(tree.this, exp.Schema) else None
        table = schema.this if schema else tree.this
        project, name = self.table_project(table), table.name.lower()
        columns = [_column(d) for d in schema.expressions] if schema else []
        partition_columns: list[Column] = []
        lifecycle, comment, like, external = None, "", None, None
        properties = (tree.args.get("properties") or exp.Properties(expressions=[])).expressions
        if any(isinstance(prop, exp.ExternalProperty) for prop in properties):
            external, properties = external_from_properties(properties, columns)
        for prop in properties:
            if isinstance(prop, exp.SchemaCommentProperty):
                comment = prop.this.name
            elif isinstance(prop, exp.PartitionedByProperty) and isinstance(prop.this, exp.Schema):
                partition_columns = [_column(d) for d in prop.this.expressions]
            elif isinstance(prop, exp.Property) and prop.name.upper() == "LIFECYCLE":
                lifecycle = int(prop.args["value"].name)
            elif isinstance(prop, exp.LikeProperty):
                like = self.meta(prop.this)
            else:
                raise SqlError(NOT_SUPPORTED, f"{position(prop)} Semantic analysis exception - "
                               f"{prop.sql('hive')} is not supported by the local MaxCompute server")
        exists = bool(tree.args.get("exists"))
        if like is not None:
            columns, partition_columns = list(like.columns), list(like.partition_columns)
        query = tree.expression
        if isinstance(query, exp.Query) or (external and like):   # CREATE TABLE ... AS SELECT
            if external is not None:
                raise SqlError(NOT_SUPPORTED, f"{position(tree)} Semantic analysis exception - CREATE EXTERNAL "
                               "TABLE ... AS SELECT / LIKE is not supported by the local MaxCompute server")
            if partition_columns:
                raise SqlError(SEMANTIC_ERROR, f"{position(tree)} Semantic analysis exception - "
                               "CREATE TABLE AS SELECT cannot create a partitioned table")
            if exists and self.store.table_exists(project, name):
                return SqlResult([], None, "OK")
            sql, names, types = self.run_query(query)
            meta = self.store.create_table(project, name, [Column(n, t) for n, t in zip(names, types)],
                                           lifecycle=lifecycle, comment=comment)
            rows = self.write(meta, None, sql, overwrite=True)
            return SqlResult([], None, f"outputs:\n    {project}.{name}: {rows}\n", inputs=self.inputs,
                             outputs={f"{project}.{name}": rows})
        if not columns:
            raise SqlError(PARSE_ERROR, f"{position(tree)} Parse exception - CREATE TABLE needs columns")
        self.store.create_table(project, name, columns, partition_columns, lifecycle=lifecycle, comment=comment,
                                if_not_exists=exists, external=external and external.to_json())
        return SqlResult([], None, "OK")

    def truncate(self, meta: TableMeta, partition: exp.Expr | None) -> None:
        if partition is None and meta.is_partitioned:
            raise SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - table {meta.project}."
                           f"{meta.name} is partitioned: TRUNCATE TABLE needs a PARTITION (...)")
        spec = _full_spec(meta, partition) if partition is not None else None
        self.store.write(meta.project, meta.name, spec, [], overwrite=True)

    def alter(self, tree: exp.Alter) -> SqlResult:
        meta = self.meta(tree.this)
        for action in tree.args.get("actions") or []:
            if isinstance(action, exp.AddPartition):
                self.store.add_partition(meta.project, meta.name, _full_spec(meta, action.this),
                                         if_not_exists=bool(action.args.get("exists")))
            elif isinstance(action, exp.DropPartition):
                for partition in action.expressions:
                    self.store.drop_partition(meta.project, meta.name, _full_spec(meta, partition),
                                              if_exists=bool(action.args.get("exists")))
            elif isinstance(action, exp.Schema):   # ADD COLUMNS [IF NOT EXISTS] (...): appended, NULL in old rows
                self.store.add_columns(meta.project, meta.name, [_column(d) for d in action.expressions],
                                       if_not_exists=bool(action.meta.get("if_not_exists")))
            elif isinstance(action, exp.AlterRename) and isinstance(action.this, exp.Partition):
                old = tree.this.args.get("partition")
                if old is None:
                    raise SqlError(PARSE_ERROR, f"{position(action)} Parse exception - RENAME TO "
                                   "PARTITION needs ALTER TABLE t PARTITION (...)")
                self.store.rename_partition(meta.project, meta.name, _full_spec(meta, old),
                                            _full_spec(meta, action.this))
            else:
                raise SqlError(NOT_SUPPORTED, f"{position(action)} Semantic analysis exception - ALTER "
                               f"TABLE {action.sql('hive')} is not supported by the local MaxCompute server")
        return SqlResult([], None, "OK")


def _column(definition: exp.Expr) -> Column:
    if not isinstance(definition, exp.ColumnDef) or definition.args.get("kind") is None:
        raise SqlError(PARSE_ERROR, f"{position(definition)} Parse exception - expected a column "
                       "definition: name TYPE [COMMENT '...']")
    comment = next((c.kind.this.name for c in definition.constraints
                    if isinstance(c.kind, exp.CommentColumnConstraint)), "")
    return Column(definition.name, ddl_type(definition.args["kind"]), comment)


def _full_spec(meta: TableMeta, partition: exp.Expr) -> dict[str, str]:
    items = list(iter_partition_spec(partition))
    spec = {k: partition_value(v) for k, v in items if v is not None}
    names = [c.name for c in meta.partition_columns]
    if sorted(spec) != sorted(names) or len(items) != len(names):
        raise SqlError(SEMANTIC_ERROR, f"{position(partition)} Semantic analysis exception - partition "
                       f"spec ({', '.join(k for k, _ in items)}) does not match the partition columns "
                       f"({', '.join(names)}) of {meta.project}.{meta.name}")
    return {n: spec[n] for n in names}


def _where(meta: TableMeta, spec: Mapping[str, str]) -> str:
    """``p.t/ds=1/hh=2``: a partition as MaxCompute's job summary names it."""
    return "/".join([f"{meta.project}.{meta.name}", *(f"{k}={v}" for k, v in spec.items())])


def _unresolved(query: exp.Expr, message: str) -> SqlError:
    """qualify's complaint about a column, worded and positioned as MaxCompute's."""
    quoted = message.replace('"', "'")
    for column in query.find_all(exp.Column):
        if column.name and (f"'{column.name}'" in quoted or quoted.endswith(f": {column.name}")):
            what = (f"column reference {column.sql(dialect='hive')} is ambiguous" if "mbiguous" in message
                    else f"column {column.sql(dialect='hive')} cannot be resolved")
            return SqlError(SEMANTIC_ERROR, f"{position(column)} Semantic analysis exception - {what}")
    return SqlError(SEMANTIC_ERROR, f"[1,1] Semantic analysis exception - {message.splitlines()[0]}")
