"""The index config's rules as MaxCompute SQL over an OSS Bucket Inventory (``source.mode: inventory``).

Pure text, no I/O: :func:`compile_inventory` turns the rules of :class:`~pipeline.oss.catalog.CatalogBuilder`
into statements over an external table on the inventory's gzip CSV files, and :func:`inventory_counts`
turns the answers of its count queries into the dict a listing load reports (``CatalogCounts.as_dict``).
:meth:`pipeline.warehouse.maxcompute.MaxComputeWarehouse.load_inventory` runs them.

Every object gets one ``reason`` with CatalogBuilder's precedence (folder marker, not an image, zero
bytes, too small, too large, archived, then bad id, then unmapped category; NULL: a row), so the rows
and the counts are the listing route's (tests/pipeline/warehouse/test_inventory_sql.py holds both routes
to identical partitions). One difference, by necessity: the inventory has no restore state, so every
Archive / ColdArchive / DeepColdArchive object is ``archived``, restored or not (README, "The rules as SQL").
A row's ``etag`` is the inventory's ETag field with any quotes around it stripped, case kept, as the listing
route keeps the listed one; NULL when the inventory rule does not include the ETag field.

Config values reach the SQL only as string literals written by :func:`sql_string` (or as validated
identifiers and integers); object keys never leave the data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.config import CategoryRule, IdRule, SourceConfig, check_prefixes
from pipeline.patterns import sql_pattern
from pipeline.schema import PARTITION_COLUMN, validate_ds
from pipeline.sql import validate_table_name

INT64_MAX = 2**63 - 1
#: MaxCompute refuses a statement over 2 MB; stay a little under it.
MAX_SQL_BYTES = 2_000_000
UNMAPPED_EXAMPLES = 10  # as CatalogCounts: the most common unmapped names
ARCHIVED_EXAMPLES = 10  # the first archived keys in key order
#: pipeline.oss.catalog.SkipReason's values, in its order (the warehouse cannot import pipeline.oss;
#: tests/pipeline/warehouse/test_inventory_sql.py holds the two equal).
SKIP_REASONS = ("folder_marker", "not_image", "zero_bytes", "too_small", "too_large", "bad_id",
                "unmapped_category", "archived")
ARCHIVE_CLASSES = ("Archive", "ColdArchive", "DeepColdArchive")  # as pipeline.oss.catalog.ARCHIVE_CLASSES
NO_CATEGORY = "<none>"  # the name an absent or empty category token is counted under (as CatalogBuilder)
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")
_LOCATION_RE = re.compile(r"^oss://[^\s'\\]+/$")
_ROLE_RE = re.compile(r"^acs:ram::\d+:role/[A-Za-z0-9._@-]{1,64}$")
_NEEDED_FIELDS = ("Key", "Size", "StorageClass")


def sql_string(value: str) -> str:
    """``value`` as a MaxCompute string literal: in single quotes, with ``\\`` and ``'`` escaped by a
    backslash (the only characters its lexer treats specially inside quotes; everything else, line
    breaks and ``;`` included, stands for itself)."""
    if not isinstance(value, str):
        raise TypeError(f"a SQL string literal needs a str, got {type(value).__name__}")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _bigint(value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise ValueError(f"expected a BIGINT from 0 to 2^63-1, got {value!r}")
    return str(value)


def parse_file_schema(file_schema: str) -> list[str]:
    """The manifest's ``fileSchema`` (``"Bucket, Key, Size, ..."``) as field names; Key, Size and
    StorageClass must be there (the rules read them)."""
    fields = [name.strip() for name in file_schema.split(",")]
    for name in fields:
        if not _FIELD_RE.match(name):
            raise ValueError(f"inventory fileSchema {file_schema!r}: field {name!r} is no plain name")
    lowered = [name.lower() for name in fields]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"inventory fileSchema {file_schema!r} names a field twice")
    missing = [name for name in _NEEDED_FIELDS if name.lower() not in lowered]
    if missing:
        raise ValueError(f"inventory fileSchema {file_schema!r} lacks {', '.join(missing)}: the inventory rule "
                         "must include the Size and StorageClass optional fields")
    return fields


def external_table_ddl(table: str, file_schema: str, location: str, role_arn: str) -> str:
    """``CREATE EXTERNAL TABLE`` over the gzip CSV files under ``location`` (every field quoted, no
    header): one column per fileSchema field, lower-cased and backquoted (``bucket`` is reserved);
    Size BIGINT, the others STRING."""
    validate_table_name(table)
    if not _LOCATION_RE.match(location):
        raise ValueError(f"inventory location {location!r} must be oss://<endpoint>/<bucket>/<folder>/")
    if not _ROLE_RE.match(role_arn):
        raise ValueError(f"role arn {role_arn!r} must look like acs:ram::<account>:role/<name>")
    columns = ", ".join(f"`{name.lower()}` {'BIGINT' if name.lower() == 'size' else 'STRING'}"
                        for name in parse_file_schema(file_schema))
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS {table} ({columns})\n"
        "STORED BY 'com.aliyun.odps.CsvStorageHandler'\n"
        f"WITH SERDEPROPERTIES ('odps.properties.rolearn'={sql_string(role_arn)}, "
        "'odps.text.option.gzip.input.enabled'='true', 'odps.text.option.use.quote'='true')\n"
        f"LOCATION {sql_string(location)}"
    )


def _digits(token: str) -> str:
    """The digits of ``token`` without leading zeros ('0' for zeros only), NULL unless it is all ASCII
    digits: with the width check of :func:`_bigint_of` this is CatalogBuilder's _parse_digits."""
    return f"REGEXP_EXTRACT({token}, '^0*([0-9]+)\\\\z', 1)"


def _bigint_of(digits: str) -> str:
    """``digits`` (from :func:`_digits`) as a BIGINT, NULL when it overflows. The CAST only ever sees
    a number that fits: MaxCompute's CAST of a larger one is an error or garbage, not NULL."""
    # LENGTH >= 1: an engine whose REGEXP_EXTRACT answers '' for no match must not CAST ''.
    fits = f"LENGTH({digits}) BETWEEN 1 AND 18 OR (LENGTH({digits}) = 19 AND {digits} <= '{INT64_MAX}')"
    return f"CAST(CASE WHEN {fits} THEN {digits} END AS BIGINT)"


def _id_expr(id_rule: IdRule) -> tuple[str, str]:
    """(the id's text, its BIGINT expression over that text, NULL: bad id) for the layers below."""
    if id_rule.kind == "md5":
        # md5_key_id: the first 64 bits of MD5(key) with the top bit cleared. CONV gives a STRING (and
        # 16 hex digits overflow a BIGINT), so: (first hex digit % 8) * 2^60 + the next 15 hex digits.
        return ("MD5(object_key)",
                "(CAST(CONV(SUBSTR(id_text, 1, 1), 16, 10) AS BIGINT) % 8) * 1152921504606846976"
                " + CAST(CONV(SUBSTR(id_text, 2, 15), 16, 10) AS BIGINT)")
    if id_rule.kind == "filename_digits":
        file_name = "REGEXP_EXTRACT(object_key, '([^/]*)\\\\z', 1)"  # key.rpartition('/')[2]
        token = f"REGEXP_EXTRACT({file_name}, {sql_string(sql_pattern(id_rule.regex))}, 1)"
        return _digits(token), _bigint_of("id_text")
    raise ValueError(f"id_rule.kind {id_rule.kind!r} cannot be computed in MaxCompute SQL: use 'md5'")


def _token_expr(rule: CategoryRule) -> str:
    """The category token (NULL or '': none), as CatalogBuilder._token_array."""
    if rule.kind == "regex":
        assert rule.regex is not None
        return f"REGEXP_EXTRACT(object_key, {sql_string(sql_pattern(rule.regex))}, 1)"
    segment = rule.segment if rule.segment is not None else 0
    if segment >= 0:  # past the last part: '' (CatalogBuilder: None; both are "no category")
        return f"SPLIT_PART(object_key, '/', {segment + 1})"
    parts = "(LENGTH(object_key) - LENGTH(REPLACE(object_key, '/', '')) + 1)"
    return f"CASE WHEN {parts} + ({segment}) >= 0 THEN SPLIT_PART(object_key, '/', {parts} + ({segment}) + 1) END"


def _category_expr(rule: CategoryRule) -> str:
    """The category id of ``token`` by mapping or as a number; NULL: unmapped."""
    if rule.mapping is None:
        return _bigint_of(_digits("token"))
    usable = sorted((name, cate_id) for name, cate_id in rule.mapping.items() if name)  # '' is never looked up
    if not usable:
        return "CAST(NULL AS BIGINT)"
    # A simple CASE, not a join to a VALUES list: every MaxCompute version and the local server run it,
    # it needs no table, and it is one hash lookup per name in the plan. Its size is what limits the
    # mapping (see MAX_SQL_BYTES).
    whens = "\n      ".join(f"WHEN {sql_string(name)} THEN {_bigint(cate_id)}" for name, cate_id in usable)
    return f"CAST(CASE token\n      {whens}\n    END AS BIGINT)"


def _prefix_condition(prefixes: list[str]) -> str:
    """Keys under one of ``prefixes``: a SUBSTR comparison (no LIKE wildcards to escape)."""
    if any(prefix == "" for prefix in prefixes):
        return "TRUE"
    return " OR ".join(f"SUBSTR(object_key, 1, LENGTH({sql_string(p)})) = {sql_string(p)}" for p in prefixes)


def etag_expr(fields: list[str]) -> str:
    """The object's ETag as the listing route keeps it (pipeline/oss/pages.py): without the quotes around
    it (the inventory writes none; stripped if there), case kept, NULL when empty or when the inventory's
    fileSchema has no ETag field."""
    if "etag" not in (name.lower() for name in fields):
        return "CAST(NULL AS STRING)"
    stripped = """REGEXP_REPLACE(`etag`, '^"+|"+$', '')"""
    return f"CASE WHEN {stripped} <> '' THEN {stripped} END"


def classified_objects(external_table: str, source: SourceConfig, id_rule: IdRule, category_rule: CategoryRule,
                       prefixes: list[str], fields: list[str]) -> str:
    """A query of every inventoried object under ``prefixes``: ``object_key`` (decoded), ``storage_class``,
    ``reason`` (NULL: a row), ``id``, ``source_image``, ``cate_id``, ``etag``, ``unmapped_name`` (set where
    the category rule found no id, as CatalogCounts.unmapped_categories counts it) and ``archived_class``.
    ``fields``: the inventory's (its fileSchema); without ETag, ``etag`` is NULL."""
    validate_table_name(external_table)
    extensions = ", ".join(sql_string(ext) for ext in sorted(set(source.extensions)))
    archive = ", ".join(sql_string(name) for name in ARCHIVE_CLASSES)
    id_text, id_value = _id_expr(id_rule)
    if category_rule.unmapped == "default":
        unmapped_reason, cate_id = "NULL", f"COALESCE(mapped_cate, {_bigint(category_rule.default_id or 0)})"
    else:  # skip, and fail (the caller raises once it sees the count)
        unmapped_reason, cate_id = "'unmapped_category'", "mapped_cate"
    return f"""SELECT object_key, storage_class, id, CONCAT('/', object_key) AS source_image, {cate_id} AS cate_id,
  object_etag AS etag,
  CASE WHEN filtered IS NOT NULL THEN filtered WHEN id IS NULL THEN 'bad_id'
       WHEN mapped_cate IS NULL THEN {unmapped_reason} END AS reason,
  CASE WHEN filtered IS NULL AND id IS NOT NULL AND mapped_cate IS NULL
       THEN (CASE WHEN token IS NULL OR token = '' THEN '{NO_CATEGORY}' ELSE token END) END AS unmapped_name,
  CASE WHEN filtered = 'archived' THEN storage_class END AS archived_class
FROM (
  SELECT object_key, storage_class, object_etag, filtered, token, {id_value} AS id,
    {_category_expr(category_rule)} AS mapped_cate
  FROM (
    SELECT object_key, storage_class, object_etag, token, id_text,
      CASE WHEN SUBSTR(object_key, LENGTH(object_key), 1) = '/' THEN 'folder_marker'
           WHEN COALESCE(LOWER(REGEXP_EXTRACT(object_key, '\\\\.([0-9A-Za-z]+)\\\\z', 1)), '')
                NOT IN ({extensions}) THEN 'not_image'
           WHEN object_size IS NULL OR object_size = 0 THEN 'zero_bytes'
           WHEN object_size < {_bigint(source.min_size_bytes)} THEN 'too_small'
           WHEN object_size > {_bigint(source.max_size_bytes)} THEN 'too_large'
           WHEN storage_class IN ({archive}) THEN 'archived' END AS filtered
    FROM (
      SELECT object_key, object_size, storage_class, object_etag, {id_text} AS id_text,
        {_token_expr(category_rule)} AS token
      FROM (
        SELECT URL_DECODE(`key`, 'UTF-8') AS object_key, `size` AS object_size, `storageclass` AS storage_class,
          {etag_expr(fields)} AS object_etag
        FROM {external_table}
      ) decoded
      WHERE {_prefix_condition(prefixes)}
    ) tokens
  ) filters
) ids"""


@dataclass(frozen=True)
class InventoryStatements:
    """What one inventory load runs, in order: ``create_external``, ``create_objects`` (the one scan of
    the inventory files: every object classified, into a one-day table), ``insert_staging`` and the
    count queries over that table, then ``drop_objects`` and ``drop_external`` (always, in a finally).
    Each statement stands alone (one per job)."""

    create_external: str
    create_objects: str
    insert_staging: str
    counts: str             # reason (NULL: kept), archived_class, objects, unmapped
    unmapped_examples: str  # name, objects, first_key: the most common unmapped names
    archived_examples: str  # object_key: the first archived keys in key order
    staged_rows: str        # rows: what the staging partition holds
    drop_objects: str
    drop_external: str

    def all(self) -> list[str]:
        return [self.create_external, self.create_objects, self.insert_staging, self.counts,
                self.unmapped_examples, self.archived_examples, self.staged_rows, self.drop_objects,
                self.drop_external]


def compile_inventory(
    source: SourceConfig,
    id_rule: IdRule,
    category_rule: CategoryRule,
    *,
    file_schema: str,
    location: str,
    role_arn: str,
    external_table: str,
    staging_table: str,
    ds: str,
    prefixes: list[str] | None = None,
    objects_table: str | None = None,
) -> InventoryStatements:
    """The statements that stage partition ``ds`` of ``staging_table`` from the inventory files under
    ``location`` (``oss://<endpoint>/<bucket>/<folder>/``, read as ``role_arn``) with the rules of
    ``source``, ``id_rule`` and ``category_rule``, for the keys under ``prefixes`` (default
    ``source.prefixes``). Raises ValueError for what SQL cannot express (``id_rule.kind: hash``), a bad
    name, location, schema, or a statement over MaxCompute's 2 MB (a mapping too large for a CASE)."""
    ds = validate_ds(ds)
    validate_table_name(staging_table)
    prefixes = check_prefixes(list(source.prefixes if prefixes is None else prefixes))
    objects = classified_objects(external_table, source, id_rule, category_rule, prefixes,
                                 parse_file_schema(file_schema))
    # The files are scanned once, into a table the other statements read: on the service a scan of the
    # external table re-reads and re-parses every gzip CSV file from OSS (10M objects: four scans were
    # 70% of the route's time here). LIFECYCLE 1 reclaims it if a killed run never drops it.
    table = objects_table or f"{external_table}_objects"
    validate_table_name(table)
    statements = InventoryStatements(
        create_external=external_table_ddl(external_table, file_schema, location, role_arn),
        create_objects=f"CREATE TABLE {table} LIFECYCLE 1 AS\nSELECT * FROM (\n{objects}\n) o",
        insert_staging=(f"INSERT OVERWRITE TABLE {staging_table} PARTITION ({PARTITION_COLUMN}='{ds}')\n"
                        f"SELECT id, source_image, cate_id, etag FROM {table} WHERE reason IS NULL"),
        counts=(f"SELECT reason, archived_class, COUNT(*) AS objects,\n"
                f"  SUM(CASE WHEN unmapped_name IS NULL THEN 0 ELSE 1 END) AS unmapped\n"
                f"FROM {table} GROUP BY reason, archived_class"),
        unmapped_examples=(f"SELECT unmapped_name AS name, COUNT(*) AS objects, MIN(object_key) AS first_key\n"
                           f"FROM {table} WHERE unmapped_name IS NOT NULL GROUP BY unmapped_name\n"
                           f"ORDER BY objects DESC, first_key LIMIT {UNMAPPED_EXAMPLES}"),
        archived_examples=(f"SELECT object_key FROM {table} WHERE reason = 'archived'\n"
                           f"ORDER BY object_key LIMIT {ARCHIVED_EXAMPLES}"),
        staged_rows=f"SELECT COUNT(*) AS row_count FROM {staging_table} WHERE {PARTITION_COLUMN} = '{ds}'",
        drop_objects=f"DROP TABLE IF EXISTS {table}",
        drop_external=f"DROP TABLE IF EXISTS {external_table}",
    )
    for statement in statements.all():
        size = len(statement.encode("utf-8"))
        if size > MAX_SQL_BYTES:
            names = len(category_rule.mapping or {})
            raise ValueError(f"the inventory load's SQL is {size:,} bytes, over MaxCompute's 2 MB per statement "
                             f"(category_rule.mapping has {names:,} names, written out as one CASE): shorten the "
                             "mapping or derive the category id from the key (no mapping)")
    return statements


def inventory_counts(counts: list[dict], unmapped: list[dict], archived: list[dict]) -> dict:
    """The answers of the count queries as ``CatalogCounts.as_dict()`` of a listing of the same objects:
    ``listed``, ``kept``, ``skipped`` (every reason), ``skipped_total``, ``unmapped_category_examples``,
    ``archived_by_class``, ``archived_examples``; plus ``unmapped_total`` (every object the category rule
    found no id for, ``unmapped: default`` ones included) and ``unmapped_first_key`` for ``unmapped: fail``."""
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    by_class: dict[str, int] = {}
    listed = kept = unmapped_total = 0
    for row in counts:
        objects = int(row["objects"] or 0)
        listed += objects
        unmapped_total += int(row["unmapped"] or 0)
        reason = row["reason"]
        if reason is None:
            kept += objects
            continue
        if reason not in skipped:
            raise ValueError(f"the inventory counts name an unknown reason {reason!r}")
        skipped[reason] += objects
        if reason == "archived":
            name = str(row["archived_class"])
            by_class[name] = by_class.get(name, 0) + objects
    return {
        "listed": listed,
        "kept": kept,
        "skipped": skipped,
        "skipped_total": sum(skipped.values()),
        "unmapped_category_examples": {str(r["name"]): int(r["objects"]) for r in unmapped},
        "archived_by_class": dict(sorted(by_class.items())),
        "archived_examples": [str(r["object_key"]) for r in archived],
        "unmapped_total": unmapped_total,
        "unmapped_first_key": str(unmapped[0]["first_key"]) if unmapped else None,
    }
